"""Matched random controls, and how an edited network compares with them.

:func:`matched_controls` draws random neuron sets with the network's layout;
:func:`compare_to_controls` turns the scores of the edited network and of
its controls into a control mean, a ratio and their intervals, on the scale
where each metric lives.

Statistics (:func:`compare_to_controls`)
----------------------------------------
The quantity of interest is the ratio of the edited network's metric to the
mean of matched random controls, ``ratio = value / control_mean``. It has
two sources of uncertainty, and both are kept:

- *which controls were drawn*: the between-control variance ``s_c**2`` of
  the controls' metrics (on the working scale), divided by ``K`` controls;
- *which windows or items were evaluated*: when every score carries its
  per-unit values (:class:`llmfbn.evaluation.MetricScore`, the same units
  in the same order), the network-minus-controls difference is formed per
  unit first, so what all models find hard or easy cancels (a paired
  design), and its sampling variance over units is estimated with the
  delta method (the ratio-estimator variance for perplexity).

The two variances are added, and the interval uses a Student-t quantile with
Welch-Satterthwaite degrees of freedom: with 3 controls whose spread
dominates, ``df`` is close to 2 and the interval is wide, as it must be; when
unit sampling dominates, ``df`` grows with the number of units. The interval
is for the network's metric relative to the *mean* matched control over the
population of texts; the two-sided ``p_value`` tests ``ratio = 1`` with the
same variance and ``df``. It is not an outlier test of the network among
random sets (that one has the wider variance ``s_c**2 * (1 + 1/K)``).

Working scales, so that intervals stay where the metric lives:

- perplexity: log perplexity (mean NLL per token). ``control_mean`` is the
  geometric mean of the controls' perplexities (the perplexity of their mean
  NLL), the ratio is ``exp`` of a difference of log perplexities; both
  intervals are back-transformed and stay above 0.
- accuracy (proportion): ``control_mean`` is the mean of the controls'
  accuracies; its interval is a Wilson score interval with the design-effect
  sample size ``n_eff = p (1 - p) / var`` (Korn & Graubard, 1998), which
  stays in [0, 1]; the ratio's interval is on the log scale (undefined, NaN,
  when the network's or the controls' accuracy is 0).
- a plain number (an Evaluation returning floats): Student-t over the
  controls' values; no ratio interval.

``ci_method`` (:data:`CI_METHODS`) names the method of each row's intervals.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.utils import check_random_state

from llmfbn._utils import check_positive_int

__all__ = ["CI_METHODS", "ControlComparison", "compare_to_controls", "confidence_interval",
           "matched_controls"]

#: The values of the results' ``ci_method`` column and what each means.
CI_METHODS = {
    "paired-t-log-units+controls":
        "perplexity: per-window network-minus-controls NLL (paired), unit sampling "
        "(ratio-estimator delta method) plus between-control variance, Student-t with "
        "Welch-Satterthwaite df on log perplexity, back-transformed",
    "paired-t-log-units":
        "as paired-t-log-units+controls with 1 control: unit sampling only (the "
        "control-to-control spread cannot be estimated)",
    "t-log-units+controls":
        "as paired-t-log-units+controls, unpaired (paired=False): network and controls "
        "sampled as if on independent units",
    "t-log-units": "as t-log-units+controls with 1 control: unit sampling only",
    "t-log-controls":
        "perplexity without per-window values: Student-t over the controls' log "
        "perplexities (K - 1 df), back-transformed",
    "paired-wilson-units+controls":
        "accuracy: per-item outcomes, paired; variance = unit sampling plus between-control "
        "variance; control mean: Wilson interval with the design-effect sample size; ratio: "
        "Student-t (Welch-Satterthwaite df) on the log ratio",
    "paired-wilson-units":
        "as paired-wilson-units+controls with 1 control: unit sampling only",
    "wilson-units+controls":
        "as paired-wilson-units+controls, unpaired (paired=False)",
    "wilson-units": "as wilson-units+controls with 1 control: unit sampling only",
    "wilson-controls":
        "accuracy without per-item values: between-control variance only (K - 1 df)",
    "t-controls":
        "a plain number: Student-t over the controls' values (K - 1 df); no ratio interval",
    "none":
        "no interval: 1 control and no per-unit values",
}


def matched_controls(mask, n_controls=5, exclude=None, random_state=None):
    """Random neuron sets matched to ``mask`` layer by layer.

    Parameters
    ----------
    mask : bool array of shape (n_layers, n_units)
        The network.
    n_controls : int, default 5
    exclude : bool array of shape (n_layers, n_units), optional
        Neurons never drawn. Default: the network itself.
    random_state : int, RandomState or None

    Returns
    -------
    controls : bool array of shape (n_controls, n_layers, n_units)
        Each has exactly ``mask[l].sum()`` neurons in layer ``l``, none in
        ``exclude``.
    """
    mask = np.asarray(mask, dtype=bool)
    check_positive_int(n_controls, "n_controls")
    exclude = mask if exclude is None else np.asarray(exclude, dtype=bool) | mask
    rng = check_random_state(random_state)
    controls = np.zeros((n_controls,) + mask.shape, dtype=bool)
    for layer in range(mask.shape[0]):
        count = int(mask[layer].sum())
        if not count:
            continue
        pool = np.flatnonzero(~exclude[layer])
        if len(pool) < count:
            raise ValueError(f"Layer {layer} has {count} network neurons but only {len(pool)} "
                             f"neurons outside it to draw a matched control from.")
        for k in range(n_controls):
            controls[k, layer, rng.choice(pool, size=count, replace=False)] = True
    return controls


def confidence_interval(values, level=0.95):
    """Mean and Student-t confidence interval of ``values``: (mean, low, high).

    On the raw scale, for plain numbers; metrics with a scale (perplexity,
    accuracy) go through :func:`compare_to_controls`. With one value, the
    interval is that value.
    """
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + level / 2, df=len(values) - 1) * stats.sem(values)
    return mean, float(mean - half), float(mean + half)


@dataclass
class ControlComparison:
    """An edited network's metric against its matched controls.

    Attributes
    ----------
    value : float
        The metric with the network edited.
    control_mean : float
        Geometric mean of the controls' perplexities, or arithmetic mean of
        their accuracies (or plain values).
    control_ci_low, control_ci_high : float
        Interval of ``control_mean`` (NaN when it cannot be estimated).
    ratio : float
        ``value / control_mean``.
    ratio_ci_low, ratio_ci_high : float
        Interval of ``ratio`` (NaN for plain numbers or when undefined).
    p_value : float
        Two-sided, of ``ratio = 1`` (plain numbers: ``value = control_mean``).
    ci_method : str
        A key of :data:`CI_METHODS`.
    n_controls : int
    n_units : int
        Windows or items the intervals were built on (0 without per-unit values).
    """

    value: float
    control_mean: float
    control_ci_low: float
    control_ci_high: float
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    p_value: float
    ci_method: str
    n_controls: int
    n_units: int

    def to_dict(self):
        """The fields as a dict (the results CSV's columns of the same names)."""
        return asdict(self)


def _scale(score):
    return getattr(score, "scale", None)


def _units(score):
    return getattr(score, "units", None)


def _pairable(edited, controls, scale):
    """True when every score has per-unit values on the same units."""
    scores = [edited] + list(controls)
    units = [_units(s) for s in scores]
    if any(u is None for u in units):
        return False
    shapes = {np.shape(u) for u in units}
    if len(shapes) != 1 or len(units[0]) < 2:
        return False
    if scale == "perplexity":
        weights = [getattr(s, "weights", None) for s in scores]
        if any(w is None or np.shape(w) != np.shape(units[0]) for w in weights):
            return False
        return all(np.allclose(w, weights[0]) for w in weights[1:])
    return True


def _combine(unit_var, unit_df, control_var, control_df):
    """Total variance and its Welch-Satterthwaite degrees of freedom."""
    parts = [(v, d) for v, d in ((unit_var, unit_df), (control_var, control_df))
             if d is not None and d > 0 and np.isfinite(v)]
    if control_df is not None and control_df > 0 and not np.isfinite(control_var):
        return math.nan, math.nan
    total = float(sum(v for v, _ in parts))
    if not parts or (control_df is None and unit_df is None):
        return math.nan, math.nan
    denominator = sum(v * v / d for v, d in parts)
    return total, (float(total * total / denominator) if denominator > 0 else math.inf)


def _t(level, df):
    return float(stats.t.ppf(0.5 + level / 2, df)) if np.isfinite(df) else \
        float(stats.norm.ppf(0.5 + level / 2))


def _t_interval(center, variance, df, level):
    if not np.isfinite(variance) or not df > 0:
        return math.nan, math.nan
    half = _t(level, df) * math.sqrt(variance)
    return center - half, center + half


def _p_value(estimate, variance, df):
    if not np.isfinite(variance) or not df > 0 or not np.isfinite(estimate):
        return math.nan
    if variance == 0:
        return math.nan
    statistic = abs(estimate) / math.sqrt(variance)
    return float(2 * (stats.t.sf(statistic, df) if np.isfinite(df) else stats.norm.sf(statistic)))


def _ratio_estimator_var(numerators, weights, estimate):
    """Delta-method variance of ``sum(numerators) / sum(weights)`` over units."""
    n = len(numerators)
    residual = numerators - estimate * weights
    return float(n / (n - 1) * np.sum(residual ** 2) / np.sum(weights) ** 2)


def _wilson(p, variance, df, level, n_units):
    """Wilson score interval of a proportion with the design-effect sample size."""
    if not np.isfinite(variance) or not df > 0:
        return math.nan, math.nan
    n_eff = p * (1 - p) / variance if variance > 0 else (n_units or math.inf)
    if not np.isfinite(n_eff):
        return p, p
    z = _t(level, df)
    denominator = 1 + z * z / n_eff
    center = (p + z * z / (2 * n_eff)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff))
    return max(0.0, center - half), min(1.0, center + half)


def _method(scale, paired, has_units, n_controls):
    if not has_units and n_controls < 2:
        return "none"
    if scale is None:
        return "t-controls"
    base = "t-log" if scale == "perplexity" else "wilson"
    if not has_units:
        return f"{base}-controls"
    suffix = "-units+controls" if n_controls >= 2 else "-units"
    return f"{base}{suffix}" if not paired else f"paired-{base}{suffix}"


def compare_to_controls(edited, controls, level=0.95, paired=True):
    """The edited network's metric against its matched controls, with intervals.

    See the module docstring for the method. Perplexity intervals are on
    log perplexity and stay above 0; accuracy intervals of the control mean
    stay in [0, 1].

    Parameters
    ----------
    edited : MetricScore or float
        The metric with the network edited. A
        :class:`~llmfbn.evaluation.MetricScore` gives its scale (perplexity
        or proportion) and its per-unit values; a float is a plain number.
    controls : list of MetricScore or float
        The same metric for each of the ``K`` matched controls, on the same
        units in the same order.
    level : float, default 0.95
    paired : bool, default True
        Use the pairing over units when every score has per-unit values.
        ``False`` treats network and controls as measured on independent
        samples (for comparison only).

    Returns
    -------
    ControlComparison

    Raises
    ------
    ValueError
        No control; scores of different scales.
    """
    controls = list(controls)
    if not controls:
        raise ValueError("'controls' must hold at least 1 score. 0 was provided.")
    if not 0 < level < 1:
        raise ValueError(f"'level' must be in (0, 1). {level!r} was provided.")
    scales = {_scale(s) for s in [edited] + controls}
    if len(scales) != 1:
        raise ValueError(f"The edited network and its controls must share one scale. "
                         f"{sorted(map(str, scales))} were provided.")
    scale = scales.pop()
    k = len(controls)
    has_units = scale is not None and _pairable(edited, controls, scale)
    method = _method(scale, paired, has_units, k)
    n_units = len(_units(edited)) if has_units else 0
    value = float(edited)
    if scale == "perplexity":
        return _perplexity(edited, controls, value, level, paired, has_units, method, n_units)
    if scale == "proportion":
        return _proportion(edited, controls, value, level, paired, has_units, method, n_units)
    values = np.array([float(c) for c in controls])
    mean = float(values.mean())
    control_var = float(values.var(ddof=1) / k) if k > 1 else math.nan
    low, high = _t_interval(mean, control_var, k - 1, level) if k > 1 else (math.nan, math.nan)
    ratio = value / mean if mean else math.nan
    p = _p_value(value - mean, control_var, k - 1) if k > 1 else math.nan
    return ControlComparison(value, mean, low, high, ratio, math.nan, math.nan, p, method, k, 0)


def _perplexity(edited, controls, value, level, paired, has_units, method, n_units):
    k = len(controls)
    control_df = k - 1 if k > 1 else None
    if has_units:
        weights = np.asarray(edited.weights, float)
        total = weights.sum()
        control_units = np.stack([np.asarray(c.units, float) for c in controls])
        logs = control_units.sum(axis=1) / total
        mean_units = control_units.mean(axis=0)
        mean_log = float(mean_units.sum() / total)
        edited_units = np.asarray(edited.units, float)
        log_value = float(edited_units.sum() / total)
        unit_df = n_units - 1
        control_unit_var = _ratio_estimator_var(mean_units, weights, mean_log)
        if paired:
            difference = edited_units - mean_units
            ratio_unit_var = _ratio_estimator_var(difference, weights, log_value - mean_log)
        else:
            ratio_unit_var = control_unit_var + _ratio_estimator_var(edited_units, weights,
                                                                    log_value)
    else:
        logs = np.log([float(c) for c in controls])
        mean_log, log_value = float(logs.mean()), math.log(value)
        unit_df = None
        control_unit_var = ratio_unit_var = 0.0
    between = float(np.var(logs, ddof=1) / k) if k > 1 else math.nan
    control_var, control_dof = _combine(control_unit_var, unit_df, between, control_df)
    ratio_var, ratio_dof = _combine(ratio_unit_var, unit_df, between, control_df)
    low, high = _t_interval(mean_log, control_var, control_dof, level)
    log_ratio = log_value - mean_log
    ratio_low, ratio_high = _t_interval(log_ratio, ratio_var, ratio_dof, level)
    return ControlComparison(
        value, math.exp(mean_log), math.exp(low), math.exp(high), math.exp(log_ratio),
        math.exp(ratio_low), math.exp(ratio_high), _p_value(log_ratio, ratio_var, ratio_dof),
        method, k, n_units)


def _proportion(edited, controls, value, level, paired, has_units, method, n_units):
    k = len(controls)
    control_df = k - 1 if k > 1 else None
    if has_units:
        control_units = np.stack([np.asarray(c.units, float) for c in controls])
        accuracies = control_units.mean(axis=1)
        mean_units = control_units.mean(axis=0)
        edited_units = np.asarray(edited.units, float)
        unit_df = n_units - 1
        control_unit_var = float(mean_units.var(ddof=1) / n_units)
    else:
        accuracies = np.array([float(c) for c in controls])
        unit_df = None
        control_unit_var = 0.0
    mean = float(accuracies.mean())
    between = float(accuracies.var(ddof=1) / k) if k > 1 else math.nan
    control_var, control_dof = _combine(control_unit_var, unit_df, between, control_df)
    low, high = _wilson(mean, control_var, control_dof, level, n_units)
    ratio = value / mean if mean else math.nan
    ratio_low = ratio_high = p = math.nan
    if value > 0 and mean > 0:
        if has_units and paired:
            influence = edited_units / value - mean_units / mean
            ratio_unit_var = float(np.sum(influence ** 2) / (n_units * (n_units - 1)))
        elif has_units:
            ratio_unit_var = float(edited_units.var(ddof=1) / n_units / value ** 2
                                   + control_unit_var / mean ** 2)
        else:
            ratio_unit_var = 0.0
        ratio_var, ratio_dof = _combine(ratio_unit_var, unit_df, between / mean ** 2,
                                        control_df)
        log_low, log_high = _t_interval(math.log(ratio), ratio_var, ratio_dof, level)
        ratio_low, ratio_high = math.exp(log_low), math.exp(log_high)
        p = _p_value(math.log(ratio), ratio_var, ratio_dof)
    return ControlComparison(value, mean, low, high, ratio, ratio_low, ratio_high, p, method,
                             k, n_units)
