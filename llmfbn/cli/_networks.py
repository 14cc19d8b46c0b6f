"""``llmfbn networks`` and ``llmfbn consistency``."""

from pathlib import Path

import numpy as np


def add_networks_parsers(subparsers):
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
