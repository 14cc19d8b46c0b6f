"""Group step of ``llmfbn networks`` at scale: nilearn's in-RAM stack vs the streaming MIGP.

Synthetic reduced runs stand in for ``llmfbn record --reduce K`` runs: each
run is K rows over ``--n-features`` neurons (default 352,256 = 32 x 11,008, a
7B-class grid), ``mixing @ maps + noise`` with ``--n-networks`` sparse planted
maps shared by all runs, a fresh random mixing per run and decreasing row
scales like singular values. Runs are generated one at a time from their index
(nothing is stored), so the group step is all that grows.

For each number of runs (``--runs``) and path (``--paths``) one fresh process
runs the group step and CanICA's ICA exactly as ``NetworkDecomposition`` does
(``nilearn``: the float32 stack, Fortran-ordered as nilearn's
``_mask_and_reduce`` builds it, then ``CanICA._raw_fit`` with ``do_cca``;
``migp``: :class:`llmfbn.networks._group_pca.MIGP`, then ``_raw_fit`` without
``do_cca``), and its wall time and peak RSS are read with ``os.wait4``. A
``nilearn`` configuration whose estimated peak exceeds ``--max-gb`` (default
80% of the memory available) is skipped and said so. Where both paths ran,
the Hungarian-matched ``|r|`` of their group PCA components and of their ICA
maps is printed, and the growth of peak RSS from the fewest to the most runs.

Run::

    .venv/bin/python benchmarks/bench_group_pca.py --work results/bench-group-pca \\
        --runs 100 1000

and a quick check of the script itself::

    .venv/bin/python benchmarks/bench_group_pca.py --work /tmp/bench-group-pca \\
        --runs 20 60 --n-features 20000 --n-init 2
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def synthetic_run(index, n_rows, n_features, n_networks, size, noise, seed=0):
    """One reduced run, (n_rows, n_features) float32: planted maps mixed anew, plus noise."""
    maps = planted_maps(n_features, n_networks, size, seed)
    rng = np.random.default_rng([seed, index])
    mixing = rng.standard_normal((n_rows, n_networks)).astype(np.float32)
    rows = mixing @ maps
    rows += noise * rng.standard_normal((n_rows, n_features), dtype=np.float32)
    rows *= np.linspace(3.0, 1.0, n_rows, dtype=np.float32)[:, None]  # like singular values
    return rows


_MAPS = {}


def planted_maps(n_features, n_networks, size, seed=0):
    """(n_networks, n_features) float32: disjoint sparse networks with uniform loadings."""
    key = (n_features, n_networks, size, seed)
    if key not in _MAPS:
        rng = np.random.default_rng(seed)
        order = rng.permutation(n_features)
        maps = np.zeros((n_networks, n_features), dtype=np.float32)
        for k in range(n_networks):
            maps[k, order[k * size:(k + 1) * size]] = rng.uniform(1.0, 2.0, size)
        _MAPS[key] = maps
    return _MAPS[key]


def worker(args):
    """One configuration in this process; writes its components to ``args.result``."""
    import warnings

    from nilearn.decomposition import CanICA
    from nilearn.decomposition._multi_pca import _MultiPCA

    from llmfbn.grid import NeuronGrid
    from llmfbn.networks._group_pca import MIGP, fit_group_estimator

    grid = NeuronGrid(1, args.n_features, model="synthetic", signal="mlp")
    start = time.perf_counter()
    runs = (synthetic_run(i, args.k, args.n_features, args.n_networks, args.size, args.noise)
            for i in range(args.n_runs))
    if args.path == "nilearn":
        data = np.empty((args.n_runs * args.k, args.n_features), order="F", dtype=np.float32)
        for i, rows in enumerate(runs):
            data[i * args.k:(i + 1) * args.k] = rows
        do_cca, info = True, {}
    else:
        acc = MIGP(args.n_features, args.migp_rows or 4 * args.n_components)
        for rows in runs:
            acc.add(rows)
        info = {"migp_rows": acc.n_rows, "capacity": acc.capacity_,
                "reductions": acc.n_reductions_}
        data, do_cca = acc.result(release=True), False
    group_seconds = time.perf_counter() - start
    est = CanICA(mask=grid.mask_img(), n_components=args.n_components, smoothing_fwhm=None,
                 threshold=None, standardize="zscore_sample", detrend=False, do_cca=do_cca,
                 n_init=args.n_init, random_state=0, n_jobs=args.n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_group_estimator(est, data, grid.mask_img())
    fit_seconds = time.perf_counter() - start
    # the group PCA alone, for the comparison (after the timing; no more memory than the fit)
    probe = CanICA(n_components=args.n_components, do_cca=do_cca, random_state=0)
    pca = _MultiPCA._raw_fit(probe, data).T
    np.savez(args.result, ica=est.components_, pca=pca,
             info=json.dumps({**info, "group_seconds": group_seconds,
                              "fit_seconds": fit_seconds}))


def matched_abs_r(a, b):
    from scipy.optimize import linear_sum_assignment

    r = np.abs(np.corrcoef(a, b)[:len(a), len(a):])
    rows, cols = linear_sum_assignment(-r)
    return r[rows, cols]


def run_config(args, n_runs, path):
    result = args.work / f"{path}-{n_runs}.npz"
    cmd = [sys.executable, str(HERE), "--worker", "--path", path, "--n-runs", str(n_runs),
           "--result", str(result)] + _shared_flags(args)
    start = time.perf_counter()
    process = subprocess.Popen(cmd)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{path} at {n_runs} runs failed (exit {status})")
    saved = np.load(result)
    return {"seconds": seconds, "peak_gb": usage.ru_maxrss * 1024 / 1e9,  # KiB on Linux
            "info": json.loads(str(saved["info"])), "ica": saved["ica"], "pca": saved["pca"]}


def _shared_flags(args):
    return ["--n-features", str(args.n_features), "--k", str(args.k), "--n-components",
            str(args.n_components), "--n-networks", str(args.n_networks), "--size",
            str(args.size), "--noise", str(args.noise), "--n-init", str(args.n_init),
            "--n-jobs", str(args.n_jobs)] + (
        ["--migp-rows", str(args.migp_rows)] if args.migp_rows else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the components of each run")
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--paths", nargs="+", default=["nilearn", "migp"],
                        choices=("nilearn", "migp"))
    parser.add_argument("--n-features", type=int, default=32 * 11008)
    parser.add_argument("--k", type=int, default=20, help="rows per reduced run")
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--migp-rows", type=int, help="default 4 x n_components")
    parser.add_argument("--n-networks", type=int, default=20)
    parser.add_argument("--size", type=int, default=2000, help="neurons per planted network")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--n-init", type=int, default=10, help="CanICA restarts")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count())
    parser.add_argument("--max-gb", type=float, help="skip nilearn configurations estimated "
                        "above this (default 80%% of the memory available)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--n-runs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.work is None:
        parser.error("--work is required")
    from llmfbn.networks._group_pca import available_memory, nilearn_peak_bytes

    args.work.mkdir(parents=True, exist_ok=True)
    max_gb = args.max_gb or 0.8 * (available_memory() or 0) / 1e9
    results = {}
    for n_runs in args.runs:
        for path in args.paths:
            estimate = nilearn_peak_bytes(n_runs * args.k, args.n_features, 0) / 1e9
            if path == "nilearn" and estimate > max_gb:
                print(f"{path:8s} {n_runs:6d} runs: skipped, estimated {estimate:.1f} GB > "
                      f"{max_gb:.1f} GB", flush=True)
                continue
            res = results[n_runs, path] = run_config(args, n_runs, path)
            print(f"{path:8s} {n_runs:6d} runs: {res['seconds']:7.1f} s, peak RSS "
                  f"{res['peak_gb']:6.2f} GB, group step {res['info']['group_seconds']:.1f} s "
                  f"{json.dumps({k: v for k, v in res['info'].items() if 'seconds' not in k})}",
                  flush=True)
        if (n_runs, "nilearn") in results and (n_runs, "migp") in results:
            a, b = results[n_runs, "nilearn"], results[n_runs, "migp"]
            pca, ica = matched_abs_r(a["pca"], b["pca"]), matched_abs_r(a["ica"], b["ica"])
            print(f"         {n_runs:6d} runs: nilearn vs migp matched |r| group PCA median "
                  f"{np.median(pca):.4f} (min {pca.min():.4f}), ICA maps median "
                  f"{np.median(ica):.4f} (min {ica.min():.4f})", flush=True)
    for path in args.paths:
        done = sorted(n for n, p in results if p == path)
        if len(done) >= 2:
            low, high = results[done[0], path]["peak_gb"], results[done[-1], path]["peak_gb"]
            print(f"{path}: peak RSS {low:.2f} GB at {done[0]} runs -> {high:.2f} GB at "
                  f"{done[-1]} runs ({100 * (high / low - 1):+.1f}%)")


if __name__ == "__main__":
    main()
