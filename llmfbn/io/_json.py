"""Reading llmfbn's JSON files: clear errors that name the file, versions checked."""

import json
import math
from pathlib import Path

from llmfbn import __version__
from llmfbn.io._errors import FormatError

__all__ = ["check_format_version", "jsonable", "read_json"]


def read_json(path, what="file"):
    """Read a JSON object from ``path``.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for error messages (``"grid.json"``, ``"networks.json"``).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    FormatError
        When it is not valid UTF-8 JSON holding an object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} is missing: {path} does not exist.") from None
    except IsADirectoryError:
        raise FormatError(f"{path} is a folder, not a {what}.") from None
    except UnicodeDecodeError as err:
        raise FormatError(f"{path} is not a valid {what}: not UTF-8 text ({err.reason}).") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(f"{path} is not a valid {what}: {err.msg} at line {err.lineno}, "
                          f"column {err.colno}.") from None
    if not isinstance(document, dict):
        raise FormatError(f"{path} is not a valid {what}: it holds a JSON "
                          f"{type(document).__name__}, not an object.")
    return document


def check_format_version(document, path, supported, what="file", key="format_version"):
    """Check ``document[key]`` is a format version this llmfbn reads.

    Parameters
    ----------
    document : dict
    path : str or Path
        The file, for messages.
    supported : int or sequence of int
        Versions this llmfbn reads.

    Returns
    -------
    int
        The version.
    """
    supported = (supported,) if isinstance(supported, int) else tuple(supported)
    version = document.get(key)
    if version is None:
        raise FormatError(
            f"{path} has no {key}: it is not a {what} written by this llmfbn "
            f"({__version__}) or a later one; write it again with this version.")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatError(f"{path} has an invalid {key} {version!r}.")
    if version > max(supported):
        raise FormatError(
            f"{path} is a {what} of format version {version}, newer than this llmfbn "
            f"({__version__}) reads (up to {max(supported)}): upgrade llmfbn to read it.")
    if version not in supported:
        raise FormatError(
            f"{path} is a {what} of format version {version}, which this llmfbn "
            f"({__version__}) no longer reads (it reads {list(supported)}): write it again.")
    return version


def require_keys(document, keys, path, what="file"):
    """Raise FormatError naming the file when ``document`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in document]
    if missing:
        raise FormatError(f"{path} is not a valid {what}: it lacks {missing}.")


def read_manifest(path, kind, supported, keys, what):
    """Read a JSON manifest of one ``kind`` and format: the kind, version and keys checked.

    Parameters
    ----------
    path : str or Path
        The file.
    kind : str
        What its ``"kind"`` must say.
    supported : int or sequence of int
        Format versions this llmfbn reads (:func:`check_format_version`).
    keys : sequence of str
        Keys it must hold (:func:`require_keys`).
    what : str
        The file's name in messages.

    Returns
    -------
    dict
    """
    document = read_json(path, what=what)
    if document.get("kind") != kind:
        raise FormatError(f"{path} is not a valid {what}: its kind is "
                          f"{document.get('kind')!r}, not {kind!r}.")
    check_format_version(document, path, supported, what=what)
    require_keys(document, keys, path, what=what)
    return document


def jsonable(value):
    """Plain JSON types from dataclasses, numpy arrays and scalars; non-finite floats -> None."""
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
