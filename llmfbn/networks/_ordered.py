"""Per-run tasks on a Dask cluster, results taken in run order with a bounded window.

:func:`llmfbn.cluster.run_tasks` yields results as they finish; a streaming
merge whose result depends on the order of its blocks (MIGP) needs them in
run order, and a bounded number of them on the client. :func:`map_in_order`
keeps ``window`` tasks in flight, takes the oldest one's result when it ends,
then submits the next: results finished ahead of an older one wait on their
workers, never on the client.
"""

import uuid
from asyncio import CancelledError
from collections import deque

from tqdm.auto import tqdm

__all__ = ["map_in_order"]


def map_in_order(client, fn, items, window=None, describe=str, desc=None, unit="task",
                 verbose=1):
    """Yield ``fn(item)`` for every item, in the items' order, computed on the cluster.

    Parameters
    ----------
    client : distributed.Client
    fn : callable
        Picklable; runs on a worker. Its result comes back to the client.
    items : list
        One task per item.
    window : int, optional
        Tasks submitted and not yet taken, at most. Default: twice the
        cluster's worker threads, so no worker idles while the oldest task
        ends; results the client holds at once: one.
    describe : callable, default str
        ``describe(item)`` names a failed task in the error.
    desc, unit : str, optional
        The progress bar's label and unit (one bar over every item).
    verbose : int, default 1
        0 hides the progress bar.

    Yields
    ------
    result
        ``fn(items[i])``, for i = 0, 1, ...

    Raises
    ------
    TaskFailedError
        At the first failed task in the items' order (a worker that died is
        retried by Dask first); the tasks in flight are cancelled.
    """
    from distributed import wait

    from llmfbn.cluster import TaskFailedError

    items = list(items)
    if window is None:
        window = 2 * max(sum(client.nthreads().values()), 1)
    if window < 1:
        raise ValueError(f"'window' must be a positive number of tasks. {window} was provided.")
    # A fresh token per call: Dask reuses a key's result while the key lives.
    name = getattr(getattr(fn, "func", fn), "__name__", "task")  # a partial's function
    prefix = f"{name}-{uuid.uuid4().hex[:8]}"
    in_flight = deque()

    def submit(i):
        in_flight.append(client.submit(fn, items[i], key=f"{prefix}-{i}", pure=False))

    for i in range(min(window, len(items))):
        submit(i)
    progress = tqdm(total=len(items), desc=desc, unit=unit, disable=verbose < 1 or not items)
    try:
        with progress:
            for i, item in enumerate(items):
                future = in_flight.popleft()
                wait([future])
                if future.status != "finished":
                    try:
                        cause = future.exception()  # the worker's error, or KilledWorker
                    except (Exception, CancelledError) as err:  # cancelled: the cancellation
                        cause = err
                    raise TaskFailedError(describe(item), cause) from None
                result = future.result()
                future.release()
                if i + window < len(items):
                    submit(i + window)
                progress.update(1)
                yield result
    finally:
        client.cancel(list(in_flight))
