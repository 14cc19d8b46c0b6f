"""Folder kinds: every folder llmfbn writes says what it is, in ``llmfbn.json``.

::

    {"kind": "networks", "format_version": 1, "llmfbn_version": "0.2.0"}

A command writes only into a folder of its own kind (or a new or empty one);
``overwrite`` replaces a folder of its own kind and nothing else. Whole
folders (networks, GLM) are built beside the target and swapped in
(:func:`replace_folder`); a recording grows run by run in place
(:func:`open_folder`). Both hold the output's lock while they write.
"""

import shutil
from contextlib import contextmanager
from pathlib import Path

from llmfbn import __version__
from llmfbn.io._atomic import (
    atomic_path,
    recover_interrupted,
    remove_stale_temporaries,
    staging_name,
    swap_in,
    write_json,
)
from llmfbn.io._errors import FolderKindError, FormatError, OutputExistsError
from llmfbn.io._json import check_format_version, read_json
from llmfbn.io._lock import OutputLock

__all__ = [
    "FOLDER_FILE",
    "FOLDER_KINDS",
    "check_folder",
    "check_output_folder",
    "check_output_file",
    "folder_kind",
    "open_folder",
    "replace_file",
    "replace_folder",
]

FOLDER_FILE = "llmfbn.json"

#: Each kind of folder and the format version this llmfbn writes (and reads).
FOLDER_KINDS = {"recording": 1, "networks": 1, "glm": 1}

#: How to make each kind, for messages.
MAKE_HINT = {"recording": "llmfbn record", "networks": "llmfbn networks", "glm": "llmfbn glm"}

#: Files that mark a folder written by llmfbn before folders carried llmfbn.json.
_LEGACY_SIGNS = ("grid.json", "networks.json", "glm.json")

FOREIGN = "foreign"


def _check_kind_name(kind):
    if kind not in FOLDER_KINDS:
        raise ValueError(f"'kind' must be one of {tuple(FOLDER_KINDS)}. {kind!r} was provided.")


def folder_kind(path):
    """What ``path`` is: a kind of :data:`FOLDER_KINDS`, ``"foreign"`` or None.

    None means absent or an empty folder (free to write). ``"foreign"`` is a
    non-empty folder without ``llmfbn.json``. A file raises FolderKindError;
    a damaged or too new ``llmfbn.json`` raises FormatError.
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        raise FolderKindError(f"{path} is a file, not a folder.")
    marker = path / FOLDER_FILE
    if not marker.exists():
        visible = [p for p in path.iterdir() if not p.name.startswith(".llmfbn-")]
        return FOREIGN if visible else None
    document = read_json(marker, what=FOLDER_FILE)
    kind = document.get("kind")
    if kind not in FOLDER_KINDS:
        raise FormatError(f"{marker} names an unknown folder kind {kind!r}; this llmfbn "
                          f"({__version__}) knows {list(FOLDER_KINDS)}.")
    check_format_version(document, marker, FOLDER_KINDS[kind], what=f"{kind} folder")
    return kind


def _foreign_message(path):
    if any((Path(path) / sign).exists() for sign in _LEGACY_SIGNS):
        return (f"{path} was written by an older llmfbn (it has no {FOLDER_FILE}); this "
                f"version ({__version__}) does not read or replace it: write it again "
                f"into a new folder.")
    return f"{path} is not a folder llmfbn wrote (it has no {FOLDER_FILE})."


def check_folder(path, kinds):
    """Check that ``path`` is an llmfbn folder of one of ``kinds``, for reading.

    Parameters
    ----------
    path : str or Path
    kinds : str or sequence of str

    Returns
    -------
    str
        The folder's kind.
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    path = Path(path)
    wanted = " or ".join(kinds)
    hint = " or ".join(f"`{MAKE_HINT[k]}`" for k in kinds)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a {wanted} folder; make "
                                f"one with {hint}).")
    if not path.is_dir():
        raise FolderKindError(f"{path} is a file, not a {wanted} folder.")
    kind = folder_kind(path)
    if kind is None:
        raise FolderKindError(f"{path} is empty, not a {wanted} folder (make one with {hint}).")
    if kind == FOREIGN:
        raise FolderKindError(_foreign_message(path))
    if kind not in kinds:
        raise FolderKindError(f"{path} is a {kind} folder, not a {wanted} folder (make one "
                              f"with {hint}).")
    return kind


def check_output_folder(path, kind, overwrite=False, resume=False):
    """Check, before any work, that ``kind`` may be written at ``path``.

    Allowed: a missing or empty folder; a folder of the same kind when
    ``overwrite`` (replaced) or ``resume`` (added to). Refused, whatever
    ``overwrite`` says: a file, a folder of another kind, a foreign folder.

    Raises
    ------
    FolderKindError, OutputExistsError, FormatError
    """
    _check_kind_name(kind)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FolderKindError(f"{path} is a file; a {kind} folder cannot be written there "
                              f"(choose another output folder).")
    existing = folder_kind(path)
    if existing is None:
        return None
    if existing == FOREIGN:
        raise FolderKindError(_foreign_message(path) + f" Refusing to write a {kind} folder "
                              f"there, even when asked to overwrite: choose another output "
                              f"folder.")
    if existing != kind:
        raise FolderKindError(f"{path} is a {existing} folder; refusing to write a {kind} "
                              f"folder there, even when asked to overwrite: choose another "
                              f"output folder.")
    if not (overwrite or resume):
        raise OutputExistsError(f"{path} already exists (a {kind} folder); pass overwrite=True "
                                f"to replace it.", path)
    return existing


def _marker(kind):
    return {"kind": kind, "format_version": FOLDER_KINDS[kind], "llmfbn_version": __version__}


@contextmanager
def replace_folder(path, kind, overwrite=False):
    """Write a whole folder of ``kind`` at ``path``, all or nothing.

    Yields an empty staging folder beside ``path``; fill it. On success it
    gets its ``llmfbn.json`` and replaces ``path``; on any error (or a kill)
    ``path`` keeps its old content. The output's lock is held throughout.

    Parameters
    ----------
    path : str or Path
    kind : {"networks", "glm"}
    overwrite : bool, default False
        Replace an existing folder of the same kind.
    """
    path = Path(path)
    check_output_folder(path, kind, overwrite=overwrite)
    with OutputLock(path):
        recover_interrupted(path)
        check_output_folder(path, kind, overwrite=overwrite)
        staging = path.with_name(staging_name(path.name))
        staging.mkdir(parents=True)
        try:
            yield staging
            write_json(staging / FOLDER_FILE, _marker(kind))
            swap_in(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


@contextmanager
def open_folder(path, kind):
    """Open a folder of ``kind`` that grows in place (a recording), locked.

    A new folder gets its ``llmfbn.json`` first; an existing one must be of
    the same kind. Temporary files a killed writer left inside are deleted.

    Yields
    ------
    removed : int
        How many leftover temporary files were deleted.
    """
    path = Path(path)
    check_output_folder(path, kind, resume=True)
    with OutputLock(path):
        check_output_folder(path, kind, resume=True)
        path.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temporaries(path)
        if not (path / FOLDER_FILE).exists():
            write_json(path / FOLDER_FILE, _marker(kind))
        yield removed


def check_output_file(path, overwrite=False, suffixes=None, what="output file"):
    """Check, before any work, that a single file may be written at ``path``."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"The {what} must end in {' or '.join(suffixes)}. {str(path)!r} "
                         f"was provided.")
    if path.is_dir():
        raise FolderKindError(f"{path} is a folder; the {what} must be a file path.")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True to replace it.",
                                path)


@contextmanager
def replace_file(path, overwrite=False, suffixes=None, what="output file"):
    """Write one file atomically, locked; refuse to replace it unless ``overwrite``.

    Yields the temporary path to write; it is renamed onto ``path`` on success.
    """
    path = Path(path)
    check_output_file(path, overwrite, suffixes, what)
    with OutputLock(path):
        recover_interrupted(path)
        check_output_file(path, overwrite, suffixes, what)
        with atomic_path(path) as tmp:
            yield tmp
