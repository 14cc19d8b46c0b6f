"""Experiments: each network edited vs matched random controls, as a tidy CSV.

One row per (network, task, metric, mode, value): the metric with the network
edited, the mean and 95 % confidence interval over ``n_controls`` matched
random neuron sets, and ``ratio = value / control_mean``; plus one
``network = none`` row per (task, metric) for the unmodified model. Rows are
written as each network finishes (atomic rewrite), and a rerun with the same
CSV skips what is already there.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llmfbn._utils import check_choice, log
from llmfbn.io import atomic_path
from llmfbn.intervention._controls import confidence_interval, matched_controls
from llmfbn.intervention._edit import amplify, inhibit, scale
from llmfbn.intervention._targets import resolve_targets

__all__ = ["COLUMNS", "Evaluation", "baseline_rows", "intervention_sweep", "make_evaluation"]

#: ``value`` is the metric with the edit applied; ``edit_value`` the edit's
#: parameter (added value for amplify, factor for scale, empty for inhibit).
COLUMNS = ["network", "n_neurons", "task", "metric", "mode", "edit_value", "value",
           "control_mean", "control_ci_low", "control_ci_high", "ratio", "n_controls",
           "baseline"]
MODES = ("inhibit", "amplify", "scale")
PERPLEXITY_TASKS = ("wikitext2", "text")


@dataclass
class Evaluation:
    """A named measurement of a model: ``run(model, tokenizer) -> {metric: value}``."""

    task: str
    run: object


def make_evaluation(task, path, limit=None, max_tokens=None, batch_size=8,
                    max_length=1024, stride=512):
    """Build the :class:`Evaluation` for ``--eval task=PATH``.

    Parameters
    ----------
    task : str
        ``wikitext2`` or ``text`` (perplexity over a text file, one paragraph
        per line), or a zero-shot task of :func:`llmfbn.evaluation.load_task`
        (``sst2, piqa, arc_easy, arc_challenge, openbookqa, winogrande, boolq``).
    path : str or Path
    limit : int, optional
        Zero-shot: the first ``limit`` items.
    max_tokens : int, optional
        Perplexity: the first ``max_tokens`` tokens.
    """
    from llmfbn.evaluation import evaluate_task, load_task, perplexity

    if task in PERPLEXITY_TASKS:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--eval {task}: {path} does not exist.")

        def run(model, tokenizer):
            result = perplexity(model, tokenizer, path, max_length=max_length, stride=stride,
                                max_tokens=max_tokens)
            return {"perplexity": result.perplexity}

        return Evaluation(task, run)
    items = load_task(task, path, limit=limit)

    def run(model, tokenizer):
        result = evaluate_task(model, tokenizer, items, batch_size=batch_size)
        return {"accuracy": result.accuracy, "accuracy_norm": result.accuracy_norm}

    return Evaluation(task, run)


def _edit_context(mode, value):
    if mode == "inhibit":
        return lambda model, targets: inhibit(model, targets)
    if mode == "amplify":
        return lambda model, targets: amplify(model, targets, value)
    return lambda model, targets: scale(model, targets, value)


def _control_seed(random_state, network):
    return int(np.random.SeedSequence([random_state, network]).generate_state(1)[0])


def _load_rows(csv_path):
    if csv_path is None or not Path(csv_path).exists():
        return pd.DataFrame(columns=COLUMNS)
    rows = pd.read_csv(csv_path, dtype={"network": str})
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{csv_path} is not an llmfbn results CSV: columns {missing} are missing.")
    return rows


_NUMERIC = ["n_neurons", "value", "control_mean", "control_ci_low", "control_ci_high",
            "ratio", "n_controls", "baseline"]


def _append(rows, new):
    new = pd.DataFrame(new, columns=COLUMNS)
    rows = new if rows.empty else pd.concat([rows, new], ignore_index=True)
    for column in _NUMERIC:
        rows[column] = pd.to_numeric(rows[column])
    return rows


def _write_rows(rows, csv_path):
    if csv_path is None:
        return
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False)


def _value_key(value):
    return "" if value is None else f"{float(value):g}"


def _baselines(loaded, evaluations, rows, out_csv, verbose):
    baselines = {}
    for evaluation in evaluations:
        existing = rows[(rows.network == "none") & (rows.task == evaluation.task)]
        if len(existing):
            baselines[evaluation.task] = dict(zip(existing.metric, existing.value))
            continue
        log(f"Baseline {evaluation.task}", verbose)
        scores = evaluation.run(loaded.model, loaded.tokenizer)
        baselines[evaluation.task] = scores
        new = [dict(network="none", n_neurons=0, task=evaluation.task, metric=metric,
                    mode="none", edit_value="", value=score, control_mean=math.nan,
                    control_ci_low=math.nan, control_ci_high=math.nan, ratio=math.nan,
                    n_controls=0, baseline=score)
               for metric, score in scores.items()]
        rows = _append(rows, new)
        _write_rows(rows, out_csv)
    return rows, baselines


def baseline_rows(loaded, evaluations, out_csv=None, verbose=1):
    """The ``network = none`` rows: every evaluation on the unmodified model."""
    rows, _ = _baselines(loaded, evaluations, _load_rows(out_csv), out_csv, verbose)
    return rows


def intervention_sweep(loaded, networks, evaluations, network_ids=None, mode="inhibit",
                       values=(None,), n_controls=5, random_state=0, out_csv=None,
                       verbose=1):
    """Edit each network and ``n_controls`` matched random sets; measure every evaluation.

    Parameters
    ----------
    loaded : LoadedModel
    networks : FunctionalNetworks
        Networks of this model (``mlp`` signal).
    evaluations : list of Evaluation
    network_ids : list of int, optional
        Default: every network.
    mode : {"inhibit", "amplify", "scale"}, default "inhibit"
    values : sequence of float
        The added value (amplify) or factor (scale); several values make a
        dose-response curve. Ignored for inhibit.
    n_controls : int, default 5
        Random neuron sets per network: same count in every layer, drawn
        outside the network, seeded by ``(random_state, network)``.
    random_state : int, default 0
    out_csv : str or Path, optional
        Results CSV, rewritten after each network; existing rows are reused.

    Returns
    -------
    pandas.DataFrame with :data:`COLUMNS`
    """
    check_choice(mode, MODES, "mode")
    if mode == "inhibit":
        values = (None,)
    elif any(v is None for v in values):
        raise ValueError(f"'values' must be numbers for mode={mode!r}. {list(values)} was provided.")
    ids = list(range(len(networks))) if network_ids is None else list(network_ids)
    for k in ids:
        if not isinstance(k, (int, np.integer)) or not 0 <= k < len(networks):
            raise ValueError(f"Network index {k!r} is out of range: the folder holds "
                             f"{len(networks)} networks (0 to {len(networks) - 1}).")
        if networks.sizes[k] == 0:
            raise ValueError(f"Network {k} is empty (its threshold selected no neuron); "
                             f"choose other networks or a lower threshold.")
    model, tokenizer = loaded.model, loaded.tokenizer
    if ids:
        resolve_targets(model, networks, networks=ids)  # same model, grid and signal?
    rows = _load_rows(out_csv)
    done = {(str(r.network), r.task, str(r.mode),
             "" if pd.isna(r.edit_value) else _value_key(r.edit_value))
            for r in rows.itertuples()}

    rows, baselines = _baselines(loaded, evaluations, rows, out_csv, verbose)

    todo = [(k, v, e) for k in ids for v in values for e in evaluations
            if (str(k), e.task, mode, _value_key(v)) not in done]
    progress = tqdm(total=len(todo) * (1 + n_controls), desc=f"{mode} sweep", unit="eval",
                    disable=verbose < 1)
    with progress:
        for k, value, evaluation in todo:
            mask = networks.masks[k]
            controls = matched_controls(mask, n_controls, random_state=_control_seed(random_state, k))
            target = {layer: mask[slot] for slot, layer in enumerate(networks.grid.layers)}
            context = _edit_context(mode, value)
            with context(model, target):
                edited = evaluation.run(model, tokenizer)
            progress.update()
            control_scores = []
            for control in controls:
                control_target = {layer: control[slot]
                                  for slot, layer in enumerate(networks.grid.layers)}
                with context(model, control_target):
                    control_scores.append(evaluation.run(model, tokenizer))
                progress.update()
            new = []
            for metric, score in edited.items():
                mean, low, high = confidence_interval([c[metric] for c in control_scores])
                new.append(dict(network=str(k), n_neurons=int(networks.sizes[k]),
                                task=evaluation.task, metric=metric, mode=mode,
                                edit_value=_value_key(value), value=score, control_mean=mean,
                                control_ci_low=low, control_ci_high=high,
                                ratio=score / mean if mean else math.nan,
                                n_controls=n_controls,
                                baseline=baselines[evaluation.task][metric]))
            rows = _append(rows, new)
            _write_rows(rows, out_csv)
    return rows
