"""What a report is made of: recognise each given folder or file.

A report takes whatever ``llmfbn`` wrote: recording folders (``llmfbn record``),
networks folders (``llmfbn networks``), GLM folders (``llmfbn glm``),
consistency JSON files (``llmfbn consistency``) and intervention CSV files
(``llmfbn intervene`` / ``llmfbn evaluate``). A folder that is none of these
is searched one level down, so the output folder of ``make demo`` works as a
whole.
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from llmfbn.grid import NeuronGrid
from llmfbn.io import read_grid

__all__ = ["ReportInput", "find_inputs"]

KINDS = ("recording", "networks", "glm", "consistency", "intervention")
#: Columns that make a CSV an intervention results table.
INTERVENTION_COLUMNS = {"network", "task", "metric", "mode", "value", "control_mean",
                        "control_ci_low", "control_ci_high", "baseline"}


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


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _csv_header(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return []


def _recognise(path):
    """The ReportInput for ``path``, or None when it is none of the known kinds."""
    path = Path(path)
    if path.is_dir():
        if (path / "glm.json").exists() and (path / "networks.json").exists():
            return ReportInput("glm", path, read_grid(path))
        if (path / "networks.json").exists() and (path / "grid.json").exists():
            return ReportInput("networks", path, read_grid(path))
        if (path / "dataset_description.json").exists() and (path / "grid.json").exists():
            description = _read_json(path / "dataset_description.json") or {}
            return ReportInput("recording", path, read_grid(path),
                               {"identity": description.get("llmfbn", {})})
        return None
    if path.suffix == ".json":
        document = _read_json(path)
        if isinstance(document, dict) and {"folders", "pairs"} <= set(document):
            return ReportInput("consistency", path, details={"document": document})
        return None
    if path.suffix in (".csv", ".tsv") and INTERVENTION_COLUMNS <= set(_csv_header(path)):
        return ReportInput("intervention", path)
    return None


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
        children = [_recognise(child) for child in sorted(path.iterdir())] if path.is_dir() else []
        children = [c for c in children if c is not None]
        if not children:
            raise ValueError(
                f"{path} is not something llmfbn wrote: expected a recording folder "
                f"(grid.json + dataset_description.json), a networks folder (networks.json), "
                f"a GLM folder (glm.json), a consistency .json or an intervention .csv, "
                f"or a folder holding some of them.")
        found.extend(children)
    unique = {}
    for item in found:  # the same folder given twice (or inside a given folder) counts once
        unique.setdefault(item.path.resolve(), item)
    found = list(unique.values())
    _check_same_grid(found)
    return found


def _describe_grid(grid):
    return f"{grid.model} ({grid.n_layers} layers x {grid.width} units, signal {grid.signal})"


def _check_same_grid(items):
    with_grid = [item for item in items if item.grid is not None]
    if not with_grid:
        return
    first = with_grid[0]
    for item in with_grid[1:]:
        grid = item.grid
        if grid.model != first.grid.model:
            why = "different models"
        elif not grid.same_layout(first.grid):
            why = "different layers or grids"
        elif grid.signal != first.grid.signal:
            why = "different signals"
        else:
            continue
        raise ValueError(
            f"{item.path} ({item.kind}) is of {_describe_grid(grid)} but {first.path} "
            f"({first.kind}) of {_describe_grid(first.grid)}: one report covers one model "
            f"and grid ({why}).")
