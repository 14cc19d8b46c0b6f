"""``networks --scheduler``: fits on a Dask cluster (LocalCluster of 2) equal local fits."""

import functools
import os

import nibabel as nib
import numpy as np
import pytest
from distributed import get_task_stream

from conftest import WORDS, make_loaded, planted_networks, write_synthetic_recording
from llmfbn.cli import main
from llmfbn.cluster import TaskFailedError, connect
from llmfbn.grid import NeuronGrid
from llmfbn.networks import NetworkDecomposition, _decomposition
from llmfbn.networks._group_pca import reduce_token_run
from llmfbn.networks._ordered import map_in_order

N_COMP = 5


@pytest.fixture(scope="module")
def session():
    with connect("local:2") as session:
        yield session


@pytest.fixture(scope="module")
def address(session):
    """The running cluster's address: fits connect to it instead of starting their own."""
    return session.client.scheduler.address


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    runs, _ = planted_networks(n_runs=12)
    write_synthetic_recording(folder, NeuronGrid(4, 64, model="syn", signal="mlp"), runs)
    return folder


def _fit(folder, **params):
    return NetworkDecomposition(n_components=N_COMP, n_init=3, random_state=0,
                                **params).fit(folder)


def _task_names(stream):
    return {entry["key"] if isinstance(entry["key"], str) else entry["key"][0]
            for entry in stream.data}


# Bit-identical, not close: each run's reduction and each ICA restart is the same
# numpy/LAPACK call with the same seed on one BLAS thread (Dask's workers and joblib's
# loky workers both run one), and the group steps that depend on the order of the runs
# (nilearn's stack, MIGP's merges) run on the client in run order.
@pytest.mark.parametrize("method", ["canica", "dictlearning"])
def test_nilearn_path_on_the_cluster_equals_local(planted, session, address, method):
    local = _fit(planted, method=method, n_jobs=2)
    with get_task_stream(client=session.client) as stream:
        remote = _fit(planted, method=method, scheduler=address)
    assert local.group_pca_ == remote.group_pca_ == "nilearn"
    np.testing.assert_array_equal(remote.components_, local.components_)
    np.testing.assert_array_equal(remote.networks_.masks, local.networks_.masks)
    names = " ".join(_task_names(stream))
    assert "_mask_and_reduce_single" in names  # each run reduced on a worker
    if method == "canica":
        assert "fastica" in names  # the ICA restarts too


def test_migp_on_the_cluster_equals_local_migp(planted, session, address, capsys):
    # migp_rows=8 < 12 runs x 5 rows: the running matrix is reduced several times, so
    # the merges' order matters and is checked
    local = _fit(planted, group_pca="migp", migp_rows=8, n_jobs=2)
    assert local.migp_.n_reductions_ >= 2
    with get_task_stream(client=session.client) as stream:
        remote = _fit(planted, group_pca="migp", migp_rows=8, scheduler=address, verbose=1)
    assert remote.migp_.n_reductions_ == local.migp_.n_reductions_
    np.testing.assert_array_equal(remote.components_, local.components_)
    names = _task_names(stream)
    assert sum(name.startswith("reduce_token_run-") for name in names) == 12  # one per run
    err = capsys.readouterr().err
    assert "runs: 100%" in err and "12/12" in err  # one bar over the runs


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """A reduced recording (6 components per run) of a tiny model."""
    import llmfbn

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=20 + k)) for k in range(10)]
    out = tmp_path_factory.mktemp("reduced") / "rec"
    return llmfbn.record(make_loaded("llama"), texts, out, verbose=0, reduce=6).out_dir


@pytest.mark.filterwarnings("ignore:Threshold 3.6 selects no neuron")  # a tiny random model
@pytest.mark.parametrize("group_pca", ["nilearn", "migp"])
def test_reduced_runs_on_the_cluster_equal_local(reduced, address, group_pca):
    params = dict(n_components=4, n_init=2, random_state=0, group_pca=group_pca, migp_rows=6)
    local = NetworkDecomposition(**params).fit(reduced)
    remote = NetworkDecomposition(scheduler=address, **params).fit(reduced)
    assert local.reduced_ and remote.reduced_ and remote.group_pca_ == group_pca
    np.testing.assert_array_equal(remote.components_, local.components_)


def _reduce_dying_once(marker_dir, masker, n_components, random_state, img):
    marker = os.path.join(marker_dir, "died")
    if img.endswith("run-00003_bold.nii") and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker dies mid-run; Dask retries the run on a new worker
    return reduce_token_run(masker, n_components, random_state, img)


def test_migp_with_a_worker_killed_loses_and_doubles_nothing(planted, address, tmp_path,
                                                             monkeypatch):
    local = _fit(planted, group_pca="migp", migp_rows=8, n_jobs=1)
    monkeypatch.setattr(_decomposition, "reduce_token_run",
                        functools.partial(_reduce_dying_once, str(tmp_path)))
    remote = _fit(planted, group_pca="migp", migp_rows=8, scheduler=address)
    assert (tmp_path / "died").exists()
    assert remote.migp_.n_rows_seen_ == local.migp_.n_rows_seen_ == 12 * N_COMP
    np.testing.assert_array_equal(remote.components_, local.components_)


def _square_or_fail(item):
    if item == 3:
        raise ValueError("bad run")
    return item * item


class _CountingClient:
    """The client, counting the tasks submitted."""

    def __init__(self, client):
        self.client = client
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return self.client.submit(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_map_in_order_keeps_the_order_and_a_bounded_window(session):
    client = _CountingClient(session.client)
    seen = []
    for result in map_in_order(client, _square_or_fail, [5, 4, 2, 1, 0, 6, 7], window=3,
                               verbose=0):
        seen.append(result)
        assert client.submitted - len(seen) <= 3  # submitted, not yet taken
    assert seen == [25, 16, 4, 1, 0, 36, 49]
    assert client.submitted == 7


def test_map_in_order_names_the_failed_item_in_one_line(session):
    with pytest.raises(TaskFailedError, match=r"^run 3 failed on the cluster: ValueError: "
                                              r"bad run$"):
        list(map_in_order(session.client, _square_or_fail, range(6),
                          describe=lambda i: f"run {i}", verbose=0))
    with pytest.raises(ValueError, match="'window' must be a positive"):
        next(map_in_order(session.client, _square_or_fail, range(2), window=0))


def test_cli_local_cluster_writes_the_same_maps(planted, tmp_path):
    common = ["networks", str(planted), "--n-components", str(N_COMP), "--random-state", "0",
              "-q"]
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    assert main(common + ["--out", str(tmp_path / "cluster"), "--scheduler", "local:2"]) == 0
    for name in ("components.nii.gz", "networks.nii.gz"):
        local = np.asanyarray(nib.load(tmp_path / "local" / name).dataobj)
        remote = np.asanyarray(nib.load(tmp_path / "cluster" / name).dataobj)
        np.testing.assert_array_equal(remote, local)


@pytest.mark.parametrize("extra, message", [
    (["--scheduler", "host:8786"], "'--scheduler' must be 'local:N'"),
    (["--scheduler", "local:0"], "at least 1 worker"),
    (["--scheduler", "local:2", "--method", "temporal_ica"],
     "'--scheduler' needs '--method canica' or 'dictlearning'"),
])
def test_cli_bad_scheduler_is_one_line_before_any_work(planted, tmp_path, capsys, extra,
                                                       message):
    out = tmp_path / "nets"
    assert main(["networks", str(planted), "--out", str(out)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmfbn: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_library_refuses_temporal_ica_on_a_cluster(planted):
    with pytest.raises(ValueError, match="'scheduler' needs method='canica'"):
        NetworkDecomposition(method="temporal_ica", scheduler="local:2").fit(planted)
    with pytest.raises(ValueError, match="'scheduler' must be"):
        NetworkDecomposition(scheduler="nowhere").fit(planted)
