"""``llmfbn report``: the whole CLI pipeline on a tiny model, then the HTML in Chromium."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from llmfbn.cli import main
from llmfbn.reports import find_inputs

SENTENCES = {
    "good": ["it was a very good film !", "the sun is big and good", "we ran far , good",
             "a good dog sat on the mat", "good red house and blue tree", "the moon was good"],
    "bad": ["it was a very bad film .", "the fire is big and bad", "they ran far , bad",
            "a bad cat sat on the mat", "bad water and small tree", "the house was bad"],
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_model_dir):
    """record -> networks (x2) -> consistency -> glm -> intervene, all through the CLI."""
    root = tmp_path_factory.mktemp("pipeline")
    table = root / "texts.tsv"
    rows = [f"{text}\t{label}" for label, texts in SENTENCES.items() for text in texts]
    table.write_text("text\tlabel\n" + "\n".join(rows * 2) + "\n")
    held_out = root / "held_out.txt"
    held_out.write_text("the cat and the dog sat on a red mat in the sun . " * 20)
    model = ["--model", str(tiny_model_dir)]
    out = {name: root / name for name in ("rec", "net0", "net1", "glm")}
    assert main(["record", "--input", str(table), "--out", str(out["rec"]),
                 "--label-column", "label", "-q", *model]) == 0
    for seed in (0, 1):
        assert main(["networks", str(out["rec"]), "--out", str(out[f"net{seed}"]),
                     "--n-components", "3", "--top-k", "6", "--random-state", str(seed),
                     "-q"]) == 0
    out["consistency"] = root / "consistency.json"
    assert main(["consistency", str(out["net0"]), str(out["net1"]), "--n-draws", "20",
                 "--out", str(out["consistency"])]) == 0
    assert main(["glm", str(out["rec"]), "--contrast", "good-bad", "--height-control", "none",
                 "--threshold", "1.0", "--out", str(out["glm"]), "-q"]) == 0
    out["results"] = root / "inhibit.csv"
    assert main(["intervene", "--networks", str(out["net0"]), "--eval", f"text={held_out}",
                 "--controls", "2", "--out", str(out["results"]), "-q", *model]) == 0
    out["amplify"] = root / "amplify.csv"
    assert main(["intervene", "--networks", str(out["net0"]), "--network", "0",
                 "--mode", "amplify", "--value", "0.5,2", "--eval", f"text={held_out}",
                 "--controls", "2", "--out", str(out["amplify"]), "-q", *model]) == 0
    return out


@pytest.fixture(scope="module")
def report(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    paths = [str(pipeline[k]) for k in ("rec", "net0", "consistency", "glm", "results",
                                        "amplify")]
    assert main(["report", *paths, "--out", str(out), "-q"]) == 0
    return out


def test_inputs_are_recognised(pipeline):
    kinds = [i.kind for i in find_inputs([pipeline[k] for k in
                                          ("rec", "net0", "glm", "consistency", "results")])]
    assert kinds == ["recording", "networks", "glm", "consistency", "intervention"]
    # a folder holding llmfbn outputs is searched one level down
    kinds = sorted(i.kind for i in find_inputs([pipeline["rec"].parent]))
    assert kinds == sorted(["recording", "networks", "networks", "glm", "consistency",
                            "intervention", "intervention"])


def test_report_is_self_contained_and_has_every_section(report, pipeline):
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # nothing to fetch: no external scripts, styles or images
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "<script" not in text
    for anchor in ("overview", "recording-0", "networks-0", "consistency-0", "glm-0",
                   "intervention-0", "intervention-1"):
        assert f'id="{anchor}"' in text, anchor
    n_images = text.count('src="data:image/png;base64,')
    # carpet + atlas + profile + connectivity + 3 networks + consistency (IoU and correlation
    # of each matched network pair: one pair of folders) + 2 GLM maps + inhibit plot
    # + amplify plot + dose-response
    assert n_images == 14
    recording = text[text.index('id="recording-0"'):text.index('id="networks-0"')]
    assert "<th>n_texts_in_input</th>" in recording and "all; bad: 12, good: 12" in recording
    consistency = text[text.index('id="consistency-0"'):text.index('id="glm-0"')]
    assert consistency.count("data:image/png") == 2
    assert "of each matched network pair" in consistency and "filled dots: p &lt; 0.05" in \
        consistency
    networks = json.loads((pipeline["net0"] / "networks.json").read_text())
    first_token = networks["networks"][0]["top_tokens"][0]["context"]
    assert first_token.split("[")[0].strip().replace("&", "&amp;") in text
    assert "good-bad" in text
    glm = text[text.index('id="glm-0"'):text.index('id="intervention-0"')]
    glm_tokens = json.loads((pipeline["glm"] / "networks.json").read_text())
    assert glm_tokens["networks"][0]["top_tokens"]  # the GLM network carries its top tokens
    assert "Top tokens" in glm and "<th>passing</th>" in glm  # and the report shows them
    inhibit = text[text.index('id="intervention-0"'):text.index('id="intervention-1"')]
    assert re.search(r"Networks edited: 3 networks of .*, from \S*net0 \(same masks\)", inhibit)
    assert "tiny-llama" in text or "tinyllama" in text or str(pipeline["rec"]) in text


def test_report_refuses_to_overwrite(report, pipeline, capsys):
    before = report.read_bytes()
    assert main(["report", str(pipeline["net0"]), "--out", str(report), "-q"]) == 2
    assert "--force" in capsys.readouterr().err
    assert report.read_bytes() == before
    assert main(["report", str(pipeline["net0"]), "--out", str(report), "-q", "--force"]) == 0
    assert report.read_bytes() != before


def test_report_bad_inputs_are_one_line_errors(tmp_path, pipeline, capsys):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("hello")
    out = tmp_path / "r.html"
    assert main(["report", str(stray), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not something llmfbn wrote" in err and str(stray) in err
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(pipeline["net0"]), "--out", str(tmp_path / "r.png")]) == 2
    assert "'--out' must be an .html file" in capsys.readouterr().err
    assert not out.exists()


def test_report_refuses_mixed_models(tmp_path, pipeline, capsys):
    other = tmp_path / "other-net"
    shutil.copytree(pipeline["net0"], other)
    grid = json.loads((other / "grid.json").read_text())
    grid["model"], grid["weights_hash"] = "another-model", "sha256:other"
    (other / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "r.html"
    assert main(["report", str(pipeline["net0"]), str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "another-model" in err and str(other) in err and "other weights" in err
    assert not out.exists()


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("LLMFBN_REQUIRE_CHROMIUM"):
        pytest.fail("LLMFBN_REQUIRE_CHROMIUM is set but no chromium is installed")
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


def test_report_renders_in_headless_chromium(report, tmp_path):
    """A laptop-sized screenshot of the report is not blank: text and figures are drawn."""
    from PIL import Image

    chromium = _chromium()
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1366,2400", f"--screenshot={shot}", report.resolve().as_uri()],
        check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (2400, 1366)
    # the dark header, white cards and coloured figures: many colours, not one flat page
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 200
    # the page fits a laptop screen's width: no content cut at the right edge
    right = pixels[:, -40:]
    assert (right.std(axis=1) < 1).mean() > 0.9


def test_a_path_given_twice_counts_once(pipeline):
    items = find_inputs([pipeline["net0"], pipeline["net0"], pipeline["net0"].parent])
    assert sum(i.path == pipeline["net0"] for i in items) == 1


def test_what_a_killed_writer_left_is_not_an_input(pipeline, tmp_path):
    from llmfbn.io._atomic import OLD_PREFIX, staging_name

    shutil.copytree(pipeline["net0"], tmp_path / "net")
    shutil.copytree(pipeline["net0"], tmp_path / staging_name("net", OLD_PREFIX))
    assert [i.path.name for i in find_inputs([tmp_path])] == ["net"]


def test_empty_results_give_a_note_not_a_figure(tmp_path, capsys):
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("network,n_neurons,task,metric,mode,edit_value,value,control_mean,"
                         "control_ci_low,control_ci_high,ratio,n_controls,baseline\n")
    empty_json = tmp_path / "consistency.json"
    empty_json.write_text(json.dumps({"format_version": 1, "folders": [], "pairs": []}))
    out = tmp_path / "r.html"
    assert main(["report", str(empty_csv), str(empty_json), "--out", str(out), "-q"]) == 0
    assert "warning" not in capsys.readouterr().err
    text = out.read_text()
    assert "No edited network in this file" in text and "holds no pair" in text
    assert "No networks recorded for these rows" in text
    assert "data:image/png" not in text


def test_report_reads_every_input_through_its_owner(tmp_path, pipeline, capsys):
    """Damaged inputs are one line naming the file; --out is replaced only with --force."""
    broken = tmp_path / "net"
    shutil.copytree(pipeline["net0"], broken)
    (broken / "networks.json").write_text("{broken")
    out = tmp_path / "r.html"
    assert main(["report", str(broken), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "networks.json is not a valid networks.json" in err
    old = tmp_path / "old.json"  # a consistency file of before format versions
    old.write_text(json.dumps({"folders": [], "pairs": []}))
    assert main(["report", str(old), "--out", str(out), "-q"]) == 2
    assert "has no format_version" in capsys.readouterr().err
    out.write_text("mine")
    assert main(["report", str(pipeline["consistency"]), "--out", str(out), "-q"]) == 2
    assert "pass --force" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["report", str(pipeline["consistency"]), "--out", str(out), "--force",
                 "-q"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>") or "<html" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net", "old.json", "r.html"]


def test_empty_networks_are_shown_empty(pipeline, tmp_path, capsys):
    """`networks --threshold 99` keeps empty networks; the report shows them, never stops."""
    nets = tmp_path / "empty_nets"
    assert main(["networks", str(pipeline["rec"]), "--out", str(nets), "--n-components", "3",
                 "--threshold", "99", "-q"]) == 0
    assert "kept empty" in capsys.readouterr().err
    out = tmp_path / "r.html"
    assert main(["report", str(pipeline["rec"]), str(nets), "--out", str(out), "-q"]) == 0
    text = out.read_text()
    assert text.count("empty (no neuron passed the threshold)") == 3
    assert "Empty networks (no neuron passed the threshold" in text
    assert "Top tokens" not in text  # an empty network has no activity to rank tokens by


def test_a_reduced_recording_is_reported_without_tokens(tmp_path, tiny_model_dir, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SENTENCES["good"] + SENTENCES["bad"]) + "\n")
    rec, net, out = tmp_path / "rec", tmp_path / "net", tmp_path / "report.html"
    assert main(["record", "--input", str(texts), "--out", str(rec), "--texts-per-run", "3",
                 "--reduce", "3", "-q", "--model", str(tiny_model_dir)]) == 0
    assert main(["networks", str(rec), "--out", str(net), "--n-components", "3",
                 "--top-k", "6", "-q"]) == 0
    assert "top tokens skipped" in capsys.readouterr().err
    assert main(["report", str(rec), str(net), "--out", str(out), "-q"]) == 0
    text = out.read_text()
    assert "reduced (record --reduce 3)" in text and "no carpet plot" in text
    assert "No connectivity matrix" in text and "carpet plot of" not in text.lower()
