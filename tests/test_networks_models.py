"""Several models' recordings as the subjects of one group decomposition (issue 14).

Two synthetic models on one grid: model A carries five planted networks, model B
the same first four and, on the fifth network's neurons, independent noise. One
group ICA over both finds all five; dual regression says the fifth is expressed
by A only.
"""

import json

import nibabel as nib
import numpy as np
import pytest

from conftest import planted_networks, token_events
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    MODELS_COLUMNS,
    FormatError,
    RecordingLayout,
    open_folder,
    read_networks_folder,
    write_networks_folder,
)
from llmfbn.networks import (
    EXPRESSED_MIN_R,
    FunctionalNetworks,
    NetworkDecomposition,
    find_group_runs,
    model_expression,
    parse_memory_size,
)
from llmfbn.plotting import plot_model_expression
from llmfbn.reports import make_report

N_RUNS, N_TOKENS = 6, 100
ABSENT = 4  # the planted network model B lacks
SINGLE_FILES = ["components.nii.gz", "grid.json", "llmfbn.json", "networks.json",
                "networks.nii.gz", "params.json"]


def _grid(model, **kwargs):
    return NeuronGrid(4, 64, model=model, signal=kwargs.pop("signal", "mlp"),
                      weights_hash=f"hash-{model}", **kwargs)


def _token_runs(masks, present, seed, n_runs=N_RUNS):
    """Runs mixed from sparse sources on ``masks``; networks not ``present`` get no source."""
    rng = np.random.default_rng(seed)
    flat = masks.reshape(len(masks), -1)
    loadings = flat * rng.uniform(1.0, 2.0, size=flat.shape)
    loadings[~present] = 0
    runs = []
    for _ in range(n_runs):
        sources = rng.laplace(size=(N_TOKENS, len(masks))) ** 3
        data = sources @ loadings + 0.3 * rng.standard_normal((N_TOKENS, flat.shape[1]))
        runs.append(data.reshape((N_TOKENS,) + masks.shape[1:]).astype(np.float32))
    return runs


def _reduce(run, k):
    """What ``record --reduce k`` writes for a run: S Vt of the z-scored run, k rows."""
    data = run.reshape(len(run), -1).astype(np.float64)
    std = data.std(axis=0, ddof=1)
    std[std < np.finfo(np.float64).eps] = 1
    _, s, vt = np.linalg.svd((data - data.mean(axis=0)) / std, full_matrices=False)
    return (s[:k, None] * vt[:k]).reshape((k,) + run.shape[1:]).astype(np.float32)


def _write(folder, grid, runs, reduce=None):
    """A recording folder as ``llmfbn record`` writes it (description with its reduction)."""
    reduction = None if reduce is None else {"method": "frequent_directions_pca",
                                             "n_components": reduce, "sketch_rows": 100}
    identity = {"model": grid.model, "weights_hash": grid.weights_hash, "signal": grid.signal,
                "architecture": "synthetic", "reduction": reduction}
    layout = RecordingLayout(folder, "syn", "syn")
    with open_folder(folder, "recording"):
        layout.prepare(grid, identity)
        for n, data in enumerate(runs, start=1):
            sidecar = {"NumberOfTokens": len(data)}
            if reduce is None:
                layout.write_run(n, grid.to_img(data), token_events(len(data)), sidecar)
            else:
                sidecar["Reduction"] = dict(reduction, n_tokens=len(data))
                layout.write_run(n, grid.to_img(_reduce(data, reduce)), None, sidecar)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    _, masks = planted_networks()
    everything = np.ones(len(masks), dtype=bool)
    lacking = everything.copy()
    lacking[ABSENT] = False
    runs_a, runs_b = _token_runs(masks, everything, 1), _token_runs(masks, lacking, 2)
    return {"root": root, "masks": masks,
            "a": _write(root / "rec-a", _grid("model-a"), runs_a),
            "b": _write(root / "rec-b", _grid("model-b"), runs_b),
            "a_reduced": _write(root / "red-a", _grid("model-a"), runs_a, reduce=20),
            "b_reduced": _write(root / "red-b", _grid("model-b"), runs_b, reduce=20)}


@pytest.fixture(scope="module")
def group_cli(models):
    """`llmfbn networks REC_A REC_B --out NET`, run once."""
    out = models["root"] / "net-group"
    code = main(["networks", str(models["a"]), str(models["b"]), "--out", str(out),
                 "--n-components", "5", "--random-state", "0", "--memory-budget", "4GB", "-q"])
    assert code == 0
    return out


def _match(found, planted):
    """For each planted network, the index of the found network of largest IoU, and it."""
    inter = (found[:, None] & planted[None]).sum(axis=(2, 3))
    union = (found[:, None] | planted[None]).sum(axis=(2, 3))
    iou = inter / np.maximum(union, 1)
    return iou.argmax(axis=0), iou.max(axis=0)


def _check_planted_pattern(expressed, spatial_r, masks_found, planted):
    index, iou = _match(masks_found, planted)
    assert iou.min() >= 0.9  # the group fit finds every planted network, the fifth too
    absent = index[ABSENT]
    assert expressed[0].all()  # A expresses all five
    assert not expressed[1, absent] and spatial_r[1, absent] < 0.25
    others = np.delete(np.arange(len(planted)), ABSENT)
    assert expressed[1, index[others]].all()


# -- which networks each model expresses ---------------------------------------------------


def test_planted_network_is_expressed_only_where_it_is(group_cli, models):
    folder = read_networks_folder(group_cli)
    table = folder.models
    assert list(table.columns) == MODELS_COLUMNS and len(table) == 2 * 5
    expressed = table["expressed"].to_numpy().reshape(2, 5)
    spatial_r = table["spatial_r"].to_numpy().reshape(2, 5)
    _check_planted_pattern(expressed, spatial_r, folder.masks, models["masks"])
    absent = _match(folder.masks, models["masks"])[0][ABSENT]
    amplitude = table["amplitude"].to_numpy().reshape(2, 5)
    assert amplitude[0, absent] > 2 * amplitude[1, absent]
    assert list(table["model"].unique()) == ["model-a", "model-b"]
    assert (table["expressed"] == (table["spatial_r"] >= EXPRESSED_MIN_R)).all()


def test_stage_one_is_nilearn_maps_masker_on_z_scored_runs(group_cli, models, tmp_path):
    """amplitude = RMS over tokens of NiftiMapsMasker's signals, averaged over the runs."""
    from nilearn.maskers import NiftiMapsMasker

    networks = FunctionalNetworks.load(group_cli)
    expression = model_expression(networks, [models["a"], models["b"]])
    _, grid, group = find_group_runs([models["a"], models["b"]])
    masker = NiftiMapsMasker(maps_img=networks.maps_img(), mask_img=grid.mask_img(),
                             standardize=None).fit()
    for i, recording in enumerate(group):
        rms = []
        for n, path in enumerate(recording.runs):
            data = grid.from_img(path).astype(np.float64)
            z = (data - data.mean(axis=0)) / data.std(axis=0, ddof=1)
            nib.save(grid.to_img(z), tmp_path / f"z{i}-{n}.nii")
            series = masker.transform(str(tmp_path / f"z{i}-{n}.nii"))
            rms.append(np.sqrt((series ** 2).mean(axis=0)))
        np.testing.assert_allclose(expression.amplitude[i], np.mean(rms, axis=0), rtol=1e-4)
    assert expression.maps.shape == (2, 5, 4, 64)


@pytest.mark.parametrize("method, group_pca, sources", [
    ("temporal_ica", "auto", ("a", "b")),
    ("dictlearning", "nilearn", ("a", "b")),
    ("canica", "migp", ("a", "b")),
    ("canica", "nilearn", ("a_reduced", "b_reduced")),  # dual regression on their K rows
])
def test_every_method_group_pca_and_reduced_recordings(models, method, group_pca, sources):
    est = NetworkDecomposition(method=method, n_components=5, n_init=3, group_pca=group_pca,
                               random_state=0, memory_budget="4GB")
    est.fit([models[s] for s in sources])
    assert est.reduced_ == sources[0].endswith("reduced")
    expression = est.expression_
    _check_planted_pattern(expression.expressed, expression.spatial_r, est.networks_.masks,
                           models["masks"])
    assert [len(r.runs) for r in est.recordings_] == [N_RUNS, N_RUNS]


def test_group_on_a_cluster_equals_the_local_fit(models):
    pytest.importorskip("distributed")
    params = dict(n_components=5, n_init=3, random_state=0, memory_budget="4GB")
    recordings = [models["a"], models["b"]]
    local = NetworkDecomposition(n_jobs=2, **params).fit(recordings)
    remote = NetworkDecomposition(scheduler="local:2", **params).fit(recordings)
    np.testing.assert_array_equal(remote.components_, local.components_)
    assert remote.expression_.to_frame().equals(local.expression_.to_frame())


def test_task_selects_runs_in_every_recording(models):
    paths, grid, group = find_group_runs([models["a"], models["b"]], task="syn")
    assert len(paths) == 2 * N_RUNS and grid.model == "model-a"
    assert [g.model for g in group] == ["model-a", "model-b"]
    with pytest.raises(ValueError, match=r"rec-a holds no finished runs of task 'other'"):
        find_group_runs([models["a"], models["b"]], task="other")


# -- the networks folder -----------------------------------------------------------------


def test_group_folder_records_every_recording_and_top_tokens_of_all(group_cli, models):
    params = json.loads((group_cli / "params.json").read_text())
    assert params["recordings"] == [
        {"path": str(models["a"]), "model": "model-a", "weights_hash": "hash-model-a",
         "n_runs": N_RUNS},
        {"path": str(models["b"]), "model": "model-b", "weights_hash": "hash-model-b",
         "n_runs": N_RUNS}]
    assert len(params["runs"]) == 2 * N_RUNS
    folder = read_networks_folder(group_cli)
    assert folder.recordings == params["recordings"] and folder.grid.model == "model-a"
    assert folder.params["n_recordings"] == 2
    assert folder.params["models"] == ["model-a", "model-b"]
    assert folder.params["expressed_min_r"] == EXPRESSED_MIN_R
    rows = [row for network in folder.top_tokens for row in network]
    assert {row["recording"] for row in rows} == {str(models["a"]), str(models["b"])}
    assert sorted(p.name for p in group_cli.iterdir()) == sorted(SINGLE_FILES + ["models.csv"])


def test_one_recording_output_is_unchanged(models, tmp_path):
    """One folder (CLI, library, a list of one): the same bytes, and no group files."""
    common = ["--n-components", "5", "--random-state", "0", "--memory-budget", "4GB", "-q"]
    assert main(["networks", str(models["a"]), "--out", str(tmp_path / "cli")] + common) == 0
    est = NetworkDecomposition(n_components=5, random_state=0,
                               memory_budget=parse_memory_size("4GB", "--memory-budget"),
                               n_jobs=json.loads((tmp_path / "cli" / "params.json")
                                                 .read_text())["params"]["n_jobs"])
    est.fit([models["a"]]).save(tmp_path / "lib")
    for name in SINGLE_FILES:
        if name != "networks.json":  # the CLI adds top tokens
            assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name) \
                .read_bytes(), name
    assert est.expression_ is None and len(est.recordings_) == 1
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == SINGLE_FILES
    params = json.loads((tmp_path / "cli" / "params.json").read_text())
    assert set(params) == {"format_version", "estimator", "params", "runs"}
    document = json.loads((tmp_path / "cli" / "networks.json").read_text())
    assert not {"n_recordings", "models"} & set(document["params"])
    assert all("recording" not in row for row in document["networks"][0]["top_tokens"])
    folder = read_networks_folder(tmp_path / "cli")  # an old single-recording folder
    assert folder.recordings is None and folder.models is None


def test_models_csv_is_checked_on_read(group_cli, tmp_path):
    import shutil

    def damaged(edit):
        copy = tmp_path / f"net{len(list(tmp_path.iterdir()))}"
        shutil.copytree(group_cli, copy)
        edit(copy)
        return copy

    def rewrite(old, new, name="models.csv"):
        return lambda f: (f / name).write_text((f / name).read_text().replace(old, new, 1))

    cases = [
        (lambda f: (f / "models.csv").unlink(), "models.csv is missing"),
        (rewrite("spatial_r,", "r,"), "its header is"),
        (rewrite(",true\n", ",maybe\n"), "'expressed' must be a bool"),
        (rewrite("model-b,", "model-c,"), "the folder is damaged or mixed"),
        (rewrite('"n_runs": 6', '"n_runs": 5', "params.json"), "its recordings hold 11 runs"),
    ]
    for edit, message in cases:
        with pytest.raises(FormatError, match=message):
            read_networks_folder(damaged(edit))
    single = damaged(lambda f: None)
    params = json.loads((single / "params.json").read_text())
    del params["recordings"]
    (single / "params.json").write_text(json.dumps(params))
    with pytest.raises(FormatError, match="lists no recordings"):
        read_networks_folder(single)


def test_models_and_recordings_go_together_and_nothing_is_written(group_cli, tmp_path):
    folder = read_networks_folder(group_cli)
    nets = FunctionalNetworks.load(group_cli)
    with pytest.raises(ValueError, match="'recordings' and 'models' must be given together"):
        write_networks_folder(tmp_path / "out", nets.maps, nets.masks, nets.grid,
                              models=folder.models)
    bad = folder.models.copy()
    bad.loc[3, "spatial_r"] = 1.5
    with pytest.raises(ValueError, match=r"'spatial_r' must be a finite number in \[-1, 1\]"):
        write_networks_folder(tmp_path / "out", nets.maps, nets.masks, nets.grid,
                              recordings=folder.recordings, models=bad)
    assert not (tmp_path / "out").exists()


# -- refused before any image is read, nothing written -------------------------------------


@pytest.fixture(scope="module")
def odd_recordings(models):
    """Recordings that cannot join model A's group, one per reason."""
    root = models["root"] / "odd"
    root.mkdir()
    rng = np.random.default_rng(0)

    def runs(width=64, n=2):
        return [rng.standard_normal((20, 4, width)).astype(np.float32) for _ in range(n)]

    units = [list(range(64))] * 3 + [list(range(0, 64, 2))]
    return {
        "width": (_write(root / "width", NeuronGrid(4, 60, model="m", signal="mlp"),
                         runs(60)), "60 vs 64 units per layer"),
        "layers": (_write(root / "layers", NeuronGrid(4, 64, layers=[0, 1, 2, 5], model="m",
                                                      signal="mlp"), runs()),
                   r"layers \[0, 1, 2, 5\] vs 0-3"),
        "signal": (_write(root / "signal", _grid("m", signal="residual"), runs()),
                   "records signal 'residual' but .* records 'mlp'"),
        "pruned": (_write(root / "pruned", _grid("m", units=units), runs()),
                   "different neurons present"),
        "reduced": (_write(root / "reduced", _grid("m"), runs(), reduce=3),
                    r"is reduced \(--reduce 3\) but .*rec-a keeps every token"),
    }


@pytest.mark.parametrize("reason", ["width", "layers", "signal", "pruned", "reduced",
                                    "duplicate", "duplicate-spelled"])
def test_mismatched_or_duplicate_recordings_are_refused(reason, models, odd_recordings,
                                                        tmp_path, capsys, monkeypatch):
    first = models["a"]
    if reason == "duplicate":
        second, message = first, "rec-a: the recording is given twice"
    elif reason == "duplicate-spelled":
        second = first.parent / "odd" / ".." / first.name
        message = "the recording is given twice"
    else:
        second, message = odd_recordings[reason]

    def no_image(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(nib, "load", no_image)
    out = tmp_path / "net"
    with pytest.raises(ValueError, match=message):
        NetworkDecomposition(n_components=5).fit([first, second])
    assert main(["networks", str(first), str(second), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("llmfbn: error:")
    assert str(second.name) in err or "given twice" in err
    assert not out.exists() and sorted(tmp_path.iterdir()) == []


def test_a_list_mixing_folders_and_runs_is_refused(models):
    run = next((models["a"] / "sub-syn" / "func").glob("*_bold.nii*"))
    with pytest.raises(ValueError, match="recording folders or run images, not both"):
        NetworkDecomposition(n_components=5).fit([models["b"], run])


# -- the report ----------------------------------------------------------------------------


def test_report_shows_the_model_by_network_table_and_heatmap(group_cli, tmp_path):
    out = make_report([group_cli], tmp_path / "r.html", verbose=0)
    text = out.read_text()
    assert "Which networks each model expresses" in text
    assert text.count("<th>net 4</th>") == 1
    for model in ("model-a", "model-b"):
        assert f"<td>{model}</td>" in text
    assert "5 of 5" in text and "4 of 5" in text
    assert 'alt="model expression"' in text and 'alt="model amplitude"' in text
    assert "[rec-a]" in text  # top tokens name their recording


def test_plot_model_expression_draws_the_table(group_cli):
    import matplotlib

    matplotlib.use("Agg")
    table = read_networks_folder(group_cli).models
    axes = plot_model_expression(table)
    values = axes.images[0].get_array()
    np.testing.assert_allclose(values, table["spatial_r"].to_numpy().reshape(2, 5))
    assert len(axes.patches) == int(table["expressed"].sum())
    assert [t.get_text() for t in axes.get_yticklabels()] == ["model-a", "model-b"]
    with pytest.raises(ValueError, match="'values' must be one of"):
        plot_model_expression(table, values="r")
    with pytest.raises(ValueError, match="It lacks"):
        plot_model_expression(table.drop(columns="spatial_r"))
