"""The fingerprint table (``llmfbn fingerprint --out scores.csv``).

One CSV, one row per candidate and method::

    reference,candidate,method,score,p_value,null_mean,n_components,n_words,random_state,reference_networks
    smollm2-135m,pruned/,fbn,0.93...,0.00497...,0.21...,13,2048,0,atlas:smollm2-135m

Its header is its format (format 2: exactly :data:`FINGERPRINT_COLUMNS`, in
this order; format 1 lacked ``reference_networks`` and is read with
``"canica"`` there); :func:`read_fingerprints` refuses any other header and
any value out of range, naming the file and the row. The table is written atomically
under the output's lock. An existing table is replaced only with
``overwrite``; a file of another kind (a results CSV, any other CSV) and a
path inside a folder llmfbn wrote as a whole are never replaced.
"""

import csv
import math
from pathlib import Path

from llmfbn.io._errors import FolderKindError, FormatError
from llmfbn.io._folders import FOLDER_FILE, check_output_file, replace_file
from llmfbn.io._results import is_results_file

__all__ = [
    "FINGERPRINT_COLUMNS",
    "FINGERPRINT_METHODS",
    "check_fingerprints_output",
    "is_fingerprints_file",
    "read_fingerprints",
    "write_fingerprints",
]

#: The columns of a fingerprint table, in order:
#:
#: - ``reference``, ``candidate``: the models, as they were named.
#: - ``method``: one of :data:`FINGERPRINT_METHODS`.
#: - ``score``: in [0, 1], 1 for the reference itself.
#: - ``p_value``: permutation p-value, in (0, 1].
#: - ``null_mean``: the mean score under the null, in [0, 1].
#: - ``n_components``: networks per model; ``n_words``: words compared;
#:   ``random_state``: the seed.
#: - ``reference_networks``: where the reference's networks come from:
#:   ``canica`` (fitted on the texts) or ``atlas:<name or folder>``.
FINGERPRINT_COLUMNS = ["reference", "candidate", "method", "score", "p_value", "null_mean",
                       "n_components", "n_words", "random_state", "reference_networks"]
#: Format 1's header (before ``reference_networks``): read as ``canica``.
_FORMAT1_COLUMNS = FINGERPRINT_COLUMNS[:-1]
#: ``fbn``: matched network time courses; ``cka``: linear CKA of the activations.
FINGERPRINT_METHODS = ("fbn", "cka")
_TEXT_COLUMNS = ("reference", "candidate", "method", "reference_networks")
_UNIT_COLUMNS = ("score", "null_mean")
_COUNT_COLUMNS = {"n_components": 1, "n_words": 1, "random_state": 0}
_WHAT = "fingerprint table"


def _header(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def is_fingerprints_file(path):
    """True when ``path`` is a ``.csv`` file whose header is :data:`FINGERPRINT_COLUMNS`
    or format 1's (:func:`read_fingerprints` checks the rows)."""
    path = Path(path)
    return (path.suffix.lower() == ".csv" and path.is_file()
            and _header(path) in (FINGERPRINT_COLUMNS, _FORMAT1_COLUMNS))


def _is_count(value, minimum):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value == int(value) and value >= minimum)


def _check_rows(frame, where):
    """Raise FormatError (``where``: what to name) unless every row is valid."""
    if list(frame.columns) != FINGERPRINT_COLUMNS:
        raise FormatError(f"{where} is not a valid {_WHAT}: its columns are "
                          f"{list(frame.columns)}, not {FINGERPRINT_COLUMNS}.")
    if frame.empty:
        raise FormatError(f"{where} is not a valid {_WHAT}: it has no rows.")
    for n, row in enumerate(frame.to_dict("records")):
        problem = None
        for column in _TEXT_COLUMNS:
            if not isinstance(row[column], str) or not row[column]:
                problem = f"{column!r} must be a non-empty string. {row[column]!r} was found"
        if problem is None and row["method"] not in FINGERPRINT_METHODS:
            problem = (f"'method' must be one of {FINGERPRINT_METHODS}. {row['method']!r} "
                       f"was found")
        for column in _UNIT_COLUMNS:
            value = row[column]
            if problem is None and not (isinstance(value, float) and 0 <= value <= 1):
                problem = f"{column!r} must lie in [0, 1]. {value!r} was found"
        value = row["p_value"]
        if problem is None and not (isinstance(value, float) and 0 < value <= 1):
            problem = f"'p_value' must lie in (0, 1]. {value!r} was found"
        for column, minimum in _COUNT_COLUMNS.items():
            if problem is None and not _is_count(row[column], minimum):
                problem = f"{column!r} must be an integer >= {minimum}. {row[column]!r} was found"
        if problem is not None:
            raise FormatError(f"{where} is not a valid {_WHAT}: row {n}: {problem}.")


def read_fingerprints(path):
    """Read and check a fingerprint table.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FINGERPRINT_COLUMNS`; ``reference``, ``candidate`` and
        ``method`` as str, the counts as int.

    Raises
    ------
    FileNotFoundError
    FormatError
        When the header is not :data:`FINGERPRINT_COLUMNS` or a value is out
        of range (the file and the row named).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a {_WHAT}; make one with "
                                f"`llmfbn fingerprint`).")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS},
                            keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as err:
        raise FormatError(f"{path} is not a valid {_WHAT}: {err}") from None
    if list(frame.columns) == _FORMAT1_COLUMNS:
        frame["reference_networks"] = "canica"
    for column in _UNIT_COLUMNS + ("p_value",):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    _check_rows(frame, path)
    for column in _COUNT_COLUMNS:
        frame[column] = frame[column].astype(int)
    return frame


def _inside_llmfbn_folder(path):
    """The nearest folder above ``path`` that llmfbn wrote as a whole, or None."""
    for parent in Path(path).resolve().parents:
        if (parent / FOLDER_FILE).is_file():
            return parent
    return None


def check_fingerprints_output(path, overwrite=False):
    """Check, before any work, that a fingerprint table may be written at ``path``.

    Refused whatever ``overwrite`` says: a path not ending in ``.csv``, a
    folder, a path inside a folder llmfbn wrote as a whole (``llmfbn.json``
    above it), and an existing file that is not a fingerprint table (a
    results CSV, any other file). An existing fingerprint table needs
    ``overwrite=True``.

    Raises
    ------
    ValueError, FolderKindError, OutputExistsError
    """
    path = Path(path)
    check_output_file(path, overwrite=True, suffixes=(".csv",), what=_WHAT)
    folder = _inside_llmfbn_folder(path)
    if folder is not None:
        raise FolderKindError(
            f"{path} lies inside {folder}, a folder llmfbn wrote as a whole; refusing to "
            f"write a {_WHAT} there, even when asked to overwrite: choose a path outside it.")
    if path.exists():
        if is_results_file(path):
            kind = "an llmfbn results CSV"
        elif not is_fingerprints_file(path):
            kind = f"not a {_WHAT}"
        else:
            kind = None
        if kind is not None:
            raise FolderKindError(f"{path} exists and is {kind}; refusing to replace it, even "
                                  f"when asked to overwrite: choose another path.")
        check_output_file(path, overwrite=overwrite, suffixes=(".csv",), what=_WHAT)


def write_fingerprints(path, table, overwrite=False):
    """Write a fingerprint table atomically (see :func:`check_fingerprints_output`).

    Parameters
    ----------
    path : str or Path
        A ``.csv`` file.
    table : pandas.DataFrame
        Columns :data:`FINGERPRINT_COLUMNS` (as
        :func:`llmfbn.fingerprint.fingerprint` returns it); checked first.
    overwrite : bool, default False
        Replace an existing fingerprint table (and nothing else).

    Returns
    -------
    Path
    """
    path = Path(path)
    check_fingerprints_output(path, overwrite)
    frame = table.copy()
    for column in _UNIT_COLUMNS + ("p_value",):
        if column in frame.columns:
            frame[column] = frame[column].astype(float)
    _check_rows(frame, f"The {_WHAT} for {path}")
    with replace_file(path, overwrite=overwrite, suffixes=(".csv",), what=_WHAT) as tmp:
        check_fingerprints_output(path, overwrite)  # again, under the lock
        frame.to_csv(tmp, index=False, lineterminator="\n")
    return path
