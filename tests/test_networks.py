import json
import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.decomposition import CanICA

from conftest import planted_networks, write_synthetic_recording
from llmfbn.grid import NeuronGrid
from llmfbn.networks import (
    FunctionalNetworks,
    NetworkDecomposition,
    network_time_series,
    threshold_maps,
    top_tokens,
    zscore_maps,
)


def _best_iou(found, planted):
    inter = (found[:, None] & planted[None]).sum(axis=(2, 3))
    union = (found[:, None] | planted[None]).sum(axis=(2, 3))
    return (inter / np.maximum(union, 1)).max(axis=0)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    runs, masks = planted_networks()
    grid = NeuronGrid(4, 64, model="syn", signal="mlp")
    paths = write_synthetic_recording(folder, grid, runs)
    return folder, paths, masks, grid


@pytest.mark.parametrize("method", ["canica", "dictlearning", "temporal_ica"])
def test_planted_networks_are_recovered(planted, method):
    folder, _, masks, _ = planted
    est = NetworkDecomposition(method=method, n_components=5, random_state=0).fit(folder)
    assert est.networks_.masks.shape == (5, 4, 64)
    assert _best_iou(est.networks_.masks, masks).min() >= 0.9


def test_estimator_equals_nilearn_canica_called_directly(planted):
    folder, paths, _, grid = planted
    est = NetworkDecomposition(n_components=5, random_state=0).fit(folder)
    direct = CanICA(mask=grid.mask_img(), n_components=5, smoothing_fwhm=None, threshold=None,
                    standardize="zscore_sample", detrend=False, random_state=0)
    direct.fit([str(p) for p in paths])
    expected = grid.masked_to_neurons(direct.components_)
    np.testing.assert_allclose(est.components_, expected, rtol=1e-5, atol=1e-6)
    assert isinstance(est.estimator_, CanICA)
    img = est.components_img_
    assert img.shape == grid.shape + (5,)
    np.testing.assert_array_equal(img.affine, grid.affine)


def test_network_time_series_follow_planted_sources(planted):
    folder, paths, masks, grid = planted
    nets = FunctionalNetworks(zscore_maps(masks.astype(float)), masks, grid)
    series = network_time_series(nets, paths[:2])
    assert [s.shape for s in series] == [(100, 5), (100, 5)]
    data = grid.from_img(paths[0]).reshape(100, -1)
    direct = data[:, masks[0].ravel()].mean(axis=1)
    assert np.corrcoef(series[0][:, 0], direct)[0, 1] > 0.99
    by_maps = network_time_series(nets, paths[:1], method="maps")[0]
    assert by_maps.shape == (100, 5)
    assert np.corrcoef(by_maps[:, 0], direct)[0, 1] > 0.9


def test_top_tokens_point_at_the_strongest_tokens(planted, tmp_path):
    folder, paths, masks, grid = planted
    events = paths[0].with_name(paths[0].name.replace("_bold.nii", "_events.tsv"))
    events.write_text("onset\tduration\ttrial_type\ttoken\n" +
                      "".join(f"{t}\t1\ttoken\tw{t}\n" for t in range(100)))
    nets = FunctionalNetworks(zscore_maps(masks.astype(float)), masks, grid)
    rows = top_tokens(nets, paths[:1], n_tokens=3, context=2)
    series = network_time_series(nets, paths[:1])[0]
    best = int(np.argmax(series[:, 1]))
    assert rows[1][0]["onset"] == best and rows[1][0]["token"] == f"w{best}"
    assert rows[1][0]["context"].endswith(f"[w{best}]w{best + 1}w{best + 2}") or best >= 98
    assert [r["activation"] for r in rows[1]] == sorted([r["activation"] for r in rows[1]],
                                                         reverse=True)


def test_empty_network_has_no_top_tokens(planted):
    folder, paths, masks, grid = planted
    masks = masks.copy()
    masks[2] = False
    nets = FunctionalNetworks(zscore_maps(np.ones(masks.shape)), masks, grid)
    rows = top_tokens(nets, paths[:1], n_tokens=3)
    assert rows[2] == [] and all(len(rows[k]) == 3 for k in (0, 1, 3, 4))


def test_zscore_flips_sign_to_positive_peak():
    comp = np.zeros((2, 1, 100))
    comp[0, 0, 3] = -10.0
    comp[1, 0, 7] = 5.0
    z = zscore_maps(comp)
    assert z[0, 0, 3] > 9 and z[1, 0, 7] > 9
    np.testing.assert_allclose(z.reshape(2, -1).mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(z.reshape(2, -1).std(axis=1), 1, atol=1e-6)


def test_threshold_modes():
    maps = np.array([[[4.0, -5.0, 1.0, 3.7]]])
    np.testing.assert_array_equal(threshold_maps(maps), [[[True, False, False, True]]])
    np.testing.assert_array_equal(threshold_maps(maps, mode="two_sided"),
                                  [[[True, True, False, True]]])
    np.testing.assert_array_equal(threshold_maps(maps, top_k=1), [[[True, False, False, False]]])
    with pytest.raises(ValueError, match=r"'mode' must be one of \('positive', 'two_sided'\)"):
        threshold_maps(maps, mode="both")
    with pytest.raises(ValueError, match="'top_k' must be <= 4"):
        threshold_maps(maps, top_k=5)


def test_networks_object_save_load_round_trip(tmp_path):
    grid = NeuronGrid(3, 24, layers=[2, 5, 9], model="m", signal="mlp")
    rng = np.random.default_rng(0)
    maps = zscore_maps(rng.standard_normal((4, 3, 24)))
    nets = FunctionalNetworks.from_maps(maps, grid, threshold=1.5)
    nets.top_tokens = [[{"token": "a"}] for _ in range(4)]
    nets.save(tmp_path)
    for name in ("components.nii.gz", "networks.nii.gz", "networks.json", "grid.json"):
        assert (tmp_path / name).exists()
    assert nib.load(tmp_path / "networks.nii.gz").get_data_dtype() == np.uint8
    back = FunctionalNetworks.load(tmp_path)
    np.testing.assert_array_equal(back.masks, nets.masks)
    np.testing.assert_allclose(back.maps, nets.maps)
    assert back.grid == grid and back.params["threshold"] == 1.5
    doc = json.loads((tmp_path / "networks.json").read_text())
    k = 0
    assert doc["networks"][k]["size"] == int(nets.masks[k].sum())
    layers, units = np.nonzero(nets.masks[k])
    expected = [[grid.layers[slot], int(u)] for slot, u in zip(layers, units)]
    assert doc["networks"][k]["neurons"] == expected
    assert nets.indices(k).tolist() == expected
    assert doc["networks"][k]["layer_counts"] == {
        str(grid.layers[slot]): int(c) for slot, c in enumerate(nets.layer_counts()[k]) if c}


def test_to_torch_masks_per_layer():
    grid = NeuronGrid(2, 8, layers=[3, 7])
    masks = np.zeros((2, 2, 8), dtype=bool)
    masks[0, 1, 2] = masks[1, 0, 5] = True
    nets = FunctionalNetworks(masks.astype(np.float32), masks, grid)
    torch_masks = nets.to_torch([0])
    assert sorted(torch_masks) == [3, 7]
    assert torch_masks[7].nonzero().flatten().tolist() == [2]
    assert not torch_masks[3].any()
    assert nets.to_torch()[3].nonzero().flatten().tolist() == [5]
    with pytest.raises(ValueError, match=r"'network' must be an int in \[0, 2\). 5"):
        nets.to_torch([5])


def test_too_few_time_points_is_refused(tmp_path):
    grid = NeuronGrid(2, 16)
    write_synthetic_recording(tmp_path, grid, [np.ones((5, 2, 16), np.float32)])
    with pytest.raises(ValueError, match="Too few time points for 20 components.*5 tokens"):
        NetworkDecomposition(n_components=20).fit(tmp_path)


def test_non_finite_values_are_refused(tmp_path):
    grid = NeuronGrid(2, 16)
    data = np.random.default_rng(0).standard_normal((60, 2, 16)).astype(np.float32)
    data[3, 1, 4] = np.nan
    write_synthetic_recording(tmp_path, grid, [data])
    with pytest.raises(ValueError, match="1 non-finite values"):
        NetworkDecomposition(n_components=2).fit(tmp_path)


def test_mixed_grids_are_refused(tmp_path, planted):
    _, paths, _, _ = planted
    other = write_synthetic_recording(tmp_path, NeuronGrid(4, 60, model="syn", signal="mlp"),
                                      [np.ones((10, 4, 60), np.float32)])
    with pytest.raises(ValueError, match="different grids or models"):
        NetworkDecomposition(n_components=2).fit([paths[0], other[0]])


def test_threshold_that_selects_nothing_warns(planted):
    folder = planted[0]
    with pytest.warns(UserWarning, match="selects no neuron in networks"):
        est = NetworkDecomposition(n_components=5, threshold=50, random_state=0).fit(folder)
    assert est.networks_.sizes.sum() == 0


def test_unknown_method_names_choices(planted):
    with pytest.raises(ValueError, match=r"'method' must be one of \('canica'.*'pca'"):
        NetworkDecomposition(method="pca").fit(planted[0])


def test_not_a_recording_folder(tmp_path):
    from llmfbn.io import FolderKindError

    with pytest.raises(FolderKindError, match="is empty, not a recording folder"):
        NetworkDecomposition().fit(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist.*`llmfbn record`"):
        NetworkDecomposition().fit(tmp_path / "missing")


def test_networks_need_no_torch():
    import subprocess
    import sys

    code = "import sys, llmfbn.networks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_fit_does_not_emit_nilearn_defaults_warnings(planted):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        NetworkDecomposition(n_components=5, random_state=0).fit(planted[0])


def test_split_half_reproducibility_of_a_folder(planted):
    from llmfbn.networks import split_half_reproducibility

    folder = planted[0]
    (result,) = split_half_reproducibility(folder, n_components=5, n_draws=20, random_state=0)
    assert sorted(len(h) for h in result.halves) == [4, 4]
    assert np.min(result.iou.scores) >= 0.9  # the same planted networks in both halves
    assert np.max(result.iou.p_value) <= 1 / 21 + 1e-9


@pytest.mark.parametrize("method", ["canica", "temporal_ica"])
def test_transform_gives_network_time_series_per_run(planted, method):
    folder, paths, masks, grid = planted
    est = NetworkDecomposition(method=method, n_components=5, random_state=0).fit(folder)
    series = est.transform(paths[:2])
    assert [s.shape for s in series] == [(100, 5), (100, 5)]
    data = grid.from_img(paths[0]).reshape(100, -1)
    # each component's series follows the mean activity of its planted network
    best = max(abs(np.corrcoef(series[0][:, k], data[:, masks[0].ravel()].mean(axis=1))[0, 1])
               for k in range(5))
    assert best > 0.9


def test_decomposition_save_is_one_folder_with_params_and_runs(planted, tmp_path):
    from llmfbn.io import OutputExistsError, read_networks_folder

    folder, paths, _, _ = planted
    est = NetworkDecomposition(n_components=5, random_state=0).fit(folder)
    out = est.save(tmp_path / "net")
    read = read_networks_folder(out)
    assert read.kind == "networks" and read.estimator == "NetworkDecomposition"
    assert read.runs == [str(p) for p in paths] and read.estimator_params["n_components"] == 5
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        est.save(out)
    assert est.save(out, overwrite=True) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


@pytest.mark.parametrize("threshold, error", [(float("nan"), ValueError),
                                              (float("inf"), ValueError), ("3", TypeError)])
def test_threshold_must_be_a_finite_number(planted, threshold, error):
    with pytest.raises(error, match="'threshold' must be a"):
        NetworkDecomposition(threshold=threshold).fit(planted[0])
