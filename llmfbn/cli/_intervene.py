"""``llmfbn evaluate`` and ``llmfbn intervene``."""

from pathlib import Path


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
    intervene.add_argument("--allow-other-model", action="store_true",
                           help="apply networks found on another model with the same grid "
                                "(e.g. the base model of a fine-tuned one)")
    for p in (evaluate, intervene):
        p.add_argument("--model", default="smollm2-135m")
        p.add_argument("--model-dtype", default="float32",
                       choices=("float32", "bfloat16", "float16"),
                       help="weights and activations dtype (default float32); bfloat16 runs "
                            "about 2x faster on CPUs with bfloat16 instructions and on GPUs; "
                            "float16 is for GPUs (slow on most CPUs). Recorded in the "
                            "settings file: a resume never mixes dtypes")
        p.add_argument("--device", default="cpu",
                       help="where the model runs: cpu (default), cuda (the current GPU), "
                            "cuda:N, or auto (a GPU if there is one, else cpu). Recorded in "
                            "the settings file: a resume never mixes devices")
        p.add_argument("--eval", action="append", required=True, metavar="NAME=FORMAT:PATH",
                       help="an evaluation named NAME (the CSV's task column), repeat for "
                            "several. FORMAT: text or wikitext2 (perplexity of a plain-text "
                            "file), mc (JSONL: query, choices, gold), cloze (JSONL: context, "
                            "continuation), or a built-in task: sst2, piqa, boolq, arc_easy, "
                            "arc_challenge, openbookqa, winogrande, hellaswag, lambada_openai "
                            "(PATH: its folder or file). NAME=PATH when NAME is a format, "
                            "e.g. sst2=../data/sst2, mytask=mc:items.jsonl")
        p.add_argument("--limit", type=int, help="zero-shot: the first N items")
        p.add_argument("--max-tokens", type=int,
                       help="perplexity: the first N tokens (default: the whole file)")
        p.add_argument("--max-length", type=int, default=1024,
                       help="perplexity window (default 1024)")
        p.add_argument("--stride", type=int, default=512,
                       help="perplexity stride (default 512; = --max-length for disjoint windows)")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--out", required=True, type=Path,
                       help="results CSV (its settings go to OUT.settings.json); a rerun "
                            "with the same settings resumes it")
        p.add_argument("--force", action="store_true",
                       help="start the results CSV afresh instead of resuming it")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on a Dask cluster: local:N (N worker processes on this "
                            "machine) or a running scheduler's address (tcp://host:8786) or "
                            "scheduler file (.json); workers must see this filesystem "
                            "(default: this process)")
        p.add_argument("-q", "--quiet", action="store_true")
    evaluate.set_defaults(func=_cmd_intervene)
    intervene.set_defaults(func=_cmd_intervene)


def _split_eval(spec):
    """``NAME=FORMAT:PATH`` or ``NAME=PATH`` -> ``(name, format, path)``."""
    from llmfbn.evaluation import EVALUATION_KINDS

    def unknown(what, given):
        kinds = ", ".join(f"{k} ({d})" for k, d in EVALUATION_KINDS.items())
        return ValueError(f"'--eval' takes NAME=FORMAT:PATH (or FORMAT=PATH), e.g. "
                          f"mytask=mc:items.jsonl or sst2=../data/sst2; FORMAT is one of: "
                          f"{kinds}. {what} {given!r} was provided.")

    if "=" not in spec:
        raise unknown("The spec", spec)
    name, rest = (part.strip() for part in spec.split("=", 1))
    kind, sep, path = rest.partition(":")
    if sep and kind.strip() in EVALUATION_KINDS:
        kind, path = kind.strip(), path.strip()
    elif name in EVALUATION_KINDS:
        kind, path = name, rest
    else:
        raise unknown(f"The format of {name!r} (in {spec!r}) is missing or unknown:", rest)
    if not path:
        raise ValueError(f"'--eval' {spec!r} gives no PATH after the format {kind!r}.")
    return name, kind, path


def _eval_path(spec):
    """The file or folder an ``--eval`` spec reads."""
    return _split_eval(spec)[2]


def _parse_evals(specs, args):
    from llmfbn.intervention import make_evaluation

    evaluations, files = [], {}
    for spec in specs:
        name, kind, path = _split_eval(spec)
        if name in files:
            raise ValueError(f"'--eval' names task {name!r} twice ({files[name]} and {path}): "
                             f"their rows could not be told apart. Give each evaluation its "
                             f"own NAME, e.g. --eval {name}_2={kind}:{path}.")
        files[name] = path
        evaluations.append(make_evaluation(kind, Path(path), limit=args.limit,
                                           max_tokens=args.max_tokens,
                                           batch_size=args.batch_size,
                                           max_length=args.max_length, stride=args.stride,
                                           name=name))
    return evaluations


def _parse_network_ids(text, n_networks):
    """Indices in the order given, repeats dropped (``0,0`` -> ``[0]``)."""
    if text == "all":
        return list(range(n_networks))
    try:
        ids = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"'--network' takes indices like '3' or '0,4,7', or 'all'. "
                         f"{text!r} was provided.") from None
    return list(dict.fromkeys(ids))


def _check_numbers(args):
    """Cheap checks of the numeric flags, before anything is read or loaded."""
    for flag, value in (("--limit", args.limit), ("--max-tokens", args.max_tokens),
                        ("--max-length", args.max_length), ("--stride", args.stride),
                        ("--batch-size", args.batch_size),
                        ("--controls", getattr(args, "controls", None))):
        if value is not None and value < 1:
            raise ValueError(f"'{flag}' must be a positive integer. {value} was provided.")
    if args.stride > args.max_length:
        raise ValueError(f"'--stride' must be <= '--max-length' ({args.max_length}). "
                         f"{args.stride} was provided.")
    if args.out.is_dir():
        raise ValueError(f"'--out' must be a CSV file path; {args.out} is a folder.")


#: The flags that set each setting of the results' settings file.
_FLAGS = {"model": "--model", "model_dtype": "--model-dtype", "device": "--device",
          "networks": "--networks",
          "n_controls": "--controls",
          "random_state": "--random-state", "kind": "the --eval format", "file": "the --eval file",
          "limit": "--limit", "max_tokens": "--max-tokens", "max_length": "--max-length",
          "stride": "--stride"}


def _in_flags(err):
    """A settings mismatch of the results CSV, each setting named by its flag.

    (Other library wording, ``overwrite=True`` and the like, is turned into flags by
    :func:`llmfbn.cli.error_line`.)
    """
    from llmfbn.io import ResumeMismatchError, describe_differences

    if getattr(err, "differences", None):
        return ResumeMismatchError(
            f"{err.path} holds results made with other settings: "
            f"{describe_differences(err.differences, _FLAGS)}. Write to another --out, or "
            f"pass --force to start over.")
    return err


#: The columns printed after a sweep (the CSV holds them all).
_SHOWN_COLUMNS = ("network", "n_neurons", "task", "metric", "mode", "edit_value", "value",
                  "control_mean", "ratio", "ratio_ci_low", "ratio_ci_high", "p_value",
                  "baseline")


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


def _check_scheduler(value):
    """A bad ``--scheduler`` (or no Dask installed) is refused before anything loads."""
    if value is None:
        return
    from llmfbn.cluster import check_scheduler, require_distributed

    check_scheduler(value)
    require_distributed()


def _cmd_intervene(args):
    from contextlib import nullcontext

    import pandas as pd

    from llmfbn._utils import log
    from llmfbn.cluster import connect
    from llmfbn.intervention import (
        baseline_rows,
        check_network_ids,
        check_out_csv,
        intervention_sweep,
    )
    from llmfbn.io import ResumeMismatchError
    from llmfbn.models import check_dtype, load_model, resolve_device

    verbose = 0 if args.quiet else 1
    _check_numbers(args)
    _check_scheduler(args.scheduler)
    device = resolve_device(args.device)
    check_dtype(args.model_dtype, device)
    evaluations = _parse_evals(args.eval, args)
    intervene = args.command == "intervene"
    networks = ids = values = None
    if intervene:
        from llmfbn.networks import FunctionalNetworks, check_leakage

        values = _parse_values(args.value, args.mode)
        networks = FunctionalNetworks.load(args.networks)
        ids = check_network_ids(networks, _parse_network_ids(args.network, len(networks)))
        check_leakage(args.networks, [_eval_path(spec) for spec in args.eval])
    try:
        check_out_csv(args.out, evaluations, networks,
                      args.controls if intervene else None,
                      args.random_state if intervene else None, overwrite=args.force,
                      dtype=args.model_dtype, device=device)
        # Connected before the model loads: an unreachable scheduler costs nothing,
        # and a LocalCluster's workers start while the model loads here.
        with connect(args.scheduler) if args.scheduler else nullcontext() as session:
            if session is not None:
                log(session.describe(), verbose)
            model = load_model(args.model, dtype=args.model_dtype, device=device,
                               verbose=verbose)
            if not intervene:
                rows = baseline_rows(model, evaluations, out_csv=args.out,
                                     overwrite=args.force, scheduler=session, verbose=verbose)
            else:
                rows = intervention_sweep(
                    model, networks, evaluations, network_ids=ids, mode=args.mode,
                    values=values, n_controls=args.controls, random_state=args.random_state,
                    out_csv=args.out, overwrite=args.force,
                    allow_other_model=args.allow_other_model, scheduler=session,
                    verbose=verbose)
    except ResumeMismatchError as err:
        raise _in_flags(err) from None
    shown = [c for c in _SHOWN_COLUMNS if c in rows.columns]
    with pd.option_context("display.width", 200, "display.max_columns", len(shown)):
        print(rows[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"Wrote {args.out}")
