"""Several models' recordings as the subjects of one group decomposition.

Models with the same grid are subjects: the runs of every recording go to one
group ICA (nilearn takes a list of subjects natively). The recordings must
place the same neurons on the same voxels (grid geometry, layers, per-layer
widths and, for pruned models, the same neurons present) and hold the same
signal and kind of run (every token, or reduced with one ``--reduce K``);
the models themselves may differ, that is the point. Everything is checked
from the folders' ``grid.json`` and description before any image is read.
"""

from dataclasses import dataclass
from pathlib import Path

from llmfbn.io import (
    check_folder,
    find_runs,
    is_run_image,
    read_description,
    read_grid,
    run_reduction,
)

__all__ = ["GroupRecording", "find_group_runs", "is_recording_list"]


@dataclass(frozen=True)
class GroupRecording:
    """One recording of a group decomposition (one subject).

    Attributes
    ----------
    path : Path
        The recording folder, as given.
    model : str or None
        The model's name (its grid's).
    weights_hash : str or None
    runs : tuple of Path
        Its ``_bold`` images, in (task, run) order.
    """

    path: Path
    model: str
    weights_hash: str
    runs: tuple

    def to_dict(self):
        """``{"path", "model", "weights_hash", "n_runs"}``, as ``params.json`` keeps it."""
        return {"path": str(self.path), "model": self.model,
                "weights_hash": self.weights_hash, "n_runs": len(self.runs)}


def is_recording_list(source):
    """True when ``source`` is a list of recording folders (not of ``_bold`` images).

    A list whose items all name something other than a ``_bold`` image; a
    list mixing both is refused (ValueError naming one of each).
    """
    if not isinstance(source, (list, tuple)) or not source:
        return False
    images = [isinstance(p, (str, Path)) and is_run_image(p) for p in source]
    if all(images):
        return False
    if any(images):
        image = source[images.index(True)]
        folder = source[images.index(False)]
        raise ValueError(f"'imgs' must list recording folders or run images, not both. "
                         f"{folder} and {image} were provided.")
    return True


def _describe_kind(reduction):
    return "keeps every token" if reduction is None else \
        f"is reduced (--reduce {reduction['n_components']})"


def find_group_runs(recordings, task=None):
    """Resolve several recording folders to the runs of one group decomposition.

    The recordings are checked in this order, each failure one line naming
    the folder and what differs, before any image is read: each path once
    (the same folder twice, however spelled, is refused), each a recording
    folder, every grid the first one's (:meth:`NeuronGrid.check_compatible`
    with another model allowed: layers, per-layer widths, neurons present,
    affine) with the same signal, and the same kind of run (token or reduced
    with one K) as the descriptions say. Then each folder's runs are found
    and checked cheaply (:func:`llmfbn.io.find_runs`, headers only) and their
    kind compared again from the runs' sidecars.

    Parameters
    ----------
    recordings : list of str or Path
        Recording folders (``llmfbn record``), one per model (subject).
    task : str, optional
        Only the runs of this task, in every recording (each must have some).

    Returns
    -------
    paths : list of Path
        Every run of every recording, recordings in the order given.
    grid : NeuronGrid
        The first recording's grid (the group's neurons; its model is the
        first recording's).
    group : list of GroupRecording
        One per recording, in the order given.
    """
    if not isinstance(recordings, (list, tuple)) or not recordings:
        raise ValueError(f"'recordings' must list at least one recording folder. "
                         f"{recordings!r} was provided.")
    roots = []
    for item in recordings:
        if not isinstance(item, (str, Path)):
            raise TypeError(f"'recordings' must hold folder paths (str or Path). "
                            f"{type(item).__name__} was provided.")
        roots.append(Path(item))
    seen = {}
    for root in roots:
        key = root.resolve()
        if key in seen:
            raise ValueError(f"{root}: the recording is given twice ({seen[key]} and {root}); "
                             f"each recording is one subject of the group, once.")
        seen[key] = root
    grids, kinds = [], []
    for root in roots:
        check_folder(root, "recording")
        grids.append(read_grid(root))
        kinds.append(read_description(root).get("reduction", "unknown"))
    first, grid = roots[0], grids[0]
    for root, other, kind in zip(roots[1:], grids[1:], kinds[1:]):
        if other.signal != grid.signal:
            raise ValueError(f"{root} records signal {other.signal!r} but {first} records "
                             f"{grid.signal!r}: one group decomposition needs one signal.")
        try:
            other.check_compatible(grid, allow_other_model=True,
                                   names=(f"The neurons of {root}", f"those of {first}"))
        except ValueError as err:
            raise ValueError(f"{err} One group decomposition needs one grid.") from None
        if "unknown" not in (kind, kinds[0]):
            _check_same_kind(root, kind, first, kinds[0])
    paths, group = [], []
    for root, other in zip(roots, grids):
        runs, _ = find_runs(root, task=task)
        paths.extend(runs)
        group.append(GroupRecording(root, other.model, other.weights_hash, tuple(runs)))
    reductions = [run_reduction(entry.runs[0]) for entry in group]
    for entry, reduction in zip(group[1:], reductions[1:]):
        _check_same_kind(entry.path, reduction, first, reductions[0])
    return paths, grid, group


def _check_same_kind(root, kind, first, first_kind):
    """Raise unless two recordings hold the same kind of run (token, or reduced to one K)."""
    k = None if kind is None else kind.get("n_components")
    k_first = None if first_kind is None else first_kind.get("n_components")
    if k != k_first:
        raise ValueError(f"{root} {_describe_kind(kind)} but {first} "
                         f"{_describe_kind(first_kind)}: one group decomposition needs runs of "
                         f"one kind; record both the same way.")
