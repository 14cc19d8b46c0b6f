"""LLM brain maps: every plot on a tiny grid (4 layers x 64 units), checked by its data."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from conftest import planted_networks, write_synthetic_recording  # noqa: E402
from llmfbn import plotting  # noqa: E402
from llmfbn.grid import NeuronGrid  # noqa: E402
from llmfbn.intervention._experiments import COLUMNS  # noqa: E402
from llmfbn.networks import (  # noqa: E402
    FunctionalNetworks,
    match_networks,
    null_matched_iou,
)
from llmfbn.plotting import LayerMosaic  # noqa: E402

N_LAYERS, WIDTH = 4, 64


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def grid():
    return NeuronGrid(N_LAYERS, WIDTH)


@pytest.fixture(scope="module")
def zmap():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((N_LAYERS, WIDTH))
    data[1, :5] = [6.0, -5.0, 4.0, 3.0, -7.0]
    return data.astype(np.float32)


@pytest.fixture(scope="module")
def networks(grid):
    _, masks = planted_networks(n_layers=N_LAYERS, width=WIDTH, n_networks=5, size=10,
                                n_runs=1, n_tokens=5)
    rng = np.random.default_rng(0)
    maps = rng.standard_normal(masks.shape) + 6.0 * masks
    return FunctionalNetworks.from_maps(maps, grid, threshold=3.6)


def _stat_images(mosaic):
    """Per layer, the stat map's AxesImage (zorder 2; the backdrop is 1)."""
    out = {}
    for layer, ax in mosaic.axes.items():
        images = [im for im in ax.get_images() if im.get_zorder() == 2] or ax.get_images()
        out[layer] = images[0]
    return out


def _check_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# Brain map mosaic
# ---------------------------------------------------------------------------


def test_brain_map_draws_one_slice_per_layer_with_symmetric_scale(grid, zmap):
    mosaic = plotting.plot_brain_map(zmap, grid, threshold=2.0, title="z")
    assert isinstance(mosaic, LayerMosaic)
    assert mosaic.layers == [0, 1, 2, 3]
    assert len(mosaic.displays) == 1 and len(mosaic.axes) == N_LAYERS
    vmax = float(np.percentile(np.abs(zmap[zmap != 0]), 99.9))  # the default scale
    for image in _stat_images(mosaic).values():
        assert image.norm.vmin == pytest.approx(-vmax)
        assert image.norm.vmax == pytest.approx(vmax)
    assert mosaic.colorbar.mappable.norm.vmin == pytest.approx(-mosaic.colorbar.mappable.norm.vmax)
    texts = [t.get_text() for ax in mosaic.axes.values() for t in ax.texts]
    assert [f"layer {k}" for k in range(N_LAYERS)] == [t for t in texts if t.startswith("layer")]
    # No L/R or coordinate annotations from nilearn, no background image.
    assert not any(t in ("L", "R") or t.startswith("z=") for t in texts)


def test_brain_map_threshold_hides_small_values(grid, zmap):
    mosaic = plotting.plot_brain_map(zmap, grid, threshold=2.5, backdrop=None)
    for slot, image in _stat_images(mosaic).items():
        shown = np.ma.getmaskarray(image.get_array())
        assert (~shown).sum() == (np.abs(zmap[slot]) >= 2.5).sum()
    # vmax fixes the scale.
    mosaic = plotting.plot_brain_map(zmap, grid, vmax=3.0)
    assert _stat_images(mosaic)[0].norm.vmax == pytest.approx(3.0)


def test_colour_scale_follows_nilearn_auto_rule(grid, zmap):
    positive = np.abs(zmap) + 1.0  # e.g. a mean activation: one sign only
    mosaic = plotting.plot_brain_map(positive, grid, cmap="viridis", vmax_percentile=None)
    norm = _stat_images(mosaic)[0].norm
    assert (norm.vmin, norm.vmax) == pytest.approx((positive.min(), positive.max()))
    ax = plotting.plot_flat_map(positive, grid, cmap="viridis", vmin=0.0, vmax_percentile=None)
    assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == pytest.approx(
        (0.0, positive.max()))
    mosaic = plotting.plot_brain_map(positive, grid, symmetric_cbar=True, vmax_percentile=None)
    norm = _stat_images(mosaic)[0].norm
    assert norm.vmin == pytest.approx(-positive.max())
    ax = plotting.plot_flat_map(zmap, grid, vmin=-2.0, vmax=3.0)
    assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (-2.0, 3.0)
    with pytest.raises(ValueError, match="'symmetric_cbar'"):
        plotting.plot_flat_map(zmap, grid, symmetric_cbar="yes")
    with pytest.raises(ValueError, match="'vmax'"):
        plotting.plot_flat_map(zmap, grid, vmin=2.0, vmax=1.0, symmetric_cbar=False)


def test_colour_scale_resists_outlier_neurons_and_names_the_maximum(grid, zmap):
    """A few huge neurons no longer wash the map out: the scale tops out at the 99.9th
    percentile of |z| and the colour bar names the true maximum."""
    from llmfbn.grid import NeuronGrid

    grid = NeuronGrid(4, 1024)
    spiky = np.random.default_rng(0).normal(size=(4, 1024))
    spiky[0, :2] = 500.0  # two outlier neurons, as SmolLM2 has a few
    robust = float(np.percentile(np.abs(spiky), 99.9))
    assert robust < 10
    mosaic = plotting.plot_brain_map(spiky, grid, colorbar_label="z")
    assert _stat_images(mosaic)[0].norm.vmax == pytest.approx(robust)
    label = mosaic.colorbar.ax.get_ylabel()
    assert label == "z (to 99.9th percentile; max |value| 500)"
    ax = plotting.plot_flat_map(spiky, grid)
    assert ax.images[0].norm.vmax == pytest.approx(robust)
    assert "max |value| 500" in ax.figure.axes[-1].get_ylabel()  # the colour bar
    whole = plotting.plot_brain_map(spiky, grid, vmax_percentile=None, colorbar_label="z")
    assert _stat_images(whole)[0].norm.vmax == pytest.approx(500.0)
    assert whole.colorbar.ax.get_ylabel() == "z"  # nothing clipped, nothing to name
    # the scale never tops out below the display threshold
    high = plotting.plot_brain_map(spiky, grid, threshold=20.0)
    assert _stat_images(high)[0].norm.vmax == pytest.approx(20.0)
    with pytest.raises(ValueError, match="'vmax_percentile' must lie in"):
        plotting.plot_flat_map(spiky, grid, vmax_percentile=0)


def test_flat_map_default_colour_map_needs_no_earlier_nilearn_import():
    """'cold_hot' is nilearn's: a fresh interpreter drawing a flat map first must find it."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('Agg'); import numpy as np; "
            "from llmfbn.grid import NeuronGrid; from llmfbn.plotting import plot_flat_map; "
            "plot_flat_map(np.ones((2, 4)), grid=NeuronGrid(2, 4))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]


def test_brain_map_from_image_equals_from_array(grid, zmap, tmp_path):
    img = grid.to_img(zmap)
    a = _stat_images(plotting.plot_brain_map(zmap, grid, backdrop=None))
    b = _stat_images(plotting.plot_brain_map(img, backdrop=None))
    nib.save(img, tmp_path / "map.nii.gz")
    c = _stat_images(plotting.plot_brain_map(tmp_path / "map.nii.gz", grid, backdrop=None))
    for layer in a:
        np.testing.assert_array_equal(a[layer].get_array(), b[layer].get_array())
        np.testing.assert_array_equal(a[layer].get_array(), c[layer].get_array())


def test_brain_map_splits_many_layers_into_rows():
    big = NeuronGrid(23, 16)
    data = np.random.default_rng(0).standard_normal((23, 16))
    mosaic = plotting.plot_brain_map(data, big)
    assert len(mosaic.displays) == 3  # rows of at most 10: 8 + 8 + 7
    assert [len(d.axes) for d in mosaic.displays] == [8, 8, 7]
    assert mosaic.layers == list(range(23))
    mosaic = plotting.plot_brain_map(data, big, layers=[2, 5, 22], n_columns=2)
    assert mosaic.layers == [2, 5, 22] and len(mosaic.displays) == 2


def test_brain_map_uses_model_layer_indices():
    grid = NeuronGrid(3, 16, layers=[4, 8, 12])
    data = np.arange(48, dtype=float).reshape(3, 16) - 20
    mosaic = plotting.plot_brain_map(data, grid, layers=[8])
    assert mosaic.layers == [8]
    with pytest.raises(ValueError, match="'layers'"):
        plotting.plot_brain_map(data, grid, layers=[1])


def test_brain_map_slice_orientation():
    """Unit u of a layer sits at x = u % nx (rightwards), y = u // nx (upwards)."""
    small = NeuronGrid(2, 12)  # slices of 4 x 3
    data = np.zeros((2, 12))
    data[0, 1], data[0, 11] = 5.0, -5.0  # (x=1, y=0) and (x=3, y=2)
    image = _stat_images(plotting.plot_brain_map(data, small, threshold=1, backdrop=None))[0]
    assert image.origin == "upper"  # nilearn draws row 0 at the top: y = ny - 1 - row
    shown = image.get_array()
    assert shown.shape == (3, 4)
    assert shown[2, 1] == 5.0 and shown[0, 3] == -5.0
    assert (~np.ma.getmaskarray(shown)).sum() == 2


def test_brain_map_padded_grid_and_scaled_affine():
    """Slices are cut at each layer's world z, whatever the voxel size; padding stays hidden."""
    data = np.random.default_rng(0).standard_normal((3, 61)) + 5  # 61 units: padded slice
    plain = NeuronGrid(3, 61)
    scaled = NeuronGrid(3, 61, affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    assert plain.n_padding > 0
    a = _stat_images(plotting.plot_brain_map(data, plain, backdrop=None))
    b = _stat_images(plotting.plot_brain_map(data, scaled, backdrop=None))
    for layer in range(3):
        shown = a[layer].get_array()
        np.testing.assert_array_equal(shown, b[layer].get_array())
        assert (~np.ma.getmaskarray(shown)).sum() == 61  # the neurons, not the padding
        np.testing.assert_allclose(np.sort(shown.compressed()), np.sort(data[layer]), rtol=1e-6)


def test_brain_map_output_file(grid, zmap, tmp_path):
    out = tmp_path / "sub" / "map.png"
    assert plotting.plot_brain_map(zmap, grid, threshold=1.0, output_file=out) is None
    _check_png(out)
    assert plt.get_fignums() == []


def test_brain_map_axes_region(grid, zmap):
    figure = plt.figure(figsize=(8, 6))
    ax = figure.add_subplot(2, 1, 1)
    mosaic = plotting.plot_brain_map(zmap, grid, axes=ax)
    assert mosaic.figure is figure and ax not in figure.axes
    mosaic = plotting.plot_brain_map(zmap, grid, figure=figure, axes=[0, 0, 1, 0.5])
    assert mosaic.figure is figure


@pytest.mark.parametrize("call, match", [
    (lambda g, z: plotting.plot_brain_map(z), "'grid'"),
    (lambda g, z: plotting.plot_brain_map(z[:, :10], g), "'stat'"),
    (lambda g, z: plotting.plot_brain_map(z.ravel(), g), "'stat'"),
    (lambda g, z: plotting.plot_flat_map(z), "'grid'"),
    (lambda g, z: plotting.plot_flat_map(z.T, g), "'stat'"),
    (lambda g, z: plotting.plot_brain_map(z, g, threshold=-1), "'threshold'"),
    (lambda g, z: plotting.plot_brain_map(z, g, vmax=0), "'vmax'"),
    (lambda g, z: plotting.plot_brain_map(z, g, backdrop="grey"), "'backdrop'"),
    (lambda g, z: plotting.plot_brain_map(z, g, n_columns=0), "'n_columns'"),
    (lambda g, z: plotting.plot_brain_map(NeuronGrid(4, 48).to_img(np.zeros((4, 48))), g),
     "'stat'"),
])
def test_map_bad_input(grid, zmap, call, match):
    with pytest.raises(ValueError, match=match):
        call(grid, zmap)


def test_brain_map_rejects_a_4d_run(grid):
    run = grid.to_img(np.zeros((3, N_LAYERS, WIDTH)))
    with pytest.raises(ValueError, match="3-D"):
        plotting.plot_brain_map(run)


# ---------------------------------------------------------------------------
# Flat map
# ---------------------------------------------------------------------------


def test_flat_map_pixels_are_the_neurons(grid, zmap):
    ax = plotting.plot_flat_map(zmap, grid, title="flat")
    image = ax.images[0]
    shown = image.get_array()
    assert shown.shape == (N_LAYERS, WIDTH)
    np.testing.assert_allclose(shown, zmap)
    assert image.origin == "lower"  # layer 0 at the bottom
    assert ax.get_xlabel() == "unit" and ax.get_ylabel() == "layer"
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)
    # Pixel (layer, unit) sits at data coordinates (unit, layer).
    layer, unit = 1, 4
    x0, x1, y0, y1 = image.get_extent()
    assert (x0, x1, y0, y1) == (-0.5, WIDTH - 0.5, -0.5, N_LAYERS - 0.5)
    assert shown[layer, unit] == pytest.approx(zmap[layer, unit]) == pytest.approx(-7.0)


def test_flat_map_threshold_masks_small_values(grid, zmap):
    ax = plotting.plot_flat_map(grid.to_img(zmap), threshold=2.0, vmax=5.0)
    shown = ax.images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.abs(zmap) < 2.0)
    assert ax.images[0].norm.vmax == 5.0


def test_flat_map_output_file(grid, zmap, tmp_path):
    assert plotting.plot_flat_map(zmap, grid, output_file=tmp_path / "flat.png") is None
    _check_png(tmp_path / "flat.png")


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


def test_empty_networks_plot_as_empty(networks, grid):
    """`networks --threshold 99` keeps empty networks: every plot draws them empty."""
    empty = FunctionalNetworks.from_maps(networks.maps, grid, threshold=99.0)
    assert (empty.sizes == 0).all()
    for kind in ("mosaic", "flat", "both"):
        assert plotting.plot_network(empty, 0, kind=kind) is not None
    ax = plotting.plot_network(empty, 1, kind="flat")
    assert np.ma.getmaskarray(ax.images[0].get_array()).all()  # nothing shown
    assert "(0 neurons)" in ax.get_title()
    assert plotting.plot_atlas(empty) is not None
    profile = plotting.plot_layer_profile(empty)
    assert profile is not None
    plt.close("all")


def test_plot_network_kinds(networks):
    k = 2
    size = int(networks.sizes[k])
    mosaic = plotting.plot_network(networks, k)
    assert isinstance(mosaic, LayerMosaic) and len(mosaic.axes) == N_LAYERS
    assert f"network {k} ({size} neurons)" in [t.get_text() for t in mosaic.figure.texts]
    ax = plotting.plot_network(networks, k, kind="flat")
    assert ax.get_title() == f"network {k} ({size} neurons)"
    # The network's threshold (3.6, from params) hides |z| < 3.6.
    np.testing.assert_array_equal(np.ma.getmaskarray(ax.images[0].get_array()),
                                  np.abs(networks.maps[k]) < 3.6)
    both = plotting.plot_network(networks, k, kind="both")
    assert both.flat_axes is not None and len(both.axes) == N_LAYERS
    with pytest.raises(ValueError, match="'axes'"):
        plotting.plot_network(networks, k, kind="both", axes=plt.gca())


def test_plot_network_without_threshold_shows_only_its_neurons(networks):
    top = FunctionalNetworks.from_maps(networks.maps, networks.grid, top_k=7)
    ax = plotting.plot_network(top, 0, kind="flat")
    shown = ~np.ma.getmaskarray(ax.images[0].get_array())
    np.testing.assert_array_equal(shown, top.masks[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=5), "'k'"),
    (dict(k=-1), "'k'"),
    (dict(k=1.0), "'k'"),
    (dict(k=0, kind="surface"), "'kind'"),
])
def test_plot_network_bad_input(networks, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plotting.plot_network(networks, **kwargs)


# ---------------------------------------------------------------------------
# Atlas and layer profile
# ---------------------------------------------------------------------------


def test_plot_atlas(networks, tmp_path):
    mosaic = plotting.plot_atlas(networks, title="atlas")
    assert isinstance(mosaic, LayerMosaic) and len(mosaic.axes) == N_LAYERS
    labels = [t.get_text() for t in mosaic.colorbar.ax.get_yticklabels()]
    assert labels == [f"net {k}" for k in range(len(networks))]
    # One overlay per network on every slice (plus the backdrop), each in its own colour.
    colors = plotting.network_colors(len(networks))
    for ax in mosaic.axes.values():
        overlays = [im for im in ax.get_images() if im.get_zorder() == 2]
        assert len(overlays) == len(networks)
        for image, color in zip(overlays, colors):
            np.testing.assert_allclose(image.get_cmap()(1.0)[:3], color[:3])
    mosaic = plotting.plot_atlas(networks, networks_shown=[3], values="maps", layers=[0, 1])
    assert mosaic.layers == [0, 1]
    assert plotting.plot_atlas(networks, output_file=tmp_path / "atlas.png") is None
    _check_png(tmp_path / "atlas.png")
    with pytest.raises(ValueError, match="'networks_shown'"):
        plotting.plot_atlas(networks, networks_shown=[9])
    with pytest.raises(ValueError, match="'values'"):
        plotting.plot_atlas(networks, values="probabilities")


def test_layer_profile_counts(networks):
    ax = plotting.plot_layer_profile(networks)
    shown = ax.images[0].get_array()
    np.testing.assert_array_equal(shown.filled(0), networks.layer_counts())
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), networks.layer_counts() == 0)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"net {k}" for k in range(5)]
    assert ax.get_xlabel() == "layer"
    ax = plotting.plot_layer_profile(networks, normalize=True)
    np.testing.assert_allclose(ax.images[0].get_array().filled(0).sum(axis=1), 1.0)
    ax = plotting.plot_layer_profile(networks, kind="bars")
    heights = np.zeros(N_LAYERS)
    for patch in ax.patches:
        heights[int(round(patch.get_x() + patch.get_width() / 2))] += patch.get_height()
    np.testing.assert_array_equal(heights, networks.layer_counts().sum(axis=0))
    with pytest.raises(ValueError, match="'kind'"):
        plotting.plot_layer_profile(networks, kind="pie")


# ---------------------------------------------------------------------------
# Connectivity
# ---------------------------------------------------------------------------


def test_plot_connectivity_matrix():
    rng = np.random.default_rng(0)
    corr = np.corrcoef(rng.standard_normal((4, 30)))
    ax = plotting.plot_connectivity(corr, title="c")
    shown = ax.images[0].get_array()
    assert np.all(np.diag(shown) == 0)  # a correlation's unit diagonal is blanked
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(shown[off], corr[off])
    vmax = np.abs(corr[off]).max()
    assert ax.images[0].norm.vmin == pytest.approx(-vmax)
    assert ax.images[0].norm.vmax == pytest.approx(vmax)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["net 0", "net 1", "net 2", "net 3"]
    cov = corr * 3
    ax = plotting.plot_connectivity(cov, vmax=2.0, labels=list("abcd"))
    np.testing.assert_allclose(np.diag(ax.images[0].get_array()), 3.0)
    assert ax.images[0].norm.vmax == 2.0
    with pytest.raises(ValueError, match="'connectome'"):
        plotting.plot_connectivity(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="'labels'"):
        plotting.plot_connectivity(corr, labels=["a"])


def test_plot_connectivity_comparison(tmp_path):
    rng = np.random.default_rng(0)
    a = np.corrcoef(rng.standard_normal((5, 40)))
    b = np.corrcoef(rng.standard_normal((5, 40)))
    figure = plotting.plot_connectivity_comparison({"wikitext": a, "sst2": b}, title="t")
    matrices = [ax for ax in figure.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in matrices] == ["wikitext", "sst2", "wikitext − sst2"]
    assert matrices[0].images[0].norm.vmax == matrices[1].images[0].norm.vmax
    assert matrices[0].images[0].norm.vmin == -matrices[0].images[0].norm.vmax
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(matrices[2].images[0].get_array()[off], (a - b)[off])
    figure = plotting.plot_connectivity_comparison({"a": a, "b": b, "c": a}, difference=True)
    assert len([ax for ax in figure.axes if ax.images and ax.get_title()]) == 3
    with pytest.raises(ValueError, match="'connectomes'"):
        plotting.plot_connectivity_comparison({"a": a, "b": np.eye(3)})
    with pytest.raises(ValueError, match="'connectomes'"):
        plotting.plot_connectivity_comparison({})
    assert plotting.plot_connectivity_comparison(
        {"a": a, "b": b}, output_file=tmp_path / "cmp.png") is None
    _check_png(tmp_path / "cmp.png")


# ---------------------------------------------------------------------------
# Carpet
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory, grid):
    runs, _ = planted_networks(n_layers=N_LAYERS, width=WIDTH, n_runs=2, n_tokens=40)
    folder = tmp_path_factory.mktemp("recording")
    paths = write_synthetic_recording(folder, grid, runs)
    return folder, paths


def test_plot_carpet_groups_neurons_by_layer(recording, tmp_path):
    folder, paths = recording
    figure = plotting.plot_carpet(folder, run=1)
    carpet, strip = figure.axes[-1], figure.axes[0]
    assert carpet.get_xlabel() == "token"
    assert carpet.images[0].get_array().shape == (N_LAYERS * WIDTH, 40)
    layers = strip.images[0].get_array()[:, 0]
    np.testing.assert_array_equal(layers, np.repeat(np.arange(1, N_LAYERS + 1), WIDTH))
    assert [t.get_text() for t in strip.get_yticklabels()] == ["0", "1", "2", "3"]
    assert "run-00002" in carpet.get_title()
    figure = plotting.plot_carpet(paths[0], layers_as_labels=False, title="plain")
    assert figure.axes[-1].get_ylabel() == "neurons"
    assert plotting.plot_carpet(folder, output_file=tmp_path / "carpet.png") is None
    _check_png(tmp_path / "carpet.png")


def test_plot_carpet_bad_input(recording, grid):
    folder, paths = recording
    with pytest.raises(ValueError, match="'run'"):
        plotting.plot_carpet(folder, run=2)
    with pytest.raises(ValueError, match="'recording_or_bold'"):
        plotting.plot_carpet(nib.load(paths[0]), grid=NeuronGrid(4, 48))
    with pytest.raises(ValueError, match="4-D"):
        plotting.plot_carpet(grid.to_img(np.zeros((N_LAYERS, WIDTH))), grid=grid)


# ---------------------------------------------------------------------------
# Intervention results
# ---------------------------------------------------------------------------


def _row(network, mode, edit_value, value, mean, task="sst2", metric="accuracy", n=10):
    return dict(network=network, n_neurons=n, task=task, metric=metric, mode=mode,
                edit_value=edit_value, value=value, control_mean=mean,
                control_ci_low=mean - 0.02, control_ci_high=mean + 0.03,
                ratio=value / mean, n_controls=5, baseline=0.8)


@pytest.fixture
def results_csv(tmp_path):
    rows = [dict(network="none", n_neurons=0, task="sst2", metric="accuracy", mode="none",
                 edit_value="", value=0.8, control_mean=np.nan, control_ci_low=np.nan,
                 control_ci_high=np.nan, ratio=np.nan, n_controls=0, baseline=0.8),
            _row("3", "inhibit", "", 0.6, 0.78),
            _row("1", "inhibit", "", 0.79, 0.77),
            _row("3", "amplify", "1", 0.55, 0.7),
            _row("3", "amplify", "0.5", 0.65, 0.75),
            _row("1", "amplify", "0.5", 0.74, 0.76),
            _row("1", "amplify", "1", 0.7, 0.72),
            _row("3", "inhibit", "", 0.6, 0.78, metric="accuracy_norm")]
    path = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def _line(ax, label):
    lines = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(lines) == 1, [line.get_label() for line in ax.get_lines()]
    return lines[0]


def test_plot_intervention_values_match_csv(results_csv):
    ax = plotting.plot_intervention(results_csv)
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["3", "1"]
    np.testing.assert_allclose(_line(ax, "inhibit").get_ydata(), [0.6, 0.79])
    np.testing.assert_allclose(_line(ax, "amplify 0.5").get_ydata(), [0.65, 0.74])
    np.testing.assert_allclose(_line(ax, "amplify 1").get_ydata(), [0.55, 0.7])
    np.testing.assert_allclose(_line(ax, "unedited model").get_ydata(), [0.8, 0.8])
    controls = ax.containers[0]  # inhibit's controls, with their CI
    np.testing.assert_allclose(controls.lines[0].get_ydata(), [0.78, 0.77])
    segments = controls.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments], [[0.76, 0.81], [0.75, 0.80]])
    assert ax.get_ylabel() == "sst2 accuracy"
    ax = plotting.plot_intervention(pd.read_csv(results_csv), mode="amplify", edit_value=1,
                                    networks=[1])
    np.testing.assert_allclose(_line(ax, "amplify 1").get_ydata(), [0.7])
    ax = plotting.plot_intervention(results_csv, metric="accuracy_norm")
    np.testing.assert_allclose(_line(ax, "inhibit").get_ydata(), [0.6])


def test_plot_intervention_bad_input(results_csv, tmp_path):
    frame = pd.read_csv(results_csv)
    two_tasks = pd.concat([frame, frame.assign(task="piqa")])
    with pytest.raises(ValueError, match="'task'"):
        plotting.plot_intervention(two_tasks)
    plotting.plot_intervention(two_tasks, task="piqa")
    with pytest.raises(ValueError, match="'metric'"):
        plotting.plot_intervention(results_csv, metric="perplexity")
    with pytest.raises(ValueError, match="'networks'"):
        plotting.plot_intervention(results_csv, networks=[7])
    with pytest.raises(ValueError, match="'results'"):
        plotting.plot_intervention(frame.drop(columns="baseline"))
    with pytest.raises(ValueError, match="'results'"):
        plotting.plot_intervention(frame[frame.network == "none"])


def test_plot_dose_response(results_csv, tmp_path):
    ax = plotting.plot_dose_response(results_csv)
    net3 = _line(ax, "net 3")
    np.testing.assert_allclose(net3.get_xdata(), [0.5, 1.0])
    np.testing.assert_allclose(net3.get_ydata(), [0.65, 0.55])
    np.testing.assert_allclose(_line(ax, "net 1").get_ydata(), [0.74, 0.7])
    assert ax.get_xlabel() == "added value (amplify)"
    ax = plotting.plot_dose_response(results_csv, network=1)
    assert [line.get_label() for line in ax.get_lines() if line.get_label().startswith("net")] \
        == ["net 1"]
    frame = pd.read_csv(results_csv)
    with pytest.raises(ValueError, match="amplify or scale"):
        plotting.plot_dose_response(frame[frame["mode"] != "amplify"])
    with pytest.raises(ValueError, match="'network'"):
        plotting.plot_dose_response(results_csv, network=9)
    assert plotting.plot_dose_response(results_csv, output_file=tmp_path / "d.png") is None
    _check_png(tmp_path / "d.png")


# ---------------------------------------------------------------------------
# Consistency
# ---------------------------------------------------------------------------


def test_plot_consistency_matrix_outlines_matched_pairs(networks):
    rng = np.random.default_rng(0)
    other = networks.masks[[2, 0, 1, 4, 3]] | (rng.random(networks.masks.shape) < 0.01)
    matching = match_networks(networks.masks, other)
    report = null_matched_iou(networks.masks, other, n_draws=20, random_state=0)
    ax = plotting.plot_consistency(matching, report=report)
    np.testing.assert_allclose(ax.images[0].get_array(), matching.score_matrix)
    boxes = sorted((int(p.get_y() + 0.5), int(p.get_x() + 0.5))
                   for p in ax.patches if isinstance(p, Rectangle))
    assert boxes == sorted(matching.pairs) == [(0, 1), (1, 2), (2, 0), (3, 4), (4, 3)]
    assert "median matched IoU" in ax.get_title() and "null" in ax.get_title()
    ax = plotting.plot_consistency(matching.score_matrix)
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == 5
    ax = plotting.plot_consistency(report)
    assert "median matched IoU" in ax.get_title()
    with pytest.raises(ValueError, match="'result'"):
        plotting.plot_consistency(np.zeros(4))
    with pytest.raises(ValueError, match="'result'"):
        plotting.plot_consistency({"a": 1})


def test_plot_consistency_document(networks, tmp_path):
    masks = networks.masks
    report = null_matched_iou(masks, masks[::-1], n_draws=10, random_state=0)
    corr = null_matched_iou(masks, masks, n_draws=10, random_state=0)
    document = {"format_version": 1, "folders": ["run/a", "run/b"], "n_draws": 10,
                "pairs": [{"a": "run/a", "b": "run/b", "iou": report.to_dict(),
                           "correlation": corr.to_dict()}]}
    path = tmp_path / "consistency.json"
    path.write_text(json.dumps(document))
    ax = plotting.plot_consistency(path)
    shown = ax.images[0].get_array()
    assert shown[0, 1] == shown[1, 0] == pytest.approx(np.median(report.scores))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    with pytest.raises(ValueError, match="'metric'"):
        plotting.plot_consistency(document, metric="dice")


# ---------------------------------------------------------------------------
# Interactive views
# ---------------------------------------------------------------------------


def test_view_brain_map_is_offline_html(grid, zmap, networks, tmp_path):
    view = plotting.view_brain_map(zmap, grid, threshold=2.0, title="z")
    html = view.get_standalone() if hasattr(view, "get_standalone") else view.html
    assert "<script" in html and "brainsprite" in html.lower()
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside
    assert "src=\"http" not in view._repr_html_()
    view.save_as_html(tmp_path / "view.html")
    assert (tmp_path / "view.html").stat().st_size > 10_000
    view = plotting.view_network(networks, 1)
    assert "network 1 (" in view.html
    with pytest.raises(ValueError, match="'k'"):
        plotting.view_network(networks, 10)
    with pytest.raises(ValueError, match="'grid'"):
        plotting.view_brain_map(zmap)
