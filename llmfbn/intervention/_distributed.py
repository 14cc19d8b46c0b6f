"""Evaluations on a Dask cluster (``scheduler=``): units of work, their worker side.

A unit is one evaluation of the unmodified model (a baseline) or one
network edited with its matched controls on one evaluation
(:func:`~llmfbn.intervention._units.edited_scores`, which shares their
prefix computation). Each worker loads the model once
(:func:`llmfbn.cluster.use_resource` under :func:`llmfbn.models.model_key`),
checks that its weights are the client's, computes a unit's scores and sends
them back; the client turns them into rows and writes them
(:func:`~llmfbn.intervention.intervention_sweep`). A unit carries its
:class:`~llmfbn.intervention.Evaluation` (cloudpickle ships its closure; the
evaluation file is read on the worker, from the shared filesystem) and, for
an edit, the network's mask, never the controls: the worker draws them from
the same seed.
"""

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmfbn.intervention._units import edited_scores, value_key

__all__ = ["EvaluationUnit", "cluster_session", "run_units"]


@dataclass(frozen=True)
class EvaluationUnit:
    """What one task computes: a baseline (``network`` None) or one edited network.

    Attributes
    ----------
    evaluation : Evaluation
    network : int or None
        The network's index; None for the unmodified model.
    mask : bool array of shape (n_layers, n_units) or None
        The network.
    layers : tuple of int
        The model layer of each grid slot.
    mode : str
    value : float or None
    n_controls : int
    seed : int or None
        The matched controls' seed.
    """

    evaluation: object
    network: object = None
    mask: object = None
    layers: tuple = ()
    mode: str = "none"
    value: object = None
    n_controls: int = 0
    seed: object = None

    @property
    def weight(self):
        """Evaluations this unit runs: 1, or the network and its controls."""
        return 1 if self.network is None else 1 + self.n_controls

    def describe(self):
        """The unit in an error message: ``"network 3 (amplify 2) on task 'sst2'"``."""
        task = f"task {self.evaluation.task!r}"
        if self.network is None:
            return f"the baseline of {task}"
        edit = self.mode if self.value is None else f"{self.mode} {value_key(self.value)}"
        return f"network {self.network} ({edit}) on {task}"


@contextmanager
def cluster_session(scheduler, verbose=1):
    """``scheduler`` as an open :class:`~llmfbn.cluster.ClusterSession`.

    A str (``"local:2"``, ``"tcp://host:8786"``, a scheduler file) is
    connected here and closed on exit; a ClusterSession is used as it is.
    """
    from llmfbn._utils import log
    from llmfbn.cluster import ClusterSession, connect

    if isinstance(scheduler, ClusterSession):
        yield scheduler
        return
    with connect(scheduler) as session:
        log(session.describe(), verbose)
        yield session


def _worker_model_name(loaded):
    """What a worker loads: a built-in or hub name as given, a local file or folder by
    its absolute path (a worker's working folder may differ)."""
    from llmfbn.models import BUILTIN_MODELS

    name = str(loaded.name)
    if name in BUILTIN_MODELS or not Path(str(loaded.source)).exists():
        return name
    return str(loaded.source)


def _evaluate_unit(key, weights_hash, unit):
    """A unit's scores, on a worker: ``{metric: score}`` or a list of them (edits)."""
    from llmfbn.cluster import use_resource

    with use_resource(key) as loaded:
        if loaded.weights_hash != weights_hash:
            raise ValueError(
                f"The worker's model {loaded.name!r} has weights {loaded.weights_hash}, the "
                f"client's {weights_hash}: every worker must read the same model files.")
        if unit.network is None:
            return unit.evaluation.run(loaded.model, loaded.tokenizer)
        return edited_scores(loaded.model, loaded.tokenizer, unit.evaluation, unit.mask,
                             unit.layers, unit.mode, unit.value, unit.n_controls, unit.seed)


def run_units(session, loaded, units, desc=None, verbose=1):
    """Compute ``units`` on the cluster; yield ``(index, scores)`` as each ends.

    Parameters
    ----------
    session : ClusterSession
    loaded : LoadedModel
        The client's model: the workers load the same name, dtype and device
        (once per worker) and must find the same ``weights_hash``.
    units : list of EvaluationUnit
    desc : str, optional
        The progress bar's label; the bar counts evaluations
        (:attr:`EvaluationUnit.weight`).
    verbose : int, default 1

    Yields
    ------
    index : int
        The unit's position in ``units``, in completion order.
    scores : dict or list of dict
        ``evaluation.run``'s result (a baseline), or
        :func:`~llmfbn.intervention._units.edited_scores`'s (an edit).

    Raises
    ------
    TaskFailedError
        At the first unit that fails, naming it (:meth:`EvaluationUnit.describe`).
    """
    from llmfbn.cluster import register_resource, run_tasks
    from llmfbn.models import model_factory, model_key

    name = _worker_model_name(loaded)
    key = model_key(name, loaded.dtype, loaded.device)
    register_resource(session.client, key,
                      model_factory(name, loaded.dtype, loaded.device,
                                    n_threads=session.threads_per_worker))
    yield from run_tasks(session.client,
                         functools.partial(_evaluate_unit, key, loaded.weights_hash), units,
                         describe=EvaluationUnit.describe, weight=lambda u: u.weight,
                         desc=desc, unit="eval", key="llmfbn-evaluate", verbose=verbose)
