"""What a report is made of: recognise each given folder or file.

A report takes whatever ``llmfbn`` wrote: recording folders (``llmfbn record``),
networks folders (``llmfbn networks``), GLM folders (``llmfbn glm``),
consistency JSON files (``llmfbn consistency``), intervention CSV files
(``llmfbn intervene`` / ``llmfbn evaluate``) and pruned model folders
(``llmfbn prune``; only their ``pruning.json`` is read, never the weights). A
folder that is none of these is searched one level down, so the output folder
of ``make demo`` works as a whole.
"""

from dataclasses import dataclass, field
from pathlib import Path

from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    folder_kind,
    is_consistency_file,
    is_pruned_folder,
    is_results_file,
    read_consistency,
    read_description,
    read_grid,
    read_pruning,
)

__all__ = ["ReportInput", "find_inputs"]

KINDS = ("recording", "networks", "glm", "consistency", "pruned", "intervention")
#: Folder kinds (``llmfbn.json``) a report shows.
FOLDER_KINDS = ("recording", "networks", "glm")


@dataclass
class ReportInput:
    """One recognised input: its kind, path and, when it has one, its grid."""

    kind: str
    path: Path
    grid: NeuronGrid = None
    details: dict = field(default_factory=dict)

    @property
    def label(self):
        return f"{self.kind} {self.path}"


def _recognise(path):
    """The ReportInput for ``path``, or None when it is none of the known kinds.

    Folders are recognised by their kind (``llmfbn.json``), pruned model
    folders by their ``pruning.json`` (:func:`llmfbn.io.read_pruning`; the
    grid is the source model's MLP grid), consistency files by
    :func:`llmfbn.io.read_consistency`, intervention tables by their header
    (:data:`llmfbn.io.RESULT_COLUMNS`). A damaged file of a known kind raises
    FormatError naming it.
    """
    path = Path(path)
    if is_pruned_folder(path):
        return _pruned_input(path)
    if path.is_dir():
        kind = folder_kind(path)
        if kind not in FOLDER_KINDS:
            return None
        details = {"identity": read_description(path)} if kind == "recording" else {}
        return ReportInput(kind, path, read_grid(path), details)
    if is_consistency_file(path):
        return ReportInput("consistency", path, details={"document": read_consistency(path)})
    if is_results_file(path):
        return ReportInput("intervention", path)
    return None


def _pruned_input(path):
    """A pruned model folder: its manifest and the source model's grid (no weights read)."""
    from llmfbn.plotting import pruning_map

    manifest = read_pruning(path)
    try:
        _, grid = pruning_map(manifest)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return ReportInput("pruned", path, grid, {"manifest": manifest})


def find_inputs(paths):
    """Recognise every path and check they all come from one model and grid.

    Parameters
    ----------
    paths : list of str or Path
        Folders or files written by llmfbn. A folder that is none of the known
        kinds contributes the known kinds found directly inside it.

    Returns
    -------
    list of ReportInput, in the order given (children sorted by name), each
    path once

    Raises
    ------
    ValueError
        For a path that does not exist or holds nothing llmfbn wrote, and for
        inputs of different models or grids (both are named).
    """
    if not paths:
        raise ValueError("'paths' must name at least one folder or file. [] was provided.")
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(f"{path} does not exist.")
        item = _recognise(path)
        if item is not None:
            found.append(item)
            continue
        children = ([_recognise(child) for child in sorted(path.iterdir())
                     if not child.name.startswith(".")]  # e.g. what a killed writer left
                    if path.is_dir() else [])
        children = [c for c in children if c is not None]
        if not children:
            raise ValueError(
                f"{path} is not something llmfbn wrote: expected a recording, networks or "
                f"GLM folder (each has an llmfbn.json), a pruned model folder (with a "
                f"pruning.json), a consistency .json or an intervention .csv, or a folder "
                f"holding some of them.")
        found.extend(children)
    unique = {}
    for item in found:  # the same folder given twice (or inside a given folder) counts once
        unique.setdefault(item.path.resolve(), item)
    found = list(unique.values())
    _check_same_grid(found)
    return found


def _check_same_grid(items):
    """One report covers one model and grid (:meth:`NeuronGrid.check_compatible`)."""
    with_grid = [item for item in items if item.grid is not None]
    if not with_grid:
        return
    first = with_grid[0]
    for item in with_grid[1:]:
        try:
            item.grid.check_compatible(first.grid, names=(f"{item.path} ({item.kind})",
                                                          f"{first.path} ({first.kind})"))
        except ValueError as err:
            raise ValueError(f"{err} One report covers one model and grid.") from None
