"""Experiments: each network edited vs matched random controls, as a tidy CSV.

One row per (network, task, metric, mode, value): the metric with the network
edited, the mean of ``n_controls`` matched random neuron sets and its 95 %
interval, ``ratio = value / control_mean`` with its 95 % interval, a p-value
of ``ratio = 1`` and the method behind the intervals (``ci_method``); plus
one ``network = none`` row per (task, metric) for the unmodified model.

Intervals live where the metric lives: log perplexity (``control_mean`` is
the controls' geometric mean perplexity) and a bounded scale for accuracy.
When the evaluation returns :class:`~llmfbn.evaluation.MetricScore` values
(per-window NLL, per-item outcomes), network and controls are compared unit
by unit (paired), and the interval adds unit sampling to the
control-to-control spread (:func:`~llmfbn.intervention.compare_to_controls`,
:func:`summarise_edit`).

Rows are written as each network finishes (atomic rewrite, the CSV locked),
and a rerun with the same CSV skips what is already there, after checking
that the CSV's settings file (:mod:`llmfbn.io._results`) agrees with this run.

With ``scheduler`` the units of work (each baseline; each network, value
and evaluation with its controls) run on a Dask cluster
(:mod:`llmfbn.intervention._distributed`); the client writes their rows as
they come, each where one process would have written it, so the CSV, its
settings and a resume are the same with or without a cluster.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.evaluation._forward import model_device
from llmfbn.intervention._controls import compare_to_controls
from llmfbn.intervention._distributed import EvaluationUnit, cluster_session, run_units
from llmfbn.intervention._targets import check_networks_fit
from llmfbn.intervention._units import control_seed, edited_scores, value_key
from llmfbn.io import (
    RESULT_COLUMNS,
    OutputLock,
    check_results_output,
    file_sha256,
    folder_sha256,
    jsonable,
    open_results,
)

__all__ = ["COLUMNS", "Evaluation", "baseline_rows", "check_network_ids", "check_out_csv",
           "intervention_sweep", "make_evaluation", "summarise_edit"]

#: The results CSV's columns (owned by :mod:`llmfbn.io`: :data:`llmfbn.io.RESULT_COLUMNS`).
COLUMNS = RESULT_COLUMNS
MODES = ("inhibit", "amplify", "scale")
PERPLEXITY_TASKS = ("wikitext2", "text")
#: Cloze kinds: greedy accuracy and perplexity of a continuation.
CLOZE_TASKS = ("lambada_openai", "cloze")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class Evaluation:
    """A named measurement of a model: ``run(model, tokenizer) -> {metric: score}``.

    A score is a float or a :class:`llmfbn.evaluation.MetricScore` (its value
    and the per-window or per-item units behind it).

    Attributes
    ----------
    task : str
        The task name: rows of the results CSV are keyed by it.
    run : callable
    settings : dict
        What makes its numbers (task kind, evaluation file and its hash,
        ``limit``, ``max_tokens``, ...), saved in the results' settings file
        so that a resume can verify it. :func:`make_evaluation` fills it; an
        Evaluation built by hand is verified by its task name only unless
        given settings (JSON values).
    """

    task: str
    run: object
    settings: dict = field(default_factory=dict)


def make_evaluation(task, path, limit=None, max_tokens=None, batch_size=8,
                    max_length=1024, stride=512, name=None):
    """Build the :class:`Evaluation` for ``--eval NAME=TASK:PATH``.

    Parameters
    ----------
    task : str
        The kind of evaluation, one of
        :data:`llmfbn.evaluation.EVALUATION_KINDS`:
        ``wikitext2`` or ``text`` (perplexity over a text file, one paragraph
        per line; a ``.jsonl``/``.json`` file is refused), a built-in task of
        :func:`llmfbn.evaluation.load_task` (``sst2, piqa, boolq, arc_easy,
        arc_challenge, openbookqa, winogrande, hellaswag`` give ``accuracy``
        and ``accuracy_norm``; ``lambada_openai`` gives ``accuracy`` and
        ``perplexity``), or a user's JSONL format: ``mc`` (as the
        multiple-choice tasks) or ``cloze`` (as ``lambada_openai``).
    path : str or Path
    limit : int, optional
        Zero-shot and cloze: the first ``limit`` items.
    max_tokens : int, optional
        Perplexity: the first ``max_tokens`` tokens.
    name : str, optional
        The task name of its rows (default ``task``): letters, digits and
        ``_.+-``. Two evaluations in one results CSV need different names
        (``"sst2_dev"``).

    Returns
    -------
    Evaluation
        Its settings hold ``kind`` (``task``), so a resume verifies it.
        Cloze perplexity is lm-eval's: ``exp`` of the mean over items of the
        continuation's summed NLL (one unit per item, weight 1).
    """
    from llmfbn.evaluation import (
        EVALUATION_KINDS,
        MetricScore,
        evaluate_cloze,
        evaluate_task,
        load_task,
        perplexity,
    )

    if task not in EVALUATION_KINDS:
        raise ValueError(f"'task' must be one of {tuple(EVALUATION_KINDS)}. {task!r} was "
                         f"provided.")
    name = task if name is None else name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"'name' must start with a letter or digit and hold only letters, "
                         f"digits and '_.+-'. {name!r} was provided.")
    if task in PERPLEXITY_TASKS:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--eval {task}: {path} does not exist.")
        if Path(path).suffix.lower() in (".jsonl", ".json"):
            raise ValueError(
                f"Task kind {task!r} reads plain text (one paragraph per line) and would score "
                f"{path} as raw JSON: give a JSONL file as 'mc' (query, choices, gold) or "
                f"'cloze' (context, continuation) instead (--eval {name}=mc:{path} or "
                f"--eval {name}=cloze:{path}).")

        source = Path(path).resolve()  # read where it runs: a cluster worker too

        def run(model, tokenizer):
            result = perplexity(model, tokenizer, source, max_length=max_length, stride=stride,
                                max_tokens=max_tokens)
            return {"perplexity": MetricScore.perplexity(result.window_nll,
                                                         result.window_tokens)}

        settings = {"kind": task, "file": _file_settings(path), "max_tokens": max_tokens,
                    "max_length": max_length, "stride": stride}
        return Evaluation(name, run, settings)
    items = load_task(task, path, limit=limit)

    if task in CLOZE_TASKS:
        def run(model, tokenizer):
            result = evaluate_cloze(model, tokenizer, items, batch_size=batch_size)
            nll = -result.per_item["loglik"].to_numpy()
            return {"accuracy": MetricScore.proportion(result.per_item["correct"]),
                    "perplexity": MetricScore.perplexity(nll, np.ones(len(nll)))}
    else:
        def run(model, tokenizer):
            result = evaluate_task(model, tokenizer, items, batch_size=batch_size)
            return {"accuracy": MetricScore.proportion(result.per_item["correct"]),
                    "accuracy_norm": MetricScore.proportion(result.per_item["correct_norm"])}

    source = Path(path) if path is not None else Path(items.path)
    return Evaluation(name, run, {"kind": task, "file": _file_settings(source),
                                  "limit": limit})


def _file_settings(path):
    """``{"path", "sha256"}`` of an evaluation file or dataset folder."""
    path = Path(path).resolve()
    digest = folder_sha256(path) if path.is_dir() else file_sha256(path)
    return {"path": str(path), "sha256": digest}


def _where(evaluation):
    source = (evaluation.settings or {}).get("file")
    return source["path"] if isinstance(source, dict) else "an Evaluation without a file"


def _check_unique_tasks(evaluations):
    """Rows are keyed by task name: two evaluations of one name would mix."""
    first = {}
    for evaluation in evaluations:
        if evaluation.task in first:
            raise ValueError(
                f"Two evaluations are named {evaluation.task!r} ({_where(first[evaluation.task])}"
                f" and {_where(evaluation)}): their rows could not be told apart. Evaluate "
                f"one of them per results CSV, or give them different task names.")
        first[evaluation.task] = evaluation


def check_network_ids(networks, network_ids=None):
    """Valid, non-empty network indices without repeats (``[0, 0]`` -> ``[0]``).

    Parameters
    ----------
    networks : FunctionalNetworks
    network_ids : sequence of int, optional
        Default: every network.

    Returns
    -------
    list of int
    """
    ids = list(range(len(networks))) if network_ids is None else list(network_ids)
    for k in ids:
        if (isinstance(k, bool) or not isinstance(k, (int, np.integer))
                or not 0 <= k < len(networks)):
            raise ValueError(f"Network index {k!r} is out of range: the folder holds "
                             f"{len(networks)} networks (0 to {len(networks) - 1}).")
        if networks.sizes[k] == 0:
            raise ValueError(f"Network {k} is empty (its threshold selected no neuron); "
                             f"choose other networks or a lower threshold.")
    return list(dict.fromkeys(int(k) for k in ids))


def _model_settings(loaded):
    return {"name": str(loaded.name), "weights_hash": loaded.weights_hash}


def _networks_settings(networks):
    """The networks' identity: a hash of the grid's layout and of every mask."""
    from llmfbn.io._results import networks_identity

    return networks_identity(networks.masks, networks.grid)


def _model_dtype(model):
    """The dtype name of a model's weights (``"float32"``, ``"bfloat16"``), or None."""
    dtype = getattr(model, "dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _settings(command, loaded, evaluations, networks=None, n_controls=None,
              random_state=None, dtype=None, device=None):
    """What produces the rows, as the results' settings file holds it."""
    return jsonable({
        "command": command,
        "model": None if loaded is None else _model_settings(loaded),
        "model_dtype": _model_dtype(loaded.model) if loaded is not None else dtype,
        "device": str(model_device(loaded.model)) if loaded is not None else device,
        "networks": None if networks is None else _networks_settings(networks),
        "n_controls": n_controls,
        "random_state": None if random_state is None else int(random_state),
        "tasks": {e.task: dict(e.settings or {}) for e in evaluations}})


def check_out_csv(out_csv, evaluations, networks=None, n_controls=None, random_state=None,
                  loaded=None, overwrite=False, dtype=None, device=None):
    """Check, before any work, that ``out_csv`` can take these results.

    Everything but the model can be checked before it is loaded
    (``loaded=None``; ``dtype`` and ``device``, the dtype it will be loaded
    in and the resolved device it will run on, are then checked too);
    :func:`intervention_sweep` and :func:`baseline_rows` check again, model
    included, before evaluating anything. ``networks``
    None means ``llmfbn evaluate`` (baseline rows only).

    Raises
    ------
    ValueError
        Two evaluations of one task name.
    OutputLockedError
        Another process is writing ``out_csv``.
    FolderKindError, OutputExistsError, ResumeMismatchError
        See :func:`llmfbn.io.check_results_output`.
    """
    _check_unique_tasks(evaluations)
    if out_csv is None:
        return
    if Path(out_csv).parent.is_dir():  # another writer at work: fail now, not after the work
        with OutputLock(out_csv):
            pass
    command = "evaluate" if networks is None else "intervene"
    check_results_output(out_csv, _settings(command, loaded, evaluations, networks, n_controls,
                                            random_state, dtype, device), overwrite)


def _n_units(score):
    units = getattr(score, "units", None)
    return 0 if units is None else len(units)


def _baseline_row(task, metric, score):
    """The ``network = none`` row of one metric of the unmodified model."""
    value = float(score)
    return dict(network="none", n_neurons=0, task=task, metric=metric, mode="none",
                edit_value="", value=value, control_mean=math.nan, control_ci_low=math.nan,
                control_ci_high=math.nan, ratio=math.nan, ratio_ci_low=math.nan,
                ratio_ci_high=math.nan, p_value=math.nan, ci_method="", n_controls=0,
                n_units=_n_units(score), baseline=value)


def _resumed_baselines(table, evaluations):
    """``{task: {metric: value}}`` of the baselines the table already holds."""
    rows = table.rows
    baselines = {}
    for evaluation in evaluations:
        existing = rows[(rows.network == "none") & (rows.task == evaluation.task)]
        if len(existing):
            baselines[evaluation.task] = dict(zip(existing.metric, existing.value))
    return baselines


def _baselines(loaded, evaluations, table, verbose):
    """``{task: {metric: score}}`` of the unmodified model (CSV rows reused as floats)."""
    baselines = _resumed_baselines(table, evaluations)
    for evaluation in evaluations:
        if evaluation.task in baselines:
            continue
        log(f"Baseline {evaluation.task}", verbose)
        scores = evaluation.run(loaded.model, loaded.tokenizer)
        baselines[evaluation.task] = scores
        table.append(_baseline_row(evaluation.task, metric, score)
                     for metric, score in scores.items())
    return baselines


def _check_scheduler(scheduler):
    """Refuse a bad ``scheduler`` before any work (an open ClusterSession passes)."""
    from llmfbn.cluster import ClusterSession, check_scheduler

    if scheduler is not None and not isinstance(scheduler, ClusterSession):
        check_scheduler(scheduler)


def _on_cluster(scheduler, loaded, evaluations, table, edits, sizes, desc, verbose):
    """The missing baselines, then ``edits``, computed on the cluster; rows in one
    process's order.

    Parameters
    ----------
    scheduler : str or ClusterSession
    loaded : LoadedModel
    evaluations : list of Evaluation
    table : ResultsTable
    edits : list of EvaluationUnit
        In the order one process computes them.
    sizes : sequence of int
        Neurons per network (the ``n_neurons`` column).
    desc : str
        The progress bar's label.
    verbose : int

    Notes
    -----
    Each unit's rows go to the table (the CSV rewritten) as soon as they can:
    at the position one process would have added them (its baselines first,
    then its edits), so the CSV is the same, and a crash loses only the units
    in flight. An edit whose baseline is still running waits for it (its
    ``baseline`` column).
    """
    baselines = _resumed_baselines(table, evaluations)
    units = [EvaluationUnit(e) for e in evaluations if e.task not in baselines] + list(edits)
    if not units:
        return
    waiting = {}  # task -> [(position, unit, scores)]: edits waiting for their baseline

    def add_edit(position, unit, scores):
        table.append(_summarise_unit(unit, scores, baselines[unit.evaluation.task], sizes),
                     position=position)

    with cluster_session(scheduler, verbose) as session:
        for i, scores in run_units(session, loaded, units, desc=desc, verbose=verbose):
            unit = units[i]
            task = unit.evaluation.task
            if unit.network is None:
                baselines[task] = scores
                table.append((_baseline_row(task, metric, score)
                              for metric, score in scores.items()), position=i)
                for waited in waiting.pop(task, []):
                    add_edit(*waited)
            elif task in baselines:
                add_edit(i, unit, scores)
            else:
                waiting.setdefault(task, []).append((i, unit, scores))


def summarise_edit(edited, controls, baseline, network, n_neurons, task, mode,
                   edit_value=None, level=0.95):
    """Rows of the results CSV for one edited network against its controls.

    A pure function of the scores, however they were computed (one
    evaluation per edit, or several edits per batch).

    Parameters
    ----------
    edited : dict of {str: MetricScore or float}
        Each metric with the network edited.
    controls : list of dict of {str: MetricScore or float}
        The same metrics for each matched control, on the same windows or
        items in the same order (for paired statistics).
    baseline : dict of {str: MetricScore or float}
        The unmodified model's metrics (its ``baseline`` column).
    network : int or str
    n_neurons : int
    task, mode : str
    edit_value : float, optional
        Added value (amplify) or factor (scale); None for inhibit.
    level : float, default 0.95

    Returns
    -------
    list of dict
        One row per metric of ``edited``, with :data:`COLUMNS` as keys; the
        statistics are those of :func:`~llmfbn.intervention.compare_to_controls`.
    """
    rows = []
    for metric, score in edited.items():
        comparison = compare_to_controls(score, [c[metric] for c in controls], level=level)
        rows.append(dict(network=str(network), n_neurons=int(n_neurons), task=task,
                         metric=metric, mode=mode, edit_value=value_key(edit_value),
                         **comparison.to_dict(), baseline=float(baseline[metric])))
    return rows


def baseline_rows(loaded, evaluations, out_csv=None, overwrite=False, scheduler=None,
                  verbose=1):
    """The ``network = none`` rows: every evaluation on the unmodified model.

    Parameters
    ----------
    loaded : LoadedModel
    evaluations : list of Evaluation
        Task names must be unique.
    out_csv : str or Path, optional
        Results CSV. Existing rows are reused when its settings file agrees
        (same model; same file and settings for every task it already holds).
    overwrite : bool, default False
        Start afresh, replacing the CSV and its settings file.
    scheduler : str or ClusterSession, optional
        Run the evaluations on a Dask cluster (see :mod:`llmfbn.cluster`):
        ``"local:N"`` (N worker processes on this machine), a running
        scheduler's address (``"tcp://host:8786"``) or scheduler file
        (``.json``), or a session from :func:`llmfbn.cluster.connect`. Each
        worker loads ``loaded``'s model once (same name, dtype and device;
        its weights hash must match) and must see this filesystem. The rows,
        the CSV and its settings are those of one process. Default: this
        process.
    verbose : int, default 1

    Returns
    -------
    pandas.DataFrame with :data:`COLUMNS`
        Every row of the CSV.

    Raises
    ------
    ResumeMismatchError
        ``out_csv`` holds rows made with other settings.
    OutputExistsError
        ``out_csv`` has no settings file and ``overwrite`` is False.
    """
    _check_scheduler(scheduler)
    check_out_csv(out_csv, evaluations, overwrite=overwrite)
    settings = _settings("evaluate", loaded, evaluations)
    with open_results(out_csv, settings, overwrite=overwrite) as table:
        if scheduler is None:
            _baselines(loaded, evaluations, table, verbose)
        else:
            _on_cluster(scheduler, loaded, evaluations, table, [], [], "evaluate", verbose)
    return table.rows


def intervention_sweep(loaded, networks, evaluations, network_ids=None, mode="inhibit",
                       values=(None,), n_controls=5, random_state=0, out_csv=None,
                       overwrite=False, allow_other_model=False, scheduler=None, verbose=1):
    """Edit each network and ``n_controls`` matched random sets; measure every evaluation.

    Parameters
    ----------
    loaded : LoadedModel
    networks : FunctionalNetworks
        Networks of this model (``mlp`` signal; see
        :func:`~llmfbn.intervention.check_networks_fit`).
    evaluations : list of Evaluation
        Task names must be unique.
    network_ids : list of int, optional
        Default: every network. Repeats are dropped.
    mode : {"inhibit", "amplify", "scale"}, default "inhibit"
    values : sequence of float
        The added value (amplify) or factor (scale); several values make a
        dose-response curve. Ignored for inhibit.
    n_controls : int, default 5
        Random neuron sets per network: same count in every layer, drawn
        outside the network, seeded by ``(random_state, network)``.
    random_state : int, default 0
    out_csv : str or Path, optional
        Results CSV, rewritten after each network. Existing rows are reused
        when its settings file agrees with this run (model, networks,
        ``n_controls``, ``random_state``, and each task's file and
        settings); new tasks, networks, modes and values are added.
    overwrite : bool, default False
        Start afresh, replacing the CSV and its settings file.
    allow_other_model : bool, default False
        Accept networks found on another model with the same grid (e.g. the
        base model of a fine-tuned one).
    scheduler : str or ClusterSession, optional
        Run the evaluations on a Dask cluster, as for :func:`baseline_rows`:
        one task per baseline and per (network, value, evaluation) with its
        controls. Rows are written as tasks end, each where one process
        would have put it, so the CSV (and its settings: the same run with
        or without a cluster, resumed either way) equals one process's. A
        worker that dies is replaced and its task run again. Default: this
        process.
    verbose : int, default 1

    Returns
    -------
    pandas.DataFrame with :data:`COLUMNS`

    Raises
    ------
    ValueError
        Bad parameters; networks that do not fit the model.
    ResumeMismatchError
        ``out_csv`` holds rows made with other settings.
    OutputExistsError
        ``out_csv`` has no settings file and ``overwrite`` is False.
    """
    check_choice(mode, MODES, "mode")
    if mode == "inhibit":
        values = (None,)
    elif any(v is None for v in values):
        raise ValueError(f"'values' must be numbers for mode={mode!r}. {list(values)} was "
                         f"provided.")
    values = list({value_key(v): v for v in values}.values())
    check_positive_int(n_controls, "n_controls")
    ids = check_network_ids(networks, network_ids)
    _check_scheduler(scheduler)
    check_out_csv(out_csv, evaluations, networks, n_controls, random_state,
                  overwrite=overwrite)
    check_networks_fit(loaded, networks, allow_other_model=allow_other_model)
    settings = _settings("intervene", loaded, evaluations, networks, n_controls, random_state)
    with open_results(out_csv, settings, overwrite=overwrite) as table:
        done = {(r.network, r.task, r.mode, r.edit_value) for r in table.rows.itertuples()}
        edits = [EvaluationUnit(e, k, networks.masks[k], tuple(networks.grid.layers), mode, v,
                                n_controls, control_seed(random_state, k))
                 for k in ids for v in values for e in evaluations
                 if (str(k), e.task, mode, value_key(v)) not in done]
        if scheduler is not None:
            _on_cluster(scheduler, loaded, evaluations, table, edits, networks.sizes,
                        f"{mode} sweep", verbose)
            return table.rows
        baselines = _baselines(loaded, evaluations, table, verbose)
        progress = tqdm(total=sum(unit.weight for unit in edits), desc=f"{mode} sweep",
                        unit="eval", disable=verbose < 1)
        with progress:
            for unit in edits:
                scores = edited_scores(loaded.model, loaded.tokenizer, unit.evaluation,
                                       unit.mask, unit.layers, unit.mode, unit.value,
                                       unit.n_controls, unit.seed)
                progress.update(unit.weight)
                table.append(_summarise_unit(unit, scores, baselines[unit.evaluation.task],
                                             networks.sizes))
    return table.rows


def _summarise_unit(unit, scores, baseline, sizes):
    """Rows of an edit unit from its scores (the network's, then its controls')."""
    return summarise_edit(scores[0], scores[1:], baseline, unit.network, sizes[unit.network],
                          unit.evaluation.task, unit.mode, unit.value)
