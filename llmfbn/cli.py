"""Command line: ``llmfbn record | networks | consistency | evaluate | intervene | models | demo``.

Bad input ends with one line ``llmfbn: error: ...`` and exit status 2, never
a traceback.
"""

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from llmfbn import __version__  # noqa: E402

DEMO_TEXTS = Path(__file__).resolve().parents[1] / "data" / "probe_texts.tsv"


def _add_record_parser(subparsers):
    p = subparsers.add_parser(
        "record", help="record a model's neurons over texts into Nifti images",
        description="Record every neuron at every token into a BIDS-style folder "
                    "of 4-D Nifti images (one run per text). Re-running resumes.")
    p.add_argument("--model", default="smollm2-135m",
                   help="built-in name, local model folder, .gguf file or cached hub id "
                        "(default: smollm2-135m)")
    p.add_argument("--input", required=True, type=Path,
                   help=".txt/.raw (one text per line), .jsonl, .csv or .tsv")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--task", help="BIDS task label (default: the input file's stem)")
    p.add_argument("--subject", help="BIDS subject label (default: from the model name)")
    p.add_argument("--signal", default="mlp", choices=("mlp", "mlp_out", "residual"),
                   help="mlp: MLP neurons (down-projection input, default); "
                        "mlp_out: MLP output; residual: layer output")
    p.add_argument("--layers", type=_parse_layers,
                   help="layers to record, e.g. '0-9,20' (default: all)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per text (default 256)")
    p.add_argument("--long-texts", default="truncate", choices=("truncate", "split"),
                   help="texts over --max-tokens: truncate (counted) or split into runs")
    p.add_argument("--batch-size", type=int, default=8, help="texts per forward pass (default 8)")
    p.add_argument("--texts-per-run", type=int, default=1,
                   help="texts concatenated into one run (default 1)")
    p.add_argument("--limit", type=int, help="record only the first N non-empty texts")
    p.add_argument("--text-column", help="text field of .jsonl/.csv/.tsv input (default 'text')")
    p.add_argument("--label-column", help="label field, written as the events' trial_type")
    p.add_argument("--dtype", default="float32",
                   help="image data type: float32 (default) or float64; NIfTI has no float16")
    p.add_argument("--compress", action="store_true",
                   help="write .nii.gz instead of .nii (~4x slower to record, ~6%% smaller)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model folder's own Python code (off by default)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_record)


def _parse_layers(text):
    layers = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers.extend(range(lo, hi + 1))
            else:
                layers.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'--layers' takes integers and ranges like '0-9,20'. {text!r} was provided."
            ) from None
    return sorted(set(layers))


def _cmd_record(args):
    from llmfbn.models import load_model
    from llmfbn.recording import record

    verbose = 0 if args.quiet else 1
    model = load_model(args.model, trust_remote_code=args.trust_remote_code, verbose=verbose)
    recording = record(
        model, args.input, args.out, task=args.task, subject=args.subject,
        signal=args.signal, layers=args.layers, max_tokens=args.max_tokens,
        batch_size=args.batch_size, texts_per_run=args.texts_per_run,
        long_texts=args.long_texts, limit=args.limit, text_column=args.text_column,
        label_column=args.label_column, dtype=args.dtype, compress=args.compress,
        verbose=verbose,
    )
    _print_recording(recording)


def _print_recording(recording):
    s = recording.summary
    grid = recording.grid
    print(f"Recording in {recording.out_dir.resolve()}")
    print(f"  model {grid.model!r}, signal {grid.signal!r}: {grid.n_layers} layers x "
          f"{grid.width} units on a {grid.shape} grid (mask: {recording.mask_file.name})")
    print(f"  task {s['task']!r}: {s['n_runs']} runs, {s['n_tokens']} tokens "
          f"({recording.n_runs_written} runs written now, {recording.n_runs_skipped} resumed)")
    print(f"  skipped empty texts: {s['n_skipped_empty']}, truncated: {s['n_truncated']} "
          f"({s['n_tokens_dropped']} tokens dropped), split: {s['n_split']}")
    if recording.bold_files:
        print(f"  first image: {recording.bold_files[0]}")


def _add_networks_parsers(subparsers):
    p = subparsers.add_parser(
        "networks", help="decompose a recording into functional networks (nilearn CanICA)",
        description="Fit nilearn's CanICA or DictLearning (or temporal FastICA) on a "
                    "recording folder; write z-maps, network masks and their top tokens.")
    p.add_argument("in_dir", type=Path, help="recording folder (from `llmfbn record`)")
    p.add_argument("--out", required=True, type=Path, help="networks folder to write")
    p.add_argument("--method", default="canica", choices=("canica", "dictlearning", "temporal_ica"))
    p.add_argument("--n-components", type=int, default=20)
    p.add_argument("--threshold", type=float, default=3.6,
                   help="z threshold of a network (default 3.6, positive side)")
    p.add_argument("--two-sided", action="store_true", help="threshold |z| instead of z")
    p.add_argument("--top-k", type=int, help="keep the k strongest neurons per network instead")
    p.add_argument("--task", help="only the runs of this task")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--n-top-tokens", type=int, default=10)
    p.add_argument("--force", action="store_true", help="overwrite an existing networks folder")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_networks)

    p = subparsers.add_parser(
        "consistency", help="match networks across folders against a size-matched null",
        description="Match every pair of networks folders one-to-one (Hungarian assignment) by "
                    "IoU and by spatial correlation, with nulls from random masks of the same "
                    "size and per-layer counts; count how often each network recurs.")
    p.add_argument("net_dirs", type=Path, nargs="+", help="two or more networks folders")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--n-draws", type=int, default=200, help="null draws (default 200)")
    p.add_argument("--recurrence-threshold", type=float, default=0.2,
                   help="matched IoU that counts as a recurrence (default 0.2)")
    p.add_argument("--random-state", type=int, default=0)
    p.set_defaults(func=_cmd_consistency)


def _refuse_overwrite(path, force):
    if path.exists() and any(path.iterdir() if path.is_dir() else [path]) and not force:
        raise ValueError(f"{path} already exists; pass --force to overwrite it.")


def _cmd_networks(args):
    from llmfbn.networks import NetworkDecomposition, top_tokens

    _refuse_overwrite(args.out, args.force)
    verbose = 0 if args.quiet else 1
    est = NetworkDecomposition(
        method=args.method, n_components=args.n_components, threshold=args.threshold,
        threshold_mode="two_sided" if args.two_sided else "positive", top_k=args.top_k,
        task=args.task, random_state=args.random_state, n_jobs=args.n_jobs, verbose=verbose)
    est.fit(args.in_dir)
    est.networks_.top_tokens = top_tokens(est.networks_, est.run_paths_,
                                          n_tokens=args.n_top_tokens)
    est.save(args.out)
    sizes = est.networks_.sizes
    print(f"Networks in {args.out.resolve()}: {len(sizes)} from {args.method} on "
          f"{est.n_timepoints_} tokens; sizes min {sizes.min()}, median "
          f"{int(np.median(sizes))}, max {sizes.max()} neurons")
    for k, rows in enumerate(est.networks_.top_tokens[:5]):
        print(f"  network {k}: " + " | ".join(r["context"] for r in rows[:3]))


def _cmd_consistency(args):
    import json

    from llmfbn.networks import (FunctionalNetworks, null_matched_correlation,
                                 null_matched_iou, recurrence)

    if len(args.net_dirs) < 2:
        raise ValueError(f"'net_dirs' must name at least 2 folders. {len(args.net_dirs)} "
                         f"was provided.")
    nets = [FunctionalNetworks.load(d) for d in args.net_dirs]
    for d, n in zip(args.net_dirs[1:], nets[1:]):
        if not n.grid.same_layout(nets[0].grid) or n.grid.model != nets[0].grid.model:
            raise ValueError(f"{d} holds networks of {n.grid!r}, but {args.net_dirs[0]} of "
                             f"{nets[0].grid!r}: networks of different models or grids "
                             f"cannot be matched.")
    pairs = []
    for i in range(len(nets)):
        for j in range(i + 1, len(nets)):
            by_iou = null_matched_iou(nets[i].masks, nets[j].masks, n_draws=args.n_draws,
                                      random_state=args.random_state)
            by_corr = null_matched_correlation(nets[i].maps, nets[j].maps,
                                               n_draws=args.n_draws,
                                               random_state=args.random_state)
            pairs.append({"a": str(args.net_dirs[i]), "b": str(args.net_dirs[j]),
                          "iou": by_iou.to_dict(), "correlation": by_corr.to_dict()})
            print(f"{args.net_dirs[i]} vs {args.net_dirs[j]}: median matched IoU "
                  f"{np.median(by_iou.scores):.3f} (null {np.mean(by_iou.null_mean):.4f}), "
                  f"median r {np.median(by_corr.scores):.3f}")
    rec = recurrence([n.masks for n in nets], threshold=args.recurrence_threshold)
    document = {"folders": [str(d) for d in args.net_dirs], "pairs": pairs,
                "recurrence": _jsonable(rec), "n_draws": args.n_draws,
                "recurrence_threshold": args.recurrence_threshold}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"Wrote {args.out}")


def _jsonable(value):
    """Plain JSON types from dataclasses, numpy arrays and scalars."""
    import dataclasses

    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _add_intervention_parsers(subparsers):
    evaluate = subparsers.add_parser(
        "evaluate", help="perplexity and zero-shot accuracy of the unmodified model",
        description="Score the unmodified model; writes the `network = none` rows.")
    intervene = subparsers.add_parser(
        "intervene", help="inhibit or amplify networks vs matched random controls",
        description="For each network: the metric with the network edited, and with "
                    "--controls random neuron sets of the same size and per-layer counts "
                    "drawn outside it. Writes a tidy CSV; a rerun resumes from it.")
    intervene.add_argument("--networks", required=True, type=Path,
                           help="networks folder (from `llmfbn networks`)")
    intervene.add_argument("--network", default="all",
                           help="network indices, e.g. '3' or '0,4,7', or 'all' (default)")
    intervene.add_argument("--mode", default="inhibit", choices=("inhibit", "amplify", "scale"))
    intervene.add_argument("--value", help="added value (amplify) or factor (scale); a "
                                           "comma-separated list gives a dose-response curve")
    intervene.add_argument("--controls", type=int, default=5,
                           help="matched random controls per network (default 5)")
    intervene.add_argument("--random-state", type=int, default=0)
    for p in (evaluate, intervene):
        p.add_argument("--model", default="smollm2-135m")
        p.add_argument("--eval", action="append", required=True, metavar="TASK=PATH",
                       help="wikitext2=PATH or text=PATH (perplexity), or sst2, piqa, "
                            "arc_easy, arc_challenge, openbookqa, winogrande, boolq =PATH; "
                            "repeat for several")
        p.add_argument("--limit", type=int, help="zero-shot: the first N items")
        p.add_argument("--max-tokens", type=int,
                       help="perplexity: the first N tokens (default: the whole file)")
        p.add_argument("--max-length", type=int, default=1024,
                       help="perplexity window (default 1024)")
        p.add_argument("--stride", type=int, default=512,
                       help="perplexity stride (default 512; = --max-length for disjoint windows)")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--out", required=True, type=Path, help="results CSV")
        p.add_argument("-q", "--quiet", action="store_true")
    evaluate.set_defaults(func=_cmd_intervene)
    intervene.set_defaults(func=_cmd_intervene)


def _parse_evals(specs, args):
    from llmfbn.intervention import make_evaluation

    evaluations = []
    for spec in specs:
        if "=" not in spec:
            raise ValueError(f"'--eval' takes TASK=PATH, e.g. wikitext2=wiki.test.raw. "
                             f"{spec!r} was provided.")
        task, path = spec.split("=", 1)
        evaluations.append(make_evaluation(task.strip(), Path(path), limit=args.limit,
                                           max_tokens=args.max_tokens,
                                           batch_size=args.batch_size,
                                           max_length=args.max_length, stride=args.stride))
    return evaluations


def _parse_network_ids(text, n_networks):
    if text == "all":
        return list(range(n_networks))
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"'--network' takes indices like '3' or '0,4,7', or 'all'. "
                         f"{text!r} was provided.") from None


def _parse_values(text, mode):
    if mode == "inhibit":
        return [None]
    if text is None:
        raise ValueError(f"'--value' is required with --mode {mode}.")
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"'--value' takes numbers like '2' or '0.5,1,2'. {text!r} was "
                         f"provided.") from None


def _warn_if_leaking(networks_dir, specs):
    """Warn when an evaluation file is the text the networks were estimated on."""
    import json

    params = networks_dir / "params.json"
    if not params.exists():
        return
    sources = set()
    for run in json.loads(params.read_text()).get("runs", [])[:1]:
        sidecar = Path(run[: run.index("_bold.nii")] + "_bold.json")
        if sidecar.exists():
            source = json.loads(sidecar.read_text()).get("InputFile")
            if source:
                sources.add(Path(source).resolve())
    for spec in specs:
        path = Path(spec.split("=", 1)[-1]).resolve()
        if path in sources:
            warnings.warn(f"The networks in {networks_dir} were estimated on {path}, which is "
                          f"also an evaluation file: results will leak. Evaluate on disjoint "
                          f"data (e.g. SST-2 dev for networks from SST-2 train).")


def _cmd_intervene(args):
    import pandas as pd

    from llmfbn.intervention import intervention_sweep
    from llmfbn.models import load_model
    from llmfbn.networks import FunctionalNetworks

    verbose = 0 if args.quiet else 1
    evaluations = _parse_evals(args.eval, args)
    model = load_model(args.model, verbose=verbose)
    if args.command == "evaluate":
        from llmfbn.intervention._experiments import baseline_rows

        rows = baseline_rows(model, evaluations, out_csv=args.out, verbose=verbose)
    else:
        networks = FunctionalNetworks.load(args.networks)
        if networks.grid.model != model.name:
            warnings.warn(f"The networks were found on model {networks.grid.model!r}; "
                          f"this is {model.name!r}.")
        _warn_if_leaking(args.networks, args.eval)
        rows = intervention_sweep(
            model, networks, evaluations,
            network_ids=_parse_network_ids(args.network, len(networks)), mode=args.mode,
            values=_parse_values(args.value, args.mode), n_controls=args.controls,
            random_state=args.random_state, out_csv=args.out, verbose=verbose)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(rows.drop(columns=["control_ci_low", "control_ci_high"]).to_string(
            index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"Wrote {args.out}")


def _cmd_models(args):
    from llmfbn.models import ARCHITECTURES, describe_builtins

    print("Built-in models (no download needed):")
    for name, description in describe_builtins().items():
        print(f"  {name:<16} {description}")
    print("Also accepted: a local Hugging Face model folder, a local .gguf file, or a hub "
          "id already in the local cache.")
    print("Architectures with known neuron locations: " + ", ".join(sorted(ARCHITECTURES)))


def _cmd_demo(args):
    """Record the built-in probe texts with the embedded model; show nilearn reading them."""
    import numpy as np
    from nilearn.maskers import NiftiMasker

    from llmfbn.models import load_model
    from llmfbn.recording import record

    model = load_model("smollm2-135m", verbose=1)
    recording = record(model, DEMO_TEXTS, args.out, task="probes",
                       label_column="condition", max_tokens=64, verbose=1)
    _print_recording(recording)
    masker = NiftiMasker(mask_img=str(recording.mask_file), standardize=None).fit()
    matrix = masker.transform(str(recording.bold_files[0]))
    neurons = recording.grid.masked_to_neurons(matrix)
    peak = np.unravel_index(np.abs(neurons).argmax(), neurons.shape)
    print(f"nilearn's NiftiMasker reads run 1 as a {matrix.shape[0]} tokens x "
          f"{matrix.shape[1]} neurons matrix; its strongest neuron is layer {peak[1]}, "
          f"unit {peak[2]} ({neurons[peak]:.2f} at token {peak[0]}).")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="llmfbn", description="Scan a large language model the way you scan a brain.")
    parser.add_argument("--version", action="version", version=f"llmfbn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_record_parser(subparsers)
    _add_networks_parsers(subparsers)
    _add_intervention_parsers(subparsers)
    p = subparsers.add_parser("models", help="list built-in models and supported architectures")
    p.set_defaults(func=_cmd_models)
    p = subparsers.add_parser("demo", help="record the built-in probe texts with SmolLM2")
    p.add_argument("--out", type=Path, default=Path("results/demo"),
                   help="output folder (default results/demo)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *a, **k: print(
                f"llmfbn: warning: {message}", file=sys.stderr)
            args.func(args)
    except (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError,
            FloatingPointError) as err:
        print(f"llmfbn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmfbn: interrupted; finished runs are kept, re-run to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
