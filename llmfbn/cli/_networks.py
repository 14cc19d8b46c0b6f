"""``llmfbn networks`` and ``llmfbn consistency``."""

import os
import sys
from pathlib import Path

import numpy as np

from llmfbn.cli._checks import check_finite, check_int_at_least, check_recording_folder


def add_networks_parsers(subparsers):
    p = subparsers.add_parser(
        "networks", help="decompose recordings into functional networks (nilearn CanICA)",
        description="Fit nilearn's CanICA or DictLearning (or temporal FastICA) on a "
                    "recording folder; write z-maps, network masks and their top tokens. "
                    "Several recording folders (models with the same grid) are the "
                    "subjects of one group decomposition; the folder then also says "
                    "which networks each model expresses (models.csv, by dual "
                    "regression).")
    p.add_argument("in_dirs", type=Path, nargs="+", metavar="REC",
                   help="recording folder(s) (from `llmfbn record`); several: one group "
                        "decomposition over all their runs (same grid, signal and "
                        "--reduce setting; the models may differ)")
    p.add_argument("--out", required=True, type=Path, help="networks folder to write")
    p.add_argument("--method", default="canica", choices=("canica", "dictlearning", "temporal_ica"))
    p.add_argument("--n-components", type=int, default=20)
    p.add_argument("--threshold", type=float, default=3.6,
                   help="z threshold of a network (default 3.6, positive side)")
    p.add_argument("--two-sided", action="store_true", help="threshold |z| instead of z")
    p.add_argument("--top-k", type=int, help="keep the k strongest neurons per network instead")
    p.add_argument("--task", help="only the runs of this task")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=None,
                   help=f"processes for reading runs and ICA restarts (default: every core "
                        f"this process may use, {available_cores()} here; -1 all, -2 all "
                        f"but one; with --scheduler, every worker of the cluster instead)")
    p.add_argument("--group-pca", default="auto", choices=("auto", "nilearn", "migp"),
                   help="CanICA's group PCA: nilearn's in-RAM stack of every run, or 'migp', "
                        "a streaming group PCA (MELODIC's MIGP) whose memory does not grow "
                        "with the runs; 'auto' (default) takes migp when nilearn's stack is "
                        "estimated over --memory-budget")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="memory 'auto' allows nilearn's stack, e.g. 8GB, 500MB, 2GiB "
                        "(default: half the memory available at start)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster: local:N (N worker processes on this machine) or "
                        "a running scheduler's address (tcp://host:8786) or scheduler file "
                        "(.json); workers must see this filesystem (default: this process)")
    p.add_argument("--n-top-tokens", type=int, default=10)
    p.add_argument("--force", action="store_true",
                   help="replace an existing networks folder (never a folder of another kind)")
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
    p.add_argument("--force", action="store_true",
                   help="replace an existing consistency file (nothing else)")
    p.set_defaults(func=_cmd_consistency)


def _cmd_networks(args):
    from llmfbn.cluster import check_scheduler, require_distributed
    from llmfbn.io import check_output_folder
    from llmfbn.networks import (
        NetworkDecomposition,
        find_group_runs,
        parse_memory_size,
        top_tokens,
    )

    # every cheap check before any image is read
    check_finite(args.threshold, "--threshold")
    check_int_at_least(args.n_components, "--n-components")
    check_int_at_least(args.n_top_tokens, "--n-top-tokens")
    check_int_at_least(args.top_k, "--top-k")
    n_jobs = available_cores() if args.n_jobs is None else args.n_jobs
    if n_jobs == 0:
        raise ValueError("'--n-jobs' must be a positive number of processes or -1 (all), "
                         "-2 (all but one), ... 0 was provided.")
    budget = (None if args.memory_budget is None
              else parse_memory_size(args.memory_budget, "--memory-budget"))
    if args.group_pca == "migp" and args.method != "canica":
        raise ValueError(f"'--group-pca migp' needs '--method canica'. '--method "
                         f"{args.method}' was provided.")
    if args.scheduler is not None:
        check_scheduler(args.scheduler)
        if args.method == "temporal_ica":
            raise ValueError("'--scheduler' needs '--method canica' or 'dictlearning' "
                             "(temporal_ica is one FastICA in this process). '--method "
                             "temporal_ica' was provided.")
        require_distributed()
    for in_dir in args.in_dirs:
        check_recording_folder(in_dir, "REC")
    if len(args.in_dirs) > 1:
        find_group_runs(args.in_dirs, task=args.task)  # one grid, signal, kind; no duplicate
    check_output_folder(args.out, "networks", overwrite=args.force)
    verbose = 0 if args.quiet else 1
    est = NetworkDecomposition(
        method=args.method, n_components=args.n_components, threshold=args.threshold,
        threshold_mode="two_sided" if args.two_sided else "positive", top_k=args.top_k,
        task=args.task, group_pca=args.group_pca, memory_budget=budget,
        scheduler=args.scheduler, random_state=args.random_state, n_jobs=n_jobs, verbose=verbose)
    est.fit(args.in_dirs[0] if len(args.in_dirs) == 1 else args.in_dirs)
    if est.reduced_:
        print("llmfbn: note: top tokens skipped: the runs are reduced (record --reduce) and "
              "keep no tokens", file=sys.stderr)
    else:
        labels = (None if est.expression_ is None else
                  [str(r.path) for r in est.recordings_ for _ in r.runs])
        est.networks_.top_tokens = top_tokens(est.networks_, est.run_paths_,
                                              n_tokens=args.n_top_tokens, recordings=labels)
    est.save(args.out, overwrite=args.force)
    sizes = est.networks_.sizes
    print(f"Networks in {args.out.resolve()}: {len(sizes)} from {args.method} on "
          f"{est.n_timepoints_} tokens; sizes min {sizes.min()}, median "
          f"{int(np.median(sizes))}, max {sizes.max()} neurons")
    for k, rows in enumerate((est.networks_.top_tokens or [])[:5]):
        print(f"  network {k}: " + " | ".join(r["context"] for r in rows[:3]))
    if est.expression_ is not None:
        expression = est.expression_
        print(f"Networks each model expresses (spatial r >= {expression.min_r:g}, "
              f"models.csv):")
        for model, recording, row in zip(expression.models, est.recordings_,
                                         expression.expressed):
            print(f"  {model or recording.path}: {int(row.sum())} of {len(row)} "
                  f"({recording.path})")


def available_cores():
    """Cores this process may run on (its CPU affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cmd_consistency(args):
    from llmfbn.io import check_consistency_output, write_consistency
    from llmfbn.networks import FunctionalNetworks, compare_networks

    if len(args.net_dirs) < 2:
        raise ValueError(f"'net_dirs' must name at least 2 folders. {len(args.net_dirs)} "
                         f"was provided.")
    check_int_at_least(args.n_draws, "--n-draws")
    check_finite(args.recurrence_threshold, "--recurrence-threshold", 0, 1)
    check_consistency_output(args.out, overwrite=args.force)
    nets = [FunctionalNetworks.load(d) for d in args.net_dirs]
    comparison = compare_networks(nets, names=[str(d) for d in args.net_dirs],
                                  n_draws=args.n_draws,
                                  recurrence_threshold=args.recurrence_threshold,
                                  random_state=args.random_state)
    for pair in comparison.pairs:
        print(pair.summary())
    write_consistency(args.out, comparison.to_dict(), overwrite=args.force)
    print(f"Wrote {args.out}")
