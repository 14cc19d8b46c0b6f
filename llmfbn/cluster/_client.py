"""Connect to a Dask scheduler: ``local:N`` (a LocalCluster here) or a running one."""

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClusterSession", "check_scheduler", "connect", "require_distributed"]

_LOCAL = re.compile(r"local:(\d+)")
_ADDRESS = re.compile(r"(tcp|tls|ucx|inproc)://\S+")
_ALLOWED = ("'local:N' (N >= 1 worker processes on this machine), a scheduler address such "
            "as 'tcp://host:8786', or a scheduler file (.json, from `dask scheduler "
            "--scheduler-file`)")
INSTALL_HINT = "pip install 'llmfbn[cluster]' (or dask[distributed])"


def require_distributed():
    """Import ``distributed``, or raise a one-line ModuleNotFoundError saying how to install it."""
    try:
        import distributed
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"'scheduler' needs Dask's distributed scheduler, which is not installed: "
            f"{INSTALL_HINT}.") from None
    return distributed


def check_scheduler(scheduler):
    """Check a ``scheduler`` value without connecting.

    Returns
    -------
    kind : {"local", "address", "file"}
    value : int or str
        Worker processes for ``"local"``; the address or the file's path.
    """
    if not isinstance(scheduler, str):
        raise TypeError(f"'scheduler' must be {_ALLOWED}. {scheduler!r} was provided.")
    local = _LOCAL.fullmatch(scheduler.strip())
    if local:
        n = int(local.group(1))
        if n < 1:
            raise ValueError(f"'scheduler' must be {_ALLOWED}. {scheduler!r} was provided "
                             f"(a LocalCluster needs at least 1 worker).")
        return "local", n
    if _ADDRESS.fullmatch(scheduler.strip()):
        return "address", scheduler.strip()
    if scheduler.endswith(".json"):
        if not Path(scheduler).is_file():
            raise ValueError(f"'scheduler' must be {_ALLOWED}. The scheduler file {scheduler!r} "
                             f"does not exist.")
        return "file", scheduler
    raise ValueError(f"'scheduler' must be {_ALLOWED}. {scheduler!r} was provided.")


@dataclass
class ClusterSession:
    """An open connection: the client and what each worker may use.

    Attributes
    ----------
    client : distributed.Client
        Also the default client inside :func:`connect`'s block, so joblib's
        ``"dask"`` backend and ``dask.array`` computations run on it.
    scheduler : str
        What was asked for (``"local:2"``, ``"tcp://host:8786"``).
    n_workers : int
        Workers connected when the session opened.
    threads_per_worker : int
        Compute threads (torch, BLAS) a worker should use: the machine's cores
        divided among the workers for ``local:N``, else the workers' own
        ``nthreads`` (the smallest).
    """

    client: object
    scheduler: str
    n_workers: int
    threads_per_worker: int

    def describe(self):
        """One line for the log: where the work goes."""
        return (f"Dask scheduler {self.scheduler}: {self.n_workers} workers x "
                f"{self.threads_per_worker} threads")


@contextmanager
def connect(scheduler, threads_per_worker=None, timeout=30):
    """Open a Dask client for ``scheduler``; close what was started here on exit.

    Parameters
    ----------
    scheduler : str
        ``"local:N"``: a ``LocalCluster`` of N worker processes on this
        machine, each running one task at a time (the cores are shared among
        them: see ``threads_per_worker``), closed when the block ends.
        ``"tcp://host:port"`` (or tls://, ucx://): a running scheduler whose
        workers share the output's filesystem. A ``.json`` path: a
        scheduler file written by ``dask scheduler --scheduler-file``.
    threads_per_worker : int, optional
        Compute threads per worker for ``local:N``. Default:
        ``os.cpu_count() // N`` (at least 1), so N workers use the cores one
        process would.
    timeout : float, default 30
        Seconds to wait for a running scheduler, and then for its first
        worker.

    Yields
    ------
    ClusterSession
    """
    kind, value = check_scheduler(scheduler)
    distributed = require_distributed()
    if kind == "local":
        threads = threads_per_worker or max((os.cpu_count() or 1) // value, 1)
        # One task at a time per worker process: a worker holds one model, whose hooks
        # are not thread-safe; its cores go to torch/BLAS (ClusterSession.threads_per_worker).
        # dashboard_address=None still tries port 8787 (and warns when it is taken); ":0"
        # puts the dashboard, if bokeh is installed, on a free port.
        cluster = distributed.LocalCluster(
            n_workers=value, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR)
        try:
            with distributed.Client(cluster) as client:
                yield ClusterSession(client, scheduler, value, threads)
        finally:
            cluster.close()
        return
    options = {"scheduler_file": value} if kind == "file" else {"address": value}
    try:
        client = distributed.Client(timeout=timeout, **options)
    except (OSError, TimeoutError) as err:
        raise OSError(f"'scheduler' {scheduler!r} could not be reached within {timeout:g} s "
                      f"({type(err).__name__}: {' '.join(str(err).split())}). Start it with "
                      f"`dask scheduler` and its workers with `dask worker ADDRESS`.") from None
    with client:
        try:  # workers of a batch queue may still be starting
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise OSError(f"'scheduler' {scheduler!r} has no workers after {timeout:g} s. Start "
                          f"some with `dask worker {client.scheduler.address}`.") from None
        workers = client.scheduler_info(n_workers=-1)["workers"]
        threads = threads_per_worker or min(w["nthreads"] for w in workers.values())
        yield ClusterSession(client, scheduler, len(workers), threads)
