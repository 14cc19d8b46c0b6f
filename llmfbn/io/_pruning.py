"""Pruned model folders (``llmfbn prune``): ``pruning.json`` and the folder written whole.

A pruned folder is a Hugging Face model folder (``config.json``, safetensors,
tokenizer files) plus ``pruning.json``, written last, which says what was
removed::

    {"kind": "pruned-model", "format_version": 1, "llmfbn_version": "...",
     "method": "fbn", "ratio": 0.2, "random_state": 0, "protect_layers": [0, 1, 2, 28, 29],
     "source_model": {"name": ..., "weights_hash": ..., "model_type": ..., "layer_widths": [...]},
     "layer_widths": [...], "kept": [[unit, ...], ...],   # per model layer, sorted
     "n_neurons_before": ..., "n_neurons_removed": ...,
     "calibration": {"path", "sha256", "n_tokens"} or null,
     "bias_compensated_layers": [...], "parameters_before": ..., "parameters_after": ...,
     "details": {...}}

The folder is built beside its target and renamed in place at the end (the
output's lock held): it is complete or absent. An existing output is never
replaced.
"""

import shutil
from contextlib import contextmanager
from pathlib import Path

from llmfbn import __version__
from llmfbn.io._atomic import recover_interrupted, staging_name, swap_in, write_json
from llmfbn.io._errors import FolderKindError, FormatError, OutputExistsError
from llmfbn.io._folders import FOREIGN, folder_kind
from llmfbn.io._json import read_manifest, require_keys
from llmfbn.io._lock import OutputLock

__all__ = [
    "PRUNING_FILE",
    "check_pruned_output",
    "is_pruned_folder",
    "read_pruning",
    "replace_pruned_folder",
    "write_pruning",
]

PRUNING_FILE = "pruning.json"
PRUNED_KIND = "pruned-model"
PRUNING_FORMAT = 1

_KEYS = ("method", "ratio", "random_state", "protect_layers", "source_model", "layer_widths",
         "kept", "n_neurons_before", "n_neurons_removed", "calibration",
         "bias_compensated_layers", "parameters_before", "parameters_after", "details")


def is_pruned_folder(path):
    """Whether ``path`` is a folder holding a ``pruning.json`` (not checked further)."""
    path = Path(path)
    return path.is_dir() and (path / PRUNING_FILE).is_file()


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(document, path):
    """The scalar and list fields have the types their readers compute with."""
    ratio = document["ratio"]
    problems = []
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        problems.append(f"'ratio' must be a number in (0, 1), not {ratio!r}")
    for key in ("n_neurons_before", "n_neurons_removed", "parameters_before",
                "parameters_after", "random_state"):
        if not _is_int(document[key]) or document[key] < 0:
            problems.append(f"{key!r} must be an int >= 0, not {document[key]!r}")
    for key in ("protect_layers", "bias_compensated_layers"):
        value = document[key]
        if not isinstance(value, list) or not all(_is_int(x) and x >= 0 for x in value):
            problems.append(f"{key!r} must be a list of layer indices, not {value!r}")
    if problems:
        raise FormatError(f"{path} is not a valid {PRUNING_FILE}: " + "; ".join(problems) + ".")


def _check_consistent(document, path):
    _check_types(document, path)
    widths, kept = document["layer_widths"], document["kept"]
    source = document["source_model"]
    if not isinstance(widths, list) or not isinstance(kept, list) or len(widths) != len(kept):
        raise FormatError(f"{path} is not a valid {PRUNING_FILE}: 'layer_widths' and 'kept' "
                          f"must be lists with one entry per layer.")
    before = source.get("layer_widths") if isinstance(source, dict) else None
    if not isinstance(before, list) or len(before) != len(widths):
        raise FormatError(f"{path} is not a valid {PRUNING_FILE}: 'source_model' must give "
                          f"'layer_widths' for the same {len(widths)} layers.")
    for layer, (width, units, full) in enumerate(zip(widths, kept, before)):
        ok = (isinstance(units, list) and all(isinstance(u, int) for u in units)
              and len(units) == width and width >= 1
              and all(0 <= a < b < full for a, b in zip(units, units[1:]))
              and 0 <= units[0] and units[-1] < full)
        if not ok:
            raise FormatError(f"{path} is not a valid {PRUNING_FILE}: layer {layer} must keep "
                              f"{width} sorted unique units within its {full} neurons.")
    if (document["n_neurons_before"] != sum(before)
            or document["n_neurons_removed"] != sum(before) - sum(widths)):
        raise FormatError(f"{path} is not a valid {PRUNING_FILE}: 'n_neurons_before' and "
                          f"'n_neurons_removed' must equal {sum(before)} and "
                          f"{sum(before) - sum(widths)} (from the layer widths).")


def read_pruning(folder):
    """Read and check a pruned folder's ``pruning.json``.

    Parameters
    ----------
    folder : str or Path
        A folder written by ``llmfbn prune``.

    Returns
    -------
    dict
        The manifest (see the module docstring).

    Raises
    ------
    FileNotFoundError
        No ``pruning.json`` in ``folder``.
    FormatError
        A damaged, incomplete, inconsistent or too new manifest.
    """
    path = Path(folder) / PRUNING_FILE
    document = read_manifest(path, PRUNED_KIND, PRUNING_FORMAT, _KEYS, PRUNING_FILE)
    _check_consistent(document, path)
    return document


def write_pruning(folder, manifest):
    """Write ``pruning.json`` into ``folder`` atomically (kind and versions added).

    Parameters
    ----------
    folder : str or Path
    manifest : dict
        Every key of the module docstring's document but the first three.
    """
    path = Path(folder) / PRUNING_FILE
    document = {"kind": PRUNED_KIND, "format_version": PRUNING_FORMAT,
                "llmfbn_version": __version__, **manifest}
    require_keys(document, _KEYS, path, what=PRUNING_FILE)
    _check_consistent(document, path)
    write_json(path, document)
    return path


def check_pruned_output(path):
    """Check, before any work, that a pruned model folder may be written at ``path``.

    Only a missing or empty folder is accepted: an existing pruned folder, a
    file, or a folder of any other kind is refused (never replaced).

    Raises
    ------
    OutputExistsError, FolderKindError
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FolderKindError(f"{path} is a file; a pruned model folder cannot be written "
                              f"there (choose another output folder).")
    if is_pruned_folder(path):
        raise OutputExistsError(f"{path} already exists (a pruned model folder); choose "
                                f"another output folder or delete it.", path)
    kind = folder_kind(path)
    if kind == FOREIGN:
        raise FolderKindError(f"{path} is a non-empty folder that llmfbn did not write as a "
                              f"pruned model; refusing to write there: choose another output "
                              f"folder.")
    if kind is not None:
        raise FolderKindError(f"{path} is a {kind} folder; refusing to write a pruned model "
                              f"there: choose another output folder.")


@contextmanager
def replace_pruned_folder(path):
    """Write a pruned model folder at ``path``, all or nothing.

    Yields an empty staging folder beside ``path``: save the model and
    tokenizer there, then :func:`write_pruning` last. On success (the
    manifest present and valid) the staging folder becomes ``path``; on any
    error, or a kill, nothing is left at ``path``. The output's lock is held
    throughout.
    """
    path = Path(path)
    check_pruned_output(path)
    with OutputLock(path):
        recover_interrupted(path)
        check_pruned_output(path)
        staging = path.with_name(staging_name(path.name))
        staging.mkdir(parents=True)
        try:
            yield staging
            read_pruning(staging)
            swap_in(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
