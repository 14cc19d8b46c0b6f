"""Recording formats (llmfbn.io._recording, llmfbn.io._events): events that pandas and
nilearn read with their defaults, one writer per folder, verified resumes, clear errors."""

import os
import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from conftest import WORDS, make_model, token_events, write_synthetic_recording
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    FolderKindError,
    FormatError,
    OutputLock,
    OutputLockedError,
    check_run,
    find_runs,
    read_events,
    read_sidecar,
    read_summaries,
    replace_folder,
    write_events,
)
from llmfbn.io._recording import write_sidecar, write_summary
from llmfbn.models import LoadedModel
from llmfbn.networks import NetworkDecomposition, find_recording_images
from llmfbn.recording import record, record_activations

#: Tokens that broke or bent events.tsv: quotes, separators, line ends, escapes,
#: spaces, unicode, and strings pandas' defaults turn into numbers or NaN.
NASTY_TOKENS = ['"', '""', 'say "hi"', "\t", "a\tb", "\n", "line\nbreak", "\r", "\r\n",
                "\\t", "\\", " lead", "trail ", "   ", "é", "日本", "🙂", "NA", "nan",
                "n/a", "#", "# not a comment", "1.50", "-0", "'", ",", ";"]
#: Labels (trial_type) that need quoting but stay labels under pandas' defaults.
NASTY_LABELS = ['pos "x"', "neg\tative", "multi\nline", "plain"]


def _rows(tokens, labels):
    return [{"onset": t, "duration": 1, "trial_type": labels[t % len(labels)], "token": tok,
             "token_id": t, "text_index": 0, "position": t} for t, tok in enumerate(tokens)]


# -- events.tsv (finding 8) -------------------------------------------------------------


def test_events_read_by_pandas_defaults_and_exactly_by_io(tmp_path):
    path = write_events(tmp_path / "sub-a_task-b_run-00001_events.tsv",
                        _rows(NASTY_TOKENS, NASTY_LABELS))
    n = len(NASTY_TOKENS)
    plain = pd.read_csv(path, sep="\t")  # pandas' (and nilearn's) defaults
    assert plain.shape == (n, 7)
    assert plain["onset"].tolist() == list(range(n))
    assert (plain["duration"] == 1).all()
    assert plain["trial_type"].tolist() == [NASTY_LABELS[t % 4] for t in range(n)]
    exact = read_events(path)
    assert exact.shape == (n, 7)
    assert exact["token"].tolist() == NASTY_TOKENS
    assert exact["onset"].tolist() == list(range(n)) and exact["onset"].dtype == float


def test_events_read_by_defaults_fit_nilearn_first_level_model(tmp_path):
    from nilearn.glm.first_level import FirstLevelModel

    n = len(NASTY_TOKENS)
    path = write_events(tmp_path / "e_events.tsv", _rows(NASTY_TOKENS, NASTY_LABELS[:2]))
    events = pd.read_csv(path, sep="\t")
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.standard_normal((2, 2, 2, n)).astype(np.float32), np.eye(4))
    mask = nib.Nifti1Image(np.ones((2, 2, 2), np.int8), np.eye(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(t_r=1.0, mask_img=mask, hrf_model=None, drift_model=None,
                                signal_scaling=False).fit(img, events=events)
    columns = list(model.design_matrices_[0].columns)
    assert set(NASTY_LABELS[:2]) <= set(columns)


def test_empty_token_is_written_n_a(tmp_path):
    path = write_events(tmp_path / "e_events.tsv", _rows(["", "x"], ["token"]))
    assert read_events(path)["token"].tolist() == ["n/a", "x"]
    assert path.read_text().splitlines()[1].split("\t")[3] == "n/a"


def _quote_loaded():
    """A tiny Llama whose vocabulary holds a lone quote and other nasty tokens."""
    vocab = {"[PAD]": 0, "[UNK]": 1}
    for word in WORDS[:-6] + ['"', '""', "#", "NA", "'"]:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                           unk_token="[UNK]", eos_token="[PAD]")
    return LoadedModel(make_model("llama"), tokenizer, name="tiny-llama", source="random",
                       weights_hash="seed:0")


def test_recorded_events_with_a_lone_quote_parse_with_pandas_defaults(tmp_path):
    loaded = _quote_loaded()
    texts = ['the " cat', 'a "" dog # NA \' sat']
    rec = record(loaded, texts, tmp_path / "out", verbose=0)
    for bold, text in zip(rec.bold_files, texts):
        n_tokens = read_sidecar(bold)["NumberOfTokens"]
        events_file = bold.with_name(bold.name.replace("_bold.nii", "_events.tsv"))
        plain = pd.read_csv(events_file, sep="\t")
        assert plain.shape == (n_tokens, 7)
        assert plain["onset"].tolist() == list(range(n_tokens))
        assert read_events(bold)["token"].tolist() == text.split()


def test_damaged_events_file_is_a_format_error(tmp_path):
    path = tmp_path / "e_events.tsv"
    path.write_text("onset\tduration\ntwo\t1\n")
    with pytest.raises(FormatError, match=r"e_events.tsv.*lacks.*trial_type"):
        read_events(path)
    path.write_text("onset\tduration\ttrial_type\ntwo\t1\tx\n")
    with pytest.raises(FormatError, match=r"e_events.tsv has a non-numeric onset"):
        read_events(path)
    with pytest.raises(FileNotFoundError, match="missing_events.tsv"):
        read_events(tmp_path / "missing_events.tsv")


# -- one writer per recording (finding 6) -----------------------------------------------


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_second_writer_is_refused_at_once_and_nothing_is_mixed(tmp_path, tiny_llama, texts,
                                                                capsys):
    out = tmp_path / "out"
    record(tiny_llama, texts[:3], out, task="t", verbose=0)
    before = _snapshot(out)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from llmfbn.io import OutputLock\n"
         f"with OutputLock({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=rf"process {holder.pid} "):
            record(tiny_llama, texts[3:], out, task="t", verbose=0)
        # Checked before any model is loaded: an unknown model name is never reached.
        with pytest.raises(OutputLockedError, match=rf"process {holder.pid} "):
            record("no-such-model", texts[3:], out, task="t", verbose=0)
        inputs = out.parent / "t.txt"
        inputs.write_text("\n".join(texts[3:]) + "\n")
        assert main(["record", "--model", "no-such-model", "--input", str(inputs), "--out",
                     str(out), "--task", "t", "-q"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is being written by process {holder.pid} " in err
    finally:
        holder.communicate("")
    assert _snapshot(out) == before
    resumed = record(tiny_llama, texts[:3], out, task="t", verbose=0)
    assert (resumed.n_runs_skipped, resumed.n_runs_written) == (3, 0)
    assert [s["n_runs"] for s in read_summaries(out)] == [3]


def test_lock_is_held_while_recording(tmp_path, tiny_llama, texts, monkeypatch):
    from llmfbn.io import RecordingLayout

    seen = []
    original = RecordingLayout.write_run

    def write_run(self, *args):
        with pytest.raises(OutputLockedError):
            OutputLock(tmp_path / "out").acquire()
        seen.append(args[0])
        return original(self, *args)

    monkeypatch.setattr(RecordingLayout, "write_run", write_run)
    record(tiny_llama, texts[:2], tmp_path / "out", verbose=0)
    assert sorted(seen) == [1, 2]
    assert not (tmp_path / "out.lock").exists()


# -- record refuses other folders -------------------------------------------------------


def test_record_into_a_networks_folder_or_a_file_is_refused(tmp_path, tiny_llama):
    networks = tmp_path / "net"
    with replace_folder(networks, "networks") as staging:
        (staging / "networks.json").write_text("{}")
    before = _snapshot(networks)
    with pytest.raises(FolderKindError, match="is a networks folder.*recording"):
        record(tiny_llama, ["the cat"], networks, verbose=0)
    assert _snapshot(networks) == before
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(FolderKindError, match="is a file"):
        record(tiny_llama, ["the cat"], a_file, verbose=0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FolderKindError, match="not a folder llmfbn wrote"):
        record(tiny_llama, ["the cat"], foreign, verbose=0)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_record_cli_refuses_a_networks_folder_before_loading_the_model(tmp_path, capsys):
    networks = tmp_path / "net"
    with replace_folder(networks, "networks"):
        pass
    texts = tmp_path / "t.txt"
    texts.write_text("the cat\n")
    code = main(["record", "--model", "no-such-model", "--input", str(texts), "--out",
                 str(networks), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("llmfbn: error: ")
    assert "is a networks folder" in err and "Traceback" not in err


# -- verified resume (finding 9) ---------------------------------------------------------


def _truncate(path, n_bytes=64):
    data = path.read_bytes()
    path.write_bytes(data[:-n_bytes])


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_image_is_recorded_again_on_resume(tmp_path, tiny_llama, texts, compress):
    out = tmp_path / "out"
    first = record(tiny_llama, texts[:3], out, compress=compress, verbose=0)
    _truncate(first.bold_files[1])
    with pytest.warns(UserWarning, match=r"Run 2 .*run-00002_bold\.nii.*recording it again"):
        again = record(tiny_llama, texts[:3], out, compress=compress, verbose=0)
    assert (again.n_runs_skipped, again.n_runs_written) == (2, 1)
    reference = record_activations(tiny_llama, texts[:3])
    np.testing.assert_allclose(again.grid.from_img(again.bold_files[1]), reference[1],
                               atol=1e-7)
    paths, _ = find_runs(out)
    assert len(paths) == 3


def test_missing_events_or_damaged_sidecar_is_recorded_again(tmp_path, tiny_llama, texts):
    out = tmp_path / "out"
    first = record(tiny_llama, texts[:3], out, verbose=0)
    events = first.bold_files[0].with_name(
        first.bold_files[0].name.replace("_bold.nii", "_events.tsv"))
    events.unlink()
    sidecar = first.bold_files[2].with_name(first.bold_files[2].name.replace(".nii", ".json"))
    sidecar.write_text('{"NumberOf')
    with pytest.warns(UserWarning) as caught:
        again = record(tiny_llama, texts[:3], out, verbose=0)
    messages = " ".join(str(w.message) for w in caught)
    assert "run-00001_events.tsv is missing" in messages and "run-00003_bold.json" in messages
    assert again.n_runs_written == 2 and events.exists()


def test_newer_sidecar_is_refused_not_overwritten(tmp_path, tiny_llama, texts):
    out = tmp_path / "out"
    first = record(tiny_llama, texts[:1], out, verbose=0)
    path = first.bold_files[0].with_name(first.bold_files[0].name.replace(".nii", ".json"))
    path.write_text(path.read_text().replace('"LlmfbnFormatVersion": 1',
                                             '"LlmfbnFormatVersion": 9'))
    with pytest.raises(FormatError, match="format version 9, newer"):
        record(tiny_llama, texts[:1], out, verbose=0)


# -- reading damaged recordings (finding 9) ------------------------------------------------


@pytest.fixture
def synthetic(tmp_path):
    grid = NeuronGrid(2, 16, model="syn", signal="mlp")
    rng = np.random.default_rng(0)
    runs = [rng.standard_normal((30, 2, 16)).astype(np.float32) for _ in range(3)]
    paths = write_synthetic_recording(tmp_path / "rec", grid, runs,
                                      events=[token_events(30) for _ in runs])
    return tmp_path / "rec", paths, grid


def test_find_runs_checks_every_run(synthetic):
    folder, paths, grid = synthetic
    found, found_grid = find_runs(folder)
    assert found == paths and found_grid == grid
    assert find_recording_images([str(p) for p in paths[1:]])[0] == paths[1:]
    assert check_run(paths[0], grid)["NumberOfTokens"] == 30


@pytest.mark.parametrize("damage, match", [
    (lambda p: _truncate(p), r"run-00002_bold\.nii is truncated or damaged"),
    (lambda p: p.write_bytes(b"\0" * 40), r"run-00002_bold\.nii is damaged: its header"),
    (lambda p: p.unlink(), r"run-00002_bold\.nii is missing"),
])
def test_damaged_image_is_a_format_error_naming_it(synthetic, damage, match):
    folder, paths, _ = synthetic
    damage(paths[1])
    with pytest.raises(FormatError, match=match + r".*re-run `llmfbn record`"):
        find_runs(folder)
    with pytest.raises(FormatError, match=match):
        NetworkDecomposition(n_components=2).fit(folder)


def test_image_of_another_length_than_its_sidecar_is_refused(synthetic):
    folder, paths, grid = synthetic
    nib.save(grid.to_img(np.zeros((7, 2, 16), np.float32)), paths[0])
    with pytest.raises(FormatError, match=r"run-00001_bold\.nii has shape \(4, 4, 2, 7\).*30"):
        find_runs(folder)


def test_invalid_grid_json_is_a_format_error_naming_it(synthetic):
    folder, paths, _ = synthetic
    (folder / "grid.json").write_text('{"format_version": 2, "width": ')
    with pytest.raises(FormatError, match=r"grid\.json is not a valid grid\.json"):
        find_runs(folder)
    with pytest.raises(FormatError, match=r"grid\.json"):
        find_runs(paths)


def test_networks_cli_on_a_truncated_run_is_one_line(synthetic, tmp_path, capsys):
    folder, paths, _ = synthetic
    _truncate(paths[2])
    code = main(["networks", str(folder), "--out", str(tmp_path / "net"), "--n-components",
                 "2", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("llmfbn: error: ") and "run-00003_bold.nii" in err
    assert "llmfbn record" in err
    assert not (tmp_path / "net").exists()


def test_folder_without_marker_is_refused(synthetic):
    folder, _, _ = synthetic
    (folder / "llmfbn.json").unlink()
    with pytest.raises(FolderKindError, match="older llmfbn"):
        find_runs(folder)


def test_sidecar_and_summary_versions_are_checked(tmp_path, synthetic):
    folder, paths, _ = synthetic
    write_sidecar(paths[0], {"NumberOfTokens": 30, "LlmfbnFormatVersion": 1})
    assert read_sidecar(paths[0])["NumberOfTokens"] == 30
    paths[0].with_name(paths[0].name.replace(".nii", ".json")).write_text(
        '{"NumberOfTokens": 30}')
    with pytest.raises(FormatError, match="run-00001_bold.json has no LlmfbnFormatVersion"):
        read_sidecar(paths[0])
    summary = folder / "sub-syn" / "func" / "sub-syn_task-syn_summary.json"
    write_summary(summary, {"task": "syn", "n_runs": 3})
    assert [s["n_runs"] for s in read_summaries(folder)] == [3]
    summary.write_text('{"format_version": 7, "task": "syn"}')
    with pytest.raises(FormatError, match="syn_summary.json is a task summary of format "
                                          "version 7, newer"):
        read_summaries(folder)
