"""Record on a Dask cluster (``record(..., scheduler=...)``): one window of runs per task.

The client (the process that called :func:`~llmfbn.recording.record`) never
loads the weights: a first task returns what planning needs
(:func:`~llmfbn.recording._record.model_info` and the tokenizer) from a
worker. The client then holds the folder's lock, plans the windows over
every run exactly as one process would
(:func:`~llmfbn.recording._windows.plan_windows`) and sends each window with
an unfinished run to the cluster. A worker records its window with the model
it keeps (:func:`llmfbn.cluster.use_resource`, loaded once per worker) and
writes each run through the same :class:`~llmfbn.io.RecordingLayout` as one
process: image and events by atomic rename, sidecar last.

Retries: Dask runs the task of a worker that died again on another worker.
The retried task first verifies which of its runs are finished
(``layout.is_done``) and writes only the others, recomputing each batch whole
(so its rows are padded as before); temporary files of the dead worker have
hidden names that are never read as runs, and the client deletes them once
every task has ended. Before each write a worker checks that the folder's
lock is still the one its client took, so a task left running after its
client stopped writes nothing.
"""

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from llmfbn._utils import log
from llmfbn.cluster import TaskFailedError, connect, register_resource, run_tasks, use_resource
from llmfbn.io import RecordingLayout, lock_path, remove_stale_temporaries
from llmfbn.models import model_factory, model_key
from llmfbn.recording._capture import ActivationRecorder
from llmfbn.recording._record import model_info
from llmfbn.recording._windows import record_windows

__all__ = ["OnCluster", "on_cluster"]


@contextmanager
def on_cluster(scheduler, model, model_dtype=None, device=None, trust_remote_code=False,
               signal="mlp", layers=None, verbose=1):
    """Connect to ``scheduler`` and ready ``model`` on its workers.

    Parameters
    ----------
    scheduler : str
        As for :func:`llmfbn.cluster.connect`.
    model : str
        A name or path every worker loads (:func:`llmfbn.load_model`).
    model_dtype, device, trust_remote_code
        As for :func:`llmfbn.load_model` (default float32 on the CPU).
    signal, layers
        What is recorded (checked on the first worker).

    Yields
    ------
    OnCluster
    """
    dtype, device = model_dtype or "float32", device or "cpu"
    # Workers need not share this process's working folder: a local path goes absolute.
    where = str(Path(model).absolute()) if Path(model).exists() else model
    with connect(scheduler) as session:
        log(session.describe(), verbose)
        key = model_key(where, dtype, device)
        register_resource(session.client, key, model_factory(
            where, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
            n_threads=session.threads_per_worker))
        log(f"Loading {model!r} on the workers.", verbose)
        try:
            [(_, (info, tokenizer))] = run_tasks(
                session.client, _describe_model, [(key, signal, layers)],
                describe=lambda item: f"loading {model!r} on a worker", key="llmfbn-load",
                verbose=0)
        except TaskFailedError as err:
            if isinstance(err.cause, (ValueError, TypeError)):
                raise err.cause from None  # the caller's argument ('layers', 'device'): as here
            raise
        info["name"] = model  # what was asked for, as one process records it
        yield OnCluster(session, key, info, tokenizer)


def _describe_model(request):
    key, signal, layers = request
    with use_resource(key) as loaded:
        recorder = ActivationRecorder(loaded.model, signal=signal, layers=layers)
        return model_info(loaded, recorder), loaded.tokenizer


class OnCluster:
    """Records windows on a cluster's workers (what :func:`record` does with ``scheduler``).

    Attributes
    ----------
    session : llmfbn.cluster.ClusterSession
    key : str
        The model's resource key on the workers.
    info : dict
        :func:`~llmfbn.recording._record.model_info`, from the first worker.
    tokenizer : transformers tokenizer
        The first worker's.
    """

    def __init__(self, session, key, info, tokenizer):
        self.session, self.key = session, key
        self.info, self.tokenizer = info, tokenizer

    def record(self, spec, windows, done, desc, verbose):
        """Record the unfinished runs of ``windows``, one task per window.

        Parameters
        ----------
        spec : RunsSpec
        windows : list of Window
        done : set of int
            Runs finished before the job (verified by the caller).
        desc : str
            The progress bar's label; it counts the tokens of the batches run.
        verbose : int

        Raises
        ------
        TaskFailedError
            Naming the window's runs. Tasks still running elsewhere cannot
            write once the caller's lock is gone.
        RuntimeError
            When a run is still unfinished after every task succeeded.
        """
        layout = spec.layout
        # Workers need not share this process's working folder.
        spec = replace(spec, layout=RecordingLayout(
            layout.root.absolute(), layout.subject, layout.task,
            compress=layout.extension == ".nii.gz"))
        root = spec.layout.root
        stamp = lock_stamp(root)
        shards = [_Shard(i, len(windows), window,
                         frozenset(run.number for run in window.runs if run.number in done),
                         spec, self.key, self.info["weights_hash"], stamp)
                  for i, window in enumerate(windows)]
        for _ in run_tasks(self.session.client, _record_shard, shards, describe=_Shard.describe,
                           weight=lambda shard: shard.n_tokens(), desc=desc, unit="tok",
                           key="llmfbn-record", verbose=verbose):
            pass
        # Every task has ended: what a killed worker left half-written can go.
        removed = remove_stale_temporaries(root)
        if removed:
            log(f"Removed {removed} temporary files left by workers that died.", verbose)
        missing = [run.number for window in windows for run in window.runs
                   if run.number not in done and not spec.layout.is_done(
                       run.number, run.input_hash, spec.grid, reduction=spec.reduction)]
        if missing:
            raise RuntimeError(f"Runs {missing} are not finished although every task ended; "
                               f"re-run the same command to record them.")


def lock_stamp(root):
    """Identity of the lock on the recording folder ``root``, or None when it is unlocked.

    The lock file's inode, modification time and bytes (its holder's process,
    host and start): another job's lock differs in at least one of them.
    """
    path = lock_path(root)
    try:
        stat = os.stat(path)
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, content


@dataclass
class _Shard:
    """One task: a window, what is already finished, and how to write."""

    index: int
    n_shards: int
    window: object
    done: frozenset
    spec: object
    key: str
    weights_hash: object
    stamp: tuple

    def n_tokens(self):
        return sum(self.window.batch_tokens(b) for b in self.window.todo_batches(self.done))

    def describe(self):
        numbers = [run.number for run in self.window.runs]
        return (f"recording runs {numbers[0]}-{numbers[-1]} (window {self.index + 1} of "
                f"{self.n_shards})")


def _record_shard(shard):
    """Record one window on a worker; return the numbers of the runs written now."""
    spec = shard.spec
    with use_resource(shard.key) as loaded:
        if loaded.weights_hash != shard.weights_hash:
            raise ValueError(f"this worker's model {loaded.name!r} has weights "
                             f"{loaded.weights_hash}, the job's first worker had "
                             f"{shard.weights_hash}: every worker must read the same model "
                             f"files.")
        # A retried task keeps the runs its killed attempt finished (verified).
        done = set(shard.done) | {
            run.number for run in shard.window.runs if run.number not in shard.done
            and spec.layout.is_done(run.number, run.input_hash, spec.grid,
                                    reduction=spec.reduction)}
        writer = _WhileLocked(spec.writer(loaded.tokenizer), spec.layout.root, shard.stamp)
        with ActivationRecorder(loaded.model, signal=spec.signal,
                                layers=spec.layers) as recorder:
            return record_windows(recorder, [shard.window], done, writer, spec.pad_id,
                                  keep_on_device=spec.keep_on_device)


class _WhileLocked:
    """A run writer that writes only while the client's lock on the folder is the same."""

    def __init__(self, writer, root, stamp):
        self.writer, self.root, self.stamp = writer, root, stamp

    def add(self, run, act):
        return self.writer.add(run, act)

    def finish(self, run, parts):
        if lock_stamp(self.root) != self.stamp:
            raise RuntimeError(f"{self.root} is no longer locked by the job that sent this "
                               f"task (its client stopped); run {run.number} was not written.")
        self.writer.finish(run, parts)
