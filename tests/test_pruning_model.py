"""Physical removal of MLP neurons, the saved pruned folder, and loading it back."""

import copy
import json
import os
import re

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIGS, make_loaded
from llmfbn.intervention import fold_edit
from llmfbn.io import FormatError, OutputExistsError, read_pruning
from llmfbn.models import load_model, locate_neurons
from llmfbn.pruning import prune, remove_neurons

TOKENS = torch.tensor([[2, 5, 9, 3, 17, 4, 30, 8], [11, 6, 2, 40, 7, 12, 3, 9]])


def _outputs(model):
    with torch.no_grad():
        out = model(input_ids=TOKENS)
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).float()


def _random_keep(widths, seed=0, fraction=0.6):
    rng = np.random.default_rng(seed)
    keep = [rng.random(w) < fraction for w in widths]
    for mask in keep:
        mask[rng.integers(len(mask))] = True  # never an empty layer
    return keep


def _removed(keep):
    return {layer: np.flatnonzero(~mask) for layer, mask in enumerate(keep) if (~mask).any()}


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_removal_equals_zeroing_the_removed_neurons(family):
    loaded = make_loaded(family)
    location = locate_neurons(loaded.model)
    keep = np.array(_random_keep(location.layer_widths))
    pruned = remove_neurons(loaded, keep)
    zeroed = fold_edit(copy.deepcopy(loaded.model), _removed(keep), mode="inhibit")
    assert locate_neurons(pruned.model).layer_widths == tuple(int(m.sum()) for m in keep)
    diff = (_outputs(pruned.model) - _outputs(zeroed)).abs().max().item()
    assert diff <= 1e-5
    # the source is untouched, and pruning changed the outputs
    assert locate_neurons(loaded.model).layer_widths == location.layer_widths
    assert (_outputs(loaded.model) - _outputs(pruned.model)).abs().max().item() > 1e-4
    n_before = sum(p.numel() for p in loaded.model.parameters())
    assert sum(p.numel() for p in pruned.model.parameters()) < n_before


@pytest.mark.parametrize("family", ["llama", "gpt2", "phi3", "falcon"])
def test_bias_is_added_to_or_created_on_the_down_projection(family):
    loaded = make_loaded(family)
    location = locate_neurons(loaded.model)
    keep = _random_keep(location.layer_widths, seed=1)
    shift = {1: torch.linspace(-1, 1, location.hidden_size)}
    pruned = remove_neurons(loaded, keep, bias=shift)
    zeroed = fold_edit(copy.deepcopy(loaded.model), _removed(keep), mode="inhibit")
    down = zeroed.get_submodule(location.down_proj_paths[1])
    if down.bias is None:
        down.bias = torch.nn.Parameter(torch.zeros(location.hidden_size))
    with torch.no_grad():
        down.bias += shift[1]
    assert (_outputs(pruned.model) - _outputs(zeroed)).abs().max().item() <= 1e-5


def test_unequal_widths_are_refused_by_grid_code_in_one_line():
    keep = _random_keep([24, 24, 24], seed=2)
    pruned = remove_neurons(make_loaded("llama"), keep)
    location = locate_neurons(pruned.model)
    assert not location.uniform and location.pruned
    # a pruned model's neurons sit on its source model's grid, at their original units
    assert location.signal_width("mlp") == 24 and location.signal_width("residual") == 16
    assert [u.tolist() for u in location.units] == [np.flatnonzero(m).tolist() for m in keep]
    with pytest.raises(ValueError, match=r"is pruned \(\d+, \d+, \d+ MLP neurons per layer"):
        _ = location.n_units
    # unequal widths with no record of the neurons kept: refused in one line
    unmarked = copy.deepcopy(pruned.model)
    delattr(unmarked, "llmfbn_pruned_units")
    with pytest.raises(ValueError, match=r"unequal widths \(\d+, \d+, \d+ neurons per layer"):
        locate_neurons(unmarked).signal_width("mlp")


@pytest.mark.parametrize("keep, message", [
    (np.ones((2, 24), dtype=bool), r"one mask for each of the model's 3 layers"),
    (np.ones((3, 20), dtype=bool), r"shape \(24,\)"),
    (np.ones((3, 24), dtype=int), r"boolean mask"),
    (np.eye(3, 24, dtype=bool) & False, r"every neuron of layer 0"),
])
def test_bad_keep_masks_are_refused(keep, message):
    loaded = make_loaded("llama")
    with pytest.raises(ValueError, match=message):
        remove_neurons(loaded, keep)
    assert locate_neurons(loaded.model).layer_widths == (24, 24, 24)


@pytest.fixture
def calib_file(tmp_path, texts):
    path = tmp_path / "calibration.txt"
    path.write_text("\n".join(texts * 3) + "\n")
    return path


def _no_leftovers(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".llmfbn-")]


@pytest.mark.parametrize("family, method", [("llama", "random"), ("gpt2", "magnitude"),
                                            ("phi3", "random"), ("llama", "flap"),
                                            ("gpt2", "flap"), ("falcon", "flap")])
def test_saved_pruned_folder_reloads_to_the_same_logits(tmp_path, family, method, calib_file):
    loaded = make_loaded(family)
    out = tmp_path / "pruned"
    calibration = calib_file if method == "flap" else None
    result = prune(loaded, method, 0.3, out, calibration=calibration, protect_layers=[0],
                   verbose=0)
    manifest = read_pruning(out)
    assert {"config.json", "model.safetensors", "pruning.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    assert manifest["method"] == method and manifest["ratio"] == 0.3
    assert manifest["source_model"] == {"name": f"tiny-{family}", "weights_hash": "seed:0",
                                        "model_type": loaded.model.config.model_type,
                                        "layer_widths": list(result.keep[0].shape * 3)}
    assert manifest["n_neurons_removed"] == round(0.3 * result.keep.size)
    assert manifest["layer_widths"][0] == result.keep.shape[1]  # protected
    assert manifest["kept"][1] == np.flatnonzero(result.keep[1]).tolist()
    assert (manifest["calibration"] is None) == (method != "flap")
    assert manifest["bias_compensated_layers"] == ([1, 2] if method == "flap" else [])
    assert manifest["parameters_after"] < manifest["parameters_before"]

    reloaded = load_model(str(out))
    assert reloaded.name == str(out) and reloaded.weights_hash.startswith("sha256:")
    assert reloaded.weights_hash == result.loaded.weights_hash
    assert reloaded.extra["pruning"]["layer_widths"] == manifest["layer_widths"]
    assert list(locate_neurons(reloaded.model).layer_widths) == manifest["layer_widths"]
    diff = (_outputs(reloaded.model) - _outputs(result.loaded.model)).abs().max().item()
    assert diff <= 1e-5
    assert _no_leftovers(tmp_path)
    assert "neurons removed per layer" in result.summary()


def test_bias_compensation_changes_the_saved_model(tmp_path, calib_file):
    loaded = make_loaded("llama")
    plain = prune(loaded, "flap", 0.3, tmp_path / "a", calibration=calib_file,
                  protect_layers=[], bias_compensation=False, verbose=0)
    compensated = prune(loaded, "flap", 0.3, tmp_path / "b", calibration=calib_file,
                        protect_layers=[], verbose=0)
    assert (plain.keep == compensated.keep).all()
    assert plain.manifest["bias_compensated_layers"] == []
    gap = (_outputs(plain.loaded.model) - _outputs(compensated.loaded.model)).abs().max()
    assert gap.item() > 1e-4


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(method="random", ratio=0.0), ValueError, r"'ratio' must lie in \(0, 1\)"),
    (dict(method="random", ratio=1.0), ValueError, r"'ratio' must lie in \(0, 1\)"),
    (dict(method="random", ratio=0.97), ValueError, r"largest possible ratio"),
    (dict(method="random", ratio=0.3, protect_layers=[0, 1, 2]), ValueError,
     r"largest possible ratio is 0"),
    (dict(method="random", ratio=0.3, protect_layers=[5]), ValueError,
     r"'protect_layers' must be layer indices in \[0, 3\)"),
    (dict(method="fbn", ratio=0.3), ValueError, r"'fbn' needs 'networks'"),
    (dict(method="wanda", ratio=0.3), ValueError, r"'wanda' needs 'calibration'"),
    (dict(method="random", ratio=0.3, bias_compensation=True), ValueError,
     r"'bias_compensation' is supported by methods \('fbn', 'flap'\) only"),
    (dict(method="fbn", ratio=0.3, networks="nowhere", bias_compensation=True), ValueError,
     r"with bias_compensation needs 'calibration'"),
    (dict(method="magnitude", ratio=0.3, calibration="x.txt"), ValueError,
     r"'calibration' is used by"),
    (dict(method="flap", ratio=0.3, calibration="missing.txt"), FileNotFoundError,
     r"'calibration' must be a text file"),
    (dict(method="fbn", ratio=0.3, networks="missing"), FileNotFoundError, r"'networks':"),
    (dict(method="lottery", ratio=0.3), ValueError, r"'method' must be one of"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, monkeypatch, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    loaded = make_loaded("llama")
    kwargs.setdefault("protect_layers", [])
    with pytest.raises(error, match=message):
        prune(loaded, out_dir=tmp_path / "out", verbose=0, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "pruned", "recording", "foreign"])
def test_existing_output_is_never_replaced(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("x")
    elif kind == "pruned":
        prune(make_loaded("llama"), "random", 0.3, out, protect_layers=[], verbose=0)
    elif kind == "recording":
        out.mkdir()
        (out / "llmfbn.json").write_text('{"kind": "recording", "format_version": 1}')
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    error = OutputExistsError if kind == "pruned" else ValueError
    with pytest.raises(error, match=str(out)):
        prune(make_loaded("llama"), "random", 0.3, out, protect_layers=[], verbose=0)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_failed_save_leaves_nothing(tmp_path, monkeypatch):
    import llmfbn.pruning._prune as module

    def broken(folder, manifest):
        (folder / "pruning.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(module, "write_pruning", broken)
    with pytest.raises(OSError, match="disk full"):
        prune(make_loaded("llama"), "random", 0.3, tmp_path / "out", protect_layers=[],
              verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_damaged_or_inconsistent_manifest_is_refused_on_load(tmp_path):
    out = tmp_path / "pruned"
    prune(make_loaded("llama"), "random", 0.3, out, protect_layers=[], verbose=0)
    manifest = json.loads((out / "pruning.json").read_text())
    manifest["layer_widths"][1] += 1
    (out / "pruning.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="layer 1 must keep"):
        load_model(str(out))
    manifest["layer_widths"][1] -= 1
    manifest["format_version"] = 99
    (out / "pruning.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="upgrade llmfbn"):
        load_model(str(out))
    manifest["format_version"] = 1
    manifest["kept"][1] = manifest["kept"][1][::-1]
    (out / "pruning.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="sorted unique units"):
        load_model(str(out))
    os.remove(out / "model.safetensors")
    manifest["kept"][1] = manifest["kept"][1][::-1]
    (out / "pruning.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="no .safetensors"):
        load_model(str(out))


@pytest.mark.parametrize("change, message", [
    ({"ratio": 1.5}, "'ratio' must be a number in (0, 1)"),
    ({"parameters_after": "many"}, "'parameters_after' must be an int >= 0"),
    ({"protect_layers": [0, "1"]}, "'protect_layers' must be a list of layer indices"),
    ({"n_neurons_removed": 1}, "'n_neurons_removed' must equal"),
])
def test_manifest_fields_of_the_wrong_type_or_count_are_refused(tmp_path, change, message):
    loaded = make_loaded("llama")
    out = tmp_path / "pruned"
    prune(loaded, "random", 0.2, out, protect_layers=[], verbose=0)
    document = json.loads((out / "pruning.json").read_text())
    document.update(change)
    (out / "pruning.json").write_text(json.dumps(document))
    with pytest.raises(FormatError, match=re.escape(message)):
        read_pruning(out)
