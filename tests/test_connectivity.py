"""Connectivity between networks over tokens.

nilearn's ConnectivityMeasure, one run = one subject.
"""

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance

from conftest import planted_networks, write_synthetic_recording
from llmfbn.grid import NeuronGrid
from llmfbn.networks import (
    CONNECTIVITY_KINDS,
    Connectome,
    FunctionalNetworks,
    network_connectivity,
    network_time_series,
)

N_LAYERS, WIDTH, N_NETWORKS = 4, 64, 5


def correlated_runs(masks, n_runs=3, n_tokens=80, coupling=0.9, seed=0):
    """Runs whose networks 0 and 1 share a source (correlated), the others independent."""
    rng = np.random.default_rng(seed)
    flat = masks.reshape(len(masks), -1).astype(float)
    runs = []
    for _ in range(n_runs):
        sources = rng.standard_normal((n_tokens, len(masks)))
        sources[:, 1] = coupling * sources[:, 0] + np.sqrt(1 - coupling ** 2) * sources[:, 1]
        data = sources @ flat + 0.3 * rng.standard_normal((n_tokens, flat.shape[1]))
        runs.append(data.reshape(n_tokens, N_LAYERS, WIDTH).astype(np.float32))
    return runs


@pytest.fixture(scope="module")
def grid():
    return NeuronGrid(N_LAYERS, WIDTH)


@pytest.fixture(scope="module")
def networks(grid):
    _, masks = planted_networks(n_layers=N_LAYERS, width=WIDTH, n_networks=N_NETWORKS,
                                size=10, n_runs=1, n_tokens=5)
    maps = np.where(masks, 5.0, 0.0) + 0.01
    return FunctionalNetworks(maps, masks, grid, params={"threshold": 3.6})


@pytest.fixture(scope="module")
def recording(tmp_path_factory, grid, networks):
    folder = tmp_path_factory.mktemp("connectivity")
    paths = write_synthetic_recording(folder, grid, correlated_runs(networks.masks))
    return folder, paths


def test_correlation_matches_numpy(networks, recording):
    folder, paths = recording
    connectome = network_connectivity(networks, folder)
    assert isinstance(connectome, Connectome)
    assert connectome.matrices.shape == (3, N_NETWORKS, N_NETWORKS)
    assert connectome.n_runs == 3 and connectome.n_tokens == [80, 80, 80]
    assert connectome.labels == [f"net {k}" for k in range(N_NETWORKS)]
    assert connectome.kind == "correlation"
    series = network_time_series(networks, paths)
    for run, matrix in zip(series, connectome.matrices):
        np.testing.assert_allclose(matrix, np.corrcoef(run.T), atol=1e-10)
    np.testing.assert_allclose(connectome.mean, connectome.matrices.mean(axis=0), atol=1e-12)
    # Networks 0 and 1 share a source; the others do not.
    assert connectome.mean[0, 1] > 0.7
    off = ~np.eye(N_NETWORKS, dtype=bool)
    off[0, 1] = off[1, 0] = False
    assert np.abs(connectome.mean[off]).max() < 0.3
    assert connectome.estimator.kind == "correlation"


def test_cov_estimator(networks, recording):
    _, paths = recording
    series = network_time_series(networks, paths)
    pearson = np.mean([np.corrcoef(s.T) for s in series], axis=0)
    explicit = network_connectivity(networks, paths, cov_estimator=EmpiricalCovariance())
    np.testing.assert_allclose(explicit.mean, pearson, atol=1e-10)
    # nilearn's default, Ledoit-Wolf, shrinks correlations towards 0.
    shrunk = network_connectivity(networks, paths, cov_estimator=None)
    assert 0 < shrunk.mean[0, 1] < pearson[0, 1] - 0.05
    off = ~np.eye(N_NETWORKS, dtype=bool)
    assert np.all(np.abs(shrunk.mean[off]) <= np.abs(pearson[off]) + 1e-12)
    with pytest.raises(ValueError, match="'cov_estimator'"):
        network_connectivity(networks, paths, cov_estimator="shrunk")


@pytest.mark.parametrize("kind", CONNECTIVITY_KINDS)
def test_every_kind(networks, recording, kind):
    folder, _ = recording
    connectome = network_connectivity(networks, folder, kind=kind)
    assert connectome.matrices.shape == (3, N_NETWORKS, N_NETWORKS)
    assert connectome.mean.shape == (N_NETWORKS, N_NETWORKS)
    np.testing.assert_allclose(connectome.matrices, connectome.matrices.transpose(0, 2, 1),
                               atol=1e-8)
    if kind == "tangent":
        # mean is the group's geometric mean covariance: symmetric positive definite.
        assert np.all(np.linalg.eigvalsh(connectome.mean) > 0)
        assert connectome.mean[0, 1] > 0.5
    if kind == "partial correlation":
        assert connectome.mean[0, 1] > 0.5


def test_maps_method_and_task_filter(networks, recording):
    folder, _ = recording
    connectome = network_connectivity(networks, folder, method="maps", task="syn")
    assert connectome.matrices.shape == (3, N_NETWORKS, N_NETWORKS)
    assert connectome.runs[0].startswith("sub-syn_task-syn_run-00001")
    with pytest.raises(ValueError, match="no finished runs"):
        network_connectivity(networks, folder, task="other")


def test_tangent_needs_two_runs(networks, recording):
    _, paths = recording
    with pytest.raises(ValueError, match="at least 2 runs"):
        network_connectivity(networks, paths[:1], kind="tangent")
    assert network_connectivity(networks, paths[0]).n_runs == 1  # one bold file


def test_short_runs_are_refused(tmp_path, grid, networks):
    runs = correlated_runs(networks.masks, n_runs=2, n_tokens=4)
    paths = write_synthetic_recording(tmp_path, grid, runs)
    with pytest.raises(ValueError, match=r"has 4 tokens.*at least 6 tokens"):
        network_connectivity(networks, paths, kind="partial correlation")
    assert network_connectivity(networks, paths, kind="correlation").n_tokens == [4, 4]
    short = write_synthetic_recording(tmp_path / "short", grid,
                                      correlated_runs(networks.masks, n_runs=1, n_tokens=2))
    with pytest.raises(ValueError, match="at least 3 tokens"):
        network_connectivity(networks, short)


def test_recording_on_another_grid_is_refused(tmp_path, networks):
    other = NeuronGrid(N_LAYERS, 48, model="other-model")
    runs = [np.random.default_rng(0).standard_normal((20, N_LAYERS, 48)).astype(np.float32)]
    write_synthetic_recording(tmp_path, other, runs)
    with pytest.raises(ValueError) as err:
        network_connectivity(networks, tmp_path)
    assert repr(other) in str(err.value) and repr(networks.grid) in str(err.value)
    same_layout = NeuronGrid(N_LAYERS, WIDTH, model="a", signal="residual")
    nets = FunctionalNetworks(networks.maps, networks.masks,
                              NeuronGrid(N_LAYERS, WIDTH, model="a", signal="mlp"))
    write_synthetic_recording(tmp_path / "residual", same_layout,
                              correlated_runs(networks.masks, n_runs=1))
    with pytest.raises(ValueError, match="signal"):
        network_connectivity(nets, tmp_path / "residual")


def test_bad_parameters(networks, recording, grid):
    folder, _ = recording
    with pytest.raises(ValueError, match="'kind'"):
        network_connectivity(networks, folder, kind="coherence")
    with pytest.raises(ValueError, match="'method'"):
        network_connectivity(networks, folder, method="max")
    with pytest.raises(TypeError, match="'networks'"):
        network_connectivity(networks.masks, folder)
    with pytest.raises(ValueError, match="at least 2 networks"):
        network_connectivity(networks.subset([0]), folder)
    masks = networks.masks.copy()
    masks[2] = False
    empty = FunctionalNetworks(networks.maps, masks, grid)
    with pytest.raises(ValueError, match=r"\[2\] are empty"):
        network_connectivity(empty, folder)


def test_plot_connectome_object(networks, recording):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmfbn.plotting import plot_connectivity, plot_connectivity_comparison

    folder, _ = recording
    correlation = network_connectivity(networks, folder)
    tangent = network_connectivity(networks, folder, kind="tangent")
    try:
        ax = plot_connectivity(correlation)
        shown = ax.images[0].get_array()
        assert np.all(np.diag(shown) == 0)
        off = ~np.eye(N_NETWORKS, dtype=bool)
        np.testing.assert_allclose(shown[off], correlation.mean[off])
        assert "3 runs" in ax.get_title()
        ax = plot_connectivity(tangent)
        np.testing.assert_allclose(ax.images[0].get_array(), tangent.mean)  # diagonal kept
        figure = plot_connectivity_comparison({"a": correlation, "b": correlation})
        titled = [a for a in figure.axes if a.images and a.get_title()]
        np.testing.assert_allclose(titled[2].images[0].get_array(), 0)
    finally:
        plt.close("all")
