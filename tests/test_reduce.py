"""Reduced recordings (``llmfbn record --reduce K``): the streaming per-run reduction,
its files, and the commands that refuse it."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nilearn.decomposition._base import _mask_and_reduce_single
from nilearn.maskers import NiftiMasker

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    ResumeMismatchError,
    check_run,
    find_runs,
    read_sidecar,
    read_summaries,
    run_reduction,
    run_sibling,
)
from llmfbn.recording import record
from llmfbn.recording._reduce import RunReducer, default_sketch_rows

TEXTS = ["the cat sat on the mat .", "a dog ran far away",
         "the sun is big and the moon is small", "one two three",
         "it was a very good film , not a bad film !", "red house"] * 4


def exact_reduction(data, k):
    """nilearn's per-run reduction in float64 numpy: z-score (ddof=1), top-k S * Vt."""
    z = data.astype(np.float64)
    z = z - z.mean(axis=0)
    std = z.std(axis=0, ddof=1)
    std[std < np.finfo(np.float64).eps] = 1.0
    z /= std
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    out = s[:k, None] * vt[:k]
    peak = np.abs(out).argmax(axis=1)
    return out * np.sign(out[np.arange(k), peak])[:, None]


def low_rank_data(n_tokens, n_features, rank=12, seed=0):
    """Tokens with a decaying spectrum, per-neuron offsets and scales, one constant neuron."""
    rng = np.random.default_rng(seed)
    sources = rng.standard_normal((n_tokens, rank)) * np.geomspace(6, 1, rank)
    data = sources @ rng.standard_normal((rank, n_features))
    data += 0.5 * rng.standard_normal((n_tokens, n_features))
    data = data * rng.uniform(0.1, 10, n_features) + rng.uniform(-5, 5, n_features)
    data[:, 3] = 2.5
    return data.astype(np.float32)


def reduce_in_blocks(data, k, block=37, **kwargs):
    reducer = RunReducer(data.shape[1], k, **kwargs)
    for start in range(0, len(data), block):
        reducer.update(torch.from_numpy(data[start:start + block]))
    return reducer, *reducer.finalize()


def matched_abs_r(a, b):
    return np.array([abs(np.corrcoef(x, y)[0, 1]) for x, y in zip(a, b)])


# -- the reducer ---------------------------------------------------------------

def test_short_run_is_exact_as_nilearn_reduces_it():
    grid = NeuronGrid(4, 40)
    data = low_rank_data(150, grid.n_neurons)
    img = grid.to_img(data.reshape(150, 4, 40))
    masker = NiftiMasker(mask_img=grid.mask_img(), standardize="zscore_sample",
                         detrend=False).fit()
    expected = _mask_and_reduce_single(masker, img, None, n_samples=6)  # (6, n_voxels)

    reducer, ours, info = reduce_in_blocks(data, 6, sketch_rows=100)
    assert info == {"n_tokens": 150, "n_shrinks": 0, "exact": True, "shrinkage": 0.0}
    ours_img = grid.to_img(ours.reshape(6, 4, 40))
    ours_masked = NiftiMasker(mask_img=grid.mask_img(), standardize=None).fit().transform(
        ours_img)
    np.testing.assert_allclose(ours_masked, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    # and the same numbers, in neuron order, as a float64 SVD (sign included)
    np.testing.assert_allclose(ours, exact_reduction(data, 6), rtol=0, atol=1e-4)


def test_exact_whatever_the_blocks():
    data = low_rank_data(90, 50, seed=1)
    _, one, _ = reduce_in_blocks(data, 4, block=90, sketch_rows=45)
    _, many, _ = reduce_in_blocks(data, 4, block=7, sketch_rows=45)
    np.testing.assert_allclose(one, many, atol=1e-4)
    np.testing.assert_allclose(one, exact_reduction(data, 4), atol=1e-4)


def test_long_run_is_approximated_closely():
    data = low_rank_data(3000, 200, seed=2)
    reducer, ours, info = reduce_in_blocks(data, 5, block=64, sketch_rows=40)
    assert info["n_shrinks"] > 10 and not info["exact"] and 0 < info["shrinkage"] < 0.5
    exact = exact_reduction(data, 5)
    assert matched_abs_r(ours, exact).min() > 0.99
    ratio = np.linalg.norm(ours, axis=1) / np.linalg.norm(exact, axis=1)
    assert np.all((ratio > 0.97) & (ratio < 1.0 + 1e-6))  # a sketch only loses variance


def test_memory_does_not_grow_with_tokens():
    data = low_rank_data(4000, 64, seed=3)
    reducer = RunReducer(64, 3, sketch_rows=20)
    sizes = []
    for start in range(0, 4000, 100):
        reducer.update(data[start:start + 100])
        sizes.append(reducer.buffer_bytes)
    assert reducer.n_tokens == 4000 and reducer.n_shrinks > 50
    assert len(set(sizes)) == 1
    assert sizes[0] == 40 * 64 * 4 + 2 * 64 * 4 + 2 * 64 * 8  # buffer, shift and scale, sums
    assert reducer.capacity == 40


def test_reducer_refuses_too_few_tokens_and_bad_settings():
    reducer = RunReducer(10, 5, sketch_rows=8)
    reducer.update(np.ones((4, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="n_components=5 needs at least 5 tokens. 4 were given"):
        reducer.finalize()
    with pytest.raises(ValueError, match="'sketch_rows' must be >= n_components"):
        RunReducer(10, 5, sketch_rows=4)
    with pytest.raises(ValueError, match="must have 10 values per token"):
        RunReducer(10, 2).update(np.ones((3, 11)))
    assert default_sketch_rows(20) == 200 and default_sketch_rows(3) == 100


# -- record(reduce=K) ----------------------------------------------------------

@pytest.fixture
def recordings(tmp_path):
    loaded = make_loaded("llama")
    full = record(loaded, TEXTS, tmp_path / "full", texts_per_run=6, verbose=0)
    reduced = record(loaded, TEXTS, tmp_path / "reduced", texts_per_run=6, reduce=3,
                     verbose=0)
    return loaded, full, reduced


def test_reduced_run_is_nilearn_reduction_of_the_full_run(recordings):
    _, full, reduced = recordings
    assert len(reduced.bold_files) == len(full.bold_files) == 4
    masker = NiftiMasker(mask_img=full.mask_file, standardize="zscore_sample",
                         detrend=False).fit()
    plain = NiftiMasker(mask_img=full.mask_file, standardize=None).fit()
    for full_bold, reduced_bold in zip(full.bold_files, reduced.bold_files):
        expected = _mask_and_reduce_single(masker, str(full_bold), None, n_samples=3)
        ours = plain.transform(str(reduced_bold))
        np.testing.assert_allclose(ours, expected, rtol=0,
                                   atol=1e-4 * np.abs(expected).max())


def test_reduced_folder_files(recordings):
    _, full, reduced = recordings
    grid = reduced.grid
    bold = reduced.bold_files[0]
    img = nib.load(bold)
    assert img.shape == tuple(grid.shape) + (3,) and img.get_data_dtype() == np.float32
    from nilearn.image import load_img

    assert load_img(str(bold)).shape == img.shape
    assert not run_sibling(bold, "events.tsv").exists()
    sidecar = read_sidecar(bold)
    assert "RepetitionTime" not in sidecar and sidecar["ModelDtype"] == "float32"
    n_tokens = read_sidecar(full.bold_files[0])["NumberOfTokens"]
    reduction = run_reduction(bold)
    assert {k: reduction[k] for k in ("n_components", "n_tokens", "method", "sketch_rows")} \
        == {"n_components": 3, "n_tokens": n_tokens, "method": "frequent_directions_pca",
            "sketch_rows": 100}
    assert reduction["exact"] is True and reduction["standardize"] == "zscore_sample"
    assert run_reduction(full.bold_files[0]) is None
    assert check_run(bold, grid)["Reduction"]["n_components"] == 3
    paths, found = find_runs(reduced.out_dir)
    assert paths == reduced.bold_files and found == grid
    (summary,) = read_summaries(reduced.out_dir)
    assert summary["reduce"] == 3 and summary["sketch_rows"] == 100
    assert "reduce" in summary["definitions"]


def test_long_multi_piece_runs_are_sketched_piece_by_piece(tmp_path):
    """A run of many pieces goes through the sketch as its pieces arrive, shortest first."""
    from llmfbn.io import read_events

    loaded = make_loaded("llama")
    out = record(loaded, TEXTS, tmp_path / "r", texts_per_run=24, reduce=2, sketch_rows=8,
                 batch_size=4, verbose=0)
    full = record(loaded, TEXTS, tmp_path / "f", texts_per_run=24, verbose=0)
    (reduced_bold,), (full_bold,) = out.bold_files, full.bold_files
    reduction = run_reduction(reduced_bold)
    data = full.grid.from_img(full_bold).reshape(-1, full.grid.n_neurons)
    assert reduction["n_tokens"] == len(data) > 4 * 8 and reduction["n_shrinks"] > 0
    assert reduction["exact"] is False and reduction["shrinkage"] > 0
    text_of_token = read_events(full_bold)["text_index"].to_numpy()
    pieces = [data[text_of_token == t] for t in dict.fromkeys(text_of_token)]
    assert len(pieces) == len(TEXTS)
    reducer = RunReducer(full.grid.n_neurons, 2, sketch_rows=8)
    for piece in sorted(pieces, key=len):  # record's order: by length within the run
        reducer.update(piece)
    expected, info = reducer.finalize()
    assert info["n_shrinks"] == reduction["n_shrinks"]
    ours = out.grid.from_img(reduced_bold).reshape(2, -1)
    np.testing.assert_allclose(ours, expected, atol=1e-3 * np.abs(expected).max())


def test_resume_never_mixes_reductions(recordings, tmp_path):
    loaded, full, reduced = recordings
    again = record(loaded, TEXTS, reduced.out_dir, texts_per_run=6, reduce=3, verbose=0)
    assert again.n_runs_skipped == 4 and again.n_runs_written == 0
    with pytest.raises(ResumeMismatchError, match="keeps every token"):
        record(loaded, TEXTS, reduced.out_dir, texts_per_run=6, verbose=0)
    with pytest.raises(ResumeMismatchError, match="reduce=4"):
        record(loaded, TEXTS, reduced.out_dir, texts_per_run=6, reduce=4, verbose=0)
    with pytest.raises(ResumeMismatchError, match="sketch_rows=50"):
        record(loaded, TEXTS, reduced.out_dir, texts_per_run=6, reduce=3, sketch_rows=50,
               verbose=0)
    with pytest.raises(ResumeMismatchError, match="reduces each run"):
        record(loaded, TEXTS, full.out_dir, texts_per_run=6, reduce=3, verbose=0)


def test_find_runs_never_mixes_token_and_reduced_runs(recordings):
    _, full, reduced = recordings
    with pytest.raises(ValueError, match="runs of different kinds are never mixed"):
        find_runs([full.bold_files[0], reduced.bold_files[0]])


def test_reduce_errors_before_anything_is_written(tmp_path):
    loaded = make_loaded("llama")
    out = tmp_path / "r"
    with pytest.raises(ValueError, match=r"'reduce' must be at most the tokens of every run: "
                                         r"reduce=4 was provided, but run 6 \(texts \[5\]\) "
                                         r"has 2 tokens"):
        record(loaded, TEXTS, out, reduce=4, verbose=0)
    assert not out.exists()
    with pytest.raises(ValueError, match="'reduce' must be >= 1. 0 was provided"):
        record(loaded, TEXTS, out, reduce=0, verbose=0)
    with pytest.raises(ValueError, match="'sketch_rows' must be >= 'reduce' \\(3\\)"):
        record(loaded, TEXTS, out, reduce=3, sketch_rows=2, verbose=0)
    with pytest.raises(ValueError, match="'sketch_rows' applies only with 'reduce'"):
        record(loaded, TEXTS, out, sketch_rows=20, verbose=0)
    with pytest.raises(ValueError, match="'model_dtype' apply when 'model' is a name"):
        record(loaded, TEXTS, out, model_dtype="bfloat16", verbose=0)
    with pytest.raises(ValueError, match="'model_dtype' must be one of"):
        record(loaded, TEXTS, out, model_dtype="int8", verbose=0)
    assert not out.exists()


# -- commands that need tokens refuse ------------------------------------------

MESSAGE = "is a reduced recording \\(--reduce 3\\): {} needs every token; record without --reduce"


def test_token_commands_refuse_reduced_recordings(recordings):
    from llmfbn.glm import TaskGLM
    from llmfbn.networks import (
        FunctionalNetworks,
        network_connectivity,
        network_time_series,
        top_tokens,
    )
    from llmfbn.plotting import plot_carpet

    _, _, reduced = recordings
    grid = reduced.grid
    masks = np.zeros((2,) + (grid.n_layers, grid.width), dtype=bool)
    masks[0, 0, :5] = masks[1, 1, :5] = True
    networks = FunctionalNetworks(masks.astype(np.float32), masks, grid)
    with pytest.raises(ValueError, match=MESSAGE.format("the GLM")):
        TaskGLM().fit(reduced.out_dir)
    with pytest.raises(ValueError, match=MESSAGE.format("network connectivity")):
        network_connectivity(networks, reduced.out_dir)
    with pytest.raises(ValueError, match=MESSAGE.format("a carpet plot")):
        plot_carpet(reduced.out_dir)
    with pytest.raises(ValueError, match="is a reduced run \\(--reduce 3\\): network time "
                                         "series needs every token"):
        network_time_series(networks, reduced.bold_files)
    with pytest.raises(ValueError, match="reduced run \\(--reduce 3\\): top tokens needs"):
        top_tokens(networks, reduced.bold_files)
    with pytest.raises(ValueError, match=MESSAGE.format("time series")):
        find_runs(reduced.out_dir, need_tokens="time series")


# -- command line ----------------------------------------------------------------

@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


def test_cli_record_reduce(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["record", "--model", str(tiny_model_dir), "--input", str(text_file),
                 "--out", str(out), "--texts-per-run", "6", "--reduce", "3",
                 "--model-dtype", "bfloat16", "-q"]) == 0
    assert "reduced: each run is 3 volumes" in capsys.readouterr().out
    paths, grid = find_runs(out)
    assert len(paths) == 4 and nib.load(paths[0]).shape == tuple(grid.shape) + (3,)
    sidecar = json.loads(run_sibling(paths[0], "bold.json").read_text())
    assert sidecar["ModelDtype"] == "bfloat16" and sidecar["Reduction"]["n_components"] == 3
    # resuming in another model dtype is refused
    assert main(["record", "--model", str(tiny_model_dir), "--input", str(text_file),
                 "--out", str(out), "--texts-per-run", "6", "--reduce", "3", "-q"]) == 2
    assert "model in bfloat16" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--reduce", "0"], "--reduce must be >= 1. 0 was provided."),
    (["--reduce", "4"], "--reduce must be at most the tokens of every run: --reduce 4 was "
                        "provided, but run 6 (texts [5]) has 2 tokens"),
    (["--reduce", "3", "--sketch-rows", "2"], "--sketch-rows must be >= --reduce (3)"),
    (["--sketch-rows", "9"], "--sketch-rows applies only with --reduce"),
])
def test_cli_record_reduce_errors(tiny_model_dir, text_file, tmp_path, capsys, flags, message):
    out = tmp_path / "rec"
    assert main(["record", "--model", str(tiny_model_dir), "--input", str(text_file),
                 "--out", str(out), "-q"] + flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_cli_glm_refuses_reduced_recording(recordings, tmp_path, capsys):
    _, _, reduced = recordings
    assert main(["glm", str(reduced.out_dir), "--contrast", "a-b",
                 "--out", str(tmp_path / "glm"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "is a reduced recording (--reduce 3): the GLM needs every token" in err, err


def test_record_passes_model_dtype_and_device_to_the_loader(monkeypatch, tmp_path):
    import llmfbn.recording._record as record_module

    calls = []

    def fake_load(name, dtype="float32", device="cpu", verbose=0):
        calls.append((name, dtype, device))
        return make_loaded("llama")

    monkeypatch.setattr(record_module, "load_model", fake_load)
    record("some-model", TEXTS[:2], tmp_path / "a", model_dtype="float16", device="cpu",
           verbose=0)
    record("some-model", TEXTS[:2], tmp_path / "b", verbose=0)
    assert calls == [("some-model", "float16", "cpu"), ("some-model", "float32", "cpu")]


def test_damaged_reduced_run_is_recorded_again(recordings):
    loaded, _, reduced = recordings
    bold = reduced.bold_files[1]
    before = nib.load(bold).get_fdata()
    with open(bold, "r+b") as f:
        f.truncate(bold.stat().st_size - 8)
    with pytest.warns(UserWarning, match="Run 2 of task 'texts' is damaged"):
        again = record(loaded, TEXTS, reduced.out_dir, texts_per_run=6, reduce=3, verbose=0)
    assert again.n_runs_written == 1 and again.n_runs_skipped == 3
    np.testing.assert_allclose(nib.load(bold).get_fdata(), before, atol=1e-5)


def test_sidecar_reduction_block_is_checked(recordings):
    from llmfbn.io import FormatError

    _, _, reduced = recordings
    sidecar_path = run_sibling(reduced.bold_files[0], "bold.json")
    document = json.loads(sidecar_path.read_text())
    document["Reduction"]["n_tokens"] += 1
    sidecar_path.write_text(json.dumps(document))
    with pytest.raises(FormatError, match="its Reduction n_tokens .* differs from NumberOfTokens"):
        run_reduction(reduced.bold_files[0])
    del document["Reduction"]["sketch_rows"]
    sidecar_path.write_text(json.dumps(document))
    with pytest.raises(FormatError, match=r"its Reduction lacks \['sketch_rows'\]"):
        find_runs(reduced.out_dir)
