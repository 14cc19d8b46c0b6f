"""Submit independent tasks to a cluster; one progress bar; failures named in one line."""

import uuid

from tqdm.auto import tqdm

__all__ = ["TaskFailedError", "run_tasks"]


class TaskFailedError(RuntimeError):
    """A task failed on a worker (or its workers kept dying); names what it was doing.

    Attributes
    ----------
    what : str
        The task, in the caller's words (``"run 3 (texts [4, 5])"``).
    cause : BaseException
        The worker's exception.
    """

    def __init__(self, what, cause):
        detail = " ".join(str(cause).split())
        if type(cause).__name__ == "KilledWorker":
            detail = ("its worker died every time it was tried (see the workers' logs: "
                      "out of memory?)")
        else:
            detail = f"{type(cause).__name__}: {detail}"
        super().__init__(f"{what} failed on the cluster: {detail}")
        self.what = what
        self.cause = cause


def run_tasks(client, fn, items, describe=str, weight=None, desc=None, unit="task", key=None,
              verbose=1):
    """Run ``fn(item)`` on the cluster for every item; yield ``(index, result)`` as each ends.

    Parameters
    ----------
    client : distributed.Client
    fn : callable
        Picklable; runs on a worker. Its result comes back to the client.
    items : list
        One task per item (each pickled to its worker).
    describe : callable, default str
        ``describe(item)`` names a task in an error message.
    weight : callable, optional
        ``weight(item)`` is what a finished task adds to the progress bar
        (tokens, evaluations); default 1.
    desc, unit : str, optional
        The progress bar's label and unit.
    key : str, optional
        Prefix of the tasks' Dask keys (shown in the dashboard). Default:
        ``fn``'s name.
    verbose : int, default 1
        0 hides the progress bar.

    Yields
    ------
    index : int
        The item's position in ``items``, in completion order.
    result
        ``fn(item)``.

    Raises
    ------
    TaskFailedError
        At the first task that fails (a worker that died is retried by Dask
        first): the tasks still pending are cancelled.
    """
    from distributed import as_completed

    items = list(items)
    weight = weight or (lambda item: 1)
    # A fresh token per call: Dask reuses a key's result while the key lives.
    prefix = f"{key or getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex[:8]}"
    futures = client.map(fn, items, key=[f"{prefix}-{i}" for i in range(len(items))],
                         pure=False)
    index = {future.key: i for i, future in enumerate(futures)}
    progress = tqdm(total=sum(weight(item) for item in items), desc=desc, unit=unit,
                    disable=verbose < 1 or not items)
    try:
        with progress:
            for future in as_completed(futures):
                i = index[future.key]
                if future.status != "finished":
                    try:
                        cause = future.exception()
                    except Exception as err:  # cancelled: the error is the cancellation
                        cause = err
                    raise TaskFailedError(describe(items[i]), cause) from None
                result = future.result()
                future.release()
                progress.update(weight(items[i]))
                yield i, result
    finally:
        client.cancel([f for f in futures if not f.done()])
