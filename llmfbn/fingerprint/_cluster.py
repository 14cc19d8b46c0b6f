"""``fingerprint(..., scheduler=...)``: each model's work as one task on a Dask cluster.

The client (the process that called :func:`~llmfbn.fingerprint.fingerprint`)
never loads weights, so it needs no GPU. Two rounds of tasks, one task per
distinct model in each:

1. **Checks.** A worker loads the model, checks its tokenizer and neurons,
   places its tokens on the texts' words and returns them with the model's
   neuron grid (and so its weights hash); the client builds the shared word axis and checks it, as
   one process does, before any forward pass.
2. **Features.** A worker loads the model again, refuses weights whose hash
   differs from the check's (every worker must read the same model), records
   its word activations, fits its networks and returns the time courses and
   the centred Gram matrix (:func:`~llmfbn.fingerprint._fingerprint._model_features`).
   The client scores them exactly as without a scheduler.

A model is not kept on the workers between the rounds (no
:func:`llmfbn.cluster.register_resource`): a fingerprint runs many models
once each, and a worker holds one model's weights at a time, as one process
does.
"""

from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from llmfbn._utils import log
from llmfbn.cluster import (
    TaskFailedError,
    check_scheduler,
    connect,
    require_distributed,
    run_tasks,
)
from llmfbn.fingerprint._fingerprint import _load, _model_features, _read_words, _release
from llmfbn.models import LoadedModel, check_dtype, resolve_device

__all__ = ["OnCluster", "on_cluster"]


@contextmanager
def on_cluster(scheduler, models, device=None, dtype="float32", verbose=0):
    """Check ``scheduler`` and ``models``, then connect.

    Parameters
    ----------
    scheduler : str
        As for :func:`llmfbn.cluster.connect`.
    models : list of _Model
        The distinct models, the reference first; each a name or a path.
    device : str, optional
        Where the workers run the models (resolved on each worker); default
        ``"cpu"``.
    dtype : str, default "float32"
        Weight dtype (checked on each worker against its device).
    verbose : int, default 0

    Yields
    ------
    OnCluster
    """
    check_scheduler(scheduler)
    require_distributed()
    given = [model.label for model in models if isinstance(model.spec, LoadedModel)]
    if given:
        raise TypeError(f"With 'scheduler' every model must be a name or a path that the "
                        f"workers load themselves. A LoadedModel was provided for {given}.")
    with connect(scheduler) as session:
        log(session.describe(), verbose)
        yield OnCluster(session, device, dtype, verbose)


@dataclass
class _Task:
    """One model's task: the model (its spec a name or an absolute path) and how to load it."""

    model: object
    device: object
    dtype: str
    n_threads: int
    weights_hash: object = None  # the check's; the features' worker must load the same

    def describe(self, doing):
        return f"{doing} the {self.model.role} {self.model.label!r}"


class OnCluster:
    """Runs each model's work on a cluster's workers (what ``fingerprint`` does with a scheduler).

    Parameters
    ----------
    session : llmfbn.cluster.ClusterSession
    device, dtype, verbose
        As for :func:`on_cluster`.
    """

    def __init__(self, session, device, dtype, verbose):
        self.session, self.device, self.dtype, self.verbose = session, device, dtype, verbose
        self._hashes = {}

    def _task(self, position, model):
        """``model`` (its words, once placed) as a worker loads it."""
        spec = Path(model.spec)
        # Workers need not share this process's working folder: a local path goes absolute.
        where = str(spec.absolute()) if spec.exists() else str(model.spec)
        return _Task(replace(model, spec=where, loaded=None), self.device, self.dtype,
                     self.session.threads_per_worker, self._hashes.get(position))

    def words(self, models, texts, max_tokens):
        """Each model's TokenWords, in order, each checked on a worker (one task per model).

        Raises
        ------
        ValueError, TypeError
            As one process raises them (a model that cannot be loaded, a slow
            tokenizer, too few neurons; a device or dtype the worker cannot run).
        TaskFailedError
            Any other failure, naming the model.
        """
        requests = [(self._task(i, model), texts, max_tokens) for i, model in enumerate(models)]
        words = [None] * len(models)
        try:
            for i, (placed, grid) in run_tasks(
                    self.session.client, _check_model, requests,
                    describe=lambda request: request[0].describe("checking"),
                    desc="checking models", unit="model", key="llmfbn-fingerprint-check",
                    verbose=self.verbose):
                words[i], self._hashes[i] = (placed, grid), grid.weights_hash
        except TaskFailedError as err:
            if isinstance(err.cause, (ValueError, TypeError)):
                raise err.cause from None  # the model's or the caller's argument: as here
            raise
        return words

    def features(self, models, axis, n_components, batch_size, random_state, atlas=None,
                 reference_is_candidate=True):
        """Yield ``(position, features)`` of each model as its task ends (see
        :func:`~llmfbn.fingerprint._fingerprint._model_features`).

        ``atlas``: the reference's networks, if they come from an atlas (sent
        with the reference's task); its own CanICA networks are then fitted
        only if ``reference_is_candidate``.

        Raises
        ------
        TaskFailedError
            Naming the model whose task failed.
        """
        requests = [(self._task(i, model), axis, n_components, batch_size, random_state,
                     atlas if i == 0 else None, i != 0 or reference_is_candidate)
                    for i, model in enumerate(models)]
        yield from run_tasks(self.session.client, _fingerprint_model, requests,
                             describe=lambda request: request[0].describe("fingerprinting"),
                             desc="fingerprint", unit="model", key="llmfbn-fingerprint",
                             verbose=self.verbose)


def _load_on_worker(task):
    """``task.model`` with its model loaded on this worker."""
    import torch

    torch.set_num_threads(task.n_threads)
    device = resolve_device("cpu" if task.device is None else task.device)
    check_dtype(task.dtype, device)
    model = task.model
    model.loaded = _load(model, device, task.dtype, verbose=0)
    return model


def _check_model(request):
    """On a worker: ``(TokenWords, NeuronGrid)`` of a model whose tokenizer and neurons pass."""
    task, texts, max_tokens = request
    model = _load_on_worker(task)
    try:
        return _read_words(model, texts, max_tokens)
    finally:
        _release(model)


def _fingerprint_model(request):
    """On a worker: ``(time_courses, gram)`` of a model (its weights the check's)."""
    task, axis, n_components, batch_size, random_state, atlas, as_candidate = request
    model = _load_on_worker(task)
    if model.loaded.weights_hash != task.weights_hash:
        found = model.loaded.weights_hash
        _release(model)
        raise ValueError(f"this worker's copy of {model.label!r} has weights {found}, the "
                         f"worker that checked it had {task.weights_hash}: every worker must "
                         f"read the same model")
    return _model_features(model, axis, n_components, batch_size, random_state, atlas=atlas,
                           as_candidate=as_candidate)
