"""``llmfbn evaluate`` and ``llmfbn intervene``."""

import warnings
from pathlib import Path

from llmfbn.io._recording import run_sibling


def add_intervention_parsers(subparsers):
    evaluate = subparsers.add_parser(
        "evaluate", help="perplexity and zero-shot accuracy of the unmodified model",
        description="Score the unmodified model; writes the `network = none` rows.")
    intervene = subparsers.add_parser(
        "intervene", help="inhibit or amplify networks vs matched random controls",
        description="For each network: the metric with the network edited, and with "
                    "--controls random neuron sets of the same size and per-layer counts "
                    "drawn outside it. Writes a tidy CSV; a rerun resumes from it.")
    intervene.add_argument("--networks", required=True, type=Path,
                           help="networks folder (from `llmfbn networks` or `llmfbn glm`)")
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
        sidecar = run_sibling(run, "bold.json")
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
