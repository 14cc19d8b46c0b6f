"""``llmfbn glm``: the localizer from the command line."""

import json

import numpy as np
import pytest
from test_glm import between_runs, planted_set, write_labeled_recording

from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.networks import FunctionalNetworks

N_OK = (10, 12)  # the 10 planted neurons, at most 2 false positives


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """12 + 12 single-label runs (positive shifts 10 planted neurons) and 2 'code' runs."""
    grid = NeuronGrid(4, 64, model="syn", signal="mlp")
    planted = planted_set(grid)
    runs, labels = between_runs(grid, planted)
    extra, _ = between_runs(grid, planted, n_per_condition=1, seed=9)
    folder = tmp_path_factory.mktemp("rec")
    write_labeled_recording(folder, grid, runs + extra[:1], labels + ["code"])
    return folder, planted


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("llmfbn: error: ")
    return err[0]


def test_glm_cli_writes_networks_and_prints_one_line_per_contrast(tmp_path, recording, capsys):
    folder, planted = recording
    out = tmp_path / "glm"
    code = main(["glm", str(folder), "--contrast", "positive-negative",
                 "--contrast", "negative-positive", "--out", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    lines = [line for line in printed if not line.startswith("  top tokens: ")]
    assert len(lines) == 3 and len(printed) == 4  # no top tokens for the empty network
    first, second = lines[:2]
    assert first.startswith("positive-negative: between-run (12 'positive' vs 12 'negative' "
                            "runs); z >= ")
    n_selected = int(first.split(" neurons selected")[0].rsplit(" ", 1)[1])
    assert N_OK[0] <= n_selected <= N_OK[1]
    assert "(FDR alpha=0.05)" in first and "peak layer " in first
    assert first.endswith(str(out.resolve() / "zmap_positive-negative.nii.gz"))
    assert "0 neurons selected" in second and "z >= inf" in second
    assert lines[2].startswith(f"Wrote {out.resolve()}")

    nets = FunctionalNetworks.load(out)
    assert len(nets) == 2
    assert (nets.masks[0] & planted).sum() == planted.sum()
    assert nets.params["contrasts"] == ["positive-negative", "negative-positive"]
    doc = json.loads((out / "glm.json").read_text())
    assert doc["conditions"] == {"positive": 12, "negative": 12, "code": 1}
    assert doc["contrasts"][0]["n_selected"] == n_selected
    assert doc["recording"] == str(folder.resolve())
    assert (out / "zmap_negative-positive.nii.gz").exists()



def test_glm_cli_threshold_two_sided_and_drift(tmp_path, recording, capsys):
    folder, planted = recording
    out = tmp_path / "glm"
    code = main(["glm", str(folder), "--contrast", "negative-positive", "--out", str(out),
                 "--threshold", "6", "--two-sided", "--drift-model", "cosine", "-q"])
    assert code == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "|z| >= 6.000 (given threshold)" in line
    nets = FunctionalNetworks.load(out)
    np.testing.assert_array_equal(nets.masks[0], planted)
    assert nets.params["height_control"] is None and nets.params["two_sided"] is True
    assert nets.params["threshold"] == [6.0]


def test_glm_cli_top_k_keeps_the_strongest_and_networks_carry_top_tokens(tmp_path, recording,
                                                                         capsys):
    folder, planted = recording
    out = tmp_path / "glm"
    assert main(["glm", str(folder), "--contrast", "positive-negative", "--out", str(out),
                 "--top-k", "4", "--n-top-tokens", "3", "-q"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    doc = json.loads((out / "glm.json").read_text())
    entry = doc["contrasts"][0]
    assert entry["n_selected"] == 4 and N_OK[0] <= entry["n_passing"] <= N_OK[1]
    assert f"4 of {entry['n_passing']} passing kept (--top-k)" in first
    nets = FunctionalNetworks.load(out)
    zmap = nets.maps[0]
    kept = zmap[nets.masks[0]]
    assert nets.masks[0].sum() == 4 and (nets.masks[0] & planted).sum() == 4
    assert kept.min() >= np.sort(zmap[planted])[-4]  # the 4 largest z of those passing
    assert nets.params["top_k"] == 4 and doc["top_k"] == 4
    assert len(nets.top_tokens) == 1 and len(nets.top_tokens[0]) == 3
    assert {"run", "onset", "token", "context", "activation"} <= set(nets.top_tokens[0][0])


@pytest.mark.parametrize("args, match", [
    (["--contrast", "positive-neutral"],
     r"Unknown condition 'neutral' in contrast 'positive-neutral'\. The runs hold the "
     r"conditions 'positive', 'negative', 'code'"),
    (["--contrast", "positive-code"], r"Too few runs .*'code' has 1"),
    (["--contrast", "positive-negative", "--contrast", "positive-"], "'contrast' must be terms"),
    (["--contrast", "positive-negative", "--height-control", "none"], "'threshold'"),
    (["--contrast", "positive-negative", "--alpha", "2"], "'alpha' must lie in"),
    (["--contrast", "positive-negative", "--contrast", "positive-negative"], "distinct"),
])
def test_glm_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, recording, capsys, args,
                                                          match):
    import re

    out = tmp_path / "glm"
    code = main(["glm", str(recording[0]), "--out", str(out), "-q"] + args)
    assert code == 2
    assert re.search(match, _error_line(capsys))
    assert not out.exists()


def test_glm_cli_refuses_unlabelled_and_mixed_recordings(tmp_path, capsys):
    grid = NeuronGrid(4, 64, model="syn", signal="mlp")
    runs, labels = between_runs(grid, planted_set(grid), n_per_condition=2)
    write_labeled_recording(tmp_path / "tokens", grid, runs, ["token"] * 4)
    out = tmp_path / "glm"
    assert main(["glm", str(tmp_path / "tokens"), "--contrast", "a-b", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "no condition labels" in line and "llmfbn record" in line
    assert "--label-column COLUMN" in line and "label_column=" in line
    mixed = labels[:3] + [["positive"] * 20 + ["negative"] * 20]
    write_labeled_recording(tmp_path / "mixed", grid, runs, mixed)
    assert main(["glm", str(tmp_path / "mixed"), "--contrast", "positive-negative",
                 "--out", str(out)]) == 2
    assert "needs one of two run layouts" in _error_line(capsys)
    assert main(["glm", str(tmp_path / "nowhere"), "--contrast", "a-b", "--out", str(out)]) == 2
    assert "does not exist (expected a recording folder" in _error_line(capsys)
    assert not out.exists()


def test_glm_cli_refuses_to_overwrite_without_force(tmp_path, recording, capsys):
    out = tmp_path / "glm"
    argv = ["glm", str(recording[0]), "--contrast", "positive-negative", "--out", str(out), "-q"]
    assert main(argv) == 0
    before = (out / "glm.json").read_bytes()
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "already exists (a glm folder); pass --force" in line
    assert (out / "glm.json").read_bytes() == before
    assert main(argv + ["--force"]) == 0


@pytest.mark.parametrize("kind", ["foreign", "recording", "networks", "file"])
def test_glm_cli_force_never_replaces_another_kind(tmp_path, recording, capsys, kind):
    """Findings 2 and 9: --force wrote into a recording; a file as --out gave a traceback."""
    import shutil

    from llmfbn.io import folder_sha256

    out = tmp_path / "out"
    if kind == "foreign":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif kind == "recording":
        shutil.copytree(recording[0], out)
    elif kind == "networks":
        grid = NeuronGrid(4, 64, model="syn", signal="mlp")
        masks = np.zeros((1, 4, 64), bool)
        FunctionalNetworks(masks.astype(np.float32), masks, grid).save(out)
    else:
        out.write_text("mine")
    before = folder_sha256(out) if out.is_dir() else out.read_bytes()
    assert main(["glm", str(recording[0]), "--contrast", "positive-negative", "--out",
                 str(out), "--force", "-q"]) == 2
    line = _error_line(capsys)
    assert str(out) in line and ("even when" in line or "is a file" in line)
    assert (folder_sha256(out) if out.is_dir() else out.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("args, match", [
    (["--threshold", "nan"], "'--threshold' must be a finite number. nan"),
    (["--high-pass", "0"], r"'--high-pass' must lie in \(0, inf\)"),
    (["--alpha", "nan"], "'alpha' must lie in"),
    (["--top-k", "0"], "'--top-k' must be >= 1. 0"),
])
def test_glm_cli_bad_numbers_fail_before_any_work(tmp_path, capsys, args, match):
    import re

    out = tmp_path / "glm"
    assert main(["glm", str(tmp_path / "no-recording"), "--contrast", "a-b", "--out", str(out),
                 *args]) == 2
    assert re.search(match, _error_line(capsys))
    assert not out.exists()


def test_glm_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["glm", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--contrast", "--out", "--task", "--height-control", "--alpha",
                   "--threshold", "--two-sided", "--drift-model", "--force"):
        assert option in text
