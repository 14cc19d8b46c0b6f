"""Results: interventions against matched controls, dose-response curves, consistency."""

from pathlib import Path

import numpy as np

from llmfbn._utils import check_choice
from llmfbn.io import read_consistency, read_results
from llmfbn.plotting._base import check_number, finish, single_axes

__all__ = ["plot_consistency", "plot_dose_response", "plot_intervention", "read_results"]

DOSE_MODES = ("amplify", "scale")
_CONTROL_COLOR = "0.45"


# ---------------------------------------------------------------------------
# Intervention CSV
# ---------------------------------------------------------------------------


def _unique(values):
    return list(dict.fromkeys(values))


def _choose(frame, column, value, name, pick_first=False):
    """Rows with ``column == value``; ``value=None`` needs a single choice (or picks the first)."""
    choices = _unique(frame[column])
    if value is None:
        if not choices:
            raise ValueError("'results' holds no rows to plot.")
        if len(choices) > 1 and not pick_first:
            raise ValueError(f"'{name}' must be one of {tuple(choices)}: the results hold "
                             f"several. None was provided.")
        value = choices[0]
    elif value not in choices:
        raise ValueError(f"'{name}' must be one of {tuple(choices)}. {value!r} was provided.")
    return frame[frame[column] == value], value


def _select(frame, task, metric):
    """Edited rows of one task and metric, and the unedited baseline value (or None)."""
    edited = frame[frame["network"] != "none"]
    if edited.empty:
        raise ValueError("'results' holds only baseline rows (network = none): no edit to plot.")
    edited, task = _choose(edited, "task", task, "task")
    edited, metric = _choose(edited, "metric", metric, "metric", pick_first=True)
    base = frame[(frame["network"] == "none") & (frame["task"] == task)
                 & (frame["metric"] == metric)]
    if len(base):
        baseline = float(base["value"].iloc[0])
    else:
        recorded = edited["baseline"].dropna()
        baseline = float(recorded.iloc[0]) if len(recorded) else None
    return edited, task, metric, baseline


def _condition_order(condition):
    mode, value = condition
    rank = {"inhibit": 0, "amplify": 1, "scale": 2}.get(mode, 3)
    return rank, mode, -np.inf if value is None else value


_METRIC_NAMES = {"iou": "IoU", "correlation": "correlation", "abs_correlation": "|correlation|"}


def _metric_name(metric):
    return _METRIC_NAMES.get(metric, metric)


def _value_label(mode, edit_value):
    return mode if edit_value is None else f"{mode} {edit_value:g}"


def plot_intervention(results, metric=None, task=None, mode=None, edit_value=None,
                      networks=None, title=None, figure=None, axes=None, output_file=None):
    """Plot each edited network against its matched random controls.

    For every network: the metric with the network edited (coloured dot)
    and the mean of the matched controls with its 95 % confidence interval
    (grey, error bar), linked by a thin line; the unedited model as a
    dashed line. Several edits (modes or values) sit side by side.

    Parameters
    ----------
    results : str, Path or pandas.DataFrame
        The tidy results CSV (see :func:`read_results`).
    metric : str, optional
        Default the task's first metric.
    task : str, optional
        Required when the results hold several tasks.
    mode : {"inhibit", "amplify", "scale"}, optional
        Only this edit (default all).
    edit_value : float, optional
        Only this added value or factor.
    networks : list, optional
        Only these networks (indices), in this order; default file order.
    title : str, optional
    figure, axes, output_file
        ``output_file`` saves the figure, closes it and returns None.

    Returns
    -------
    axes : matplotlib Axes or None
        One ``Line2D`` per edit, labelled with the edit (``"inhibit"``,
        ``"amplify 3"``), whose y data are the edited values in network
        order; the controls are ``ErrorbarContainer`` objects in
        ``axes.containers``.
    """
    frame = read_results(results)
    edited, task, metric, baseline = _select(frame, task, metric)
    if mode is not None:
        edited, _ = _choose(edited, "mode", mode, "mode")
    if edit_value is not None:
        edit_value = check_number(edit_value, "edit_value")
        keep = np.isclose(edited["edit_value"].astype(float), edit_value)
        if not keep.any():
            raise ValueError(f"'edit_value' must be one of "
                             f"{tuple(_unique(edited['edit_value'].dropna()))}. "
                             f"{edit_value:g} was provided.")
        edited = edited[keep]
    order = _unique(edited["network"])
    if networks is not None:
        wanted = [str(k) for k in networks]
        unknown = [k for k in wanted if k not in order]
        if unknown:
            raise ValueError(f"'networks' must be among the networks of the results "
                             f"{tuple(order)}. {unknown} was provided.")
        order = wanted
    edited = edited.assign(_condition=[
        (m, None if np.isnan(v) else float(v))
        for m, v in zip(edited["mode"], edited["edit_value"].astype(float))])
    conditions = sorted(_unique(edited["_condition"]), key=_condition_order)
    from llmfbn.plotting._atlas import network_colors

    colors = network_colors(max(len(conditions), 1))
    figure, axes = single_axes(figure, axes, (min(12, 4 + 0.45 * len(order)
                                                  * max(1, len(conditions))), 4.5))
    width = 0.8 / len(conditions)
    for c, (cmode, cvalue) in enumerate(conditions):
        sub = edited[[t == (cmode, cvalue) for t in edited["_condition"]]]
        sub = sub.drop_duplicates("network", keep="last").set_index("network")
        present = [k for k in order if k in sub.index]
        x = np.array([order.index(k) for k in present], dtype=float)
        x += (c - (len(conditions) - 1) / 2) * width
        rows = sub.loc[present]
        value, mean = rows["value"].to_numpy(float), rows["control_mean"].to_numpy(float)
        low = mean - rows["control_ci_low"].to_numpy(float)
        high = rows["control_ci_high"].to_numpy(float) - mean
        axes.errorbar(x - width * 0.18, mean, yerr=[low, high], fmt="s",
                      color=_CONTROL_COLOR, markersize=4, capsize=3, linewidth=1,
                      label="matched controls (mean, 95% CI)" if c == 0 else None)
        for xi, v, m in zip(x, value, mean):
            axes.plot([xi - width * 0.18, xi + width * 0.18], [m, v], color="0.75",
                      linewidth=1, zorder=1)
        axes.plot(x + width * 0.18, value, "o", color=colors[c], markersize=7,
                  label=_value_label(cmode, cvalue), zorder=3)
    if baseline is not None and np.isfinite(baseline):
        axes.axhline(baseline, color="black", linestyle="--", linewidth=1,
                     label="unedited model", zorder=0)
    if len(conditions) > 1:
        for boundary in np.arange(len(order) - 1) + 0.5:
            axes.axvline(boundary, color="0.9", linewidth=0.8, zorder=0)
    sizes = edited.drop_duplicates("network").set_index("network")["n_neurons"]
    labels = [f"{k}\n({int(sizes[k])})" if k in sizes.index and np.isfinite(sizes[k]) else k
              for k in order]
    axes.set_xticks(range(len(order)), labels, fontsize=8)
    axes.set_xlim(-0.6, len(order) - 0.4)
    axes.set_xlabel("network (neurons)")
    axes.set_ylabel(f"{task} {metric}")
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title(title if title is not None else f"{task} {metric}: edited networks vs "
                   "matched controls")
    return finish(figure, output_file, axes)


def plot_dose_response(results, network=None, metric=None, task=None, mode=None,
                       xscale="linear", title=None, figure=None, axes=None, output_file=None):
    """Plot the metric against the edit's value (amplify or scale), per network.

    Each network is a line over its edit values, with its matched controls
    as a band (95 % CI) and a dotted line (their mean) of the same colour;
    the unedited model is a dashed black line, and its point at no edit
    (added value 0, factor 1) starts each curve's axis.

    Parameters
    ----------
    results : str, Path or pandas.DataFrame
    network : int, str or list, optional
        Network(s) to draw; default all.
    metric, task : str, optional
        As in :func:`plot_intervention`.
    mode : {"amplify", "scale"}, optional
        Required when the results hold both.
    xscale : {"linear", "log", "symlog"}, default "linear"
    title, figure, axes, output_file
        As everywhere.

    Returns
    -------
    axes : matplotlib Axes or None
        One ``Line2D`` per network, labelled ``"net k"``, with the edit
        values as x data and the metric as y data.
    """
    frame = read_results(results)
    check_choice(xscale, ("linear", "log", "symlog"), "xscale")
    edited, task, metric, baseline = _select(frame, task, metric)
    edited = edited[edited["mode"].isin(DOSE_MODES) & edited["edit_value"].notna()]
    if edited.empty:
        raise ValueError("'results' holds no amplify or scale rows with an edit value: "
                         "a dose-response needs `llmfbn intervene --mode amplify --value ...`.")
    if mode is not None:
        check_choice(mode, DOSE_MODES, "mode")
    edited, mode = _choose(edited, "mode", mode, "mode")
    order = _unique(edited["network"])
    if network is not None:
        wanted = [str(k) for k in (network if isinstance(network, (list, tuple)) else [network])]
        unknown = [k for k in wanted if k not in order]
        if unknown:
            raise ValueError(f"'network' must be among the networks of the results "
                             f"{tuple(order)}. {unknown} was provided.")
        order = wanted
    from llmfbn.plotting._atlas import network_colors

    colors = network_colors(len(order))
    figure, axes = single_axes(figure, axes, (9, 4.5))
    for color, k in zip(colors, order):
        rows = edited[edited["network"] == k].drop_duplicates("edit_value", keep="last")
        rows = rows.sort_values("edit_value")
        x = rows["edit_value"].to_numpy(float)
        axes.fill_between(x, rows["control_ci_low"].to_numpy(float),
                          rows["control_ci_high"].to_numpy(float), color=color, alpha=0.15,
                          linewidth=0)
        axes.plot(x, rows["control_mean"].to_numpy(float), ":", color=color, linewidth=1.2)
        size = rows["n_neurons"].iloc[0]
        axes.plot(x, rows["value"].to_numpy(float), "o-", color=color, label=f"net {k}",
                  markersize=5,
                  gid=f"net {k} ({int(size)} neurons)" if np.isfinite(size) else None)
    if baseline is not None and np.isfinite(baseline):
        axes.axhline(baseline, color="black", linestyle="--", linewidth=1, zorder=0)
        origin = 0.0 if mode == "amplify" else 1.0
        if xscale != "log" or origin > 0:
            axes.plot([origin], [baseline], "o", markerfacecolor="white", color="black",
                      zorder=4)
    from matplotlib.lines import Line2D

    handles, labels = axes.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.4", linestyle=":"),
                Line2D([], [], color="black", linestyle="--", marker="o",
                       markerfacecolor="white")]
    labels += ["matched controls (mean; band: 95% CI)", "unedited model"]
    axes.legend(handles, labels, fontsize=8, frameon=False, loc="upper left",
                bbox_to_anchor=(1.0, 1.0))
    axes.set_xscale(xscale)
    axes.set_xlabel("added value (amplify)" if mode == "amplify" else "scale factor")
    axes.set_ylabel(f"{task} {metric}")
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(title if title is not None else f"{task} {metric}: {mode} dose-response")
    return finish(figure, output_file, axes)


# ---------------------------------------------------------------------------
# Consistency
# ---------------------------------------------------------------------------


def _median_text(report):
    """The figure's line on a matching: the same as the CLI's (:func:`describe_match`)."""
    from llmfbn.networks import describe_match

    return describe_match(report.summary())


def _load_document(result):
    if isinstance(result, (str, Path)):
        if not Path(result).exists():
            raise FileNotFoundError(f"'result': {result} does not exist.")
        result = read_consistency(result)
    if not (isinstance(result, dict) and "pairs" in result and "folders" in result):
        raise ValueError("'result' must be a Matching, a MatchReport, a 2-D array or the JSON "
                         "document of `llmfbn consistency` (with 'folders' and 'pairs').")
    return result


def plot_consistency(result, report=None, metric="iou", labels=None, title=None, vmax=None,
                     cmap=None, figure=None, axes=None, output_file=None):
    """Plot how well two (or more) sets of networks agree.

    - a :class:`~llmfbn.networks.Matching` or a 2-D array: the pairwise
      score matrix (IoU or correlation, networks of set A in rows, of set B
      in columns; nilearn's ``plot_matrix``) with the one-to-one matched
      pairs outlined; with ``report``, the medians of matched and null
      scores in the title.
    - a :class:`~llmfbn.networks.MatchReport`: each matched pair's score
      (dots, filled when p < 0.05) over its null (mean and 95th
      percentile), best pairs first; medians in the title.
    - the JSON document of ``llmfbn consistency`` (a dict or its path): a
      folder x folder matrix of the median matched score (``metric``),
      each cell annotated with the median null and "x chance" (IoU) or the
      median z against the null (correlation), as
      :func:`llmfbn.networks.match_summary` defines them.

    Parameters
    ----------
    result : Matching, MatchReport, array, dict, str or Path
    report : MatchReport, optional
        Null scores of the same matching (for a Matching or an array).
    metric : {"iou", "correlation"}, default "iou"
        Which matching of the JSON document (ignored otherwise: a Matching
        or MatchReport knows its metric; an array is labelled "score").
    labels : (row_labels, column_labels), optional
        For a matrix; default ``a 0, a 1, ...`` and ``b 0, b 1, ...``.
    title : str, optional
    vmax : float, optional
        Colour scale top (default 1 for IoU, symmetric for correlations).
    cmap : str or Colormap, optional
        Default ``"viridis"`` for IoU, ``"RdBu_r"`` for correlations.
    figure, axes, output_file
        ``output_file`` saves the figure, closes it and returns None.

    Returns
    -------
    axes : matplotlib Axes or None
    """
    from llmfbn.networks import Matching, MatchReport

    if isinstance(result, MatchReport):
        return _plot_report(result, title, figure, axes, output_file)
    if isinstance(result, Matching):
        matrix, pairs, what = np.asarray(result.score_matrix, float), result.pairs, result.metric
    elif isinstance(result, (np.ndarray, list, tuple)):
        from scipy.optimize import linear_sum_assignment

        matrix = np.asarray(result, dtype=np.float64)
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ValueError(f"'result' must be a 2-D score matrix (n_a, n_b). An array of "
                             f"shape {matrix.shape} was provided.")
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        pairs, what = list(zip(rows.tolist(), cols.tolist())), "score"
    else:
        return _plot_document(_load_document(result), metric, title, vmax, cmap, figure, axes,
                              output_file)
    if report is not None and not isinstance(report, MatchReport):
        raise TypeError(f"'report' must be a MatchReport. {type(report).__name__} was provided.")
    n_a, n_b = matrix.shape
    if labels is None:
        labels = ([f"a {i}" for i in range(n_a)], [f"b {j}" for j in range(n_b)])
    if len(labels) != 2 or len(labels[0]) != n_a or len(labels[1]) != n_b:
        raise ValueError(f"'labels' must be (row_labels, column_labels) of lengths "
                         f"({n_a}, {n_b}).")
    signed = what == "correlation"
    if vmax is None:
        vmax = 1.0 if not signed else max(float(np.abs(matrix).max()), 1e-12)
    vmax = check_number(vmax, "vmax", positive=True)
    size = min(7.5, 2.5 + 0.25 * max(n_a, n_b))
    figure, axes = single_axes(figure, axes, (size + 1.1, size))
    from nilearn import plotting

    plotting.plot_matrix(matrix, axes=axes, colorbar=False, auto_fit=False,
                         cmap=cmap or ("RdBu_r" if signed else "viridis"),
                         vmin=-vmax if signed else 0.0, vmax=vmax)
    from matplotlib.patches import Rectangle

    for i, j in pairs:
        axes.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red",
                                 linewidth=1.6, label="matched pair" if (i, j) == pairs[0]
                                 else None))
    fontsize = 8 if max(n_a, n_b) <= 25 else 6
    axes.set_xticks(range(n_b), labels[1], rotation=90, fontsize=fontsize)
    axes.set_yticks(range(n_a), labels[0], fontsize=fontsize)
    axes.set_xlabel("set B")
    axes.set_ylabel("set A")
    figure.colorbar(axes.images[0], ax=axes, fraction=0.046, pad=0.03,
                    label=_metric_name(what))
    if title is None:
        title = f"{_metric_name(what)} between networks, matched pairs outlined"
        if report is not None:
            title += "\n" + _median_text(report)
    axes.set_title(title, fontsize=10)
    return finish(figure, output_file, axes)


def _plot_report(report, title, figure, axes, output_file):
    scores = np.asarray(report.scores, float)
    if scores.size == 0:
        raise ValueError("'result' holds no matched pair.")
    order = np.argsort(-scores, kind="stable")
    x = np.arange(len(scores))
    figure, axes = single_axes(figure, axes, (min(12, 3 + 0.35 * len(scores)), 4))
    null_mean = np.asarray(report.null_mean, float)[order]
    null_p95 = np.asarray(report.null_p95, float)[order]
    axes.vlines(x, null_mean, null_p95, color="0.6", linewidth=4, alpha=0.7,
                label="null (mean to 95th percentile)")
    axes.plot(x, null_mean, "_", color="0.35", markersize=10)
    significant = np.asarray(report.p_value, float)[order] < 0.05
    axes.plot(x[significant], scores[order][significant], "o", color="C3",
              label="matched pair, p < 0.05")
    axes.plot(x[~significant], scores[order][~significant], "o", color="C3",
              markerfacecolor="white", label="matched pair, p ≥ 0.05")
    labels = [f"{report.pairs[k][0]}–{report.pairs[k][1]}" for k in order]
    axes.set_xticks(x, labels, rotation=90, fontsize=8)
    axes.set_xlabel("matched pair (network of A – network of B)")
    axes.set_ylabel(_metric_name(report.metric))
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=8, frameon=False)
    axes.set_title(title if title is not None else
                   _median_text(report), fontsize=10)
    return finish(figure, output_file, axes)


def _plot_document(document, metric, title, vmax, cmap, figure, axes, output_file):
    from llmfbn.networks import format_times_chance, match_summary

    check_choice(metric, ("iou", "correlation"), "metric")
    folders = [str(f) for f in document["folders"]]
    names = [Path(f).name or f for f in folders]
    n = len(folders)
    matrix = np.full((n, n), np.nan)
    texts = {}
    for pair in document["pairs"]:
        i, j = folders.index(str(pair["a"])), folders.index(str(pair["b"]))
        summary = match_summary(pair[metric])
        matrix[i, j] = matrix[j, i] = summary["median_score"]
        text = f"{summary['median_score']:.3g}\nnull {summary['median_null']:.2g}"
        if metric == "iou":
            text += "\n" + format_times_chance(summary["times_chance"])
        elif np.isfinite(summary["median_z"]):
            text += f"\nz {summary['median_z']:.1f}"
        texts[i, j] = texts[j, i] = text
    signed = metric == "correlation"
    if vmax is None:
        finite = matrix[np.isfinite(matrix)]
        vmax = float(np.abs(finite).max()) if finite.size else 1.0
    vmax = check_number(vmax, "vmax", positive=True)
    size = min(9, 2.5 + 1.1 * n)
    figure, axes = single_axes(figure, axes, (size + 1.4, size))
    from nilearn import plotting

    plotting.plot_matrix(matrix, labels=names, axes=axes, colorbar=False, auto_fit=False,
                         cmap=cmap or ("RdBu_r" if signed else "viridis"),
                         vmin=-vmax if signed else 0.0, vmax=vmax)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            text = texts[i, j]
            light = (value - (-vmax if signed else 0)) / (2 * vmax if signed else vmax) < 0.6
            axes.text(j, i, text, ha="center", va="center", fontsize=8,
                      color="white" if light and not signed else "black")
    axes.tick_params(labelsize=9)
    label = "median matched IoU" if metric == "iou" else "median matched correlation"
    figure.colorbar(axes.images[0], ax=axes, fraction=0.046, pad=0.03, label=label)
    axes.set_title(title if title is not None else
                   f"{label} between folders ({document.get('n_draws', '?')} null draws)",
                   fontsize=10)
    return finish(figure, output_file, axes)
