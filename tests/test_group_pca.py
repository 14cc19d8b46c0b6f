"""The streaming group PCA (MIGP) against nilearn's in-RAM group step, and its selection."""

import json
import warnings

import numpy as np
import pytest
from nilearn.decomposition import CanICA
from nilearn.decomposition._base import _mask_and_reduce
from nilearn.maskers.masker_validation import check_embedded_masker
from scipy.optimize import linear_sum_assignment

from conftest import make_loaded, planted_networks, write_synthetic_recording
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.networks import NetworkDecomposition
from llmfbn.networks._group_pca import (
    MIGP,
    cca_normalize,
    fit_group_estimator,
    nilearn_peak_bytes,
    parse_memory_size,
    reduce_token_runs,
)

N_COMP = 5


def matched_abs_r(a, b):
    """Hungarian-matched |r| of the rows of two (k, ...) arrays, (k,)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    r = np.abs(np.corrcoef(a, b)[:len(a), len(a):])
    rows, cols = linear_sum_assignment(-r)
    return r[rows, cols]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    runs, masks = planted_networks(n_runs=12)
    grid = NeuronGrid(4, 64, model="syn", signal="mlp")
    paths = write_synthetic_recording(folder, grid, runs)
    return folder, paths, masks, grid


@pytest.fixture(scope="module")
def run_rows(planted):
    """nilearn's per-run rows of the planted runs and nilearn's own stack of them."""
    _, paths, _, grid = planted
    canica = NetworkDecomposition(n_components=N_COMP, random_state=0)
    canica.mask_img_ = grid.mask_img()
    masker = check_embedded_masker(canica.make_nilearn_estimator(), masker_type="multi_nii").fit()
    blocks = list(reduce_token_runs(masker, [str(p) for p in paths], N_COMP, random_state=0))
    stack = _mask_and_reduce(masker, [str(p) for p in paths], n_components=N_COMP,
                             random_state=0)
    return blocks, stack, grid


def _canica(grid, **kwargs):
    return CanICA(mask=grid.mask_img(), n_components=N_COMP, smoothing_fwhm=None,
                  threshold=None, standardize="zscore_sample", detrend=False, n_init=3,
                  random_state=0, **kwargs)


def test_per_run_rows_are_nilearns_stack(run_rows):
    blocks, stack, _ = run_rows
    np.testing.assert_array_equal(np.concatenate(blocks), stack)


def test_migp_without_truncation_is_nilearns_normalised_stack_exactly(run_rows):
    blocks, stack, grid = run_rows
    acc = MIGP(grid.n_neurons, n_rows=len(stack))
    for rows in blocks:
        acc.add(rows)
    assert acc.n_reductions_ == 0
    expected = stack.copy(order="F")  # as nilearn divides its stack in place
    norms = np.sqrt(np.sum(expected**2, axis=1))
    expected /= norms[:, None]
    np.testing.assert_array_equal(acc.result(), expected)
    # CanICA without do_cca on normalised rows == nilearn's CanICA with do_cca, bit for bit
    ours = fit_group_estimator(_canica(grid, do_cca=False), acc.result(), grid.mask_img())
    theirs = _canica(grid)
    theirs.masker_ = check_embedded_masker(theirs, masker_type="multi_nii").fit()
    theirs._raw_fit(stack.copy(order="F"))
    np.testing.assert_array_equal(ours.components_, theirs.components_)


def test_streaming_migp_agrees_with_nilearns_group_pca(run_rows):
    blocks, stack, grid = run_rows
    from nilearn.decomposition._multi_pca import _MultiPCA

    acc = MIGP(grid.n_neurons, n_rows=2 * N_COMP)
    for rows in blocks:
        acc.add(rows)
    assert acc.n_reductions_ >= 3 and acc.n_rows_held_ <= acc.capacity_ == 4 * N_COMP
    pca = _canica(grid)
    ref = _MultiPCA._raw_fit(pca, stack.copy(order="F"))
    ours = _MultiPCA._raw_fit(_canica(grid, do_cca=False), acc.result())
    assert matched_abs_r(ref.T, ours.T).min() >= 0.95
    # and it is the leading subspace of the normalised stack
    _, _, vt = np.linalg.svd(cca_normalize(stack.astype(np.float64)), full_matrices=False)
    _, _, wt = np.linalg.svd(acc.result().astype(np.float64), full_matrices=False)
    cosines = np.linalg.svd(vt[:N_COMP] @ wt[:N_COMP].T, compute_uv=False)
    assert cosines.min() > 0.999


def test_running_matrix_does_not_grow_with_runs():
    rng = np.random.default_rng(0)
    sizes = []
    for n_blocks in (10, 200):
        acc = MIGP(300, n_rows=8)
        peak = 0
        for _ in range(n_blocks):
            acc.add(rng.standard_normal((5, 300)))
            peak = max(peak, acc.n_rows_held_)
        sizes.append((acc.capacity_, acc._matrix.nbytes, peak))
        assert acc.n_rows_seen_ == 5 * n_blocks
    assert sizes[0] == sizes[1] == (16, 16 * 300 * 8, 15)  # 8 kept + blocks of 5, at most 16


def test_migp_grows_only_for_a_block_larger_than_its_free_rows():
    acc = MIGP(50, n_rows=4, do_cca=False)
    acc.add(np.eye(8, 50))
    assert (acc.capacity_, acc.n_rows_held_, acc.n_reductions_) == (8, 8, 0)
    acc.add(np.eye(12, 50)[::-1])  # reduced to 4 rows first, then 4 + 12 do not fit 8
    assert (acc.capacity_, acc.n_rows_held_, acc.n_reductions_) == (16, 16, 1)
    with pytest.raises(ValueError, match="40 columns; the group PCA has 50 neurons"):
        acc.add(np.ones((2, 40)))
    acc.result(release=True)
    with pytest.raises(ValueError, match="released"):
        acc.add(np.ones((2, 50)))


def test_decomposition_migp_equals_nilearn_when_nothing_is_truncated(planted):
    folder = planted[0]
    ref = NetworkDecomposition(n_components=N_COMP, random_state=0, group_pca="nilearn").fit(folder)
    est = NetworkDecomposition(n_components=N_COMP, random_state=0, group_pca="migp",
                               migp_rows=6 * N_COMP).fit(folder)
    assert est.migp_.n_reductions_ == 0
    np.testing.assert_array_equal(est.components_, ref.components_)
    np.testing.assert_array_equal(est.networks_.masks, ref.networks_.masks)
    # transform works as nilearn's does
    for a, b in zip(est.transform(folder), ref.transform(folder)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_decomposition_streaming_migp_matches_nilearn(planted):
    folder, _, masks, _ = planted
    ref = NetworkDecomposition(n_components=N_COMP, random_state=0, group_pca="nilearn").fit(folder)
    est = NetworkDecomposition(n_components=N_COMP, random_state=0, group_pca="migp",
                               migp_rows=N_COMP).fit(folder)
    assert est.migp_.n_reductions_ >= 5
    assert matched_abs_r(ref.components_, est.components_).min() >= 0.95
    found = est.networks_.masks
    iou = ((found[:, None] & masks[None]).sum(axis=(2, 3))
           / np.maximum((found[:, None] | masks[None]).sum(axis=(2, 3)), 1))
    assert iou.max(axis=0).min() >= 0.9
    params = est.networks_.params
    assert params["group_pca"] == "migp" and params["migp_rows"] == N_COMP
    assert params["migp_capacity"] == 2 * N_COMP


def test_auto_picks_migp_under_a_tiny_budget_and_says_so(planted, tmp_path):
    folder = planted[0]
    est = NetworkDecomposition(n_components=N_COMP, random_state=0,
                               memory_budget="1kB").fit(folder)
    assert est.group_pca_ == "migp"
    assert est.networks_.params["memory_budget"] == 1000
    assert est.networks_.params["group_pca_bytes"] > 1000
    saved = json.loads((est.save(tmp_path / "net") / "networks.json").read_text())
    assert saved["params"]["group_pca"] == "migp"
    roomy = NetworkDecomposition(n_components=N_COMP, random_state=0,
                                 memory_budget=10**12).fit(folder)
    assert roomy.group_pca_ == "nilearn" and roomy.networks_.params["group_pca"] == "nilearn"


def test_default_budget_comes_from_the_machine(planted, monkeypatch):
    from llmfbn.networks import _decomposition

    monkeypatch.setattr(_decomposition, "default_memory_budget", lambda: 123)
    est = NetworkDecomposition(n_components=N_COMP, random_state=0).fit(planted[0])
    assert est.group_pca_ == "migp" and est.networks_.params["memory_budget"] == 123


def test_nilearn_estimate_scales_with_the_stack():
    small = nilearn_peak_bytes(100 * 20, 10_000, 0)
    assert nilearn_peak_bytes(1000 * 20, 10_000, 0) == pytest.approx(10 * small, rel=1e-6)
    assert small >= 2 * 100 * 20 * 10_000 * 4  # the float32 stack and its do_cca square


def test_dictlearning_keeps_nilearns_stack(planted):
    folder = planted[0]
    with pytest.raises(ValueError, match="'group_pca'='migp' needs method='canica'"):
        NetworkDecomposition(method="dictlearning", group_pca="migp").fit(folder)
    with pytest.warns(UserWarning, match="no streaming group step"):
        est = NetworkDecomposition(method="dictlearning", n_components=N_COMP, random_state=0,
                                   memory_budget=1000).fit(folder)
    assert est.group_pca_ == "nilearn"


@pytest.mark.parametrize("value, expected", [
    ("8GB", 8 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30), ("1.5G", int(1.5 * 2**30)),
    ("1024", 1024), (4096, 4096)])
def test_parse_memory_size(value, expected):
    assert parse_memory_size(value) == expected


@pytest.mark.parametrize("value, error", [
    ("8 parsecs", ValueError), ("", ValueError), ("0MB", ValueError), (-5, ValueError),
    (True, TypeError), ([8], TypeError)])
def test_parse_memory_size_errors_name_the_parameter(value, error):
    with pytest.raises(error, match="'memory_budget' must be"):
        parse_memory_size(value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(group_pca="stream"), "'group_pca' must be one of"),
    (dict(memory_budget="lots"), "'memory_budget' must be a size"),
    (dict(migp_rows=0), "'migp_rows' must be >= 1"),
])
def test_bad_group_pca_parameters(planted, kwargs, match):
    with pytest.raises(ValueError, match=match):
        NetworkDecomposition(**kwargs).fit(planted[0])


def test_migp_on_a_recording_of_a_tiny_model_matches_nilearn(tmp_path):
    """A real recording, exact while nothing is truncated.

    The tiny random model has 72 neurons and no structure (a flat spectrum), so
    its streamed ICA maps are not compared: the planted tests above do that.
    """
    import llmfbn
    from conftest import WORDS

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=20 + k)) for k in range(16)]
    rec = llmfbn.record(make_loaded("llama"), texts, tmp_path / "rec", verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # too few tokens for thresholds etc.
        ref = NetworkDecomposition(n_components=4, random_state=0,
                                   group_pca="nilearn").fit(rec.out_dir)
        same = NetworkDecomposition(n_components=4, random_state=0, group_pca="migp",
                                    migp_rows=32).fit(rec.out_dir)
    assert same.migp_.n_rows_seen_ == 64 and same.migp_.n_reductions_ == 0
    np.testing.assert_array_equal(same.components_, ref.components_)
    np.testing.assert_array_equal(same.networks_.masks, ref.networks_.masks)


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("llmfbn: warning")]
    assert len(lines) == 1 and lines[0].startswith("llmfbn: error: "), err
    return lines[0]


def test_cli_group_pca_migp_writes_its_choice(planted, tmp_path, capsys):
    out = tmp_path / "net"
    assert main(["networks", str(planted[0]), "--out", str(out), "--n-components", "5",
                 "--group-pca", "migp", "--n-jobs", "2", "-q"]) == 0
    params = json.loads((out / "networks.json").read_text())["params"]
    assert params["group_pca"] == "migp" and params["migp_rows"] == 20
    out = tmp_path / "auto"
    assert main(["networks", str(planted[0]), "--out", str(out), "--n-components", "5",
                 "--memory-budget", "2kB", "-q"]) == 0
    params = json.loads((out / "networks.json").read_text())["params"]
    assert params["group_pca"] == "migp" and params["memory_budget"] == 2000


@pytest.mark.parametrize("args, message", [
    (["--memory-budget", "lots"], "'--memory-budget' must be a size such as '8GB'"),
    (["--memory-budget", "0GB"], "'--memory-budget' must be a positive size"),
    (["--n-jobs", "0"], "'--n-jobs' must be a positive number"),
    (["--group-pca", "migp", "--method", "dictlearning"],
     "'--group-pca migp' needs '--method canica'"),
])
def test_cli_group_pca_errors_name_the_flag(tmp_path, capsys, args, message):
    out = tmp_path / "net"
    assert main(["networks", str(tmp_path / "no-recording"), "--out", str(out), *args]) == 2
    assert message in _error_line(capsys)
    assert not out.exists()


def test_cli_n_jobs_defaults_to_every_core(planted, tmp_path, monkeypatch):
    from llmfbn.cli import _networks
    from llmfbn.networks import _decomposition

    seen = {}
    fit = _decomposition.NetworkDecomposition.fit

    def spy(self, *args, **kwargs):
        seen["n_jobs"] = self.n_jobs
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(_networks, "available_cores", lambda: 3)
    monkeypatch.setattr(_decomposition.NetworkDecomposition, "fit", spy)
    assert main(["networks", str(planted[0]), "--out", str(tmp_path / "n"), "--n-components",
                 "5", "-q"]) == 0
    assert seen["n_jobs"] == 3


@pytest.fixture(scope="module")
def tiny_recordings(tmp_path_factory):
    """The same texts of a tiny model recorded in full and reduced to 6 components per run."""
    import llmfbn
    from conftest import WORDS

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=20 + k)) for k in range(16)]
    loaded = make_loaded("llama")
    full = llmfbn.record(loaded, texts, root / "full", verbose=0)
    reduced = llmfbn.record(loaded, texts, root / "reduced", verbose=0, reduce=6)
    return full, reduced


def test_reduced_runs_feed_nilearns_per_run_rows(tiny_recordings):
    full, reduced = tiny_recordings
    est = NetworkDecomposition(n_components=6, random_state=0)
    est.mask_img_ = full.grid.mask_img()
    masker = check_embedded_masker(est.make_nilearn_estimator(), masker_type="multi_nii").fit()
    expected = reduce_token_runs(masker, [str(p) for p in full.bold_files], 6, random_state=0)
    for ours, theirs in zip(est._reduced_rows(reduced.bold_files), expected):
        np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-3)  # up to sign


def test_networks_of_a_reduced_recording(tiny_recordings, tmp_path, capsys):
    full, reduced = tiny_recordings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = NetworkDecomposition(n_components=4, random_state=0).fit(full.out_dir)
        stack = NetworkDecomposition(n_components=4, random_state=0,
                                     group_pca="nilearn").fit(reduced.out_dir)
        streamed = NetworkDecomposition(n_components=4, random_state=0, group_pca="migp",
                                        migp_rows=32).fit(reduced.out_dir)
    assert stack.reduced_ and stack.n_timepoints_ == ref.n_timepoints_
    assert stack.networks_.params["reduce"] == 6 and ref.networks_.params["reduce"] is None
    np.testing.assert_array_equal(streamed.components_, stack.components_)
    with pytest.raises(ValueError, match="transform .* needs every token"):
        stack.transform(reduced.out_dir)
    with pytest.raises(ValueError, match="method='temporal_ica' needs every token"):
        NetworkDecomposition(method="temporal_ica").fit(reduced.out_dir)
    with pytest.raises(ValueError, match="reduced to 6 components but n_components=8 needs 8"):
        NetworkDecomposition(n_components=8).fit(reduced.out_dir)
    with pytest.raises(ValueError, match="never mixed"):
        NetworkDecomposition(n_components=4).fit(full.bold_files[:2] + reduced.bold_files[2:])
    # the CLI writes the networks and skips the top tokens with a note
    out = tmp_path / "net"
    assert main(["networks", str(reduced.out_dir), "--out", str(out), "--n-components", "4",
                 "--group-pca", "migp"]) == 0
    captured = capsys.readouterr()
    assert "top tokens skipped" in captured.out + captured.err
    saved = json.loads((out / "networks.json").read_text())
    assert saved["params"]["reduce"] == 6
    assert all("top_tokens" not in n for n in saved["networks"])
