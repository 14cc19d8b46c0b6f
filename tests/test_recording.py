import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nilearn.maskers import MultiNiftiMasker, NiftiMasker

from conftest import TINY_CONFIGS, make_loaded
from llmfbn.io import _recording as io_recording
from llmfbn.io import read_events, read_grid
from llmfbn.recording import ActivationRecorder, read_texts, record, record_activations


def _read_events(bold):
    return read_events(bold).to_dict("records")


# -- capture -----------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_batched_equals_one_text_at_a_time(family, texts):
    loaded = make_loaded(family)
    batched = record_activations(loaded, texts, batch_size=4)
    single = record_activations(loaded, texts, batch_size=1)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pad_tokens_never_become_time_points(tiny_llama, texts):
    acts = record_activations(tiny_llama, texts, batch_size=len(texts))
    lengths = [len(tiny_llama.tokenizer(t)["input_ids"]) for t in texts]
    assert [a.shape[0] for a in acts] == lengths
    assert all(a.shape[1:] == (3, 24) for a in acts)


def test_forward_stops_after_last_recorded_layer(tiny_llama, texts):
    model = tiny_llama.model
    calls = []
    handles = [model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head")),
               model.model.layers[2].register_forward_hook(lambda *a: calls.append("layer2"))]
    try:
        acts = record_activations(tiny_llama, texts, layers=[0, 1])
    finally:
        for h in handles:
            h.remove()
    assert calls == []
    assert acts[0].shape[1] == 2


def test_layer_subset_matches_full_recording(tiny_llama, texts):
    full = record_activations(tiny_llama, texts)
    subset = record_activations(tiny_llama, texts, layers=[0, 2])
    for a, b in zip(full, subset):
        np.testing.assert_allclose(a[:, [0, 2]], b, rtol=1e-6, atol=1e-7)


def test_no_hook_left_after_error(tiny_llama):
    from llmfbn.hooks import active_hook_count

    before = active_hook_count(tiny_llama.model)
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationRecorder(tiny_llama.model) as recorder:
            assert active_hook_count(tiny_llama.model) == before + 3
            raise RuntimeError("boom")
    assert active_hook_count(tiny_llama.model) == before
    assert recorder._buffer is None


@pytest.mark.parametrize("kwargs, match", [
    ({"signal": "attn"}, r"'signal' must be one of \('mlp', 'mlp_out', 'residual'\). 'attn'"),
    ({"layers": [0, 5]}, r"'layers' must lie in \[0, 3\).*\[5\]"),
    ({"layers": [2, 1]}, "increasing"),
])
def test_recorder_rejects_bad_arguments(tiny_llama, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivationRecorder(tiny_llama.model, **kwargs)


# -- text input --------------------------------------------------------------

def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\n   \ntwo\n")
    (tmp_path / "a.jsonl").write_text('{"body": "one", "y": 1}\n{"body": "two", "y": 0}\n')
    (tmp_path / "a.csv").write_text('text,label\n"one, quoted",pos\ntwo,neg\n')
    (tmp_path / "a.tsv").write_text("text\tlabel\none \"q\"\tpos\ntwo\tneg\n")
    with pytest.warns(UserWarning, match="Skipped 2 empty"):
        txt = read_texts(tmp_path / "a.txt")
    assert txt.texts == ["one", "two"] and txt.indices == [0, 3] and txt.n_skipped_empty == 2
    jsonl = read_texts(tmp_path / "a.jsonl", text_column="body", label_column="y")
    assert jsonl.texts == ["one", "two"] and jsonl.labels == ["1", "0"]
    csv = read_texts(tmp_path / "a.csv", label_column="label")
    assert csv.texts == ["one, quoted", "two"] and csv.labels == ["pos", "neg"]
    tsv = read_texts(tmp_path / "a.tsv", label_column="label")
    assert tsv.texts == ['one "q"', "two"]


def test_missing_column_lists_columns(tmp_path):
    (tmp_path / "a.csv").write_text("sentence,label\nhello,1\n")
    with pytest.raises(ValueError, match=r"no column 'text'.*\['sentence', 'label'\]"):
        read_texts(tmp_path / "a.csv")


@pytest.mark.parametrize("content, match", [("", "holds no texts"),
                                            ("  \n\n\t\n", "all 3 are empty")])
def test_empty_input_is_refused(tmp_path, content, match):
    (tmp_path / "a.txt").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_texts(tmp_path / "a.txt")


def test_unsupported_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.txt.*'a\.docx'"):
        read_texts(tmp_path / "a.docx")


# -- the recording folder ----------------------------------------------------

def test_record_writes_bids_folder(tmp_path, tiny_llama, texts):
    labels = ["pos", "neg", "pos", "neg", "pos", "neg"]
    rec = record(tiny_llama, texts, tmp_path / "out", task="demo", verbose=0)
    root = tmp_path / "out"
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert json.loads((root / "llmfbn.json").read_text())["kind"] == "recording"
    grid = read_grid(root)
    assert grid.shape == (6, 4, 3) and grid.model == "tiny-llama" and grid.signal == "mlp"
    assert grid.weights_hash == "seed:0" and grid.model_layers == 3
    assert nib.load(root / "mask.nii.gz").shape == grid.shape
    assert len(rec.bold_files) == len(texts)
    reference = record_activations(tiny_llama, texts)
    for n, (bold, expected) in enumerate(zip(rec.bold_files, reference), start=1):
        assert bold.name == f"sub-tinyllama_task-demo_run-{n:05d}_bold.nii"
        img = nib.load(bold)
        assert img.shape == grid.shape + (expected.shape[0],)
        assert img.get_data_dtype() == np.float32
        assert img.header.get_zooms()[3] == 1.0
        np.testing.assert_allclose(grid.from_img(img), expected, rtol=1e-6, atol=1e-7)
        sidecar = json.loads(bold.with_name(bold.name.replace(".nii", ".json")).read_text())
        assert sidecar["RepetitionTime"] == 1.0
        assert sidecar["Signal"] == "mlp" and sidecar["WeightsHash"] == "seed:0"
        assert sidecar["NumberOfTokens"] == expected.shape[0]
        events = _read_events(bold)
        assert [int(e["onset"]) for e in events] == list(range(expected.shape[0]))
        assert {e["trial_type"] for e in events} == {"token"}
    first = _read_events(rec.bold_files[0])
    assert [e["token"] for e in first] == texts[0].split()
    del labels


def test_labels_become_trial_types(tmp_path, tiny_llama):
    path = tmp_path / "sst.tsv"
    path.write_text("text\tlabel\nthe film was good\t1\nthe film was bad\t0\n")
    rec = record(tiny_llama, path, tmp_path / "out", label_column="label", verbose=0)
    assert rec.summary["task"] == "sst"
    events = _read_events(rec.bold_files[1])
    assert {e["trial_type"] for e in events} == {"0"}


def test_nilearn_maskers_give_back_the_recording(tmp_path, tiny_llama, texts):
    rec = record(tiny_llama, texts, tmp_path / "out", verbose=0)
    reference = record_activations(tiny_llama, texts)
    masker = NiftiMasker(mask_img=rec.mask_file, standardize=None).fit()
    matrix = masker.transform(rec.bold_files[0])
    assert matrix.shape == (reference[0].shape[0], 3 * 24)
    np.testing.assert_array_equal(rec.grid.masked_to_neurons(matrix),
                                  rec.grid.from_img(rec.bold_files[0]))
    np.testing.assert_allclose(rec.grid.masked_to_neurons(matrix), reference[0], atol=1e-7)
    multi = MultiNiftiMasker(mask_img=rec.mask_file, standardize=None).fit()
    for matrix, expected in zip(multi.transform(rec.bold_files), reference):
        np.testing.assert_allclose(rec.grid.masked_to_neurons(matrix), expected, atol=1e-7)


def test_texts_per_run_concatenates_in_time(tmp_path, tiny_llama, texts):
    rec = record(tiny_llama, texts, tmp_path / "out", texts_per_run=4, verbose=0)
    reference = record_activations(tiny_llama, texts)
    assert len(rec.bold_files) == 2
    np.testing.assert_allclose(rec.grid.from_img(rec.bold_files[0]),
                               np.concatenate(reference[:4]), atol=1e-7)
    events = _read_events(rec.bold_files[1])
    assert sorted({int(e["text_index"]) for e in events}) == [4, 5]


def test_long_texts_truncated_and_counted(tmp_path, tiny_llama):
    texts = ["one two three four five six seven", "one two"]
    rec = record(tiny_llama, texts, tmp_path / "out", max_tokens=3, verbose=0)
    assert rec.summary["n_truncated"] == 1 and rec.summary["n_tokens_dropped"] == 4
    sidecar = json.loads(rec.bold_files[0].with_suffix(".json").read_text())
    assert sidecar["TruncatedTexts"] == 1 and sidecar["TokensDropped"] == 4
    assert nib.load(rec.bold_files[0]).shape[3] == 3


def test_long_texts_split_into_consecutive_runs(tmp_path, tiny_llama):
    texts = ["one two three four five six seven", "one two"]
    rec = record(tiny_llama, texts, tmp_path / "out", max_tokens=3,
                 long_texts="split", verbose=0)
    assert [nib.load(p).shape[3] for p in rec.bold_files] == [3, 3, 1, 2]
    assert rec.summary["n_split"] == 1 and rec.summary["n_tokens_dropped"] == 0


def test_empty_texts_are_skipped_and_counted(tmp_path, tiny_llama):
    with pytest.warns(UserWarning, match="Skipped 2"):
        rec = record(tiny_llama, ["the cat", "", "  ", "a dog"], tmp_path / "out", verbose=0)
    assert rec.summary["n_skipped_empty"] == 2 and len(rec.bold_files) == 2


def test_limit_records_first_texts(tmp_path, tiny_llama, texts):
    rec = record(tiny_llama, texts, tmp_path / "out", limit=2, verbose=0)
    assert len(rec.bold_files) == 2 and rec.summary["limit"] == 2


def test_compressed_output(tmp_path, tiny_llama, texts):
    rec = record(tiny_llama, texts, tmp_path / "out", compress=True, verbose=0)
    assert rec.bold_files[0].name.endswith("_bold.nii.gz")
    reference = record_activations(tiny_llama, texts)[0]
    np.testing.assert_array_equal(rec.grid.from_img(rec.bold_files[0]), reference)


def test_float16_is_refused_with_the_reason(tmp_path, tiny_llama):
    with pytest.raises(ValueError, match="'dtype' must be one of.*NIfTI-1/2 define no 16-bit"):
        record(tiny_llama, ["the cat"], tmp_path / "out", dtype="float16", verbose=0)
    assert not (tmp_path / "out").exists()


def test_non_finite_activations_are_refused(tmp_path):
    loaded = make_loaded("llama")
    with torch.no_grad():
        loaded.model.model.layers[1].mlp.up_proj.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        record(loaded, ["the cat sat"], tmp_path / "out", verbose=0)


# -- resuming, refusing, crashing -------------------------------------------

def test_rerun_resumes_and_skips_finished_runs(tmp_path, tiny_llama, texts):
    first = record(tiny_llama, texts, tmp_path / "out", limit=3, verbose=0)
    assert first.n_runs_written == 3
    mtimes = [p.stat().st_mtime_ns for p in first.bold_files]
    second = record(tiny_llama, texts, tmp_path / "out", verbose=0)
    assert (second.n_runs_skipped, second.n_runs_written) == (3, 3)
    assert [p.stat().st_mtime_ns for p in second.bold_files[:3]] == mtimes
    third = record(tiny_llama, texts, tmp_path / "out", verbose=0)
    assert third.n_runs_written == 0 and len(third.bold_files) == 6


def test_folder_of_another_model_is_refused(tmp_path, texts):
    record(make_loaded("llama"), texts, tmp_path / "out", verbose=0)
    with pytest.raises(ValueError, match="never mixed"):
        record(make_loaded("gpt2"), texts, tmp_path / "out", verbose=0)
    with pytest.raises(ValueError, match="other weights.*never mixed"):
        record(make_loaded("llama", seed=1), texts, tmp_path / "out", verbose=0)
    with pytest.raises(ValueError, match="never mixed"):
        record(make_loaded("llama"), texts, tmp_path / "out", signal="residual", verbose=0)


def test_changed_input_for_same_task_is_refused(tmp_path, tiny_llama, texts):
    record(tiny_llama, texts, tmp_path / "out", task="t", verbose=0)
    with pytest.raises(ValueError, match="recorded from other texts"):
        record(tiny_llama, texts[::-1], tmp_path / "out", task="t", verbose=0)


def test_crash_mid_recording_leaves_no_partial_image(tmp_path, tiny_llama, texts, monkeypatch):
    original_save = io_recording.nib.save
    calls = {"n": 0}

    def failing_save(img, path):
        calls["n"] += "_bold" in str(path)
        if calls["n"] == 3:  # dies half-way through writing the third image
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError("disk full")
        return original_save(img, path)

    monkeypatch.setattr(io_recording.nib, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        record(tiny_llama, texts, tmp_path / "out", verbose=0)
    func = tmp_path / "out" / "sub-tinyllama" / "func"
    assert len(list(func.glob("*_bold.nii"))) == 2
    assert not list((tmp_path / "out").rglob(".llmfbn-tmp-*"))
    monkeypatch.setattr(io_recording.nib, "save", original_save)
    resumed = record(tiny_llama, texts, tmp_path / "out", verbose=0)
    assert (resumed.n_runs_skipped, resumed.n_runs_written) == (2, 4)
    for bold, expected in zip(resumed.bold_files, record_activations(tiny_llama, texts)):
        np.testing.assert_allclose(resumed.grid.from_img(bold), expected, atol=1e-7)
