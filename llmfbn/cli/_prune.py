"""``llmfbn prune``: a physically smaller model without a fraction of its MLP neurons."""

import argparse
from pathlib import Path

#: Library words -> the flags of ``llmfbn prune``.
_FLAGS = (("'ratio'", "'--ratio'"), ("'networks'", "'--networks'"),
          ("'calibration'", "'--calibration'"), ("'protect_layers'", "'--protect-layers'"),
          ("protect_layers=", "--protect-layers "), ("bias_compensation", "--bias-compensation"),
          ("'max_tokens'", "'--max-tokens'"), ("'random_state'", "'--random-state'"),
          ("'batch_size'", "'--batch-size'"), ("'method'", "'--method'"),
          ("method=", "--method "))


def add_prune_parser(subparsers):
    p = subparsers.add_parser(
        "prune", help="remove a fraction of the MLP neurons and save the smaller model",
        description="Score every MLP neuron (fbn: the largest z over functional networks; "
                    "random; magnitude; wanda; flap), remove the lowest-scored fraction "
                    "--ratio of all MLP neurons outside the protected layers, and save a "
                    "physically smaller model (per-layer widths, safetensors, tokenizer, "
                    "pruning.json) that `llmfbn.load_model(OUT)` and every command load.")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", required=True,
                   choices=("fbn", "random", "magnitude", "wanda", "flap"))
    p.add_argument("--ratio", required=True, type=float,
                   help="fraction of all MLP neurons of the model removed, in (0, 1)")
    p.add_argument("--out", required=True, type=Path,
                   help="the pruned model folder (new or empty; never replaced)")
    p.add_argument("--networks", type=Path, action="append",
                   help="fbn: networks folder of this model (repeat to pool several ICA runs)")
    p.add_argument("--calibration", type=Path,
                   help="calibration text file (wanda, flap, bias compensation); never the "
                        "evaluation text")
    p.add_argument("--random-state", type=int, default=0, help="seed of --method random")
    p.add_argument("--protect-layers", metavar="SPEC",
                   help="layers never pruned, e.g. '0-2,28-29', or 'none' (default: the "
                        "first 3 and the last 2)")
    p.add_argument("--bias-compensation", action=argparse.BooleanOptionalAction, default=None,
                   help="add the removed neurons' mean contribution to the down projection's "
                        "bias (fbn: off by default; flap: on by default; needs --calibration)")
    p.add_argument("--max-tokens", type=int, help="most calibration tokens (default: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_prune)


def parse_layers(spec):
    """``'0-2,28-29'`` -> ``[0, 1, 2, 28, 29]``; ``'none'`` -> ``[]``; None -> None."""
    if spec is None:
        return None
    text = spec.strip().lower()
    if text == "none":
        return []
    layers = []
    try:
        for part in text.split(","):
            low, sep, high = part.strip().partition("-")
            first, last = int(low), int(high) if sep else int(low)
            if first < 0 or last < first:
                raise ValueError
            layers.extend(range(first, last + 1))
    except ValueError:
        raise ValueError(f"'--protect-layers' must be 'none' or layers and ranges such as "
                         f"'0-2,28-29'. {spec!r} was provided.") from None
    return sorted(set(layers))


def _in_flags(err):
    message = str(err)
    for api, flag in _FLAGS:
        message = message.replace(api, flag)
    return type(err)(message)


def _cmd_prune(args):
    from llmfbn.pruning import prune

    try:
        protect = parse_layers(args.protect_layers)
        networks = None if args.networks is None else (
            args.networks[0] if len(args.networks) == 1 else args.networks)
        result = prune(args.model, args.method, args.ratio, args.out, networks=networks,
                       calibration=args.calibration, random_state=args.random_state,
                       protect_layers=protect, bias_compensation=args.bias_compensation,
                       max_tokens=args.max_tokens, batch_size=args.batch_size,
                       verbose=0 if args.quiet else 1)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise _in_flags(err) from None
    print(result.path if args.quiet else result.summary())
