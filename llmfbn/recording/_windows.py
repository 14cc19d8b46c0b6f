"""Windows of whole runs and their batches: the unit of a recording, in one process or many.

A recording is cut into *windows*: consecutive whole runs, closed at the
first run boundary once a window holds ``batch_size * 4`` pieces. Within a
window the pieces are sorted by length (by run, then length, for a reduced
recording of several texts per run) and cut into batches
(:func:`plan_batches`). The windows depend only on the runs and the batch
settings, never on which runs are already written or on where they are
recorded, so a single process, a resumed one and the workers of a cluster
(each given some windows) pad exactly the same pieces into exactly the same
batches and compute the same bytes.
"""

from dataclasses import dataclass

__all__ = ["SORT_WINDOW_BATCHES", "Window", "plan_batches", "plan_windows", "record_windows"]

#: A window holds at least this many batches' worth of pieces (then its last run ends).
SORT_WINDOW_BATCHES = 4


def plan_batches(pieces, order, batch_size, max_batch_tokens=None):
    """Cut ``order`` into consecutive batches of at most ``batch_size`` pieces.

    A batch is padded to its longest piece, so it holds ``len(batch) *
    longest`` tokens; it also stays within ``max_batch_tokens`` of them, except
    that a batch always takes one piece, however long.

    Returns
    -------
    list of lists of int
    """
    batches, batch, longest = [], [], 0
    for i in order:
        n = len(pieces[i].token_ids)
        grown = max(longest, n)
        too_many = max_batch_tokens is not None and (len(batch) + 1) * grown > max_batch_tokens
        if batch and (len(batch) == batch_size or too_many):
            batches.append(batch)
            batch, grown = [], n
        batch.append(i)
        longest = grown
    if batch:
        batches.append(batch)
    return batches


@dataclass
class Window:
    """Consecutive whole runs and the batches their pieces are recorded in.

    Attributes
    ----------
    runs : list of RunPlan
    batches : list of list of (int, int)
        Each batch's pieces as ``(position of the run in runs, piece index in
        the run)``, in the order of the batch's rows.
    """

    runs: list
    batches: list

    def piece(self, entry):
        r, k = entry
        return self.runs[r].pieces[k]

    def batch_tokens(self, batch):
        """Real (unpadded) tokens of ``batch``."""
        return sum(len(self.piece(entry).token_ids) for entry in batch)

    def todo_batches(self, done):
        """The batches holding a piece of a run whose number is not in ``done``.

        A batch is run whole or not at all: a piece of a finished run that
        shares a batch with an unfinished one is computed again (and not
        written), so the unfinished run's rows are padded as in a recording
        that was never interrupted.
        """
        return [batch for batch in self.batches
                if any(self.runs[r].number not in done for r, _ in batch)]


def plan_windows(runs, batch_size, max_batch_tokens=None, by_run=False):
    """Cut ``runs`` into :class:`Window` s of whole runs, each batched.

    Parameters
    ----------
    runs : list of RunPlan
        Every run of the recording, in run order (finished ones included:
        the windows must not depend on what is finished).
    batch_size : int
        Most pieces per batch. A window closes at the first run boundary
        once it holds ``batch_size * SORT_WINDOW_BATCHES`` pieces.
    max_batch_tokens : int, optional
        Most padded tokens per batch (:func:`plan_batches`).
    by_run : bool, default False
        Order a window's pieces by (run, length) rather than by length
        alone: a reduced recording feeds one run's sketch at a time.

    Returns
    -------
    list of Window
    """
    windows, current, n_pieces = [], [], 0
    for run in runs:
        current.append(run)
        n_pieces += len(run.pieces)
        if n_pieces >= batch_size * SORT_WINDOW_BATCHES:
            windows.append(_batched(current, batch_size, max_batch_tokens, by_run))
            current, n_pieces = [], 0
    if current:
        windows.append(_batched(current, batch_size, max_batch_tokens, by_run))
    return windows


def _batched(runs, batch_size, max_batch_tokens, by_run):
    entries = [(r, k) for r, run in enumerate(runs) for k in range(len(run.pieces))]
    pieces = [runs[r].pieces[k] for r, k in entries]
    if by_run:
        order = sorted(range(len(entries)),
                       key=lambda i: (entries[i][0], len(pieces[i].token_ids)))
    else:
        order = sorted(range(len(entries)), key=lambda i: len(pieces[i].token_ids))
    batches = plan_batches(pieces, order, batch_size, max_batch_tokens)
    return Window(list(runs), [[entries[i] for i in batch] for batch in batches])


def record_windows(recorder, windows, done, writer, pad_id, keep_on_device=False,
                   on_batch=None):
    """Record the unfinished runs of ``windows`` and write each as soon as it is whole.

    Parameters
    ----------
    recorder : ActivationRecorder
        Entered (its hooks installed).
    windows : list of Window
    done : set of int
        Numbers of the runs already finished: not written again, and their
        batches skipped unless they hold a piece of an unfinished run.
    writer : object
        ``writer.add(run, act)`` takes one piece's activations, float32 of
        shape ``(n_tokens, n_layers, width)`` (an array, or a tensor on the
        model's device if ``keep_on_device``), and returns what
        ``writer.finish(run, parts)`` needs, given all of a run's parts in
        piece order.
    pad_id : int
    keep_on_device : bool, default False
    on_batch : callable, optional
        Called with each batch's real tokens once it is recorded.

    Returns
    -------
    written : list of int
        Numbers of the runs written, in the order they were.
    """
    written = []
    for window in windows:
        pending = {}
        for batch in window.todo_batches(done):
            acts = recorder.record([window.piece(entry).token_ids for entry in batch], pad_id,
                                   keep_on_device=keep_on_device)
            for (r, k), act in zip(batch, acts):
                run = window.runs[r]
                if run.number in done:
                    continue
                parts = pending.setdefault(run.number, [None] * len(run.pieces))
                parts[k] = writer.add(run, act if keep_on_device else act.numpy())
                if any(part is None for part in parts):
                    continue
                del pending[run.number]
                writer.finish(run, parts)
                written.append(run.number)
            acts = act = None  # the batch's buffer is freed before the next one is allocated
            if on_batch is not None:
                on_batch(window.batch_tokens(batch))
        if pending:  # every piece of an unfinished run is in a batch that was run
            raise RuntimeError(f"Runs {sorted(pending)} were left incomplete by their window.")
    return written
