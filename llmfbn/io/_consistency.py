"""The consistency document (``llmfbn consistency --out FILE.json``).

::

    {"format_version": 1, "folders": [...], "pairs": [{"a", "b", "iou", "correlation"}],
     "recurrence": {...}, "n_draws": 200, "recurrence_threshold": 0.2}

One JSON file, written atomically. It never lands inside an llmfbn folder (a
folder is written only as a whole), and ``overwrite`` replaces only another
consistency document.
"""

import json
from pathlib import Path

from llmfbn.io._errors import FolderKindError, FormatError
from llmfbn.io._folders import FOLDER_FILE, check_output_file, replace_file
from llmfbn.io._json import check_format_version, jsonable, read_json, require_keys

__all__ = [
    "check_consistency_output",
    "is_consistency_file",
    "read_consistency",
    "write_consistency",
]

CONSISTENCY_FORMAT_VERSION = 1
_WHAT = "consistency file"
_PAIR_KEYS = ("a", "b", "iou", "correlation")
_MATCH_KEYS = ("scores", "null_mean", "p_value")


def is_consistency_file(path):
    """True when ``path`` is a ``.json`` file whose object claims to be a consistency
    document (``folders`` and ``pairs``); :func:`read_consistency` checks the rest."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and {"folders", "pairs"} <= set(document)


def read_consistency(path):
    """Read and check a consistency document.

    Returns
    -------
    dict
        ``folders``, ``pairs`` (each with ``a``, ``b``, ``iou`` and
        ``correlation`` holding ``scores``, ``null_mean``, ``p_value``),
        ``recurrence``, ``n_draws``, ``recurrence_threshold``.

    Raises
    ------
    FileNotFoundError
    FormatError
        When the file is damaged or of an unknown format version (named).
    """
    path = Path(path)
    document = read_json(path, what=_WHAT)
    check_format_version(document, path, CONSISTENCY_FORMAT_VERSION, what=_WHAT)
    require_keys(document, ("folders", "pairs"), path, what=_WHAT)
    if not isinstance(document["folders"], list) or not isinstance(document["pairs"], list):
        raise FormatError(f"{path} is not a valid {_WHAT}: 'folders' and 'pairs' must be "
                          f"lists.")
    for n, pair in enumerate(document["pairs"]):
        if not isinstance(pair, dict):
            raise FormatError(f"{path} is not a valid {_WHAT}: pair {n} is not an object.")
        require_keys(pair, _PAIR_KEYS, path, what=f"{_WHAT} (pair {n})")
        for metric in ("iou", "correlation"):
            match = pair[metric]
            if not isinstance(match, dict):
                raise FormatError(f"{path} is not a valid {_WHAT}: pair {n} {metric!r} is "
                                  f"not an object.")
            require_keys(match, _MATCH_KEYS, path, what=f"{_WHAT} (pair {n}, {metric})")
            lengths = {len(match[k]) if isinstance(match[k], list) else -1
                       for k in _MATCH_KEYS}
            if len(lengths) != 1 or -1 in lengths:
                raise FormatError(f"{path} is not a valid {_WHAT}: pair {n} {metric!r} "
                                  f"must hold lists of one length in {list(_MATCH_KEYS)}.")
    return document


def check_consistency_output(path, overwrite=False):
    """Check, before any work, that a consistency document may be written at ``path``.

    Refused whatever ``overwrite`` says: a path not ending in ``.json``, a
    folder, a file inside an llmfbn folder (``llmfbn.json`` beside it), and
    an existing file that is not a consistency document. An existing
    consistency document needs ``overwrite=True``.

    Raises
    ------
    ValueError, FolderKindError, OutputExistsError
    """
    path = Path(path)
    check_output_file(path, overwrite=True, suffixes=(".json",), what=_WHAT)
    if (path.parent / FOLDER_FILE).exists():
        raise FolderKindError(
            f"{path} lies inside {path.parent}, a folder llmfbn wrote as a whole; refusing "
            f"to write a {_WHAT} there, even when asked to overwrite: choose a path "
            f"outside it.")
    if path.exists():
        if overwrite:
            try:
                read_consistency(path)
            except FormatError as err:
                raise FolderKindError(
                    f"{path} exists and is not a {_WHAT} ({err}); refusing to replace it, "
                    f"even when asked to overwrite: choose another path.") from None
        check_output_file(path, overwrite=overwrite, what=_WHAT)


def write_consistency(path, document, overwrite=False):
    """Write a consistency document atomically (see :func:`check_consistency_output`).

    Parameters
    ----------
    path : str or Path
        A ``.json`` file.
    document : dict
        E.g. :meth:`llmfbn.networks.NetworkComparison.to_dict`; gets its
        ``format_version``.
    overwrite : bool, default False
        Replace an existing consistency document (and nothing else).

    Returns
    -------
    Path
    """
    path = Path(path)
    check_consistency_output(path, overwrite)
    text = json.dumps(jsonable(dict(document, format_version=CONSISTENCY_FORMAT_VERSION)),
                      indent=1, allow_nan=False) + "\n"
    with replace_file(path, overwrite=overwrite, suffixes=(".json",), what=_WHAT) as tmp:
        check_consistency_output(path, overwrite)  # again, under the lock
        tmp.write_text(text, encoding="utf-8")
    return path
