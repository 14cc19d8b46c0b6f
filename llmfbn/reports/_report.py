"""``make_report``: one self-contained HTML page from whatever llmfbn wrote."""

import datetime
import html
from pathlib import Path

import numpy as np

from llmfbn import __version__
from llmfbn._utils import log
from llmfbn.io import check_output_file, read_glm_folder, replace_file, run_reduction
from llmfbn.reports._html import Section, figure_html, page, table_html
from llmfbn.reports._inputs import KINDS, find_inputs

__all__ = ["make_report"]

REPORT_SUFFIXES = (".html", ".htm")


def make_report(paths, out_file, max_networks=None, connectivity_runs=50, overwrite=False,
                verbose=1):
    """Write one self-contained HTML report of recordings, networks, GLM, pruning, interventions.

    Parameters
    ----------
    paths : list of str or Path
        Recording, networks and GLM folders, consistency JSON files, pruned
        model folders (``llmfbn prune``: only ``pruning.json`` is read) and
        intervention CSV files (see :func:`~llmfbn.reports.find_inputs`); all
        of one model and grid (a pruned folder's is its source model's).
    out_file : str or Path
        The ``.html`` file to write (atomically). Figures are embedded as
        PNG, so the file needs nothing else to open.
    max_networks : int, optional
        Show at most this many network maps per networks folder (default all).
    connectivity_runs : int, default 50
        With a recording and networks given together, the network
        connectivity matrix uses the recording's first ``connectivity_runs``
        runs.
    overwrite : bool, default False
        Replace an existing ``out_file`` (checked before anything is read).
    verbose : int, default 1

    Returns
    -------
    Path
        ``out_file``.
    """
    out_file = Path(out_file)
    check_output_file(out_file, overwrite, suffixes=REPORT_SUFFIXES, what="report")
    inputs = find_inputs(paths)
    by_kind = {kind: [i for i in inputs if i.kind == kind] for kind in KINDS}
    grid = next((i.grid for i in inputs if i.grid is not None), None)
    sections = [_overview(inputs, grid)]
    for n, item in enumerate(by_kind["recording"]):
        log(f"Report: recording {item.path}", verbose)
        sections.append(_recording_section(item, n))
    for n, item in enumerate(by_kind["networks"]):
        log(f"Report: networks {item.path}", verbose)
        sections.append(_networks_section(item, n, max_networks, by_kind["recording"],
                                          connectivity_runs))
    for n, item in enumerate(by_kind["consistency"]):
        sections.append(_consistency_section(item, n))
    for n, item in enumerate(by_kind["glm"]):
        log(f"Report: GLM {item.path}", verbose)
        sections.append(_glm_section(item, n))
    for n, item in enumerate(by_kind["pruned"]):
        log(f"Report: pruned model {item.path}", verbose)
        sections.append(_pruned_section(item, n))
    folders = by_kind["networks"] + by_kind["glm"]
    for n, item in enumerate(by_kind["intervention"]):
        sections.append(_intervention_section(item, n, folders))
    model = grid.model if grid is not None else "LLM"
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    document = page(f"llmfbn report: {model}", f"Written {stamp} by llmfbn {__version__} from "
                    f"{len(inputs)} inputs.", sections)
    with replace_file(out_file, overwrite, suffixes=REPORT_SUFFIXES, what="report") as tmp:
        tmp.write_text(document, encoding="utf-8")
    log(f"Report written to {out_file}", verbose)
    return out_file


# -- sections ---------------------------------------------------------------


def _overview(inputs, grid):
    section = Section("Overview", "overview")
    rows = []
    if grid is not None:
        identity = next((i.details.get("identity") for i in inputs if i.kind == "recording"),
                        None) or _source_identity(inputs)
        rows += [
            {"what": "model", "value": grid.model},
            {"what": "architecture", "value": identity.get("architecture", "")},
            {"what": "weights", "value": identity.get("weights_hash", "")},
            {"what": "signal", "value": grid.signal},
            {"what": "grid", "value": f"{grid.n_layers} layers x {grid.width} units on a "
                                      f"{' x '.join(map(str, grid.shape))} volume "
                                      f"({grid.n_padding} padding voxels per layer)"},
        ]
    section.add(table_html(rows, ["what", "value"]))
    section.heading("Inputs")
    section.add(table_html([{"kind": i.kind, "path": str(i.path)} for i in inputs],
                           ["kind", "path"]))
    return section


def _source_identity(inputs):
    """Architecture and weights hash of a pruned folder's source model ({} without one)."""
    source = next((i.details["manifest"]["source_model"] for i in inputs
                   if i.kind == "pruned"), None)
    if source is None:
        return {}
    return {"architecture": source.get("model_type", ""),
            "weights_hash": source.get("weights_hash", "")}


def _recording_section(item, n):
    from llmfbn.io import read_summaries
    from llmfbn.networks import find_recording_images
    from llmfbn.plotting import plot_carpet

    section = Section(f"Recording: {item.path.name}", f"recording-{n}")
    columns = ["task", "input", "input_format", "n_texts_in_input", "n_skipped_empty",
               "n_texts", "selection", "n_runs", "n_tokens"]
    rows = []
    for summary in read_summaries(item.path):
        row = {key: summary.get(key) for key in columns}
        row["selection"] = _selection_text(summary)
        rows.append(row)
    if rows:
        section.add(table_html(rows, columns))
        section.note("n_texts_in_input: texts the reader offered, empty ones included (lines, "
                     "records, rows, list items; WikiText paragraphs or articles, headings "
                     "being boundaries); n_texts: those recorded, after skipping empty texts "
                     "and the limit or sample.")
    paths, grid = find_recording_images(item.path)
    reduction = run_reduction(paths[0])
    if reduction is not None:
        section.note(f"{len(paths)} finished runs, reduced (record --reduce "
                     f"{reduction['n_components']}): each run is a 4-D Nifti image of "
                     f"{reduction['n_components']} volumes, the run's top spatial principal "
                     f"components, on the grid of {grid.n_layers} layers as slices. No token "
                     f"is kept, so there is no carpet plot.")
        return section
    section.note(f"{len(paths)} finished runs. Each run is a 4-D Nifti image: "
                 f"{grid.shape[0]} x {grid.shape[1]} voxels per layer, {grid.n_layers} "
                 f"layers as slices, one volume per token.")
    section.add(figure_html(plot_carpet(paths[0], grid=grid),
                            caption=f"Carpet plot of {paths[0].name}: every neuron (rows, "
                                    f"grouped by layer) at every token (columns).",
                            alt="carpet plot"))
    return section


def _selection_text(summary):
    """How a task's texts were selected, in words ('all' when they were not)."""
    if summary.get("sample") is not None:
        text = f"random sample of {summary['sample']} (seed {summary.get('seed')}"
        if summary.get("stratify_by"):
            text += f", stratified by {summary['stratify_by']}"
        text += ")"
    elif summary.get("limit") is not None:
        text = f"first {summary['limit']}"
    else:
        text = "all"
    per_label = summary.get("n_per_label")
    if per_label:
        text += "; " + ", ".join(f"{label}: {k}" for label, k in per_label.items())
    return text


def _networks_section(item, n, max_networks, recordings, connectivity_runs):
    from llmfbn.io import read_networks_folder
    from llmfbn.networks import FunctionalNetworks
    from llmfbn.plotting import plot_atlas, plot_layer_profile, plot_network

    folder = read_networks_folder(item.path)
    networks = FunctionalNetworks(folder.maps, folder.masks, folder.grid, folder.params,
                                  folder.top_tokens)
    params = networks.params
    section = Section(f"Networks: {item.path.name}", f"networks-{n}")
    sizes = networks.sizes
    described = ", ".join(f"{k}={params[k]}" for k in
                          ("method", "n_components", "threshold", "threshold_mode", "n_runs",
                           "n_timepoints") if params.get(k) is not None)
    section.note(f"{len(networks)} networks ({described}). Sizes: min {sizes.min()}, "
                 f"median {int(np.median(sizes))}, max {sizes.max()} neurons.")
    if folder.models is not None:
        _models_html(section, folder)
    section.add(figure_html(plot_atlas(networks), alt="atlas",
                            caption="All networks as an atlas (nilearn's plot_prob_atlas on "
                                    "the 4-D image of network masks)."))
    section.add(figure_html(plot_layer_profile(networks),
                            caption="Neurons per layer of each network.", alt="layer profile"))
    empty = [int(k) for k in np.flatnonzero(sizes == 0)]
    if empty:
        section.note(f"Empty networks (no neuron passed the threshold; kept so network indices "
                     f"stay those of the decomposition): {empty}. They are drawn as empty "
                     f"maps and left out of the connectivity matrix.")
    connectivity = _connectivity_html(networks, recordings, connectivity_runs)
    if connectivity:
        section.heading("Connectivity between networks")
        section.add(connectivity)
    shown = range(len(networks)) if max_networks is None else range(min(max_networks,
                                                                          len(networks)))
    section.heading("One map per network")
    cards = []
    for k in shown:
        heading = f"{sizes[k]} neurons" if sizes[k] else "empty (no neuron passed the threshold)"
        card = (f"<div class=\"card\"><h3>Network {k}: {heading}</h3>"
                + figure_html(plot_network(networks, k, kind="flat"), alt=f"network {k}"))
        tokens = (networks.top_tokens or [None] * len(networks))[k]
        if sizes[k]:  # an empty network has no activity, so no top tokens
            card += _tokens_html(tokens)
        cards.append(card + "</div>")
    section.add("<div class=\"cards\">" + "\n".join(cards) + "</div>")
    if len(shown) < len(networks):
        section.note(f"{len(networks) - len(shown)} more networks not shown (max_networks).")
    return section


def _models_html(section, folder):
    """A group decomposition over several models: which networks each one expresses."""
    from llmfbn.networks import EXPRESSED_MIN_R
    from llmfbn.plotting import plot_model_expression

    models, n_networks = folder.models, len(folder.masks)
    min_r = folder.params.get("expressed_min_r", EXPRESSED_MIN_R)
    section.note(
        f"One group decomposition over the runs of {len(folder.recordings)} recordings "
        f"(models as subjects; the maps above are the group's, on the grid of the first "
        f"recording's model, {folder.grid.model}).")
    section.heading("Which networks each model expresses")
    section.note(
        f"Dual regression: the group maps regressed on every token of each run (stage 1, a "
        f"time course per network; amplitude = its RMS over tokens, averaged over the "
        f"model's runs), then the model's activity regressed on those time courses (stage "
        f"2, the model's own map), cross-fitted over two halves of the neurons so that a "
        f"model whose neurons do not co-activate gets r near 0. Each cell: spatial r of the "
        f"model's map with the group map; expressed (*) when r >= {min_r:g}.")
    rows = []
    for entry in folder.recordings:
        mine = models[models["recording"] == entry["path"]].sort_values("network")
        row = {"model": entry["model"], "recording": entry["path"],
               "runs": entry["n_runs"], "expressed": f"{int(mine['expressed'].sum())} of "
                                                     f"{n_networks}"}
        for record in mine.to_dict("records"):
            row[f"net {record['network']}"] = (f"{record['spatial_r']:.2f}"
                                               + (" *" if record["expressed"] else ""))
        rows.append(row)
    section.add(table_html(rows, ["model", "recording", "runs", "expressed"]
                           + [f"net {k}" for k in range(n_networks)]))
    section.add(figure_html(plot_model_expression(models), alt="model expression",
                            caption="Spatial r of each model's own map (rows) with each group "
                                    "network's map (columns); outlined: expressed."))
    section.add(figure_html(plot_model_expression(models, values="amplitude"),
                            alt="model amplitude",
                            caption="Amplitude of each network's time course in each model "
                                    "(RMS over tokens of the stage-1 time course, neurons "
                                    "z-scored per run); outlined: expressed."))


def _tokens_html(tokens, n=8):
    """The tokens where a network is most active, as a short list ('' when there are none)."""
    if not tokens:
        return ""
    lines = "".join(f"<li>{_recording_tag(row)}{html.escape(row['context'])} "
                    f"<b>{row['activation']:.2f}</b></li>" for row in tokens[:n])
    return f"<p class=\"note\">Top tokens</p><ol class=\"tokens\">{lines}</ol>"


def _recording_tag(row):
    """``[recording] `` before a top token of a group decomposition ('' otherwise)."""
    recording = row.get("recording")
    return f"[{html.escape(Path(str(recording)).name)}] " if recording else ""


def _connectivity_html(networks, recordings, max_runs):
    """Correlation between network time series on a recording of the same grid."""
    from llmfbn.networks import find_recording_images, network_connectivity
    from llmfbn.plotting import plot_connectivity

    kept = [int(k) for k in np.flatnonzero(networks.sizes > 0)]
    if not recordings or len(kept) < 2:
        return ""
    recording = recordings[0]
    paths, _ = find_recording_images(recording.path)
    if run_reduction(paths[0]) is not None:
        return (f"<p class=\"note\">No connectivity matrix: {recording.path.name} is a reduced "
                f"recording (record --reduce) and keeps no token time series.</p>")
    connectome = network_connectivity(networks.subset(kept), paths[:max_runs],
                                      kind="correlation")
    return figure_html(
        plot_connectivity(connectome, labels=[f"net {k}" for k in kept], title="correlation"),
        caption=f"Correlation between the networks' mean time series over "
                f"{connectome.n_runs} runs of {recording.path.name} "
                f"({int(np.sum(connectome.n_tokens))} tokens), averaged over runs (nilearn "
                f"ConnectivityMeasure).", alt="connectivity")


def _consistency_section(item, n):
    from llmfbn.networks import format_times_chance, match_summary
    from llmfbn.plotting import plot_consistency

    document = item.details["document"]
    section = Section(f"Consistency: {item.path.name}", f"consistency-{n}")
    if not document["pairs"]:
        return section.note("This file holds no pair of networks folders.")
    rows = []
    for pair in document["pairs"]:
        iou, corr = match_summary(pair["iou"]), match_summary(pair["correlation"])
        rows.append({
            "a": pair["a"], "b": pair["b"],
            "median IoU": iou["median_score"],
            "null IoU": iou["median_null"],
            "x chance": format_times_chance(iou["times_chance"]),
            "pairs p<0.05": iou["n_significant"],
            "matched pairs": iou["n_pairs"],
            "median r": corr["median_score"],
            "median z (r)": None if not np.isfinite(corr["median_z"]) else corr["median_z"],
            "pairs p<0.05 (r)": corr["n_significant"],
        })
    section.note("Networks matched one-to-one (Hungarian assignment) by IoU and by spatial "
                 "correlation, each pair against a null: random neuron sets of the same size "
                 "and per-layer counts (IoU), maps permuted within layers (correlation), "
                 f"{document.get('n_draws')} draws. Null IoU is the median over matched pairs "
                 "of each pair's mean null IoU; x chance = median matched IoU / null IoU. A "
                 "correlation's null is near 0, so it is given as a z-score against its null "
                 "(median over pairs) and p-values, never as a ratio.")
    section.add(table_html(rows, ["a", "b", "median IoU", "null IoU", "x chance",
                                  "pairs p<0.05", "matched pairs", "median r", "median z (r)",
                                  "pairs p<0.05 (r)"]))
    if len(document["pairs"]) == 1:
        # One pair of folders: a 1 x 1 folder matrix says nothing; show every matched
        # network pair against its own null instead.
        pair = document["pairs"][0]
        for metric, what in (("iou", "IoU"), ("correlation", "spatial correlation")):
            section.add(figure_html(
                plot_consistency(_match_report(pair[metric])), alt=f"consistency {metric}",
                caption=f"{what} of each matched network pair ({pair['a']} against "
                        f"{pair['b']}), best first, against its null (grey: mean to 95th "
                        f"percentile of {document.get('n_draws')} draws); filled dots: "
                        f"p < 0.05."))
        return section
    section.add(figure_html(plot_consistency(document), alt="consistency",
                            caption="Matched IoU of each pair against its null."))
    return section


def _match_report(entry):
    """A :class:`~llmfbn.networks.MatchReport` from one matching of a consistency file."""
    from llmfbn.networks import MatchReport

    def floats(name):
        values = entry.get(name)
        return None if values is None else np.array(
            [np.nan if v is None else v for v in values], dtype=float)

    return MatchReport(pairs=[tuple(p) for p in entry["pairs"]], scores=floats("scores"),
                       null_mean=floats("null_mean"), null_p95=floats("null_p95"),
                       ratio=floats("ratio"), p_value=floats("p_value"),
                       metric=entry.get("metric", "iou"), n_draws=entry.get("n_draws", 0),
                       null_sd=floats("null_sd"))


def _glm_section(item, n):
    from llmfbn.plotting import plot_brain_map, plot_flat_map

    folder = read_glm_folder(item.path)
    summary, networks = folder.document, folder.networks
    section = Section(f"Task GLM: {item.path.name}", f"glm-{n}")
    control = (f"z >= {summary['threshold_given']}" if summary.get("threshold_given") is not None
               else f"{summary.get('height_control')} at alpha {summary.get('alpha')}")
    section.note(f"nilearn FirstLevelModel per run (tokens as scans, no HRF) and "
                 f"SecondLevelModel across runs; thresholded by {control}"
                 f"{', two-sided' if summary.get('two_sided') else ''}. Runs per condition: "
                 + ", ".join(f"{c}: {k}" for c, k in summary.get("conditions", {}).items()))
    if summary.get("top_k") is not None:
        section.note(f"At most the {summary['top_k']} neurons of largest z among those passing "
                     f"the threshold are kept per contrast (--top-k).")
    rows = [{"contrast": c["contrast"], "design": c["design"], "dof": c["dof"],
             "threshold": "none survives" if c["threshold"] is None else c["threshold"],
             "passing": c.get("n_passing", c["n_selected"]), "neurons": c["n_selected"],
             "peak": f"layer {c['peak']['layer']}, unit {c['peak']['unit']} "
                     f"(z = {c['peak']['z']:.2f})"} for c in summary["contrasts"]]
    section.add(table_html(rows, ["contrast", "design", "dof", "threshold", "passing", "neurons",
                                  "peak"]))
    for k, contrast in enumerate(summary["contrasts"]):
        name, threshold = contrast["contrast"], contrast["threshold"]
        if threshold is None:
            section.heading(f"{name}: no neuron survives the threshold (unthresholded z-map)")
        else:
            section.heading(f"{name}: {contrast['n_selected']} neurons with z >= {threshold:.2f}")
        section.add(figure_html(plot_brain_map(networks.maps[k], grid=networks.grid,
                                               threshold=threshold, title=f"{name} (z)"),
                                alt=f"z-map {name}"))
        section.add(figure_html(plot_flat_map(networks.maps[k], grid=networks.grid,
                                              threshold=threshold, title=f"{name} (z)"),
                                alt=f"flat z-map {name}"))
        section.add(_tokens_html((networks.top_tokens or [None] * len(summary["contrasts"]))[k]))
    return section


def _pruned_section(item, n):
    from llmfbn.plotting import plot_pruning, pruning_map

    manifest = item.details["manifest"]
    source = manifest["source_model"]
    section = Section(f"Pruned model: {item.path.name}", f"pruned-{n}")
    removed, total = manifest["n_neurons_removed"], manifest["n_neurons_before"]
    section.note(f"llmfbn prune removed {removed} of {total} MLP neurons of "
                 f"{source.get('name')} ({_percent(removed, total)}) and saved the smaller "
                 f"model in {item.path}. Read from its pruning.json only (no weights loaded).")
    section.add(table_html(_pruning_rows(manifest), ["what", "value"]))
    protected = set(manifest["protect_layers"])
    compensated = set(manifest["bias_compensated_layers"])
    rows = [{"layer": layer, "neurons before": before, "kept": kept, "removed": before - kept,
             "removed %": _percent(before - kept, before),
             "protected": "yes" if layer in protected else "",
             "bias compensated": "yes" if layer in compensated else ""}
            for layer, (before, kept) in enumerate(zip(source["layer_widths"],
                                                       manifest["layer_widths"]))]
    section.heading("Neurons removed per layer")
    section.add(table_html(rows, ["layer", "neurons before", "kept", "removed", "removed %",
                                  "protected", "bias compensated"]))
    section.add(figure_html(plot_pruning(manifest, kind="bars"), alt="neurons removed per layer",
                            caption="Neurons removed per layer (right axis: percent of the "
                                    "layer); protected layers shaded."))
    _, grid = pruning_map(manifest)
    section.heading("Removed neurons on the brain map")
    section.add(figure_html(plot_pruning(manifest, kind="mosaic"), alt="removed neurons",
                            caption=f"Removed neurons (colour) on the source model's grid "
                                    f"({grid.n_layers} layers as slices, {grid.width} neurons "
                                    f"each, unit u at x = u % {grid.nx}, y = u // {grid.nx}); "
                                    f"kept neurons dark."))
    return section


def _pruning_rows(manifest):
    """The ``what``/``value`` rows that describe a pruning."""
    source = manifest["source_model"]
    scores = manifest["details"].get("scores", {}) if isinstance(manifest["details"], dict) \
        else {}
    calibration = manifest["calibration"]
    before, after = manifest["parameters_before"], manifest["parameters_after"]
    rows = [
        {"what": "method", "value": manifest["method"]},
        {"what": "scores", "value": "; ".join(str(scores[k]) for k in ("metric", "selection")
                                               if k in scores)},
        {"what": "ratio", "value": manifest["ratio"]},
        {"what": "random state", "value": manifest["random_state"]},
        {"what": "source model", "value": f"{source.get('name')} ({source.get('model_type')}, "
                                          f"{source.get('weights_hash')})"},
    ]
    networks = scores.get("networks")
    if isinstance(networks, list) and networks:
        rows.append({"what": "networks", "value": ", ".join(
            str(r.get("path")) if isinstance(r, dict) else str(r) for r in networks)})
    rows += [
        {"what": "protected layers", "value": _layers_text(manifest["protect_layers"])},
        {"what": "calibration", "value": "none" if not calibration else
         f"{calibration.get('path')} ({calibration.get('n_tokens')} tokens, "
         f"{calibration.get('sha256')})"},
        {"what": "bias-compensated layers",
         "value": _layers_text(manifest["bias_compensated_layers"])},
        {"what": "MLP neurons", "value": f"{manifest['n_neurons_before']} before, "
                                         f"{manifest['n_neurons_removed']} removed"},
        {"what": "parameters before", "value": before},
        {"what": "parameters after", "value": after},
        {"what": "parameters removed", "value": f"{before - after} "
                                                f"({_percent(before - after, before)})"},
    ]
    return rows


def _layers_text(layers):
    return ", ".join(map(str, layers)) if layers else "none"


def _percent(part, whole):
    return f"{100.0 * part / whole:.1f} %" if whole else "n/a"


def _networks_behind(csv_path, folders):
    """A sentence naming the networks folder behind a results CSV (from its settings file)."""
    from llmfbn.io import read_networks_folder, read_settings
    from llmfbn.io._results import networks_identity

    settings = read_settings(csv_path)
    used = (settings or {}).get("networks")
    if not isinstance(used, dict) or not used.get("sha256"):
        return ("No networks recorded for these rows (no settings file, or only the "
                "unmodified model).")
    matches = []
    for folder in folders:
        read = read_networks_folder(folder.path)
        if networks_identity(read.masks, read.grid)["sha256"] == used["sha256"]:
            matches.append(str(folder.path))
    what = f"{used.get('n_networks')} networks of {used.get('model')!r}"
    if matches:
        return f"Networks edited: {what}, from {' and '.join(matches)} (same masks)."
    return (f"Networks edited: {what} ({str(used['sha256'])[:19]}…); no networks or GLM folder "
            f"given to this report holds these masks.")


def _intervention_section(item, n, folders=()):
    from llmfbn.io import RESULT_COLUMNS, read_results
    from llmfbn.plotting import plot_dose_response, plot_intervention

    frame = read_results(item.path)
    section = Section(f"Interventions: {item.path.name}", f"intervention-{n}")
    section.note(_networks_behind(item.path, folders))
    columns = list(RESULT_COLUMNS)
    rows = frame[columns].to_dict("records")
    section.add(table_html([{k: _plain(v) for k, v in r.items()} for r in rows], columns))
    edited = frame[frame["network"].astype(str) != "none"]
    if edited.empty:
        section.note("No edited network in this file (only the unmodified model, if anything).")
    for (task, metric), group in edited.groupby(["task", "metric"], sort=False):
        section.add(figure_html(plot_intervention(frame, task=task, metric=metric),
                                caption=f"{metric} on {task}: each network edited against "
                                        f"matched random controls (mean and 95 % CI); dashed: "
                                        f"the unmodified model.", alt="intervention"))
        if group["edit_value"].nunique() > 1:
            section.add(figure_html(plot_dose_response(frame, task=task, metric=metric),
                                    caption=f"{metric} on {task} against the edit's strength.",
                                    alt="dose-response"))
    return section


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
