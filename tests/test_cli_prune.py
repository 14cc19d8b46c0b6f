"""``llmfbn prune``: the pruned folder, commands loading it, one-line errors for bad input."""

import numpy as np
import pytest

from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import file_sha256, read_grid, read_pruning, read_results
from llmfbn.networks import FunctionalNetworks
from llmfbn.networks._provenance import LeakageWarning  # noqa: F401  (the warning class)


@pytest.fixture
def calib_file(tmp_path, texts):
    path = tmp_path / "calibration.txt"
    path.write_text("\n".join(texts * 3) + "\n")
    return path


def _networks(folder, model_dir, n_units=24, weights_hash=None):
    """A networks folder over the tiny model's grid (3 layers x ``n_units``)."""
    weights = weights_hash or file_sha256(model_dir / "model.safetensors")
    grid = NeuronGrid(3, n_units, model=str(model_dir), signal="mlp", weights_hash=weights,
                      model_layers=3)
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((4, 3, n_units)).astype(np.float32) * 3
    FunctionalNetworks(maps, maps >= 3.6, grid).save(folder)
    return folder


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("llmfbn: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_prune_fbn_then_evaluate_and_record_the_pruned_folder(tmp_path, tiny_model_dir,
                                                               calib_file, capsys):
    nets = _networks(tmp_path / "nets", tiny_model_dir)
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "fbn", "--ratio", "0.25",
                 "--networks", str(nets), "--protect-layers", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "removed 18 of 72 MLP neurons" in printed
    assert "neurons removed per layer (layer:count): 1:" in printed
    assert "parameters:" in printed and f"wrote {out}" in printed
    manifest = read_pruning(out)
    assert manifest["protect_layers"] == [0] and manifest["layer_widths"][0] == 24
    assert manifest["details"]["scores"]["networks"][0]["path"] == str(nets)

    evaluation = tmp_path / "eval.txt"
    evaluation.write_text("the dog sat on the red mat .\nthe sun is big\n")
    csv = tmp_path / "baseline.csv"
    assert main(["evaluate", "--model", str(out), "--eval", f"text=text:{evaluation}",
                 "--out", str(csv), "--quiet"]) == 0
    rows = read_results(csv)
    assert np.isfinite(rows["value"]).all() and len(rows) == 1
    # the pruned model's neurons record on the source model's grid, at their original units
    assert main(["record", "--model", str(out), "--input", str(evaluation),
                 "--out", str(tmp_path / "rec"), "--quiet"]) == 0
    grid = read_grid(tmp_path / "rec")
    assert grid.width == 24 and grid.n_neurons == 72 - 18
    assert [u.tolist() for u in grid.units] == manifest["kept"]
    assert main(["record", "--model", str(out), "--input", str(evaluation), "--signal",
                 "residual", "--out", str(tmp_path / "rec-residual")]) == 0


def test_flap_with_bias_compensation_and_calibration_leak_warning(tmp_path, tiny_model_dir,
                                                                  calib_file, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "flap", "--ratio", "0.2",
                 "--calibration", str(calib_file), "--protect-layers", "none",
                 "--max-tokens", "40", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    manifest = read_pruning(out)
    assert manifest["bias_compensated_layers"] == [0, 1, 2]
    assert manifest["calibration"]["n_tokens"] == 40
    assert manifest["calibration"]["sha256"] == file_sha256(calib_file)


def test_calibration_text_of_the_networks_warns(tmp_path, tiny_model_dir, calib_file, capsys):
    recording = tmp_path / "rec"
    assert main(["record", "--model", str(tiny_model_dir), "--input", str(calib_file),
                 "--out", str(recording), "--quiet"]) == 0
    nets = tmp_path / "nets"
    assert main(["networks", str(recording), "--out", str(nets), "--n-components", "2",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "fbn", "--ratio", "0.2",
                 "--networks", str(nets), "--calibration", str(calib_file),
                 "--bias-compensation", "--protect-layers", "none",
                 "--out", str(tmp_path / "pruned"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "llmfbn: warning: The calibration text" in err and "estimated on" in err
    assert read_pruning(tmp_path / "pruned")["bias_compensated_layers"] == [0, 1, 2]


@pytest.mark.parametrize("args, message", [
    (["--method", "random", "--ratio", "0"], "'--ratio' must lie in (0, 1)"),
    (["--method", "random", "--ratio", "1.5"], "'--ratio' must lie in (0, 1)"),
    (["--method", "random", "--ratio", "0.5", "--protect-layers", "0-1"],
     "largest possible ratio is 0.319444"),
    (["--method", "random", "--ratio", "0.5"], "largest possible ratio is 0."),
    (["--method", "random", "--ratio", "0.97", "--protect-layers", "none"],
     "largest possible ratio is 0.958333"),
    (["--method", "random", "--ratio", "0.2", "--protect-layers", "0-1,x"],
     "'--protect-layers' must be 'none' or layers and ranges"),
    (["--method", "random", "--ratio", "0.2", "--protect-layers", "0-7"],
     "'--protect-layers' must be layer indices in [0, 3)"),
    (["--method", "fbn", "--ratio", "0.2"], "'fbn' needs '--networks'"),
    (["--method", "wanda", "--ratio", "0.2"], "'wanda' needs '--calibration'"),
    (["--method", "flap", "--ratio", "0.2", "--calibration", "missing.txt"],
     "'--calibration' must be a text file"),
    (["--method", "magnitude", "--ratio", "0.2", "--bias-compensation"],
     "'--bias-compensation' is supported by methods ('fbn', 'flap') only"),
    (["--method", "random", "--ratio", "0.2", "--random-state", "-1"],
     "'--random-state' must be an int >= 0"),
    (["--method", "flap", "--ratio", "0.2", "--calibration", "CALIB", "--max-tokens", "0"],
     "'--max-tokens' must be >= 1"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_model_dir, calib_file, capsys,
                                                  monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    args = [str(calib_file) if a == "CALIB" else a for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["prune", "--model", str(tiny_model_dir), "--out", "out", *args]) == 2
    assert message in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("case, message", [
    ("other-grid", "1536 vs 24 units per layer"),
    ("other-model", "networks of another model are refused"),
    ("not-networks", "is a recording folder, not a networks folder"),
])
def test_networks_that_do_not_fit_are_refused(tmp_path, tiny_model_dir, capsys, case, message):
    nets = tmp_path / "nets"
    if case == "other-grid":
        _networks(nets, tiny_model_dir, n_units=1536)
    elif case == "other-model":
        _networks(nets, tiny_model_dir, weights_hash="sha256:" + "0" * 64)
    else:
        nets.mkdir()
        (nets / "llmfbn.json").write_text('{"kind": "recording", "format_version": 1}')
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "fbn", "--ratio", "0.2",
                 "--networks", str(nets), "--protect-layers", "none",
                 "--out", str(tmp_path / "out")]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_existing_out_is_refused_in_one_line(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    common = ["prune", "--model", str(tiny_model_dir), "--method", "random", "--ratio", "0.2",
              "--protect-layers", "none", "--out", str(out), "--quiet"]
    assert main(common) == 0
    capsys.readouterr()
    stamp = (out / "pruning.json").stat().st_mtime_ns
    assert main(common) == 2
    assert "already exists (a pruned model folder)" in _one_line_error(capsys)
    assert (out / "pruning.json").stat().st_mtime_ns == stamp
    (tmp_path / "file").write_text("x")
    assert main(common[:-3] + ["--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "is a file" in _one_line_error(capsys)
