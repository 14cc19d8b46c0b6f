"""``_events.tsv``: one row per token of a run, readable by pandas' defaults.

::

    onset  duration  trial_type  token  token_id  text_index  position
    0      1         pos         The    504       0           0
    1      1         pos         "a""b"  18       0           1

Cells are quoted the way ``pandas.read_csv(path, sep="\\t")`` and nilearn
(``FirstLevelModel``, ``first_level_from_bids``) expect by default: a cell
holding a tab, a newline, a carriage return or a double quote is put in double
quotes, its quotes doubled (``csv.QUOTE_MINIMAL`` with ``doublequote``; Python's
own csv writer leaves a lone ``\\r`` unquoted, so the rule is applied here).
Lines end in ``\\n``; the file is UTF-8. An empty cell is written ``n/a``, as
BIDS asks. Nothing is backslash-escaped.

The file's format version is the run sidecar's (:mod:`llmfbn.io._recording`).
"""

import re
from pathlib import Path

from llmfbn.io._atomic import write_atomic
from llmfbn.io._errors import FormatError

__all__ = ["EVENT_COLUMNS", "events_path", "read_events", "write_events"]

#: Columns of the events files ``llmfbn record`` writes, in order.
EVENT_COLUMNS = ("onset", "duration", "trial_type", "token", "token_id", "text_index",
                 "position")
#: The columns every events file must have (BIDS).
REQUIRED_COLUMNS = ("onset", "duration", "trial_type")
MISSING = "n/a"

_NEEDS_QUOTES = re.compile(r'[\t\n\r"]')


def _cell(value):
    text = MISSING if value is None or value == "" else str(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def events_path(path):
    """The events file of a run: ``path`` itself, or the sibling of a ``_bold`` image."""
    from llmfbn.io._recording import run_sibling  # _recording writes events: import here

    path = Path(path)
    return run_sibling(path, "events.tsv") if "_bold.nii" in path.name else path


def write_events(path, rows, columns=None):
    """Write one run's events atomically.

    Parameters
    ----------
    path : str or Path
        The ``_events.tsv`` file (or the run's ``_bold`` image).
    rows : list of dict
        One row per event (token), with a value for every column; values
        are written with ``str``, None and ``""`` as ``n/a``.
    columns : sequence of str, optional
        Default: the first row's keys (:data:`EVENT_COLUMNS` for no rows).
    """
    rows = list(rows)
    if columns is None:
        columns = list(rows[0]) if rows else list(EVENT_COLUMNS)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"'columns' must include {list(REQUIRED_COLUMNS)}. {list(columns)} "
                         f"was provided.")
    lines = ["\t".join(_cell(c) for c in columns)]
    lines.extend("\t".join(_cell(row[c]) for c in columns) for row in rows)
    path = events_path(path)
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def read_events(path):
    """Read one run's events with every cell exactly as written.

    pandas' defaults (``pandas.read_csv(path, sep="\\t")``, as nilearn reads
    events) parse these files too, but turn number-like or NA-like strings
    (``"1.50"``, ``"NA"``, ``"nan"``, ``"n/a"``) into numbers or NaN; this
    reader keeps them (``dtype=str, keep_default_na=False``).

    Parameters
    ----------
    path : str or Path
        The ``_events.tsv`` file, or the run's ``_bold`` image beside it.

    Returns
    -------
    DataFrame of shape (n_events, n_columns)
        ``onset`` and ``duration`` as floats; every other column as str
        (``token`` is the exact token string, ``n/a`` for an empty one).

    Raises
    ------
    FileNotFoundError
        When the events file is missing.
    FormatError
        When it cannot be parsed, lacks ``onset``, ``duration`` or
        ``trial_type``, or has a non-numeric onset or duration.
    """
    import pandas as pd

    path = events_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The events file {path} does not exist.")
    try:
        events = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                             na_filter=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())
        raise FormatError(f"{path} is not a valid events file: {detail}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise FormatError(f"{path} is not a valid events file: it lacks the column(s) "
                          f"{missing}; it has {list(events.columns)}.")
    for column in ("onset", "duration"):
        try:
            events[column] = events[column].astype(float)
        except ValueError as err:
            raise FormatError(f"{path} has a non-numeric {column}: {err}.") from None
    return events
