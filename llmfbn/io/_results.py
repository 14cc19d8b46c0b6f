"""The results CSV of ``llmfbn evaluate`` / ``llmfbn intervene`` and its settings.

::

    results.csv                  one row per (network, task, metric, mode, edit_value)
    results.csv.settings.json    what produced the rows (the settings manifest)

The manifest holds the model (name and weights hash), the dtype and device it
ran in (``model_dtype``, ``device``: float32 and bfloat16 rows, CPU and GPU rows
never mix), the networks (content hash), ``n_controls``, ``random_state`` and,
per task, its kind, evaluation file (path and content hash) and the settings that change its numbers
(``limit``, ``max_tokens``, ``max_length``, ``stride``). A resume adds rows
only when every setting it shares with the manifest is the same; new tasks,
networks, modes and values may be added. A CSV without its manifest is
refused unless it is replaced. The CSV is locked while it is written, and
every write (manifest first, then rows) is atomic.

The manifest's ``format_version`` is the CSV's too: format 2 added the ratio
intervals, ``p_value``, ``ci_method`` and ``n_units`` (:data:`RESULT_COLUMNS`
documents every column). A CSV of format 1 is still read (plotted,
reported), but never resumed: its rows cannot be recomputed with the new
columns, and mixing the two is refused.
"""

import bisect
import hashlib
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llmfbn import __version__
from llmfbn.io._atomic import atomic_path, recover_interrupted, write_json
from llmfbn.io._errors import FolderKindError, FormatError, OutputExistsError, ResumeMismatchError
from llmfbn.io._json import check_format_version, read_json
from llmfbn.io._lock import OutputLock

__all__ = [
    "RESULT_COLUMNS",
    "ResultsTable",
    "check_results_output",
    "describe_differences",
    "is_results_file",
    "open_results",
    "read_results",
    "read_settings",
    "settings_differences",
    "settings_path",
]

#: The columns of a results CSV, in order (format 2):
#:
#: - ``network``: the network's index, or ``none`` for the unmodified model.
#: - ``n_neurons``: neurons edited (0 for ``none``).
#: - ``task``, ``metric``: the evaluation's name and one of its metrics
#:   (``perplexity``, ``accuracy``, ``accuracy_norm``, ...).
#: - ``mode``, ``edit_value``: the edit (``inhibit``, ``amplify``, ``scale``;
#:   ``none`` for the unmodified model) and its parameter (added value for
#:   amplify, factor for scale, empty for inhibit and ``none``).
#: - ``value``: the metric with the edit applied.
#: - ``control_mean``: the mean over the matched random controls: the
#:   *geometric* mean for perplexity (the perplexity of the controls' mean
#:   log perplexity), the arithmetic mean for accuracy and plain numbers.
#: - ``control_ci_low``, ``control_ci_high``: its interval (95 %).
#: - ``ratio``: ``value / control_mean``.
#: - ``ratio_ci_low``, ``ratio_ci_high``: its interval (95 %; for
#:   perplexity and accuracy always above 0).
#: - ``p_value``: two-sided, of ``ratio = 1``.
#: - ``ci_method``: the method of the three statistics above
#:   (:data:`llmfbn.intervention.CI_METHODS`: e.g. ``paired-t-log-units+controls``);
#:   empty for ``none`` rows.
#: - ``n_controls``: matched controls (0 for ``none``).
#: - ``n_units``: windows (perplexity) or items (accuracy) the statistics
#:   were paired on; 0 when the evaluation gave no per-unit values.
#: - ``baseline``: the metric of the unmodified model.
RESULT_COLUMNS = ["network", "n_neurons", "task", "metric", "mode", "edit_value", "value",
                  "control_mean", "control_ci_low", "control_ci_high", "ratio",
                  "ratio_ci_low", "ratio_ci_high", "p_value", "ci_method", "n_controls",
                  "n_units", "baseline"]
#: Format 1 (llmfbn 0.2.0): Student-t intervals on the raw metric over the
#: controls, no ratio interval, p-value, method or unit count.
SETTINGS_FORMAT_VERSION = 2
READ_FORMAT_VERSIONS = (1, 2)
SETTINGS_SUFFIX = ".settings.json"

#: The columns of a format-1 CSV (still read; never resumed).
_V1_COLUMNS = ["network", "n_neurons", "task", "metric", "mode", "edit_value", "value",
               "control_mean", "control_ci_low", "control_ci_high", "ratio", "n_controls",
               "baseline"]
#: How a format-1 table is read: what its rows lack, and the method of its intervals.
_V1_FILL = {"ratio_ci_low": float("nan"), "ratio_ci_high": float("nan"),
            "p_value": float("nan"), "n_units": float("nan")}
#: Format 1's intervals: Student-t over the controls' raw values.
_V1_METHOD = "t-controls"
_TEXT_COLUMNS = ("network", "task", "metric", "mode", "edit_value")
_NUMERIC_COLUMNS = ["n_neurons", "value", "control_mean", "control_ci_low", "control_ci_high",
                    "ratio", "ratio_ci_low", "ratio_ci_high", "p_value", "n_controls",
                    "n_units", "baseline"]
#: Global settings set only by some commands (None until one sets them).
_SWEEP_SETTINGS = ("networks", "n_controls", "random_state")

#: How each setting is named in messages of the Python API.
API_NAMES = {"model": "the model", "model_dtype": "the model dtype", "device": "the device",
             "networks": "the networks", "n_controls": "n_controls",
             "random_state": "random_state", "kind": "the task kind",
             "file": "the evaluation file", "limit": "limit", "max_tokens": "max_tokens",
             "max_length": "max_length", "stride": "stride"}


def settings_path(csv_path):
    """The manifest beside a results CSV: ``<csv name>.settings.json``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + SETTINGS_SUFFIX)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _read_csv(path, required=_V1_COLUMNS):
    """Rows with the key columns as exact strings (``edit_value`` ``""`` for none)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS + ("ci_method",)},
                            keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FormatError(f"{path} is not a valid results CSV: {err}") from None
    _check_columns(frame, f"{path} is not an llmfbn results CSV", required)
    frame["edit_value"] = frame["edit_value"].fillna("")
    return _complete(frame)


def _complete(frame):
    """``frame`` with every :data:`RESULT_COLUMNS` first (a format-1 table completed)."""
    if "ci_method" not in frame.columns:
        edited = frame["network"].astype(str) != "none"
        frame["ci_method"] = edited.map({True: _V1_METHOD, False: ""})
    # astype(object) first: an all-empty column reads as float64, which refuses a "" fill.
    frame["ci_method"] = frame["ci_method"].astype(object).fillna("").astype(str)
    for column, fill in _V1_FILL.items():
        if column not in frame.columns:
            frame[column] = fill
    return frame[RESULT_COLUMNS + [c for c in frame.columns if c not in RESULT_COLUMNS]]


def is_results_file(path):
    """True when ``path`` is a ``.csv`` whose header holds the results' columns
    (those of :data:`RESULT_COLUMNS` that format 1 already had)."""
    import csv

    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(_V1_COLUMNS) <= set(header)


def _check_columns(frame, what, required=_V1_COLUMNS):
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FormatError(f"{what}: columns {missing} are missing.")


def read_results(results):
    """The results table as a DataFrame (``network`` as str, ``edit_value`` as float).

    Parameters
    ----------
    results : str, Path or pandas.DataFrame
        The tidy CSV written by ``llmfbn intervene`` / ``llmfbn evaluate``
        (:data:`RESULT_COLUMNS`), or the DataFrame itself.

    Returns
    -------
    pandas.DataFrame of shape (n_rows, n_columns)
        :data:`RESULT_COLUMNS` first; ``edit_value`` is NaN for inhibit and
        baseline rows. A table of format 1 (llmfbn 0.2.0) gets the columns
        it lacks: NaN, and ``ci_method`` ``"t-controls"`` for its edited rows.

    Raises
    ------
    FileNotFoundError, FormatError
        A missing file; a damaged CSV, missing columns or a settings file of
        an unknown format version.
    """
    import pandas as pd

    if isinstance(results, (str, os.PathLike)):
        path = Path(results)
        if not path.exists():
            raise FileNotFoundError(f"'results': {path} does not exist.")
        if path.is_dir():
            raise FormatError(f"'results': {path} is a folder, not a results CSV.")
        read_settings(path)  # a manifest of an unknown version is refused
        frame = _read_csv(path)
    elif isinstance(results, pd.DataFrame):
        frame = results.copy()
        _check_columns(frame, "'results' is not an llmfbn results table")
        frame = _complete(frame)
    else:
        raise TypeError(f"'results' must be a CSV path or a pandas DataFrame. "
                        f"{type(results).__name__} was provided.")
    frame["network"] = frame["network"].astype(str)
    frame["mode"] = frame["mode"].astype(str)
    frame["edit_value"] = pd.to_numeric(frame["edit_value"], errors="coerce")
    for column in _NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def networks_identity(masks, grid):
    """The networks as a results manifest records them: a content hash, their number, model.

    Parameters
    ----------
    masks : bool array of shape (n_networks, n_layers, n_units)
    grid : NeuronGrid

    Returns
    -------
    dict
        ``{"sha256": hash of the grid's layout and of every mask, "n_networks",
        "model"}``: the same masks on the same layout give the same hash, wherever
        the folder lies (so a report finds the networks folder behind a CSV).
    """
    masks = np.ascontiguousarray(masks, dtype=bool)
    digest = hashlib.sha256(json.dumps({"layers": grid.layers, "width": grid.width,
                                        "shape": list(masks.shape)}).encode())
    digest.update(np.packbits(masks).tobytes())
    return {"sha256": "sha256:" + digest.hexdigest(), "n_networks": len(masks),
            "model": grid.model}


def read_settings(csv_path):
    """The manifest of a results CSV as a dict, or None when there is none.

    Raises
    ------
    FormatError
        When it is damaged or of an unknown format version.
    """
    path = settings_path(csv_path)
    if not path.exists():
        return None
    document = read_json(path, what="results settings file")
    check_format_version(document, path, READ_FORMAT_VERSIONS, what="results settings file")
    if not isinstance(document.get("tasks"), dict):
        raise FormatError(f"{path} is not a valid results settings file: it lacks 'tasks'.")
    return document


# ---------------------------------------------------------------------------
# Comparing settings
# ---------------------------------------------------------------------------


def _same_model(old, new):
    if old.get("weights_hash") is not None and new.get("weights_hash") is not None:
        return old["weights_hash"] == new["weights_hash"]
    return old.get("name") == new.get("name")


def _same(setting, old, new):
    if setting == "model":
        return _same_model(old, new)
    if setting in ("networks", "file") and isinstance(old, dict) and isinstance(new, dict):
        return old.get("sha256") == new.get("sha256")
    return old == new


def settings_differences(old, new):
    """What differs between a manifest ``old`` and the settings ``new`` of a resume.

    Settings absent from ``new`` (None: not known yet, or not used by this
    command) or not yet set in ``old`` are not compared; tasks are compared
    only when both name them.

    Returns
    -------
    list of dict
        ``{"setting", "task", "was", "now"}`` (``task`` None for global settings).
    """
    differences = []
    for setting in ("model", "model_dtype", "device") + _SWEEP_SETTINGS:
        was, now = old.get(setting), new.get(setting)
        if was is not None and now is not None and not _same(setting, was, now):
            differences.append({"setting": setting, "task": None, "was": was, "now": now})
    old_tasks = old.get("tasks", {})
    for task, now_task in new.get("tasks", {}).items():
        if task not in old_tasks:
            continue
        was_task = old_tasks[task]
        for setting in dict.fromkeys(list(was_task) + list(now_task)):
            was, now = was_task.get(setting), now_task.get(setting)
            if not _same(setting, was, now):
                differences.append({"setting": setting, "task": task, "was": was, "now": now})
    return differences


def _show(setting, value):
    if value is None:
        return "not set"
    if setting == "model" and isinstance(value, dict):
        digest = value.get("weights_hash")
        return f"{value.get('name')!r}" + (f" (weights {_short(digest)})" if digest else "")
    if setting == "networks" and isinstance(value, dict):
        return f"{value.get('n_networks')} networks of {value.get('model')!r} " \
               f"({_short(value.get('sha256'))})"
    if setting == "file" and isinstance(value, dict):
        return f"{value.get('path')} ({_short(value.get('sha256'))})"
    return repr(value) if isinstance(value, str) else str(value)


def _short(digest):
    return str(digest)[:19] + "…" if digest and len(str(digest)) > 20 else str(digest)


def describe_differences(differences, names=None):
    """One phrase per difference, joined by ``"; "``.

    Parameters
    ----------
    differences : list of dict
        From :func:`settings_differences`.
    names : dict, optional
        How to call each setting (default the Python API's names); the CLI
        passes its flags.
    """
    names = dict(API_NAMES, **(names or {}))
    phrases = []
    for d in differences:
        name = names.get(d["setting"], d["setting"])
        where = f" of task {d['task']!r}" if d["task"] is not None else ""
        phrases.append(f"{name}{where} was {_show(d['setting'], d['was'])}, "
                       f"now {_show(d['setting'], d['now'])}")
    return "; ".join(phrases)


def _mismatch(path, differences):
    error = ResumeMismatchError(
        f"{path} holds results made with other settings: {describe_differences(differences)}. "
        f"Resuming would mix them; write to another out_csv or pass overwrite=True to start "
        f"over.")
    error.path = Path(path)
    error.differences = differences
    return error


def _merge(old, new):
    """The manifest after a resume with ``new``: ``old`` plus what ``new`` adds."""
    merged = dict(old)
    merged["llmfbn_version"] = __version__
    commands = list(old.get("commands", []))
    if new.get("command") and new["command"] not in commands:
        commands.append(new["command"])
    merged["commands"] = commands
    for setting in ("model", "model_dtype", "device") + _SWEEP_SETTINGS:
        if merged.get(setting) is None:
            merged[setting] = new.get(setting)
    merged["tasks"] = dict(old.get("tasks", {}))
    for task, settings in new.get("tasks", {}).items():
        merged["tasks"].setdefault(task, settings)
    return merged


def _fresh(new):
    return _merge({"format_version": SETTINGS_FORMAT_VERSION, "commands": [], "tasks": {}}, new)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def check_results_output(path, settings, overwrite=False):
    """Check, before any work, that results with ``settings`` may go to ``path``.

    Allowed: no CSV yet; a CSV whose manifest agrees with ``settings`` (a
    resume); anything of the CSV kind when ``overwrite``. Settings that are
    None (e.g. the model before it is loaded) are checked later.

    Parameters
    ----------
    path : str or Path
        The results CSV.
    settings : dict
        ``command``, ``model``, ``networks``, ``n_controls``, ``random_state``
        and ``tasks`` (``{task: {setting: value}}``), as the manifest holds them.
    overwrite : bool, default False
        Start afresh, replacing the CSV and its manifest.

    Returns
    -------
    dict or None
        The manifest to resume, or None when starting afresh.

    Raises
    ------
    FolderKindError
        ``path`` is a folder (whatever ``overwrite`` says).
    OutputExistsError
        The CSV has no manifest (an older llmfbn's or a hand-made file), or
        one of an older format (its rows lack columns this llmfbn writes).
    ResumeMismatchError
        The manifest differs from ``settings``; ``.differences`` lists how.
    """
    path = Path(path)
    if path.is_dir():
        raise FolderKindError(f"{path} is a folder; the results CSV must be a file path.")
    if not path.exists() or overwrite:
        return None
    manifest = read_settings(path)
    if manifest is None:
        raise OutputExistsError(
            f"{path} has no settings file ({settings_path(path).name}): it was written by an "
            f"older llmfbn or by hand, so its rows cannot be verified for a resume. Pass "
            f"overwrite=True to start over, or write to another out_csv.", path)
    if manifest["format_version"] != SETTINGS_FORMAT_VERSION:
        raise OutputExistsError(
            f"{path} holds results of format {manifest['format_version']} (Student-t "
            f"intervals on the raw metric, without ratio intervals, p-values or their "
            f"method), and this llmfbn writes format {SETTINGS_FORMAT_VERSION}: its rows "
            f"cannot be recomputed with the new columns, and the two would mix. Pass "
            f"overwrite=True to start over, or write to another out_csv.", path)
    differences = settings_differences(manifest, settings)
    if differences:
        raise _mismatch(path, differences)
    return manifest


class ResultsTable:
    """Rows of a results CSV being written (see :func:`open_results`).

    Attributes
    ----------
    rows : pandas.DataFrame of shape (n_rows, len(RESULT_COLUMNS))
        Every row so far (those resumed first); ``network``, ``task``,
        ``metric``, ``mode`` and ``edit_value`` as str.
    path : Path or None
        The CSV, or None for a table kept in memory only.
    """

    def __init__(self, path, rows, manifest, replace):
        self.path = path
        self.rows = rows
        self._resumed = rows
        self._blocks = []  # ((position, arrival), rows) added since the table was opened
        self._manifest = manifest
        self._replace = replace
        self._manifest_written = False

    def append(self, records, position=None):
        """Add rows (dicts with :data:`RESULT_COLUMNS`); rewrite the CSV atomically.

        Parameters
        ----------
        records : iterable of dict
        position : int, optional
            Where these rows go among those added since the table was opened
            (the resumed rows stay first): blocks of rows are kept in order
            of ``position``, ties and None in the order they came, None after
            every number. Work done out of order (on a cluster) passes the
            order in which one process would have added them, so the CSV is
            the same.

        Returns
        -------
        pandas.DataFrame
            All rows.
        """
        import pandas as pd

        new = pd.DataFrame(list(records), columns=RESULT_COLUMNS)
        order = (math.inf if position is None else position, len(self._blocks))
        self._blocks.insert(bisect.bisect([o for o, _ in self._blocks], order), (order, new))
        frames = [] if self._resumed.empty else [self._resumed]
        frames += [block for _, block in self._blocks]
        rows = frames[0].copy() if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        for column in _NUMERIC_COLUMNS:
            rows[column] = pd.to_numeric(rows[column])
        self.rows = rows
        if self.path is not None:
            self._write()
        return rows

    def _write(self):
        manifest_file = settings_path(self.path)
        if self._replace:  # old rows go first, so they never sit under the new manifest
            self.path.unlink(missing_ok=True)
            write_json(manifest_file, self._manifest)
            self._replace = False
            self._manifest_written = True
        if not self._manifest_written:  # a resume: the manifest was read and checked
            if read_json(manifest_file) != self._manifest:
                write_json(manifest_file, self._manifest)
            self._manifest_written = True
        with atomic_path(self.path) as tmp:
            self.rows.to_csv(tmp, index=False)


def _empty_rows():
    import pandas as pd

    rows = pd.DataFrame(columns=RESULT_COLUMNS)
    for column in _TEXT_COLUMNS:
        rows[column] = rows[column].astype(str)
    return rows


@contextmanager
def open_results(path, settings, overwrite=False):
    """Open a results CSV to add rows made with ``settings``, locked throughout.

    Checks as :func:`check_results_output` (again, under the lock), then
    yields a :class:`ResultsTable` holding the rows to resume (none when
    ``overwrite``). Nothing is written until the first
    :meth:`ResultsTable.append`; with ``overwrite`` that first write
    replaces the old CSV and manifest.

    Parameters
    ----------
    path : str, Path or None
        None keeps the rows in memory (no file, no lock).
    settings : dict
        See :func:`check_results_output`; every setting must be known here.
    overwrite : bool, default False

    Raises
    ------
    OutputLockedError
        Another process is writing the same CSV.
    """
    if path is None:
        yield ResultsTable(None, _empty_rows(), _fresh(settings), False)
        return
    path = Path(path)
    check_results_output(path, settings, overwrite)
    with OutputLock(path):
        recover_interrupted(path)
        recover_interrupted(settings_path(path))
        manifest = check_results_output(path, settings, overwrite)
        if manifest is None:  # a new CSV, or the old one replaced at the first write
            yield ResultsTable(path, _empty_rows(), _fresh(settings), True)
            return
        rows = _read_csv(path, required=RESULT_COLUMNS)  # format 2 under its manifest
        unlisted = sorted(set(rows["task"]) - set(manifest["tasks"]))
        if unlisted:
            raise FormatError(f"{path} holds rows of tasks {unlisted} that its settings file "
                              f"{settings_path(path).name} does not list: it was edited by "
                              f"hand. Pass overwrite=True to start over.")
        yield ResultsTable(path, rows, _merge(manifest, settings), False)
