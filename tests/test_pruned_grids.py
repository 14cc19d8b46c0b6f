"""A pruned model's neurons on its source model's grid: record, networks, edits.

Each neuron a pruned model kept sits at its original unit; the removed ones
lie outside the mask like padding voxels. So a pruned model's activations
are the dense model's with the removed neurons zeroed, voxel for voxel.
"""

import copy
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nilearn.maskers import NiftiMasker

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.intervention import (
    amplify,
    check_networks_fit,
    fold_edit,
    inhibit,
    matched_controls,
    model_grid,
    resolve_targets,
)
from llmfbn.intervention._units import removed_neurons
from llmfbn.io import FormatError, read_grid, read_networks_folder, read_pruning, write_grid
from llmfbn.models import load_model, locate_neurons
from llmfbn.networks import FunctionalNetworks, threshold_maps, zscore_maps
from llmfbn.pruning import prune, remove_neurons, score_neurons
from llmfbn.recording import record, record_activations

TOKENS = torch.tensor([[2, 5, 9, 3, 17, 4, 30, 8], [11, 6, 2, 40, 7, 12, 3, 9]])
UNITS = [[0, 2, 6], list(range(7)), [5]]


def _logits(model):
    with torch.no_grad():
        return model(input_ids=TOKENS).logits.float()


def _removed(keep):
    return {layer: np.flatnonzero(~mask) for layer, mask in enumerate(keep) if (~mask).any()}


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory):
    """A tiny Llama (3 layers x 24 neurons) pruned at random by 30 %, saved and its source."""
    folder = tmp_path_factory.mktemp("pruned-grids")
    dense = make_loaded("llama")
    result = prune(dense, "random", 0.3, folder / "pruned", protect_layers=[], verbose=0)
    return folder / "pruned", dense, result


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("the cat sat on the mat and the dog ran far away .\n"
                    "it was a very good film , not a bad film !\n"
                    "the sun is big and the moon is small and the water is blue\n"
                    "one two three four five six seven eight nine ten\n")
    return path


# -- the grid ---------------------------------------------------------------------------

def test_grid_with_units_masks_the_absent_neurons_like_padding():
    grid = NeuronGrid(3, 7, units=UNITS)
    present = grid.present()
    assert grid.pruned and grid.n_neurons == 11 == present.sum() == grid.mask().sum()
    assert grid.units[2].tolist() == [5] and present[0].tolist() == [1, 0, 1, 0, 0, 0, 1]
    acts = np.arange(1, 2 * 21 + 1, dtype=np.float32).reshape(2, 3, 7)
    volume = grid.to_volume(acts)  # the absent neurons' values are not written
    assert np.count_nonzero(volume) == 2 * 11
    np.testing.assert_array_equal(grid.from_volume(volume), acts * present)
    # nilearn's masker sees the present neurons only, and they map back exactly
    masked = NiftiMasker(mask_img=grid.mask_img(), standardize=None).fit().transform(
        grid.to_img(acts))
    assert masked.shape == (2, 11)
    np.testing.assert_array_equal(grid.masked_to_neurons(masked), acts * present)
    np.testing.assert_array_equal(grid.put_present(grid.take_present(acts)), acts * present)
    assert grid.take_present(acts)[0].tolist() == [1, 3, 7, *range(8, 15), 20]
    i, j, k = grid.voxel_of(2, 5)
    assert (int(i), int(j), int(k)) == (2, 1, 2) and grid.neuron_of(i, j, k) == (2, 5)
    with pytest.raises(ValueError, match=r"'unit' must be present on this grid of a pruned "
                                         r"model. \(slot, unit\) \[\(0, 1\)\] \(1 in all\)"):
        grid.voxel_of(0, 1)
    with pytest.raises(ValueError, match="removed neuron"):
        grid.neuron_of(1, 0, 0)  # unit 1 of layer 0
    assert "pruned: 11 neurons present" in repr(grid)


def test_grid_where_every_unit_is_present_is_the_dense_grid():
    full = NeuronGrid(3, 7, units=[range(7)] * 3)
    assert full.units is None and full == NeuronGrid(3, 7) and not full.pruned
    assert full.n_neurons == 21 and full.present().all()


@pytest.mark.parametrize("units, message", [
    ([[0, 2], [1]], r"'units' must list the units present in each of the 3 slices"),
    ([[2, 0], [1], [1]], r"'units' of slice 0 must be sorted, unique and in \[0, 7\)"),
    ([[0, 0], [1], [1]], r"'units' of slice 0 must be sorted, unique"),
    ([[0], [7], [1]], r"'units' of slice 1 must be sorted, unique and in \[0, 7\)"),
    ([[0], [1.5], [1]], r"'units' of slice 1 must be a 1-D sequence of ints"),
])
def test_bad_units_are_refused(units, message):
    with pytest.raises(ValueError, match=message):
        NeuronGrid(3, 7, units=units)


def test_grid_json_round_trip_with_units_and_dense_grids_unchanged(tmp_path):
    dense = NeuronGrid(3, 7, model="m", signal="mlp", weights_hash="sha256:1", model_layers=3)
    document = dense.to_dict()
    assert document["format_version"] == 2 and "units" not in document
    pruned = NeuronGrid(3, 7, model="m", signal="mlp", weights_hash="sha256:2", model_layers=3,
                        units=UNITS)
    write_grid(tmp_path, pruned)
    on_disk = json.loads((tmp_path / "grid.json").read_text())
    assert on_disk["format_version"] == 3 and on_disk["units"] == UNITS
    back = read_grid(tmp_path)
    assert back == pruned and back != dense and [u.tolist() for u in back.units] == UNITS
    # a version 3 file is a pruned grid: without units, or with all of them, it is damaged
    for units in (None, [list(range(7))] * 3):
        broken = dict(on_disk)
        if units is None:
            del broken["units"]
        else:
            broken["units"] = units
        (tmp_path / "grid.json").write_text(json.dumps(broken))
        with pytest.raises(FormatError, match="not a valid grid.json"):
            read_grid(tmp_path)


def test_dense_and_pruned_grids_do_not_fit_each_other():
    dense = NeuronGrid(3, 7, model="m", signal="mlp")
    pruned = NeuronGrid(3, 7, model="m", signal="mlp", units=UNITS)
    with pytest.raises(ValueError, match=r"different neurons present \(pruned model: none "
                                         r"removed vs 10 of 21 neurons removed\)"):
        dense.check_compatible(pruned)
    assert not dense.same_layout(pruned)
    # a subset of layers is compared on the layers it holds
    part = NeuronGrid(1, 7, layers=[2], model="m", signal="mlp", units=[[5]])
    part.check_compatible(pruned, subset=True)
    with pytest.raises(ValueError, match="different neurons present"):
        NeuronGrid(1, 7, layers=[2], model="m", signal="mlp", units=[[4]]).check_compatible(
            pruned, subset=True)


# -- the model --------------------------------------------------------------------------

def test_a_pruned_model_knows_its_neurons_units_in_memory_and_reloaded(pruned_dir):
    folder, dense, result = pruned_dir
    kept = read_pruning(folder)["kept"]
    for model in (result.loaded.model, load_model(folder).model):
        location = locate_neurons(model)
        assert location.pruned and location.source_width == 24
        assert [u.tolist() for u in location.units] == kept
        assert location.signal_width("mlp") == 24 and location.signal_width("residual") == 16
        with pytest.raises(ValueError, match=r"is pruned \(\d+, \d+, \d+ MLP neurons per layer"):
            _ = location.n_units
    assert not locate_neurons(dense.model).pruned
    grid = model_grid(result.loaded)
    assert grid.width == 24 and [u.tolist() for u in grid.units] == kept


def test_pruning_a_pruned_model_again_is_refused_in_one_line(pruned_dir, tmp_path):
    _, _, result = pruned_dir
    for call in (lambda: prune(result.loaded, "random", 0.2, tmp_path / "again",
                               protect_layers=[], verbose=0),
                 lambda: score_neurons(result.loaded, "random", verbose=0)):
        with pytest.raises(ValueError, match="is already pruned") as err:
            call()
        assert "\n" not in str(err.value)
    assert not (tmp_path / "again").exists()


def test_removing_neurons_of_a_pruned_model_keeps_source_units():
    dense = make_loaded("llama")
    first = remove_neurons(dense, [np.arange(24) % 2 == 0] * 3)  # units 0, 2, ..., 22
    second = remove_neurons(first, [np.arange(12) >= 6] * 3)  # the last 6 of those
    location = locate_neurons(second.model)
    assert [u.tolist() for u in location.units] == [list(range(12, 24, 2))] * 3
    assert location.source_layer_widths == (24, 24, 24)
    zeroed = fold_edit(copy.deepcopy(dense.model),
                       {layer: [u for u in range(24) if u < 12 or u % 2] for layer in range(3)})
    assert (_logits(second.model) - _logits(zeroed)).abs().max().item() <= 1e-5


def test_a_model_narrowed_without_a_record_is_refused_by_grid_code():
    from llmfbn.models._shrink import shrink_mlp

    model = shrink_mlp(copy.deepcopy(make_loaded("llama").model),
                       [torch.arange(20), torch.arange(24), torch.arange(10)])
    with pytest.raises(ValueError, match=r"unequal widths \(20, 24, 10 neurons per layer\) "
                                         r"and no record"):
        locate_neurons(model).signal_width("mlp")
    marked = remove_neurons(make_loaded("llama"), [np.ones(24, bool)] * 3).model
    shrink_mlp(marked, [torch.arange(20), torch.arange(24), torch.arange(24)])
    with pytest.raises(ValueError, match="Layer 0 of this llama model has 20 MLP neurons but "
                                         "its record of kept neurons"):
        locate_neurons(marked)


# -- recording ---------------------------------------------------------------------------

def _dense_zeroed(dense, result):
    """The dense model with the pruned model's removed neurons zeroed (folded into weights)."""
    return fold_edit(copy.deepcopy(dense.model), _removed(result.keep), mode="inhibit")


def test_recording_a_pruned_model_places_each_neuron_at_its_source_unit(pruned_dir, texts_file,
                                                                         tmp_path):
    folder, dense, result = pruned_dir
    loaded = load_model(folder)
    out = tmp_path / "rec"
    recording = record(loaded, texts_file, out, verbose=0)
    grid = read_grid(out)
    assert grid == recording.grid and grid.width == 24
    np.testing.assert_array_equal(grid.present(), result.keep)
    mask = np.asarray(nib.load(recording.mask_file).dataobj).astype(bool)
    np.testing.assert_array_equal(mask, grid.mask())
    assert mask.sum() == result.keep.sum() < 72

    reference = copy.copy(dense)
    reference.model = _dense_zeroed(dense, result)
    lines = texts_file.read_text().splitlines()
    expected = record_activations(reference, lines)
    for bold, want in zip(recording.bold_files, expected):
        img = nib.load(bold)
        got = grid.from_img(img)
        assert got.shape == want.shape
        np.testing.assert_allclose(got[:, result.keep], want[:, result.keep], atol=1e-5)
        assert not got[:, ~result.keep].any()
        # the removed neurons' voxels are 0 and outside the mask
        assert not np.asarray(img.dataobj)[~grid.mask()].any()
    # the dense model's removed neurons were active: the zeros are the pruning's
    assert np.abs(np.concatenate(expected)[:, ~result.keep]).max() > 1e-3


def test_reduced_recording_of_a_pruned_model_reduces_its_neurons_only(pruned_dir, texts_file,
                                                                     tmp_path):
    folder, _, result = pruned_dir
    loaded = load_model(folder)
    full = record(loaded, texts_file, tmp_path / "full", verbose=0)
    reduced = record(loaded, texts_file, tmp_path / "reduced", reduce=3, verbose=0)
    grid = reduced.grid
    assert grid == full.grid and grid.pruned
    for token_run, reduced_run in zip(full.bold_files, reduced.bold_files):
        data = grid.take_present(grid.from_img(token_run)).astype(np.float64)
        std = data.std(axis=0, ddof=1)
        std[std < np.finfo(np.float64).eps] = 1.0
        _, s, vt = np.linalg.svd((data - data.mean(axis=0)) / std, full_matrices=False)
        want = s[:3, None] * vt[:3]
        want *= np.sign(want[np.arange(3), np.abs(want).argmax(axis=1)])[:, None]
        got = grid.from_img(reduced_run)
        assert got.shape == (3, 3, 24) and np.isfinite(got).all()
        assert not got[:, ~result.keep].any()
        np.testing.assert_allclose(grid.take_present(got), want, atol=2e-4)


# -- networks ----------------------------------------------------------------------------

def test_networks_of_a_pruned_recording_leave_the_removed_neurons_out(pruned_dir, texts_file,
                                                                     tmp_path, capsys):
    folder, _, result = pruned_dir
    rec, nets = tmp_path / "rec", tmp_path / "nets"
    assert main(["record", "--model", str(folder), "--input", str(texts_file),
                 "--out", str(rec), "--quiet"]) == 0
    assert main(["networks", str(rec), "--out", str(nets), "--n-components", "2",
                 "--top-k", "5", "--quiet"]) == 0
    networks = FunctionalNetworks.load(nets)
    assert networks.grid == read_grid(rec) and networks.grid.pruned
    assert not networks.maps[:, ~result.keep].any()
    assert not networks.masks[:, ~result.keep].any() and (networks.sizes == 5).all()
    # z-scored over the present neurons only
    present = networks.maps[:, result.keep]
    np.testing.assert_allclose(present.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(present.std(axis=1), 1, atol=1e-4)
    assert networks.top_tokens and all(len(t) for t in networks.top_tokens)
    # what the folder's images hold, read back through the networks folder's owner
    assert read_networks_folder(nets).grid == networks.grid
    # two-sided thresholds and top-k never pick a removed neuron, even a large z outside
    maps = np.zeros((1, 3, 24))
    maps[0, ~result.keep] = -50.0
    maps[0, result.keep] = np.linspace(-1, 1, result.keep.sum())
    z = zscore_maps(maps, present=result.keep)
    assert not z[:, ~result.keep].any()
    assert not threshold_maps(maps, 0.5, mode="two_sided", present=result.keep)[
        :, ~result.keep].any()
    assert not threshold_maps(maps, top_k=4, mode="two_sided", present=result.keep)[
        :, ~result.keep].any()
    with pytest.raises(ValueError, match="'masks' must select only neurons present"):
        FunctionalNetworks(maps, ~result.keep[None], networks.grid)


def test_temporal_ica_on_a_pruned_recording(pruned_dir, texts_file, tmp_path):
    from llmfbn.networks import NetworkDecomposition

    folder, _, result = pruned_dir
    rec = record(load_model(folder), texts_file, tmp_path / "rec", verbose=0)
    est = NetworkDecomposition(method="temporal_ica", n_components=2, top_k=3,
                               verbose=0).fit(tmp_path / "rec")
    assert est.networks_.grid == rec.grid
    assert not est.components_[:, ~result.keep].any() and est.components_.any()
    assert not est.networks_.masks[:, ~result.keep].any()
    series = est.transform(tmp_path / "rec")
    assert [s.shape for s in series] == [(nib.load(b).shape[3], 2) for b in rec.bold_files]
    assert all(np.isfinite(s).all() for s in series)


# -- interventions -----------------------------------------------------------------------

def _present_targets(keep, per_layer=3):
    return {layer: np.flatnonzero(mask)[1:1 + per_layer] for layer, mask in enumerate(keep)}


@pytest.mark.parametrize("edit", ["inhibit", "amplify", "fold"])
def test_an_edit_of_a_pruned_model_equals_it_on_the_dense_model(pruned_dir, edit):
    folder, dense, result = pruned_dir
    pruned = load_model(folder)
    targets = _present_targets(result.keep)
    reference = _dense_zeroed(dense, result)
    if edit == "inhibit":
        with inhibit(pruned.model, targets), inhibit(reference, targets):
            got, want = _logits(pruned.model), _logits(reference)
    elif edit == "amplify":
        with amplify(pruned.model, targets, 2.5), amplify(reference, targets, 2.5):
            got, want = _logits(pruned.model), _logits(reference)
    else:
        got = _logits(fold_edit(copy.deepcopy(pruned.model), targets, "scale", 3.0))
        want = _logits(fold_edit(reference, targets, "scale", 3.0))
    assert (got - want).abs().max().item() <= 1e-5
    assert (got - _logits(pruned.model)).abs().max().item() > 1e-4  # the edit did something
    # resolved to the columns of the narrowed down projections
    columns = resolve_targets(pruned, targets)
    for layer, units in targets.items():
        kept = np.flatnonzero(result.keep[layer])
        assert kept[columns[layer].numpy()].tolist() == units.tolist()


def test_a_removed_neuron_as_target_is_refused_in_one_line(pruned_dir):
    folder, _, result = pruned_dir
    pruned = load_model(folder)
    removed = np.flatnonzero(~result.keep[1])
    targets = {0: np.flatnonzero(result.keep[0])[:2], 1: removed[:2]}
    with pytest.raises(ValueError, match=rf"Units of layer 1 must be neurons the pruned model "
                                         rf"kept. Units \[{removed[0]}, {removed[1]}\] \(2 of "
                                         rf"2\) were removed by pruning") as err:
        resolve_targets(pruned, targets)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"must lie in \[0, 24\)"):
        resolve_targets(pruned, [(0, 24)])


def test_networks_of_the_dense_model_do_not_fit_the_pruned_model(pruned_dir):
    folder, dense, _ = pruned_dir
    pruned = load_model(folder)
    grid = model_grid(dense)
    maps = np.zeros((1, 3, 24), np.float32)
    nets = FunctionalNetworks(maps, maps > 0, grid)
    check_networks_fit(dense, nets)
    with pytest.raises(ValueError, match=r"different neurons present \(pruned model: none "
                                         r"removed vs \d+ of 72 neurons removed\)"):
        check_networks_fit(pruned, nets, allow_other_model=True)


def test_matched_controls_of_a_pruned_model_draw_its_neurons_only(pruned_dir):
    folder, _, result = pruned_dir
    pruned = load_model(folder)
    mask = np.zeros((3, 24), bool)
    for layer, units in _present_targets(result.keep, 2).items():
        mask[layer, units] = True
    removed = removed_neurons(pruned.model, [0, 1, 2])
    np.testing.assert_array_equal(removed, ~result.keep)
    assert removed_neurons(make_loaded("llama").model, [0, 1, 2]) is None
    controls = matched_controls(mask, 50, exclude=removed, random_state=0)
    assert not controls[:, ~result.keep].any() and not (controls & mask).any()
    assert (controls.sum(axis=2) == mask.sum(axis=1)).all()


def test_intervene_cli_runs_on_a_pruned_folder_with_its_networks(pruned_dir, texts_file,
                                                                tmp_path, capsys):
    from llmfbn.io import read_results

    folder, _, _ = pruned_dir
    rec, nets = tmp_path / "rec", tmp_path / "nets"
    assert main(["record", "--model", str(folder), "--input", str(texts_file),
                 "--out", str(rec), "--quiet"]) == 0
    assert main(["networks", str(rec), "--out", str(nets), "--n-components", "2",
                 "--top-k", "4", "--n-top-tokens", "2", "--quiet"]) == 0
    evaluation = tmp_path / "eval.txt"
    evaluation.write_text("the dog sat on the red mat .\nthe sun is big and the tree is small\n")
    out = tmp_path / "results.csv"
    assert main(["intervene", "--model", str(folder), "--networks", str(nets),
                 "--eval", f"text=text:{evaluation}", "--max-length", "16", "--stride", "8",
                 "--controls", "2", "--out", str(out), "-q"]) == 0
    rows = read_results(out)
    edited = rows[rows["mode"] == "inhibit"]
    assert len(rows) == 3 and len(edited) == 2 and np.isfinite(rows["value"]).all()
    assert np.isfinite(edited["control_mean"]).all() and (edited["n_controls"] == 2).all()
