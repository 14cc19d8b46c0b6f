"""Events -> first-level design matrices; contrast expressions -> a second-level plan.

Needs numpy, pandas and nilearn (for drift regressors); no torch.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llmfbn import io
from llmfbn._utils import check_choice

__all__ = [
    "ContrastPlan",
    "first_level_design",
    "parse_contrast",
    "plan_contrast",
    "read_events",
    "read_run_events",
]

#: ``trial_type`` written by ``llmfbn record`` when no label column was given.
NO_LABEL = "token"
DRIFT_MODELS = (None, "cosine", "polynomial")
LAYOUTS = ("between-run", "within-run")

_NO_LABELS_HINT = (
    "record the texts with their labels: `llmfbn record --input FILE --label-column COLUMN "
    "...` (or `label_column=` in `llmfbn.recording.record`), so that each token's events "
    "row carries its text's label as trial_type."
)


# -- events -> design ------------------------------------------------------


def read_events(path):
    """Read one run's ``_events.tsv`` as a DataFrame (see :func:`llmfbn.io.read_events`).

    Only ``onset``, ``duration`` and ``trial_type`` are kept; labels stay
    strings (``"0"``, ``"1"``, ``"NA"`` are labels, not numbers or missing).

    Returns
    -------
    DataFrame of shape (n_events, 3)
    """
    return io.read_events(path)[["onset", "duration", "trial_type"]].copy()


def read_run_events(paths):
    """Events of every run, checking that the recording carries labels.

    Parameters
    ----------
    paths : list of Path
        ``_bold`` images; each one's ``_events.tsv`` sits beside it.

    Returns
    -------
    list of DataFrame

    Raises
    ------
    ValueError
        When no run carries labels (no events files, or every ``trial_type``
        is ``"token"``), or when only some runs have events.
    """
    files = [io.events_path(p) for p in paths]
    absent = [f for f in files if not f.exists()]
    if len(absent) == len(files):
        raise ValueError(f"The runs ({len(files)}, e.g. {Path(paths[0]).name}) have no "
                         f"_events.tsv files, so they carry no condition labels: "
                         + _NO_LABELS_HINT)
    if absent:
        raise ValueError(f"{len(absent)} of {len(files)} runs have no events file (e.g. "
                         f"{absent[0]}); every run needs its _events.tsv.")
    events = [read_events(f) for f in files]
    if all(set(ev["trial_type"]) <= {NO_LABEL} for ev in events):
        raise ValueError(f"The {len(files)} runs carry no condition labels (every events "
                         f"trial_type is {NO_LABEL!r}): " + _NO_LABELS_HINT)
    return events


def run_conditions(events):
    """Conditions present in one run's events, in order of first appearance."""
    return tuple(dict.fromkeys(events["trial_type"]))


def first_level_design(events, n_scans, drift_model=None, high_pass=0.01, drift_order=1):
    """The first-level design matrix of one run: tokens are scans, no HRF.

    One 0/1 indicator column per condition present (the columns sum to one,
    so they span the constant and no constant is added), plus nilearn's drift
    regressors (without their constant) when ``drift_model`` is given. Scan
    ``t`` is token ``t`` (``t_r = 1``); an event covers the scans
    ``[onset, onset + duration)``.

    Parameters
    ----------
    events : DataFrame with onset, duration, trial_type
    n_scans : int
        Tokens in the run's image.
    drift_model : {None, "cosine", "polynomial"}, default None
    high_pass : float, default 0.01
        Cut-off in cycles per token of the cosine drift (periods over
        ``1 / high_pass`` tokens are removed).
    drift_order : int, default 1
        Order of the polynomial drift.

    Returns
    -------
    DataFrame of shape (n_scans, n_conditions + n_drifts)
    """
    check_choice(drift_model, DRIFT_MODELS, "drift_model")
    conditions = run_conditions(events)
    design = np.zeros((n_scans, len(conditions)))
    covered = np.zeros(n_scans, dtype=int)
    onsets = np.rint(events["onset"].to_numpy()).astype(int)
    ends = onsets + np.maximum(np.rint(events["duration"].to_numpy()).astype(int), 1)
    if len(onsets) and (onsets.min() < 0 or ends.max() > n_scans):
        raise ValueError(f"The events cover tokens {onsets.min()} to {ends.max() - 1}, but "
                         f"the run's image has {n_scans} tokens: events and image disagree.")
    column = {c: k for k, c in enumerate(conditions)}
    for start, end, label in zip(onsets, ends, events["trial_type"]):
        design[start:end, column[label]] = 1.0
        covered[start:end] += 1
    if (covered != 1).any():
        bad = np.flatnonzero(covered != 1)
        raise ValueError(f"Every token must lie in exactly one event; tokens {bad[:5].tolist()} "
                         f"lie in {covered[bad[:5]].tolist()} events.")
    design = pd.DataFrame(design, columns=list(conditions))
    if drift_model is not None:
        from nilearn.glm.first_level import make_first_level_design_matrix

        drifts = make_first_level_design_matrix(
            np.arange(n_scans, dtype=float), events=None, drift_model=drift_model,
            high_pass=high_pass, drift_order=drift_order)
        drifts = drifts.drop(columns="constant")
        drifts.columns = [name if name not in column else f"_{name}" for name in drifts.columns]
        design = pd.concat([design, drifts.reset_index(drop=True)], axis=1)
    return design


# -- contrast expressions --------------------------------------------------

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TERM = re.compile(
    rf"\s*(?P<sign>[+-])?\s*(?:(?P<coef>{_NUMBER})\s*\*\s*)?(?P<name>[^\s+\-*]+)\s*")


def parse_contrast(contrast):
    """Parse ``"a-b"``, ``"a"``, ``"a+b-2*c"`` or ``"0.5*a - 0.5*b"`` into weights.

    Terms are ``[sign][coef*]name``. Names are anything without spaces,
    ``+``, ``-`` or ``*``, so numeric labels work: ``"1-0"`` is condition
    ``"1"`` minus condition ``"0"``. A name given twice adds up.

    Returns
    -------
    dict
        ``{condition: weight}`` in order of appearance, zero weights dropped.
    """
    if not isinstance(contrast, str):
        raise TypeError(f"'contrast' must be a str. {contrast!r} was provided.")
    weights = {}
    pos = 0
    while pos < len(contrast):
        match = _TERM.match(contrast, pos)
        if match is None or match.end() == pos or (pos and not match["sign"]):
            weights = None
            break
        sign = -1.0 if match["sign"] == "-" else 1.0
        coef = float(match["coef"]) if match["coef"] else 1.0
        weights[match["name"]] = weights.get(match["name"], 0.0) + sign * coef
        pos = match.end()
    if not weights:
        raise ValueError(
            f"'contrast' must be terms [sign][coef*]name, e.g. 'positive-negative', "
            f"'positive', '1-0', 'a+b-2*c' or '0.5*a - 0.5*b'. {contrast!r} was provided.")
    weights = {name: w for name, w in weights.items() if w != 0}
    if not weights:
        raise ValueError(f"The contrast {contrast!r} is null: every weight is 0.")
    return weights


@dataclass
class ContrastPlan:
    """How one contrast is tested across runs.

    Attributes
    ----------
    contrast : str
    weights : dict
        ``{condition: weight}``.
    layout : {"between-run", "within-run"}
    runs : list of int
        Indices of the runs that enter the second level, in order.
    design : DataFrame
        Second-level design matrix, one row per run in ``runs``.
    vector : array
        Second-level contrast vector over the design's columns.
    n_runs : dict
        ``{condition: runs}`` that enter the test.
    """

    contrast: str
    weights: dict
    layout: str
    runs: list
    design: pd.DataFrame
    vector: np.ndarray
    n_runs: dict = field(default_factory=dict)

    @property
    def dof(self):
        """Residual degrees of freedom of the second-level model."""
        return len(self.runs) - int(np.linalg.matrix_rank(self.design.to_numpy()))


def _names(conditions):
    return ", ".join(repr(c) for c in conditions)


def plan_contrast(contrast, conditions_per_run):
    """Check a contrast against the runs' conditions and lay out its second level.

    Two layouts are supported:

    - **between-run**, when every run holds exactly one condition (the
      default with one text per run): each run's effect map of its condition
      enters the second level, only runs of conditions named in the contrast;
      the design has one indicator column per named condition and the
      contrast vector holds the weights (``"a-b"`` is a two-sample t-test).
    - **within-run** (paired), when every run holds all the conditions of the
      contrast: the contrast is taken inside each run (the weighted sum of
      its condition effect maps), then tested across runs with a one-sample
      t-test (intercept-only design).

    Parameters
    ----------
    contrast : str
        See :func:`parse_contrast`. A string equal to a condition name is
        that condition alone (for labels that contain ``-`` or ``+``).
    conditions_per_run : list of tuple of str

    Returns
    -------
    ContrastPlan

    Raises
    ------
    ValueError
        Unknown condition (the message lists those present), a run layout
        that is neither of the two, a condition with fewer than 2 runs, or a
        second level without residual degrees of freedom.
    """
    present = list(dict.fromkeys(c for conds in conditions_per_run for c in conds))
    weights = {contrast: 1.0} if contrast in present else parse_contrast(contrast)
    unknown = [name for name in weights if name not in present]
    if unknown:
        raise ValueError(
            f"Unknown condition{'s' if len(unknown) > 1 else ''} {_names(unknown)} in contrast "
            f"{contrast!r}. The runs hold the conditions {_names(present)} (the events' "
            f"trial_type).")
    names = list(weights)
    n_total = len(conditions_per_run)
    if all(len(conds) == 1 for conds in conditions_per_run):
        layout = "between-run"
        runs = [i for i, conds in enumerate(conditions_per_run) if conds[0] in weights]
        labels = [conditions_per_run[i][0] for i in runs]
        n_runs = {name: labels.count(name) for name in names}
        design = pd.DataFrame({name: [float(label == name) for label in labels]
                               for name in names})
        vector = np.array([weights[name] for name in names])
    elif all(set(names) <= set(conds) for conds in conditions_per_run):
        layout = "within-run"
        runs = list(range(n_total))
        n_runs = {name: n_total for name in names}
        design = pd.DataFrame({"intercept": np.ones(n_total)})
        vector = np.array([1.0])
    else:
        n_multi = sum(len(conds) > 1 for conds in conditions_per_run)
        n_lacking = sum(not set(names) <= set(conds) for conds in conditions_per_run)
        raise ValueError(
            f"The contrast {contrast!r} needs one of two run layouts: every run holds exactly "
            f"one condition (between-run, e.g. recorded with --texts-per-run 1: runs of "
            f"different conditions are compared), or every run holds all of {_names(names)} "
            f"(within-run: the contrast is taken inside each run, then tested across runs). "
            f"Here {n_multi} of {n_total} runs hold several conditions and {n_lacking} lack "
            f"some of {_names(names)}.")
    plan = ContrastPlan(contrast, weights, layout, runs, design, vector, n_runs)
    few = {name: n for name, n in n_runs.items() if n < 2}
    if few:
        raise ValueError(
            f"Too few runs for the contrast {contrast!r} ({layout}): each condition needs at "
            f"least 2 runs, but {', '.join(f'{k!r} has {v}' for k, v in few.items())} "
            f"(runs per condition: {n_runs}).")
    if plan.dof < 1:
        raise ValueError(
            f"Too few runs for the contrast {contrast!r} ({layout}): {len(runs)} runs and "
            f"{len(runs) - plan.dof} second-level regressors leave {plan.dof} residual degrees "
            f"of freedom; at least 1 is needed.")
    return plan
