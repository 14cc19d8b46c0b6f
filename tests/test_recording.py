import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nilearn.maskers import MultiNiftiMasker, NiftiMasker

from conftest import TINY_CONFIGS, make_loaded
from llmfbn.io import ResumeMismatchError, read_events, read_grid
from llmfbn.io import _recording as io_recording
from llmfbn.recording import (
    ActivationRecorder,
    parse_label_names,
    read_texts,
    record,
    record_activations,
    select_texts,
)


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


def test_plan_batches_bounds_padded_tokens():
    from types import SimpleNamespace

    from llmfbn.recording._record import batch_token_limit, plan_batches

    pieces = [SimpleNamespace(token_ids=[0] * n) for n in (3, 5, 5, 9, 2, 20)]
    order = list(range(len(pieces)))
    assert plan_batches(pieces, order, batch_size=8) == [order]
    assert plan_batches(pieces, order, batch_size=2) == [[0, 1], [2, 3], [4, 5]]
    batches = plan_batches(pieces, order, batch_size=8, max_batch_tokens=12)
    # (3, 5) pads to 10; adding 5 would make 15; 9 alone; 9 + 2 pads to 18; 20 alone.
    assert batches == [[0, 1], [2], [3], [4], [5]]
    for batch in batches:
        padded = len(batch) * max(len(pieces[i].token_ids) for i in batch)
        assert padded <= 12 or len(batch) == 1
    assert sorted(i for b in batches for i in b) == order
    assert batch_token_limit(2**30, 32 * 11008) == 762  # 1 GiB at 352,256 float32 per token
    assert batch_token_limit(10, 100) == 1


def test_batch_memory_changes_batches_not_activations(tiny_llama, texts, monkeypatch):
    import llmfbn.recording._capture as capture

    shapes = []
    original = capture.pad_batch

    def spy(token_ids, pad_id):
        out = original(token_ids, pad_id)
        shapes.append(tuple(out[0].shape))
        return out

    monkeypatch.setattr(capture, "pad_batch", spy)
    small = record_activations(tiny_llama, texts, batch_size=4,
                               batch_memory=4 * 3 * 24 * 12)  # 12 padded tokens
    monkeypatch.undo()
    assert all(rows * length <= 12 or rows == 1 for rows, length in shapes)
    assert len(shapes) > -(-len(texts) // 4)
    default = record_activations(tiny_llama, texts, batch_size=4)
    for a, b in zip(small, default):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'batch_memory' must be a size"):
        record_activations(tiny_llama, texts, batch_memory="lots")


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


# -- selection, label names, several columns, WikiText ----------------------------------

def _labelled(n_pos, n_neg):
    texts = [f"good {i}" for i in range(n_pos)] + [f"bad {i}" for i in range(n_neg)]
    return read_texts(texts, labels=["pos"] * n_pos + ["neg"] * n_neg)


def test_stratified_sample_is_balanced_and_deterministic():
    textset = _labelled(30, 10)
    first = select_texts(textset, sample=12, stratify_by="label", seed=3)
    assert first.selection["n_per_label"] == {"neg": 6, "pos": 6}
    assert first.indices == sorted(first.indices)  # input order kept
    assert len(set(first.indices)) == 12  # without replacement
    again = select_texts(textset, sample=12, stratify_by="label", seed=3)
    assert again.indices == first.indices
    other = select_texts(textset, sample=12, stratify_by="label", seed=4)
    assert other.indices != first.indices
    plain = select_texts(textset, sample=12, seed=3)  # not stratified: unbalanced on average
    assert len(plain) == 12 and plain.selection["stratify_by"] is None
    odd = select_texts(textset, sample=13, stratify_by="label", seed=0)
    assert sorted(odd.selection["n_per_label"].values()) == [6, 7]


def test_a_small_class_gives_all_it_has_and_the_others_share_the_rest():
    textset = _labelled(30, 4)
    with pytest.warns(UserWarning, match=r"Labels \{'neg': 4\} have fewer texts"):
        sample = select_texts(textset, sample=20, stratify_by="label", seed=0)
    assert sample.selection["n_per_label"] == {"neg": 4, "pos": 16}
    with pytest.raises(ValueError, match="at most the number of non-empty texts.*35 was"):
        select_texts(textset, sample=35)


@pytest.mark.parametrize("kwargs, match", [
    (dict(limit=2, sample=3), "not both"),
    (dict(stratify_by="label"), "'stratify_by' needs 'sample'"),
    (dict(sample=3, stratify_by="topic"), "'stratify_by' must be one of"),
    (dict(seed=1), "'seed' needs 'sample'"),
    (dict(sample=0), "sample"),
])
def test_selection_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_texts(_labelled(3, 3), **kwargs)


def test_sample_is_recorded_and_a_changed_sample_is_refused_on_resume(tmp_path, tiny_llama):
    texts = [f"the cat {w}" for w in "sat ran is was far red".split()] * 2
    labels = ["a"] * 6 + ["b"] * 6
    out = tmp_path / "out"
    rec = record(tiny_llama, texts, out, labels=labels, sample=4, stratify_by="label", seed=1,
                 verbose=0)
    assert rec.summary["n_per_label"] == {"a": 2, "b": 2}
    assert (rec.summary["sample"], rec.summary["stratify_by"], rec.summary["seed"]) == (
        4, "label", 1)
    assert rec.summary["n_texts_in_input"] == 12 and rec.summary["n_texts"] == 4
    saved = io_recording.read_summaries(out)[0]
    assert saved["n_per_label"] == {"a": 2, "b": 2} and "n_texts_in_input" in saved["definitions"]
    sidecar = json.loads(rec.bold_files[0].with_suffix(".json").read_text())
    assert sidecar["Sample"] == {"sample": 4, "stratify_by": "label", "seed": 1}
    again = record(tiny_llama, texts, out, labels=labels, sample=4, stratify_by="label", seed=1,
                   verbose=0)
    assert again.n_runs_skipped == 4
    with pytest.raises(ResumeMismatchError, match="recorded from other texts"):
        record(tiny_llama, texts, out, labels=labels, sample=4, stratify_by="label", seed=2,
               verbose=0)


def test_label_names_become_trial_types(tmp_path, tiny_llama):
    path = tmp_path / "sst.tsv"
    path.write_text("text\tlabel\nthe film was good\t1\nthe film was bad\t0\n")
    rec = record(tiny_llama, path, tmp_path / "out", label_column="label",
                 label_names={"0": "negative", "1": "positive"}, verbose=0)
    assert [{e["trial_type"] for e in _read_events(b)} for b in rec.bold_files] == [
        {"positive"}, {"negative"}]
    assert rec.summary["label_names"] == {"0": "negative", "1": "positive"}
    assert parse_label_names("0=negative, 1=positive") == {"0": "negative", "1": "positive"}
    with pytest.raises(ValueError, match=r"also holds labels \['0'\]"):
        read_texts(path, label_column="label", label_names={"1": "positive"})
    with pytest.raises(ValueError, match=r"names labels \['2'\] that"):
        read_texts(path, label_column="label", label_names={"0": "n", "1": "p", "2": "x"})
    with pytest.raises(ValueError, match="without spaces"):
        read_texts(path, label_column="label", label_names={"0": "not good", "1": "good"})
    with pytest.raises(ValueError, match="several labels"):
        read_texts(path, label_column="label", label_names={"0": "x", "1": "x"})
    with pytest.raises(ValueError, match="LABEL=NAME"):
        parse_label_names("0:negative")


def test_label_names_allow_named_contrasts(tmp_path, tiny_llama):
    from llmfbn.glm import TaskGLM

    texts = ["the film was very good", "a good dog", "the sun is good", "we ran , good",
             "the film was very bad", "a bad cat", "the fire is bad", "they ran , bad"]
    rec = record(tiny_llama, texts, tmp_path / "out", labels=[1, 1, 1, 1, 0, 0, 0, 0],
                 label_names={"0": "negative", "1": "positive"}, verbose=0)
    glm = TaskGLM(verbose=0).fit(rec.out_dir, contrasts=["positive-negative"])
    result = glm.localize(["positive-negative"], height_control=None, threshold=1.0)
    assert result.contrasts == ["positive-negative"]


def test_several_text_columns_are_joined_with_a_newline(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("label,title,description\n1,Cat wins,The cat sat.\n2,,Only a body\n"
                    "3,Only a title,\n")
    textset = read_texts(path, text_column=["title", "description"], label_column="label")
    assert textset.texts == ["Cat wins\nThe cat sat.", "Only a body", "Only a title"]
    with pytest.raises(ValueError, match="no column 'body'"):
        read_texts(path, text_column=["title", "body"])


def test_record_takes_labels_as_a_list(tmp_path, tiny_llama, texts):
    rec = record(tiny_llama, texts, tmp_path / "out", labels=["a", "b"] * 3, verbose=0)
    assert [{e["trial_type"] for e in _read_events(b)} for b in rec.bold_files] == [
        {"a"}, {"b"}] * 3
    with pytest.raises(ValueError, match="one label per text: 6 texts, 2 labels"):
        record(tiny_llama, texts, tmp_path / "out2", labels=["a", "b"], verbose=0)


WIKI = (" \n = Robert Boulter = \n \n Robert Boulter is an actor . \n \n = = Career = = \n"
        " \n In 2000 he had a role . \n \n = Second Article = \n \n It is short . \n")


def test_wikitext_headings_are_boundaries_not_texts(tmp_path):
    path = tmp_path / "wiki.test.raw"
    path.write_text(WIKI)
    paragraphs = read_texts(path)  # auto: a WikiText file name
    assert paragraphs.input_format == "wikitext"
    assert paragraphs.texts == ["Robert Boulter is an actor .", "In 2000 he had a role .",
                                "It is short ."]
    assert paragraphs.indices == [3, 7, 11] and paragraphs.n_headings == 3
    assert paragraphs.n_in_input == 3 and paragraphs.n_skipped_empty == 0
    articles = read_texts(path, input_format="wikitext-articles")
    assert articles.texts == ["Robert Boulter is an actor .\nIn 2000 he had a role .",
                              "It is short ."]
    assert articles.indices == [1, 9]
    with pytest.warns(UserWarning, match="Skipped 6 empty"):
        lines = read_texts(path, input_format="lines")  # the old reading, on request
    assert " = Robert Boulter = " in lines.texts and lines.n_in_input == 12
    plain = tmp_path / "notes.txt"
    plain.write_text(" = Not a heading here = \n")
    assert read_texts(plain).input_format == "lines"
    with pytest.raises(ValueError, match="reads plain-text files"):
        read_texts(_csv(tmp_path), input_format="wikitext")


def _csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text\nhello\n")
    return path


def test_input_counts_mean_the_same_for_every_format(tmp_path, tiny_llama):
    """n_texts_in_input counts the reader's texts, empty ones included, before selection."""
    (tmp_path / "a.txt").write_text("the cat\n\nthe dog\nthe sun\n")
    (tmp_path / "a.jsonl").write_text('{"text": "the cat"}\n{"text": ""}\n{"text": "the dog"}\n'
                                      '{"text": "the sun"}\n')
    (tmp_path / "wiki.a.raw").write_text(" = T = \n \n the cat \n \n \n the dog \n the sun \n"
                                         " \n")
    summaries = {}
    for name in ("a.txt", "a.jsonl", "wiki.a.raw"):
        rec = record(tiny_llama, tmp_path / name, tmp_path / f"out-{name}", limit=2, verbose=0)
        summaries[name] = {k: rec.summary[k] for k in ("n_texts_in_input", "n_skipped_empty",
                                                       "n_texts")}
    assert summaries["a.txt"] == summaries["a.jsonl"] == {
        "n_texts_in_input": 4, "n_skipped_empty": 1, "n_texts": 2}
    assert summaries["wiki.a.raw"] == {"n_texts_in_input": 3, "n_skipped_empty": 0,
                                       "n_texts": 2}
