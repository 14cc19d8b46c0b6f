"""Network atlas folders: fixed network maps of one model, as a nilearn-style atlas.

An atlas folder (built by ``benchmarks/build_atlas.py``; the one shipped in
the package is read by :func:`llmfbn.datasets.load_atlas`) holds::

    atlas.json     {"kind": "llmfbn-atlas", "format_version": 1, "llmfbn_version": ...,
                    "name": ..., "labels": [...], "top_tokens": [[...], ...],
                    "quality": [...], "description": ..., "build": {...}}
    grid.json      the model's neuron grid (model name, weights hash, layers, width)
    maps.nii.gz    4-D float32 image (nx, ny, n_layers, n_networks): one map per network

Each of ``labels``, ``top_tokens`` and ``quality`` has one entry per map.
The folder is written whole beside its target and renamed in place at the
end: it is complete or absent, and an existing atlas is never replaced.
"""

import math
import shutil
from pathlib import Path

import numpy as np

from llmfbn import __version__
from llmfbn.io._atomic import recover_interrupted, staging_name, swap_in, write_json
from llmfbn.io._errors import FormatError, OutputExistsError
from llmfbn.io._grid import read_grid, write_grid
from llmfbn.io._json import read_manifest, require_keys
from llmfbn.io._lock import OutputLock

__all__ = ["ATLAS_FILE", "ATLAS_MAPS", "is_atlas_folder", "read_atlas", "write_atlas"]

ATLAS_FILE = "atlas.json"
ATLAS_MAPS = "maps.nii.gz"
ATLAS_KIND = "llmfbn-atlas"
ATLAS_FORMAT = 1

_KEYS = ("name", "labels", "top_tokens", "quality", "description", "build")


def is_atlas_folder(path):
    """Whether ``path`` is a folder holding an ``atlas.json`` (not checked further)."""
    path = Path(path)
    return path.is_dir() and (path / ATLAS_FILE).is_file()


def _check_document(document, n_maps, path):
    """Types and counts of the manifest's fields, against ``n_maps`` maps."""
    problems = []
    if not isinstance(document["name"], str) or not document["name"]:
        problems.append(f"'name' must be a non-empty string, not {document['name']!r}")
    if not isinstance(document["description"], str):
        problems.append("'description' must be a string")
    if not isinstance(document["build"], dict):
        problems.append("'build' must be an object")
    labels, tokens, quality = document["labels"], document["top_tokens"], document["quality"]
    if not (isinstance(labels, list) and all(isinstance(x, str) and x for x in labels)):
        problems.append("'labels' must be a list of non-empty strings")
    if not (isinstance(tokens, list)
            and all(isinstance(x, list) and all(isinstance(t, str) for t in x) for x in tokens)):
        problems.append("'top_tokens' must be a list of lists of strings")
    if not (isinstance(quality, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            for x in quality)):
        problems.append("'quality' must be a list of finite numbers")
    if not problems:
        counts = {"labels": len(labels), "top_tokens": len(tokens), "quality": len(quality)}
        wrong = {key: n for key, n in counts.items() if n != n_maps}
        if wrong:
            problems.append(f"{wrong} entries where the maps hold {n_maps} networks")
        if len(set(labels)) != len(labels):
            problems.append("'labels' must be unique")
    if problems:
        raise FormatError(f"{path} is not a valid {ATLAS_FILE}: " + "; ".join(problems) + ".")


def _check_maps(maps, grid, what):
    """``maps`` as float32 (n_networks, n_layers, width): finite, zero off the grid's neurons."""
    maps = np.asarray(maps)
    expected = (grid.n_layers, grid.width)
    if maps.ndim != 3 or maps.shape[1:] != expected or len(maps) < 1:
        raise FormatError(f"{what} must hold maps of shape (n_networks, {expected[0]}, "
                          f"{expected[1]}) for its grid. {maps.shape} was found.")
    if not np.isfinite(maps).all():
        raise FormatError(f"{what} holds non-finite map values.")
    if np.any(maps[:, ~grid.present()]):
        raise FormatError(f"{what} holds map values on neurons its grid does not have.")
    return maps.astype(np.float32, copy=False)


def read_atlas(path):
    """Read and check an atlas folder.

    Parameters
    ----------
    path : str or Path
        An atlas folder.

    Returns
    -------
    document : dict
        ``atlas.json`` (see the module docstring).
    grid : NeuronGrid
        The grid the maps lie on (its model and weights hash).
    maps : float32 array of shape (n_networks, n_layers, width)
        One map per network, 0 on neurons the grid lacks.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a folder, or a file is missing.
    FormatError
        A damaged, inconsistent or too new atlas; the message names the file.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not an atlas folder (no such folder).")
    manifest = path / ATLAS_FILE
    document = read_manifest(manifest, ATLAS_KIND, ATLAS_FORMAT, _KEYS, ATLAS_FILE)
    grid = read_grid(path)
    image = path / ATLAS_MAPS
    if not image.is_file():
        raise FileNotFoundError(f"{image} is missing: {path} is not a complete atlas folder.")
    try:
        data = np.asarray(nib.load(image).get_fdata(dtype=np.float32))
    except Exception as err:  # nibabel's errors for a damaged or truncated image vary
        raise FormatError(f"{image} cannot be read as a Nifti image: {err}") from None
    if data.ndim != 4 or data.shape[:3] != grid.shape:
        raise FormatError(f"{image} must be a 4-D image of shape {grid.shape} + (n_networks,) "
                          f"for its grid. {data.shape} was found.")
    maps = _check_maps(grid.from_volume(data), grid, str(image))
    _check_document(document, len(maps), manifest)
    return document, grid, maps


def write_atlas(path, maps, grid, manifest):
    """Write an atlas folder at ``path``, all or nothing; an existing one is never replaced.

    Parameters
    ----------
    path : str or Path
        The folder to create (absent or empty).
    maps : array of shape (n_networks, n_layers, width)
        One map per network on ``grid``, 0 on neurons the grid lacks.
    grid : NeuronGrid
    manifest : dict
        ``name``, ``labels``, ``top_tokens``, ``quality``, ``description``
        and ``build`` (see the module docstring).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and is not an empty folder.
    """
    import nibabel as nib

    path = Path(path)
    document = {"kind": ATLAS_KIND, "format_version": ATLAS_FORMAT,
                "llmfbn_version": __version__, **manifest}
    require_keys(document, _KEYS, path / ATLAS_FILE, what=ATLAS_FILE)
    maps = _check_maps(maps, grid, "'maps'")
    _check_document(document, len(maps), path / ATLAS_FILE)
    with OutputLock(path):
        recover_interrupted(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise OutputExistsError(f"{path} already exists; an atlas is never replaced: "
                                    f"choose another folder or delete it.", path)
        staging = path.with_name(staging_name(path.name))
        staging.mkdir(parents=True)
        try:
            nib.save(grid.to_img(maps), staging / ATLAS_MAPS)
            write_grid(staging, grid)
            write_json(staging / ATLAS_FILE, document, indent=1)
            read_atlas(staging)
            if path.is_dir():
                path.rmdir()
            swap_in(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return path

