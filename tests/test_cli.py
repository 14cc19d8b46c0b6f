import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from llmfbn import __version__
from llmfbn.cli import main
from llmfbn.io import read_grid


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmfbn", *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"llmfbn {__version__}"


def test_models_lists_builtins(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "llama" in out and "gpt_neox" in out


def test_record_cli(tmp_path, tiny_model_dir, capsys):
    texts = tmp_path / "probe.tsv"
    texts.write_text("text\tcondition\nthe cat sat\tanimal\n\nthe sun is big\tsky\n")
    code = main(["record", "--model", str(tiny_model_dir), "--input", str(texts), "--out",
                 str(tmp_path / "out"), "--label-column", "condition", "--max-tokens", "2",
                 "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "task 'probe': 2 runs, 4 tokens" in out
    assert "truncated: 2 (3 tokens dropped)" in out
    bolds = sorted((tmp_path / "out").rglob("*_bold.nii"))
    assert [b.name for b in bolds] == [
        f"sub-tinyllama_task-probe_run-{n:05d}_bold.nii" for n in (1, 2)]


@pytest.mark.parametrize("args, message", [
    (["--input", "missing.txt"], "does not exist"),
    (["--input", "{texts}", "--model", "nope-model"], "Unknown model 'nope-model'"),
    (["--input", "{texts}", "--signal", "attn"], "invalid choice: 'attn'"),
    (["--input", "{texts}", "--dtype", "float16"], "NIfTI-1/2 define no 16-bit float"),
    (["--input", "{texts}", "--text-column", "body"], "no column 'body'"),
])
def test_record_cli_errors_are_one_line(tmp_path, tiny_model_dir, args, message):
    texts = tmp_path / "t.csv"
    texts.write_text("text\nthe cat\n")
    args = [a.replace("{texts}", str(texts)) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    out = run_cli("record", "--out", tmp_path / "out", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr



def test_record_cli_balanced_sample_with_label_names(tmp_path, tiny_model_dir, capsys):
    table = tmp_path / "news.csv"
    rows = [f"{i % 4 == 0:d},the cat {i},sat on the mat" for i in range(24)]  # 6 of 1, 18 of 0
    table.write_text("label,title,description\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["record", "--model", str(tiny_model_dir), "--input", str(table), "--out",
                 str(out), "--text-column", "title,description", "--label-column", "label",
                 "--label-names", "0=other,1=cat", "--sample", "8", "--stratify-by", "label",
                 "--seed", "5", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "sample of 8 (seed 5, stratified by label): {'cat': 4, 'other': 4}" in printed
    assert "input 'csv': 24 texts, 8 recorded" in printed
    summary = json.loads(next(out.rglob("*_summary.json")).read_text())
    assert summary["n_per_label"] == {"cat": 4, "other": 4} and summary["seed"] == 5
    events = [line.split("\t") for line in next(out.rglob("*_events.tsv")).read_text()
              .splitlines()[1:]]
    assert {row[2] for row in events} <= {"cat", "other"}


@pytest.mark.parametrize("args, message", [
    (["--sample", "3", "--limit", "2"], "Give --limit (the first texts) or --sample"),
    (["--stratify-by", "label"], "--stratify-by needs --sample"),
    (["--sample", "30"], "--sample must be at most the number of non-empty texts"),
    (["--sample", "2", "--stratify-by", "label"], "--stratify-by 'label' needs labels"),
    (["--label-names", "1=positive"], "--label-names needs labels"),
    (["--label-names", "1"], "LABEL=NAME"),
    (["--label-column", "label", "--label-names", "1=positive"], "also holds labels ['0']"),
    (["--input-format", "wikitext"], "--input-format 'wikitext' reads plain-text files"),
])
def test_record_cli_selection_errors_come_before_the_model(tmp_path, capsys, args, message):
    table = tmp_path / "t.csv"
    table.write_text("text,label\nthe cat,1\nthe dog,0\n")
    code = main(["record", "--model", "no-such-model", "--input", str(table), "--out",
                 str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err, err


def test_killed_recording_resumes_to_the_same_result(tmp_path, tiny_model_dir):
    """SIGKILL mid-way: every image left behind is complete; a re-run finishes the job.

    48 texts, killed once 4 runs are done: the other 44 runs (each one forward
    pass and three files) leave the poll below ample time to kill it mid-way.
    """
    n_texts, n_before_kill = 48, 4
    words = "the cat sat on a mat dog ran far away".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 30))) for _ in range(n_texts)]
    texts = tmp_path / "many.txt"
    texts.write_text("\n".join(lines) + "\n")

    def command(out, *extra):
        return [sys.executable, "-m", "llmfbn", "record", "--model", str(tiny_model_dir),
                "--input", str(texts), "--out", str(out), "--batch-size", "1", "-q", *extra]

    proc = subprocess.Popen(command(tmp_path / "out"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    func = tmp_path / "out" / "sub-tinyllama" / "func"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(func.glob("*_bold.json"))) < n_before_kill:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the recording finished before it was killed"
    done = sorted(func.glob("*_bold.json"))
    assert n_before_kill <= len(done) < n_texts
    grid = read_grid(tmp_path / "out")
    for sidecar in done:  # every run with a sidecar has a complete image
        n_tokens = json.loads(sidecar.read_text())["NumberOfTokens"]
        assert grid.from_img(sidecar.with_suffix(".nii")).shape[0] == n_tokens
    orphans = [b for b in func.glob("*_bold.nii") if not b.with_suffix(".json").exists()]
    assert len(orphans) <= 1  # at most the run whose sidecar was being written

    out = subprocess.run(command(tmp_path / "out"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(list(func.glob("*_bold.json"))) == n_texts
    assert not list((tmp_path / "out").rglob(".llmfbn-tmp-*"))
    fresh = subprocess.run(command(tmp_path / "fresh"), capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    for bold in sorted(func.glob("*_bold.nii")):
        np.testing.assert_array_equal(
            grid.from_img(bold),
            grid.from_img(tmp_path / "fresh" / "sub-tinyllama" / "func" / bold.name))
