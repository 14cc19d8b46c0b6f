"""Run llmfbn's work on a Dask cluster (``--scheduler``): recording, fits and sweeps.

Dask's ``distributed`` scheduler is an optional dependency (``pip install
'llmfbn[cluster]'``); nothing here imports it until a cluster is asked for,
and without ``scheduler`` every command runs in its own process as before.

- :func:`connect` opens a client for ``"local:N"`` (a ``LocalCluster`` of N
  worker processes on this machine) or a running scheduler
  (``"tcp://host:8786"``, or a scheduler file), as a context manager.
- :func:`register_resource` / :func:`use_resource`: what a worker keeps
  between tasks, such as a loaded model, built once per worker.
- :func:`run_tasks`: submit independent tasks, one progress bar on the
  client, the first failure raised as :class:`TaskFailedError` naming the
  task.

Workers must see the same filesystem as the client (the output folder, the
input files, local model folders).
"""

from llmfbn.cluster._client import ClusterSession, check_scheduler, connect, require_distributed
from llmfbn.cluster._tasks import TaskFailedError, run_tasks
from llmfbn.cluster._workers import use_resource

__all__ = [
    "ClusterSession",
    "TaskFailedError",
    "check_scheduler",
    "connect",
    "register_resource",
    "require_distributed",
    "run_tasks",
    "use_resource",
]


def register_resource(client, key, factory):
    """Install ``factory``'s resource under ``key`` on every worker of ``client``.

    Built once per worker, on first use by a task (:func:`use_resource`);
    workers that join later, a restarted one included, get it too. The same
    key and factory registered again change nothing, so a model stays
    loaded across calls that share a client.

    Parameters
    ----------
    client : distributed.Client
    key : str
    factory : callable
        Picklable, no arguments (``functools.partial(load_model, name, ...)``).
    """
    from llmfbn.cluster._plugin import register_resource as register

    register(client, key, factory)
