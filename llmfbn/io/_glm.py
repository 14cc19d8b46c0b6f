"""The GLM folder (``llmfbn glm``): a networks folder plus statistical maps and ``glm.json``.

::

    llmfbn.json                    {"kind": "glm", ...}
    grid.json, components.nii.gz, networks.nii.gz, networks.json, params.json
                                   one network per contrast (see llmfbn.io._networks)
    zmap_<contrast>.nii.gz         z-map of each contrast (also tmap_, effect_)
    glm.json                       design, runs per condition, thresholds, peaks, files

Every file of one save is written in one staging folder and swapped in at once.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmfbn.io._atomic import write_json
from llmfbn.io._errors import FormatError
from llmfbn.io._folders import check_folder, replace_folder
from llmfbn.io._json import check_format_version, jsonable, read_json, require_keys
from llmfbn.io._networks import (
    NetworksFolder,
    read_image,
    read_networks_folder,
    save_image,
    write_networks_files,
)

__all__ = [
    "GLM_FILE",
    "MAP_KINDS",
    "GLMFolder",
    "contrast_file_names",
    "read_glm_folder",
    "write_glm_folder",
]

GLM_FILE = "glm.json"
GLM_FORMAT_VERSION = 1
#: The statistical maps a GLM folder may hold per contrast.
MAP_KINDS = ("zmap", "tmap", "effect")


def _safe_name(contrast):
    name = re.sub(r"\s+", "", contrast).replace("+", "_plus_").replace("*", "x")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "contrast"


def contrast_file_names(contrasts):
    """``{contrast: name}``, unique and file-name safe: ``"a+b-2*c"`` -> ``"a_plus_b-2xc"``."""
    names, seen = {}, set()
    for contrast in contrasts:
        base = name = _safe_name(contrast)
        k = 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names[contrast] = name
    return names


def map_file_names(contrasts, kind="zmap"):
    """``{contrast: "<kind>_<name>.nii.gz"}``: each contrast's map file in a GLM folder."""
    if kind not in MAP_KINDS:
        raise ValueError(f"'kind' must be one of {MAP_KINDS}. {kind!r} was provided.")
    return {c: f"{kind}_{name}.nii.gz" for c, name in contrast_file_names(contrasts).items()}


@dataclass
class GLMFolder:
    """What a GLM folder holds.

    Attributes
    ----------
    networks : NetworksFolder
        One network per contrast.
    document : dict
        ``glm.json``: design, thresholding and one entry per contrast (with
        its ``files``).
    maps : dict
        ``{"zmap" | "tmap" | "effect": float32 array (n_contrasts, n_layers, n_units)}``,
        the kinds every contrast has.
    """

    networks: NetworksFolder
    document: dict
    maps: dict = field(default_factory=dict)

    @property
    def contrasts(self):
        return [entry["contrast"] for entry in self.document["contrasts"]]


def write_glm_folder(path, masks, grid, params, document, maps, runs=None,
                     estimator_params=None, top_tokens=None, overwrite=False):
    """Write a GLM folder at ``path``, all or nothing.

    Parameters
    ----------
    path : str or Path
        A new or empty folder, or (with ``overwrite=True``) a GLM folder.
    masks : bool array of shape (n_contrasts, n_layers, n_units)
        The selected neurons of each contrast (its network).
    grid : NeuronGrid
    params : dict
        The networks' parameters (``networks.json``).
    document : dict
        ``glm.json`` without its version; ``document["contrasts"]`` holds one
        dict per contrast with at least ``"contrast"``. Each gets its ``files``.
    maps : dict
        ``{"zmap": array (n_contrasts, n_layers, n_units), "tmap": ..., "effect": ...}``;
        ``"zmap"`` is required (it is also the networks' maps), None values are skipped.
    runs : list of str, optional
        The runs the GLM was fitted on (``params.json``).
    estimator_params : dict, optional
    top_tokens : list of list of dict, optional
        The tokens where each contrast's network is most active (one list per
        contrast, as :func:`llmfbn.networks.top_tokens` returns them), kept
        in ``networks.json`` as a networks folder keeps them.
    overwrite : bool, default False
        Replace an existing GLM folder.

    Returns
    -------
    Path
    """
    path = Path(path)
    entries = [dict(entry) for entry in document.get("contrasts", [])]
    contrasts = [entry.get("contrast") for entry in entries]
    if not contrasts or not all(isinstance(c, str) for c in contrasts):
        raise ValueError("'document' must list its contrasts, each a dict with a "
                         f"'contrast' name. {contrasts!r} was provided.")
    unknown = sorted(set(maps) - set(MAP_KINDS))
    if unknown or maps.get("zmap") is None:
        raise ValueError(f"'maps' must hold 'zmap' and only {MAP_KINDS}. {sorted(maps)} "
                         f"was provided.")
    files_of = {kind: map_file_names(contrasts, kind) for kind in MAP_KINDS}
    with replace_folder(path, "glm", overwrite=overwrite) as staging:
        write_networks_files(staging, maps["zmap"], masks, grid, params,
                             top_tokens=top_tokens, estimator="TaskGLM",
                             estimator_params=estimator_params, runs=runs)
        for k, entry in enumerate(entries):
            files = {}
            for kind in MAP_KINDS:
                if maps.get(kind) is None:
                    continue
                files[kind] = files_of[kind][entry["contrast"]]
                save_image(grid.to_img(np.asarray(maps[kind][k], np.float32)),
                           staging / files[kind])
            entry["files"] = files
        write_json(staging / GLM_FILE, jsonable(dict(document, format_version=GLM_FORMAT_VERSION,
                                                     contrasts=entries)))
    return path


def read_glm_folder(path):
    """Read a GLM folder, checking every file.

    Returns
    -------
    GLMFolder

    Raises
    ------
    FileNotFoundError, FolderKindError
        When ``path`` is missing or not a GLM folder.
    FormatError
        When a file is missing, damaged or disagrees with the others; the
        message names the file.
    """
    path = Path(path)
    check_folder(path, "glm")
    networks = read_networks_folder(path)
    glm_file = path / GLM_FILE
    document = read_json(glm_file, what=GLM_FILE)
    check_format_version(document, glm_file, GLM_FORMAT_VERSION, what=GLM_FILE)
    require_keys(document, ("contrasts",), glm_file, what=GLM_FILE)
    entries = document["contrasts"]
    if (not isinstance(entries, list) or len(entries) != len(networks.masks)
            or not all(isinstance(e, dict) and isinstance(e.get("contrast"), str)
                       and isinstance(e.get("files", {}), dict) for e in entries)):
        raise FormatError(f"{glm_file} is not a valid {GLM_FILE}: 'contrasts' must list "
                          f"{len(networks.masks)} contrasts (one per network), each with "
                          f"its name and files.")
    maps = {}
    for kind in MAP_KINDS:
        if not all(kind in e.get("files", {}) for e in entries):
            continue
        volumes = []
        for entry in entries:
            name = entry["files"][kind]
            if not isinstance(name, str) or Path(name).name != name:
                raise FormatError(f"{glm_file} names an invalid {kind} file {name!r}.")
            volumes.append(read_image(path / name, networks.grid, f"{kind} of "
                                      f"{entry['contrast']!r}")[0])
        maps[kind] = np.stack(volumes).astype(np.float32)
    return GLMFolder(networks=networks, document=document, maps=maps)
