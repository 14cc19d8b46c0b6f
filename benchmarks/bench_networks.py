"""Fit time and peak memory of CanICA on recordings, vs tokens and vs neurons.

Each configuration runs in a fresh subprocess so its peak RSS is its own.

* Tokens: the first runs of one or more SmolLM2 recording folders (same grid)
  up to each token budget, e.g. the two WikiText halves of
  ``benchmarks/networks_acceptance.py`` (about 55,000 tokens together).
* Neurons: synthetic recordings with planted networks (10,000 tokens) on grids
  of 5,000 to 46,080 neurons.

Run::

    .venv/bin/python benchmarks/bench_networks.py \\
        --recordings results/acceptance/rec-wikia results/acceptance/rec-wikib \\
        --tokens 12500 25000 50000

Target on 2 cores: 20 components on 50,000 SmolLM2 tokens in <= 3 minutes and
<= 8 GB peak memory.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time, resource
from pathlib import Path
from llmfbn.networks import NetworkDecomposition
paths = [Path(p) for p in json.loads(sys.argv[1])]
start = time.perf_counter()
est = NetworkDecomposition(n_components=int(sys.argv[2]), n_jobs=int(sys.argv[3]),
                           random_state=0).fit(paths)
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": est.n_timepoints_,
                  "runs": len(paths), "neurons": est.grid_.n_neurons,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_rss_mb":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_child(paths, n_components, n_jobs):
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([str(p) for p in paths]),
                          str(n_components), str(n_jobs)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def runs_up_to(folders, budget):
    from llmfbn.io import read_sidecar
    from llmfbn.networks import find_recording_images

    chosen, total = [], 0
    for folder in folders:
        paths, _ = find_recording_images(folder)
        for p in paths:
            if total >= budget:
                return chosen, total
            n = read_sidecar(p)["NumberOfTokens"]
            chosen.append(p)
            total += n
    return chosen, total


def synthetic(folder, n_neurons, n_tokens, tokens_per_run=128):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import planted_networks, write_synthetic_recording
    from llmfbn.grid import NeuronGrid

    width = 1536
    n_layers = max(1, n_neurons // width)
    runs, _ = planted_networks(n_layers=n_layers, width=width, n_networks=20, size=50,
                               n_runs=n_tokens // tokens_per_run, n_tokens=tokens_per_run)
    return write_synthetic_recording(folder, NeuronGrid(n_layers, width, model="syn",
                                                        signal="mlp"), runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, nargs="*", default=[])
    parser.add_argument("--tokens", type=int, nargs="*", default=[12500, 25000, 50000])
    parser.add_argument("--neurons", type=int, nargs="*", default=[4608, 15360, 46080])
    parser.add_argument("--synthetic-tokens", type=int, default=10000)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="CanICA's n_jobs (per-run reductions in parallel processes)")
    args = parser.parse_args()

    print(f"command: {' '.join(sys.argv)}")
    print(f"n_jobs={args.n_jobs}, n_components={args.n_components}")
    print("| data | runs | tokens | neurons | fit s | peak RSS MB (main) "
          "| peak RSS MB (largest worker) |")
    print("|---|---|---|---|---|---|---|")
    for budget in args.tokens if args.recordings else []:
        paths, total = runs_up_to(args.recordings, budget)
        r = run_child(paths, args.n_components, args.n_jobs)
        print(f"| SmolLM2 recording | {r['runs']} | {r['tokens']} | {r['neurons']} "
              f"| {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} | {r['worker_peak_rss_mb']:.0f} |",
              flush=True)
    for n_neurons in args.neurons:
        with tempfile.TemporaryDirectory() as tmp:
            paths = synthetic(Path(tmp), n_neurons, args.synthetic_tokens)
            r = run_child(paths, args.n_components, args.n_jobs)
        print(f"| synthetic planted | {r['runs']} | {r['tokens']} | {r['neurons']} "
              f"| {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} | {r['worker_peak_rss_mb']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
