"""``grid.json``: the neuron <-> voxel map of every recording, networks and GLM folder."""

from pathlib import Path

from llmfbn.grid import NeuronGrid
from llmfbn.io._atomic import write_json
from llmfbn.io._errors import FormatError
from llmfbn.io._json import read_json

__all__ = ["GRID_FILE", "read_grid", "write_grid"]

GRID_FILE = "grid.json"


def write_grid(path, grid):
    """Write ``grid`` to ``path`` (a ``grid.json`` file, or a folder) atomically."""
    path = Path(path)
    if path.is_dir():
        path = path / GRID_FILE
    write_json(path, grid.to_dict(), indent=2)
    return path


def read_grid(path):
    """Read a :class:`~llmfbn.grid.NeuronGrid` from ``grid.json`` or a folder holding one.

    Raises
    ------
    FileNotFoundError
        When there is no ``grid.json``.
    FormatError
        When it is damaged, inconsistent or of an unknown format version; the
        message names the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / GRID_FILE
    document = read_json(path, what=GRID_FILE)
    try:
        return NeuronGrid.from_dict(document)
    except (KeyError, TypeError, ValueError) as err:
        detail = f"it lacks {err}" if isinstance(err, KeyError) else str(err)
        raise FormatError(f"{path} is not a valid {GRID_FILE}: {detail}") from None
