"""``llmfbn report`` of pruned model folders: what was removed per layer, on the brain map."""

import json
import re
import shutil

import matplotlib
import numpy as np
import pytest

from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import file_sha256, read_pruning
from llmfbn.networks import FunctionalNetworks
from llmfbn.plotting import plot_pruning, pruning_map
from llmfbn.reports import find_inputs

matplotlib.use("Agg")


def _networks(folder, model_dir, weights_hash=None):
    """A networks folder over the tiny model's MLP grid (3 layers x 24 units)."""
    weights = weights_hash or file_sha256(model_dir / "model.safetensors")
    grid = NeuronGrid(3, 24, model=str(model_dir), signal="mlp", weights_hash=weights,
                      model_layers=3)
    maps = np.random.default_rng(0).standard_normal((4, 3, 24)).astype(np.float32) * 3
    FunctionalNetworks(maps, maps >= 3.6, grid).save(folder)
    return folder


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, tiny_model_dir):
    """Networks, an fbn-pruned folder (calibrated, bias-compensated) and a random one."""
    root = tmp_path_factory.mktemp("pruned")
    calibration = root / "calibration.txt"
    calibration.write_text("the cat sat on the mat .\na dog ran far away\n" * 10)
    out = {"nets": _networks(root / "nets", tiny_model_dir), "fbn": root / "fbn",
           "random": root / "random"}
    model = ["prune", "--model", str(tiny_model_dir), "--quiet"]
    assert main([*model, "--method", "fbn", "--ratio", "0.25", "--networks", str(out["nets"]),
                 "--protect-layers", "0", "--calibration", str(calibration),
                 "--bias-compensation", "--max-tokens", "40", "--out", str(out["fbn"])]) == 0
    assert main([*model, "--method", "random", "--ratio", "0.2", "--protect-layers", "none",
                 "--random-state", "3", "--out", str(out["random"])]) == 0
    return out


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("llmfbn: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def _section(text, anchor):
    start = text.index(f'id="{anchor}"')
    end = text.find("<section", start)
    return text[start:] if end < 0 else text[start:end]


def _layer_rows(manifest):
    """The per-layer table rows the report must hold, from the manifest."""
    protected, compensated = set(manifest["protect_layers"]), \
        set(manifest["bias_compensated_layers"])
    rows = []
    for layer, (before, kept) in enumerate(zip(manifest["source_model"]["layer_widths"],
                                               manifest["layer_widths"])):
        rows.append(f'<tr><td class="num">{layer}</td><td class="num">{before}</td>'
                    f'<td class="num">{kept}</td><td class="num">{before - kept}</td>'
                    f"<td>{100 * (before - kept) / before:.1f} %</td>"
                    f"<td>{'yes' if layer in protected else ''}</td>"
                    f"<td>{'yes' if layer in compensated else ''}</td></tr>")
    return rows


def test_report_shows_pruned_folders_beside_their_networks(pruned, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(pruned["nets"]), str(pruned["fbn"]), str(pruned["random"]),
                 "--out", str(out), "-q"]) == 0
    text = out.read_text()
    assert [i.kind for i in find_inputs([pruned["nets"], pruned["fbn"]])] == ["networks",
                                                                            "pruned"]
    for anchor in ("overview", "networks-0", "pruned-0", "pruned-1"):
        assert f'id="{anchor}"' in text, anchor
    assert "<td>llama</td>" in _section(text, "overview")  # the source model's architecture

    fbn, manifest = _section(text, "pruned-0"), read_pruning(pruned["fbn"])
    assert manifest["n_neurons_removed"] == 18 and manifest["protect_layers"] == [0]
    for row in _layer_rows(manifest):
        assert row in fbn, row
    assert f"removed 18 of 72 MLP neurons of {manifest['source_model']['name']}" in fbn
    assert "<td>method</td><td>fbn</td>" in fbn and str(pruned["nets"]) in fbn
    assert "<td>protected layers</td><td>0</td>" in fbn
    assert "(40 tokens, sha256:" in fbn
    compensated = ", ".join(map(str, manifest["bias_compensated_layers"]))
    assert manifest["bias_compensated_layers"] and \
        f"<td>bias-compensated layers</td><td>{compensated}</td>" in fbn
    before, after = manifest["parameters_before"], manifest["parameters_after"]
    assert f'<td>parameters before</td><td class="num">{before}</td>' in fbn
    assert f'<td>parameters after</td><td class="num">{after}</td>' in fbn and after < before
    # the bar chart and the brain map, embedded
    assert fbn.count('src="data:image/png;base64,') == 2
    assert 'alt="neurons removed per layer"' in fbn and 'alt="removed neurons"' in fbn

    other, manifest = _section(text, "pruned-1"), read_pruning(pruned["random"])
    for row in _layer_rows(manifest):
        assert row in other, row
    assert "<td>calibration</td><td>none</td>" in other
    assert "<td>bias-compensated layers</td><td>none</td>" in other
    assert other.count('src="data:image/png;base64,') == 2


def test_the_report_reads_pruning_json_only(pruned, tmp_path):
    """No weights, config or tokenizer are needed; a folder holding it is searched."""
    holder = tmp_path / "runs"
    shutil.copytree(pruned["random"], holder / "random")
    for path in (holder / "random").iterdir():
        if path.name != "pruning.json":
            path.unlink()
    assert [i.kind for i in find_inputs([holder])] == ["pruned"]
    out = tmp_path / "report.html"
    assert main(["report", str(holder), "--out", str(out), "-q"]) == 0
    text = _section(out.read_text(), "pruned-0")
    for row in _layer_rows(read_pruning(pruned["random"])):
        assert row in text, row


def test_plot_pruning_draws_the_removed_neurons(pruned):
    manifest = read_pruning(pruned["fbn"])
    data, grid = pruning_map(manifest)
    assert grid.width == 24 and grid.n_layers == 3 and grid.signal == "mlp"
    assert grid.model == manifest["source_model"]["name"]
    removed = [sorted(set(range(24)) - set(kept)) for kept in manifest["kept"]]
    for layer, units in enumerate(removed):
        assert np.flatnonzero(data[layer]).tolist() == units
    counts = [len(units) for units in removed]
    assert sum(counts) == manifest["n_neurons_removed"] and counts[0] == 0  # layer 0 protected

    bars = plot_pruning(manifest, kind="bars")
    assert [p.get_height() for p in bars.containers[0]] == counts
    flat = plot_pruning(manifest, kind="flat")
    shown = flat.images[0].get_array()
    assert np.array_equal(~np.ma.getmaskarray(shown), data == 1)
    mosaic = plot_pruning(manifest, layers=[1, 2])
    assert mosaic.layers == [1, 2]
    for layer in (1, 2):  # the map's image of the slice shows exactly the removed neurons
        visible = [int((~np.ma.getmaskarray(im.get_array())).sum())
                   for im in mosaic.axes[layer].get_images()]
        assert counts[layer] in visible, (layer, visible)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("change, error, message", [
    (None, TypeError, "'manifest' must be a dict"),
    ({"kept": None}, ValueError, "It lacks ['kept']"),
    ({"source_model": {"name": "x"}}, ValueError, "It lacks ['source_model.layer_widths']"),
    ({"source_model": {"layer_widths": [24, 30, 24]}}, ValueError, "unequal layer widths"),
    ({"kind": "bars3d"}, ValueError, "'kind' must be one of ('mosaic', 'flat', 'bars')"),
    ({"color": "not-a-colour"}, ValueError, "'color' must be a matplotlib colour"),
])
def test_plot_pruning_refuses_bad_input(pruned, change, error, message):
    manifest, kwargs = read_pruning(pruned["random"]), {}
    if change is None:
        manifest = [manifest]
    elif "kind" in change or "color" in change:
        kwargs = change
    elif change.get("kept", 0) is None:
        del manifest["kept"]
    else:
        manifest.update(change)
    with pytest.raises(error, match=re.escape(message)):
        plot_pruning(manifest, **kwargs)


@pytest.mark.parametrize("damage, message", [
    ("{broken", "pruning.json is not a valid pruning.json: Expecting property name"),
    ("kept", "is not a valid pruning.json: layer 1 must keep"),
    ("widths", "unequal layer widths [24, 30, 24]"),
])
def test_a_damaged_pruning_json_is_one_line_and_writes_nothing(pruned, tmp_path, capsys,
                                                                damage, message):
    folder = tmp_path / "pruned"
    shutil.copytree(pruned["random"], folder)
    path = folder / "pruning.json"
    if damage == "{broken":
        path.write_text(damage)
    else:
        document = json.loads(path.read_text())
        if damage == "kept":
            document["kept"][1][-1] = 99  # beyond the layer's 24 neurons
        else:
            document["source_model"]["layer_widths"][1] = 30  # counts kept consistent:
            document["n_neurons_before"] += 6
            document["n_neurons_removed"] += 6
        path.write_text(json.dumps(document))
    out = tmp_path / "report.html"
    assert main(["report", str(pruned["nets"]), str(folder), "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert message in line and str(folder) in line
    assert not out.exists()


def test_a_pruned_folder_of_another_model_is_refused(pruned, tmp_path, tiny_model_dir, capsys):
    nets = _networks(tmp_path / "nets", tiny_model_dir, weights_hash="sha256:" + "0" * 64)
    out = tmp_path / "report.html"
    assert main(["report", str(nets), str(pruned["random"]), "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert "other weights" in line and str(pruned["random"]) in line
    assert not out.exists()
