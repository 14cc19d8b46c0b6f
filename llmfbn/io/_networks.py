"""The networks folder (``llmfbn networks``), written whole and read with checks.

::

    llmfbn.json          {"kind": "networks", ...}
    grid.json            the neuron <-> voxel map
    components.nii.gz    4-D float32 z-maps, one volume per network
    networks.nii.gz      4-D uint8 masks, one volume per network
    networks.json        per network: size, layer counts, neurons, top tokens
    params.json          the estimator, its parameters and the runs it was fitted on
    models.csv           several recordings only: which networks each model expresses

A folder fitted on several recordings (models as subjects of one group
decomposition) lists them in ``params.json`` (``"recordings"``: path, model,
weights hash and runs of each, in fitting order) and holds ``models.csv``, one
row per recording and network (:data:`MODELS_COLUMNS`); a folder fitted on one
recording has neither, as before.

A GLM folder (:mod:`llmfbn.io._glm`) holds the same files and more, so it
reads as a networks folder too. A folder is built in a staging folder and
swapped in (:func:`llmfbn.io.replace_folder`): a killed writer leaves the old
folder or the new one, never a mix.
"""

import csv
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from llmfbn.grid import NeuronGrid
from llmfbn.io._atomic import atomic_path, write_atomic, write_json
from llmfbn.io._errors import FormatError
from llmfbn.io._folders import check_folder, replace_folder
from llmfbn.io._grid import GRID_FILE, read_grid, write_grid
from llmfbn.io._json import check_format_version, jsonable, read_json, require_keys

__all__ = [
    "COMPONENTS_FILE",
    "MASKS_FILE",
    "MODELS_COLUMNS",
    "MODELS_FILE",
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
MODELS_FILE = "models.csv"
NETWORKS_FORMAT_VERSION = 1
PARAMS_FORMAT_VERSION = 1

#: The columns of ``models.csv``, in order (its header is its format, format 1):
#:
#: - ``model``: the recording's model (its grid's name); ``recording``: the
#:   recording folder, as given to the fit (one row per recording and network,
#:   recordings in fitting order, networks in index order).
#: - ``network``: the network's index in the folder.
#: - ``amplitude``: RMS over tokens of the network's stage-1 dual-regression time
#:   course, averaged over the recording's runs (>= 0).
#: - ``spatial_r``: correlation of the model's stage-2 map with the group map, in
#:   [-1, 1].
#: - ``expressed``: ``true`` or ``false``.
#:
#: See :func:`llmfbn.networks.model_expression`.
MODELS_COLUMNS = ["model", "recording", "network", "amplitude", "spatial_r", "expressed"]
#: Keys of each entry of ``params.json``'s ``"recordings"``.
RECORDING_KEYS = ("path", "model", "weights_hash", "n_runs")

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
    recordings : list of dict or None
        A folder fitted on several recordings: each one's ``path``, ``model``,
        ``weights_hash`` and ``n_runs``, in fitting order. None for a folder
        fitted on one recording (or written before llmfbn recorded them).
    models : pandas.DataFrame or None
        ``models.csv`` (columns :data:`MODELS_COLUMNS`, ``network`` int,
        ``expressed`` bool) when ``recordings`` is given, else None.
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
    recordings: list = None
    models: object = None


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
                         estimator=None, estimator_params=None, runs=None, recordings=None,
                         models=None):
    """Write the files of a networks folder into ``folder`` (a staging folder).

    Use :func:`write_networks_folder` to write a whole folder; this is its
    body, shared with the GLM folder.
    """
    folder = Path(folder)
    maps, masks = _check_arrays(maps, masks, grid)
    if top_tokens is not None and len(top_tokens) != len(maps):
        raise ValueError(f"'top_tokens' must hold one list per network ({len(maps)}). "
                         f"{len(top_tokens)} were provided.")
    if (recordings is None) != (models is None):
        raise ValueError("'recordings' and 'models' must be given together (a folder fitted "
                         "on several recordings) or not at all. "
                         + ("'recordings'" if models is None else "'models'")
                         + " alone was provided.")
    if recordings is not None:
        recordings = _check_recordings(recordings, "'recordings'", ValueError)
        models_text = _models_csv(models, recordings, len(maps))
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
        **({} if recordings is None else {"recordings": recordings}),
    }, indent=2)
    if recordings is not None:
        write_atomic(folder / MODELS_FILE, models_text)


# -- models.csv ---------------------------------------------------------------------


def _check_recordings(recordings, where, error):
    """``recordings`` as a list of plain dicts (:data:`RECORDING_KEYS`), or ``error``."""
    if not isinstance(recordings, (list, tuple)) or len(recordings) < 2:
        raise error(f"{where} must list at least 2 recordings (path, model, weights_hash, "
                    f"n_runs). {recordings!r:.80} was provided.")
    out = []
    for n, entry in enumerate(recordings):
        if not isinstance(entry, dict) or any(key not in entry for key in RECORDING_KEYS):
            raise error(f"{where} entry {n} must hold {list(RECORDING_KEYS)}. "
                        f"{entry!r:.80} was provided.")
        path, model, digest, n_runs = (entry[key] for key in RECORDING_KEYS)
        if (not isinstance(path, str) or not path or not isinstance(model, (str, type(None)))
                or not isinstance(digest, (str, type(None)))
                or isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1):
            raise error(f"{where} entry {n} must have a non-empty str path, str or null "
                        f"model and weights_hash, and n_runs >= 1. {entry!r:.120} was "
                        f"provided.")
        out.append({"path": path, "model": model, "weights_hash": digest, "n_runs": n_runs})
    paths = [entry["path"] for entry in out]
    if len(set(paths)) != len(paths):
        raise error(f"{where} names a recording twice: {paths}.")
    return out


def _model_label(entry):
    return entry["model"] if entry["model"] is not None else ""


def _models_csv(models, recordings, n_networks):
    """The text of ``models.csv`` from a DataFrame (checked against ``recordings``)."""
    import pandas as pd

    if not isinstance(models, pd.DataFrame):
        raise TypeError(f"'models' must be a pandas DataFrame with columns {MODELS_COLUMNS}. "
                        f"{type(models).__name__} was provided.")
    if list(models.columns) != MODELS_COLUMNS:
        raise ValueError(f"'models' must have the columns {MODELS_COLUMNS}, in this order. "
                         f"{list(models.columns)} was provided.")
    rows = [[_model_label(entry), entry["path"], k, None, None, None]
            for entry in recordings for k in range(n_networks)]
    if len(models) != len(rows):
        raise ValueError(f"'models' must hold one row per recording and network "
                         f"({len(recordings)} x {n_networks} = {len(rows)}). {len(models)} "
                         f"rows were provided.")
    for row, given in zip(rows, models.itertuples(index=False)):
        given = list(given)
        if given[:2] != row[:2] or given[2] != row[2]:
            raise ValueError(f"'models' rows must run over the recordings in order and, "
                             f"within each, over networks 0 to {n_networks - 1}: expected "
                             f"{row[:3]}, {given[:3]} was provided.")
        amplitude, spatial_r, expressed = given[3:]
        problem = _row_problem(amplitude, spatial_r, expressed)
        if problem:
            raise ValueError(f"'models' row {row[:3]}: {problem}.")
        row[3:] = [repr(float(amplitude)), repr(float(spatial_r)),
                   "true" if expressed else "false"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MODELS_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def _row_problem(amplitude, spatial_r, expressed):
    """What is wrong with a row's values (None when nothing)."""
    def number(value):
        return (isinstance(value, (int, float, np.integer, np.floating))
                and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))

    if not number(amplitude) or amplitude < 0:
        return f"'amplitude' must be a finite number >= 0. {amplitude!r} was found"
    if not number(spatial_r) or not -1 <= spatial_r <= 1:
        return f"'spatial_r' must be a finite number in [-1, 1]. {spatial_r!r} was found"
    if not isinstance(expressed, (bool, np.bool_)):
        return f"'expressed' must be a bool. {expressed!r} was found"
    return None


def _read_models_csv(path, recordings, n_networks):
    """``models.csv`` as a DataFrame, checked against ``params.json``'s recordings."""
    import pandas as pd

    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FormatError(f"{path} is not a valid {MODELS_FILE}: {err}") from None
    if not lines or lines[0] != MODELS_COLUMNS:
        raise FormatError(f"{path} is not a valid {MODELS_FILE}: its header is "
                          f"{lines[0] if lines else []}, not {MODELS_COLUMNS}.")
    body = lines[1:]
    expected = [(_model_label(entry), entry["path"], str(k))
                for entry in recordings for k in range(n_networks)]
    if len(body) != len(expected):
        raise FormatError(f"{path} holds {len(body)} rows but {PARAMS_FILE} and {MASKS_FILE} "
                          f"give {len(recordings)} recordings x {n_networks} networks: the "
                          f"folder is damaged or mixed.")
    records = []
    for n, (row, want) in enumerate(zip(body, expected)):
        if len(row) != len(MODELS_COLUMNS) or tuple(row[:3]) != want:
            raise FormatError(f"{path} row {n + 1} is {row[:3]}, but {PARAMS_FILE} and "
                              f"{MASKS_FILE} give {list(want)}: the folder is damaged or mixed.")
        try:
            amplitude, spatial_r = float(row[3]), float(row[4])
        except ValueError:
            amplitude = spatial_r = None
        expressed = {"true": True, "false": False}.get(row[5], row[5])
        problem = _row_problem(amplitude, spatial_r, expressed)
        if problem:
            raise FormatError(f"{path} is not a valid {MODELS_FILE}: row {n + 1}: {problem}.")
        records.append({"model": row[0], "recording": row[1], "network": int(row[2]),
                        "amplitude": amplitude, "spatial_r": spatial_r,
                        "expressed": expressed})
    return pd.DataFrame.from_records(records, columns=MODELS_COLUMNS)


def write_networks_folder(path, maps, masks, grid, params=None, top_tokens=None,
                          estimator=None, estimator_params=None, runs=None, recordings=None,
                          models=None, overwrite=False):
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
    recordings : list of dict, optional
        A fit on several recordings: each one's ``path`` (str), ``model``,
        ``weights_hash`` and ``n_runs``, in fitting order (at least 2, each
        path once). Given with ``models``, or neither.
    models : pandas.DataFrame, optional
        Which networks each model expresses, columns :data:`MODELS_COLUMNS`:
        one row per recording (in ``recordings``' order) and network (in
        index order); written as ``models.csv``. Checked before anything is
        written.
    overwrite : bool, default False
        Replace an existing networks folder.

    Returns
    -------
    Path
    """
    path = Path(path)
    with replace_folder(path, "networks", overwrite=overwrite) as staging:
        write_networks_files(staging, maps, masks, grid, params, top_tokens, estimator,
                             estimator_params, runs, recordings, models)
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
    recordings = document.get("recordings")
    if recordings is not None:
        recordings = _check_recordings(
            recordings, f"{path} is not a valid {PARAMS_FILE}: 'recordings'", FormatError)
    runs = document.get("runs")
    if runs is not None and not (isinstance(runs, list) and all(isinstance(r, str)
                                                                for r in runs)):
        raise FormatError(f"{path} is not a valid {PARAMS_FILE}: 'runs' must be a list of "
                          f"paths. {runs!r} was found.")
    estimator_params = document.get("params")
    if estimator_params is not None and not isinstance(estimator_params, dict):
        raise FormatError(f"{path} is not a valid {PARAMS_FILE}: 'params' must be an object.")
    if recordings is not None and runs is not None and \
            sum(entry["n_runs"] for entry in recordings) != len(runs):
        raise FormatError(f"{path} is not a valid {PARAMS_FILE}: its recordings hold "
                          f"{sum(entry['n_runs'] for entry in recordings)} runs but 'runs' "
                          f"lists {len(runs)}.")
    return document.get("estimator"), estimator_params, runs, recordings


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
    estimator, estimator_params, runs, recordings = _read_params_json(path / PARAMS_FILE)
    models = None
    if recordings is not None:
        _require(path, (MODELS_FILE,))
        models = _read_models_csv(path / MODELS_FILE, recordings, len(masks))
    elif (path / MODELS_FILE).exists():
        raise FormatError(f"{path / MODELS_FILE} is there but {path / PARAMS_FILE} lists no "
                          f"recordings: the folder is damaged or mixed.")
    return NetworksFolder(path=path, kind=kind, maps=maps, masks=masks, grid=grid,
                          params=params, top_tokens=tokens, estimator=estimator,
                          estimator_params=estimator_params, runs=runs,
                          recordings=recordings, models=models)
