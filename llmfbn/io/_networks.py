"""The networks folder (``llmfbn networks``), written whole and read with checks.

::

    llmfbn.json          {"kind": "networks", ...}
    grid.json            the neuron <-> voxel map
    components.nii.gz    4-D float32 z-maps, one volume per network
    networks.nii.gz      4-D uint8 masks, one volume per network
    networks.json        per network: size, layer counts, neurons, top tokens
    params.json          the estimator, its parameters and the runs it was fitted on

A GLM folder (:mod:`llmfbn.io._glm`) holds the same files and more, so it
reads as a networks folder too. A folder is built in a staging folder and
swapped in (:func:`llmfbn.io.replace_folder`): a killed writer leaves the old
folder or the new one, never a mix.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from llmfbn.grid import NeuronGrid
from llmfbn.io._atomic import atomic_path, write_json
from llmfbn.io._errors import FormatError
from llmfbn.io._folders import check_folder, replace_folder
from llmfbn.io._grid import GRID_FILE, read_grid, write_grid
from llmfbn.io._json import check_format_version, jsonable, read_json, require_keys

__all__ = [
    "COMPONENTS_FILE",
    "MASKS_FILE",
    "NETWORKS_FILE",
    "PARAMS_FILE",
    "NetworksFolder",
    "read_networks_folder",
    "write_networks_folder",
]

COMPONENTS_FILE = "components.nii.gz"
MASKS_FILE = "networks.nii.gz"
NETWORKS_FILE = "networks.json"
PARAMS_FILE = "params.json"
NETWORKS_FORMAT_VERSION = 1
PARAMS_FORMAT_VERSION = 1

#: Errors nibabel (and gzip) raise on a damaged or truncated image.
_IMAGE_ERRORS = (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError)


@dataclass
class NetworksFolder:
    """What a networks (or GLM) folder holds.

    Attributes
    ----------
    path : Path
    kind : {"networks", "glm"}
    maps : float32 array of shape (n_networks, n_layers, n_units)
    masks : bool array of shape (n_networks, n_layers, n_units)
    grid : NeuronGrid
    params : dict
        How the networks were made (``networks.json``'s ``params``).
    top_tokens : list of list of dict, or None
    estimator : str or None
        Name of the estimator that made them (``params.json``).
    estimator_params : dict or None
    runs : list of str or None
        The ``_bold`` images the estimator was fitted on.
    """

    path: Path
    kind: str
    maps: np.ndarray
    masks: np.ndarray
    grid: NeuronGrid
    params: dict
    top_tokens: list = None
    estimator: str = None
    estimator_params: dict = None
    runs: list = None


def _check_arrays(maps, masks, grid):
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks)
    expected = (grid.n_layers, grid.width)
    if maps.ndim != 3 or maps.shape[1:] != expected:
        raise ValueError(f"'maps' must have shape (n_networks, {expected[0]}, {expected[1]}). "
                         f"{maps.shape} was provided.")
    if masks.shape != maps.shape or masks.dtype != bool:
        raise ValueError(f"'masks' must be a boolean array of shape {maps.shape}. "
                         f"{masks.dtype} {masks.shape} was provided.")
    return maps, masks


def _network_entries(maps, masks, grid, top_tokens):
    layers = np.asarray(grid.layers)
    entries = []
    for k in range(len(masks)):
        slot, unit = np.nonzero(masks[k])
        counts = masks[k].sum(axis=1)
        entry = {
            "index": k,
            "size": int(masks[k].sum()),
            "layer_counts": {str(layer): int(c) for layer, c in zip(grid.layers, counts) if c},
            "neurons": np.stack([layers[slot], unit], axis=1).tolist(),
            "peak_z": float(maps[k].max()),
        }
        if top_tokens:
            entry["top_tokens"] = top_tokens[k]
        entries.append(entry)
    return entries


def save_image(img, path):
    """Save a Nifti image atomically."""
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def write_networks_files(folder, maps, masks, grid, params=None, top_tokens=None,
                         estimator=None, estimator_params=None, runs=None):
    """Write the files of a networks folder into ``folder`` (a staging folder).

    Use :func:`write_networks_folder` to write a whole folder; this is its
    body, shared with the GLM folder.
    """
    folder = Path(folder)
    maps, masks = _check_arrays(maps, masks, grid)
    if top_tokens is not None and len(top_tokens) != len(maps):
        raise ValueError(f"'top_tokens' must hold one list per network ({len(maps)}). "
                         f"{len(top_tokens)} were provided.")
    write_grid(folder / GRID_FILE, grid)
    save_image(grid.to_img(maps), folder / COMPONENTS_FILE)
    save_image(grid.to_img(masks.astype(np.uint8), dtype=np.uint8), folder / MASKS_FILE)
    write_json(folder / NETWORKS_FILE, {
        "format_version": NETWORKS_FORMAT_VERSION,
        "params": jsonable(dict(params or {})),
        "n_networks": len(maps),
        "networks": jsonable(_network_entries(maps, masks, grid, top_tokens)),
    })
    write_json(folder / PARAMS_FILE, {
        "format_version": PARAMS_FORMAT_VERSION,
        "estimator": estimator,
        "params": jsonable(estimator_params),
        "runs": None if runs is None else [str(r) for r in runs],
    }, indent=2)


def write_networks_folder(path, maps, masks, grid, params=None, top_tokens=None,
                          estimator=None, estimator_params=None, runs=None, overwrite=False):
    """Write a networks folder at ``path``, all or nothing.

    Parameters
    ----------
    path : str or Path
        A new or empty folder, or (with ``overwrite=True``) a networks folder.
        A folder of another kind, a foreign folder or a file is refused.
    maps : array of shape (n_networks, n_layers, n_units)
    masks : bool array of shape (n_networks, n_layers, n_units)
    grid : NeuronGrid
    params : dict, optional
        How the networks were made (threshold, method, ...).
    top_tokens : list of list of dict, optional
        Per network, its top tokens.
    estimator : str, optional
        Name of the estimator that made the networks.
    estimator_params : dict, optional
    runs : list of str or Path, optional
        The ``_bold`` images the estimator was fitted on.
    overwrite : bool, default False
        Replace an existing networks folder.

    Returns
    -------
    Path
    """
    path = Path(path)
    with replace_folder(path, "networks", overwrite=overwrite) as staging:
        write_networks_files(staging, maps, masks, grid, params, top_tokens, estimator,
                             estimator_params, runs)
    return path


def read_image(path, grid, what="image"):
    """Volumes of an image on ``grid``: ``(n_volumes, n_layers, n_units)``.

    Raises FormatError naming the file when it is unreadable or off the grid.
    """
    try:
        img = nib.load(path)
        grid.check_img(img)
        data = grid.from_volume(np.asanyarray(img.dataobj))
    except FileNotFoundError:
        raise FormatError(f"{path} is missing: the {what} of {path.parent}.") from None
    except _IMAGE_ERRORS as err:
        raise FormatError(f"{path} is not a readable {what}: {err}") from None
    return data[None] if data.ndim == 2 else data


def _require(folder, names):
    for name in names:
        if not (folder / name).is_file():
            raise FormatError(f"{folder} is damaged: {name} is missing (write the folder "
                              f"again).")


def _read_networks_json(path, n_networks, masks):
    document = read_json(path, what=NETWORKS_FILE)
    check_format_version(document, path, NETWORKS_FORMAT_VERSION, what=NETWORKS_FILE)
    require_keys(document, ("params", "networks"), path, what=NETWORKS_FILE)
    entries, params = document["networks"], document["params"]
    if not isinstance(params, dict) or not isinstance(entries, list):
        raise FormatError(f"{path} is not a valid {NETWORKS_FILE}: 'params' must be an "
                          f"object and 'networks' a list.")
    if len(entries) != n_networks or not all(isinstance(e, dict) for e in entries):
        raise FormatError(f"{path} describes {len(entries)} networks but {MASKS_FILE} "
                          f"holds {n_networks}: the folder is damaged or mixed.")
    for k, entry in enumerate(entries):
        if "size" in entry and entry["size"] != int(masks[k].sum()):
            raise FormatError(f"{path} gives network {k} {entry['size']} neurons but "
                              f"{MASKS_FILE} holds {int(masks[k].sum())}: the folder is "
                              f"damaged or mixed.")
    tokens = [e.get("top_tokens") for e in entries]
    return params, (tokens if any(t is not None for t in tokens) else None)


def _read_params_json(path):
    document = read_json(path, what=PARAMS_FILE)
    check_format_version(document, path, PARAMS_FORMAT_VERSION, what=PARAMS_FILE)
    runs = document.get("runs")
    if runs is not None and not (isinstance(runs, list) and all(isinstance(r, str)
                                                                for r in runs)):
        raise FormatError(f"{path} is not a valid {PARAMS_FILE}: 'runs' must be a list of "
                          f"paths. {runs!r} was found.")
    estimator_params = document.get("params")
    if estimator_params is not None and not isinstance(estimator_params, dict):
        raise FormatError(f"{path} is not a valid {PARAMS_FILE}: 'params' must be an object.")
    return document.get("estimator"), estimator_params, runs


def read_networks_folder(path):
    """Read a networks (or GLM) folder, checking every file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    NetworksFolder

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    FolderKindError
        When it is not a networks or GLM folder.
    FormatError
        When a file is missing, damaged, of an unknown format version, or
        disagrees with the others; the message names the file.
    """
    path = Path(path)
    kind = check_folder(path, ("networks", "glm"))
    _require(path, (GRID_FILE, COMPONENTS_FILE, MASKS_FILE, NETWORKS_FILE, PARAMS_FILE))
    grid = read_grid(path)
    maps = read_image(path / COMPONENTS_FILE, grid, "component maps").astype(np.float32)
    masks = read_image(path / MASKS_FILE, grid, "network masks") > 0
    if maps.shape != masks.shape:
        raise FormatError(f"{path / COMPONENTS_FILE} holds {len(maps)} maps but "
                          f"{path / MASKS_FILE} {len(masks)} masks: the folder is damaged "
                          f"or mixed.")
    params, tokens = _read_networks_json(path / NETWORKS_FILE, len(masks), masks)
    estimator, estimator_params, runs = _read_params_json(path / PARAMS_FILE)
    return NetworksFolder(path=path, kind=kind, maps=maps, masks=masks, grid=grid,
                          params=params, top_tokens=tokens, estimator=estimator,
                          estimator_params=estimator_params, runs=runs)
