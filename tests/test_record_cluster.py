"""record(..., scheduler=...) and `llmfbn record --scheduler`: byte-identical to one process.

The cluster tests share one LocalCluster of 2 worker processes (1 thread each,
as ``local:2`` on a 2-core machine) through its ``tcp://`` address; one CLI
test starts ``local:2`` itself. The one-process reference runs with the
workers' torch thread count: some CPU kernels give bits that depend on the
thread count (MKL's sgemm for 5-7 and 9-11 rows, PyTorch's flash attention
for heads under 16 values, with torch 2.13 on AVX-512), which the windows
cannot change; with the same kernels and threads the files must be equal to
the byte.
"""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from conftest import WORDS, make_loaded, make_tokenizer
from llmfbn.cli import main
from llmfbn.io import OutputLock
from llmfbn.recording import plan_runs, read_texts, record
from llmfbn.recording._windows import SORT_WINDOW_BATCHES, plan_windows

distributed = pytest.importorskip("distributed")

#: Tiny models with a head size of 16 (see the module's docstring).
CONFIGS = {
    "llama": lambda: tf.LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                    num_key_value_heads=1, intermediate_size=24,
                                    vocab_size=64, pad_token_id=0, bos_token_id=0,
                                    eos_token_id=0),
    "gpt2": lambda: tf.GPT2Config(n_embd=32, n_layer=3, n_head=2, n_inner=24, vocab_size=64,
                                  n_positions=128, bos_token_id=0, eos_token_id=0),
}


def _texts(n=22, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 15))) for _ in range(n)]


TEXTS = _texts()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    dirs = {}
    for family, config in CONFIGS.items():
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(f"tiny16-{family}")
        tf.AutoModelForCausalLM.from_config(config()).eval().save_pretrained(folder)
        make_tokenizer().save_pretrained(folder)
        dirs[family] = str(folder)
    return dirs


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 processes (1 thread each) and a client on it."""
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0",
                                  silence_logs=logging.ERROR) as local:
        with distributed.Client(local) as client:
            yield local.scheduler_address, client


@contextmanager
def threads(n):
    """This process's torch threads set to ``n`` (a cluster worker's) for the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _files(folder):
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_folders(a, b):
    """Every file, byte for byte: images (header and data), events, sidecars, summary."""
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == sorted(files_b)
    different = [name for name in files_a if files_a[name] != files_b[name]]
    assert different == []
    assert not list(Path(a).rglob(".llmfbn-tmp-*")) and not list(Path(b).rglob(".llmfbn-tmp-*"))


# -- windows (no cluster) ---------------------------------------------------------------


@pytest.mark.parametrize("texts_per_run, batch_size", [(1, 2), (3, 2), (5, 1), (1, 8)])
def test_windows_hold_whole_runs_and_every_piece_once(texts_per_run, batch_size):
    runs, _ = plan_runs(make_tokenizer(), read_texts(TEXTS), max_tokens=6,
                        texts_per_run=texts_per_run, long_texts="split")
    windows = plan_windows(runs, batch_size)
    assert [run.number for w in windows for run in w.runs] == [run.number for run in runs]
    entries = [(w.runs[r].number, k) for w in windows for batch in w.batches for r, k in batch]
    assert sorted(entries) == [(run.number, k) for run in runs for k in range(len(run.pieces))]
    for w in windows[:-1]:  # closed at the first run boundary after batch_size * 4 pieces
        n = sum(len(run.pieces) for run in w.runs)
        assert batch_size * SORT_WINDOW_BATCHES <= n < batch_size * SORT_WINDOW_BATCHES + (
            texts_per_run)
    assert all(len(batch) <= batch_size for w in windows for batch in w.batches)


def test_finished_runs_skip_only_batches_they_fill():
    runs, _ = plan_runs(make_tokenizer(), read_texts(TEXTS), texts_per_run=1)
    (window, *_) = plan_windows(runs, batch_size=2)
    first = window.batches[0]
    done = {window.runs[r].number for r, _ in first}
    assert window.todo_batches(done) == window.batches[1:]
    half = {window.runs[first[0][0]].number}
    assert window.todo_batches(half) == window.batches  # the batch is run whole


def test_resumed_recording_is_byte_identical(tmp_path, model_dirs, monkeypatch):
    """A single process killed mid-recording and resumed writes the same bytes."""
    import llmfbn.io._recording as io_recording

    original = io_recording.RecordingLayout.write_run
    calls = []

    def dies_at_the_fifth_run(layout, run, *args):
        calls.append(run)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(layout, run, *args)

    settings = dict(batch_size=2, texts_per_run=3, verbose=0)
    record(model_dirs["llama"], TEXTS, tmp_path / "whole", **settings)
    monkeypatch.setattr(io_recording.RecordingLayout, "write_run", dies_at_the_fifth_run)
    with pytest.raises(KeyboardInterrupt):
        record(model_dirs["llama"], TEXTS, tmp_path / "resumed", **settings)
    monkeypatch.undo()
    resumed = record(model_dirs["llama"], TEXTS, tmp_path / "resumed", **settings)
    assert resumed.n_runs_skipped == 4
    assert_same_folders(tmp_path / "whole", tmp_path / "resumed")


# -- on a cluster -----------------------------------------------------------------------


@pytest.mark.parametrize("family, settings", [
    ("llama", {}),
    ("llama", {"texts_per_run": 3}),
    ("llama", {"long_texts": "split", "max_tokens": 5}),
    ("llama", {"reduce": 2, "texts_per_run": 3}),
    ("gpt2", {}),
])
def test_cluster_recording_is_byte_identical(family, settings, model_dirs, cluster, tmp_path):
    address, _ = cluster
    settings = dict(batch_size=2, verbose=0, **settings)
    with threads(1):
        here = record(model_dirs[family], TEXTS, tmp_path / "here", **settings)
    there = record(model_dirs[family], TEXTS, tmp_path / "there", scheduler=address, **settings)
    assert there.n_runs_written == here.n_runs_written == len(here.bold_files) >= 8
    assert there.summary == here.summary
    assert_same_folders(tmp_path / "here", tmp_path / "there")


class _KillOnce(distributed.WorkerPlugin):
    """Logs every run a worker writes; the first worker to start its 2nd write dies.

    It dies half-way through the write (a temporary file left beside the run),
    after writing another run of the same task; exactly one worker dies.
    """

    def __init__(self, folder):
        self.folder = str(folder)
        self.original = None

    def setup(self, worker):
        from llmfbn.io._recording import RecordingLayout

        self.original = original = RecordingLayout.write_run
        folder, started = self.folder, []

        def write_run(layout, run, img, events, sidecar):
            started.append(run)
            if len(started) == 2:
                try:
                    fd = os.open(os.path.join(folder, "killed"),
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, str(run).encode())
                    layout.func_dir.mkdir(parents=True, exist_ok=True)
                    tmp = layout.bold_path(run)
                    tmp.with_name(f".llmfbn-tmp-{secrets.token_hex(6)}-{tmp.name}").write_bytes(
                        b"half an image")
                    os._exit(1)
            original(layout, run, img, events, sidecar)
            with open(os.path.join(folder, "written"), "a") as log:
                log.write(f"{run}\n")

        RecordingLayout.write_run = write_run

    def teardown(self, worker):
        from llmfbn.io._recording import RecordingLayout

        RecordingLayout.write_run = self.original


def test_a_worker_killed_mid_window_loses_and_doubles_nothing(model_dirs, cluster, tmp_path):
    address, client = cluster
    settings = dict(batch_size=2, verbose=0)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    client.register_plugin(_KillOnce(log_dir), name="kill-once")
    try:
        there = record(model_dirs["llama"], TEXTS, tmp_path / "there", scheduler=address,
                       **settings)
    finally:
        client.unregister_worker_plugin("kill-once")
    killed = int((log_dir / "killed").read_text())
    written = sorted(int(line) for line in (log_dir / "written").read_text().split())
    assert written == list(range(1, len(TEXTS) + 1))  # every run once, the killed one too
    assert killed in written
    assert there.n_runs_written == len(TEXTS)
    with threads(1):
        record(model_dirs["llama"], TEXTS, tmp_path / "here", **settings)
    assert_same_folders(tmp_path / "here", tmp_path / "there")


def test_worker_errors_are_the_callers_words(model_dirs, cluster, tmp_path):
    address, _ = cluster
    with pytest.raises(ValueError, match=r"'layers' must lie in \[0, 3\)"):
        record(model_dirs["llama"], TEXTS, tmp_path / "out", layers=[7], scheduler=address,
               verbose=0)
    with pytest.raises(TypeError, match="'model' must be a model name or path with "
                                        "'scheduler'"):
        record(make_loaded("llama"), TEXTS, tmp_path / "out", scheduler=address, verbose=0)


def test_a_worker_with_other_weights_is_refused(tmp_path):
    """The check each task makes, run here with this process's resource slot."""
    from llmfbn.cluster._workers import add_slot, drop_slot
    from llmfbn.recording._distributed import _record_shard, _Shard

    add_slot("other-weights", lambda: make_loaded("llama", seed=1))
    try:
        shard = _Shard(0, 1, None, frozenset(), None, "other-weights", "seed:0", None)
        with pytest.raises(ValueError, match="has weights seed:1, the job's first worker had "
                                             "seed:0"):
            _record_shard(shard)
    finally:
        drop_slot("other-weights")


def test_a_task_writes_nothing_once_its_lock_is_gone(tmp_path):
    from llmfbn.recording._distributed import _WhileLocked, lock_stamp
    from llmfbn.recording._plan import RunPlan

    class Writer:
        finished = []

        def finish(self, run, parts):
            self.finished.append(run.number)

    (tmp_path / "rec").mkdir()
    lock = OutputLock(tmp_path / "rec").acquire()
    stamp = lock_stamp(tmp_path / "rec")
    writer = _WhileLocked(Writer(), tmp_path / "rec", stamp)
    writer.finish(RunPlan(1), [])
    lock.release()
    OutputLock(tmp_path / "rec").acquire()  # another job's lock
    with pytest.raises(RuntimeError, match="no longer locked by the job"):
        writer.finish(RunPlan(2), [])
    assert Writer.finished == [1]


# -- command line -----------------------------------------------------------------------


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


def test_cli_record_scheduler_local_2(model_dirs, text_file, tmp_path, capsys):
    common = ["record", "--model", model_dirs["llama"], "--input", str(text_file),
              "--batch-size", "2", "-q"]
    with threads(max((os.cpu_count() or 1) // 2, 1)):  # a local:2 worker's
        assert main(common + ["--out", str(tmp_path / "here")]) == 0
    assert main(common + ["--out", str(tmp_path / "there"), "--scheduler", "local:2"]) == 0
    assert f"{len(TEXTS)} runs written now" in capsys.readouterr().out
    assert_same_folders(tmp_path / "here", tmp_path / "there")


@pytest.fixture
def no_model_loads(monkeypatch):
    import llmfbn.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(llmfbn.models, "load_model", refuse)


@pytest.mark.parametrize("value", ["local:0", "host:8786", "missing.json"])
def test_cli_bad_scheduler_is_one_line_before_any_model_loads(value, text_file, tmp_path,
                                                               capsys, no_model_loads):
    out = tmp_path / "out"
    assert main(["record", "--input", str(text_file), "--out", str(out),
                 "--scheduler", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmfbn: error: '--scheduler' must be") and err.count("\n") == 1
    assert not out.exists()


def test_cli_scheduler_with_a_locked_folder_fails_closed(text_file, tmp_path, capsys,
                                                         no_model_loads):
    out = tmp_path / "out"
    with OutputLock(out):
        assert main(["record", "--input", str(text_file), "--out", str(out),
                     "--scheduler", "local:2"]) == 2
    err = capsys.readouterr().err
    assert "is being written by process" in err and "nothing was changed" in err
    assert not out.exists()
