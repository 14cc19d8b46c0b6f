"""Cost of an intervention: hooked vs plain forward, and the wall time of a sweep.

1. Overhead: tokens/s of SmolLM2 forward passes (batches of WikiText-2
   paragraphs) with no hook, and inside ``inhibit`` / ``amplify`` on a
   network-sized neuron set (~120 neurons over 30 layers, as CanICA finds),
   interleaved over repeats; the target is <= 5 % overhead.
2. Sweep: wall time of ``llmfbn.intervention.intervention_sweep`` inhibiting
   ``--networks`` networks with ``--controls`` controls each, on the first
   ``--max-tokens`` tokens of a text (perplexity, sliding windows 1024/512),
   in ``--model-dtype``.
3. ``--speed-target``: evaluations per float32 reference pass. One plain
   float32 perplexity evaluation of the text is the reference; then a
   ``--networks`` x ``--controls`` sweep (plus its baseline) runs in
   bfloat16 with the shared-prefix path; the target is >= 1.6 evaluations
   per reference pass. Networks come from ``--networks-dir`` or, without
   it, are random sets of ``--network-size`` neurons (as CanICA finds;
   their first edited layer is printed, since the layers before it are
   shared).
4. ``--dtype-report``: perplexity (``--max-tokens`` tokens) and SST-2
   accuracy (``--sst2`` folder, first ``--limit`` items) of the unmodified
   model in float32 and bfloat16, with their wall times.

Run::

    .venv/bin/python benchmarks/bench_intervention.py \\
        --text ../shared/data/wikitext-2-raw/wiki.test.raw \\
        --networks-dir results/acceptance/net-wikia-seed0 --networks 20 --controls 5 \\
        --max-tokens 8192
    .venv/bin/python benchmarks/bench_intervention.py --skip-overhead --skip-sweep \\
        --text ../shared/data/wikitext-2-raw/wiki.test.raw --max-tokens 8192 \\
        --speed-target --networks 4 --controls 3
    .venv/bin/python benchmarks/bench_intervention.py --skip-overhead --skip-sweep \\
        --text ../shared/data/wikitext-2-raw/wiki.test.raw --max-tokens 8192 \\
        --dtype-report --sst2 ../shared/data/sst2 --limit 200
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmfbn.intervention import (
    amplify,
    inhibit,
    intervention_sweep,
    make_evaluation,
    model_grid,
)
from llmfbn.models import load_model
from llmfbn.networks import FunctionalNetworks


def random_networks(loaded, n_networks, size, seed=0):
    """``n_networks`` random sets of ``size`` neurons of the model's grid."""
    grid = model_grid(loaded)
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_networks, grid.n_layers, grid.width), dtype=bool)
    for k in range(n_networks):
        flat = masks[k].reshape(-1)
        flat[rng.choice(flat.size, size, replace=False)] = True
    return FunctionalNetworks(masks.astype(np.float32), masks, grid)


def speed_target(args):
    """Evaluations per float32 reference pass of a bfloat16 shared-prefix sweep."""
    evaluation = make_evaluation("wikitext2", args.text, max_tokens=args.max_tokens)
    warm = make_evaluation("wikitext2", args.text, max_tokens=256)
    reference = load_model("smollm2-135m")
    warm.run(reference.model, reference.tokenizer)
    start = time.perf_counter()
    score = evaluation.run(reference.model, reference.tokenizer)
    t_ref = time.perf_counter() - start
    print(f"float32 reference: perplexity {float(score['perplexity']):.4f} in {t_ref:.1f} s")
    del reference
    for dtype in args.sweep_dtypes.split(","):
        loaded = load_model("smollm2-135m", dtype=dtype)
        networks = (FunctionalNetworks.load(args.networks_dir) if args.networks_dir
                    else random_networks(loaded, args.networks, args.network_size))
        ids = list(range(min(args.networks, len(networks))))
        first = [int(np.flatnonzero(networks.masks[k].any(axis=1))[0]) for k in ids]
        warm.run(loaded.model, loaded.tokenizer)
        start = time.perf_counter()
        rows = intervention_sweep(loaded, networks, [evaluation], network_ids=ids,
                                  n_controls=args.controls, verbose=0)
        seconds = time.perf_counter() - start
        n_evals = 1 + len(ids) * (1 + args.controls)
        print(f"{dtype} sweep: {len(ids)} networks x (1 + {args.controls} controls) + baseline "
              f"= {n_evals} evaluations in {seconds:.1f} s; first edited layers {first}; "
              f"{n_evals * t_ref / seconds:.2f} evaluations per float32 reference pass "
              f"(target >= 1.6)")
        print(rows[["network", "value", "control_mean", "ratio"]].to_string(index=False))


def dtype_report(args):
    """Perplexity and SST-2 accuracy, float32 vs bfloat16, and their times."""
    from llmfbn.evaluation import evaluate_task, load_task, perplexity

    items = load_task("sst2", args.sst2, limit=args.limit)
    print(f"| dtype | perplexity ({args.max_tokens} tokens) | time | SST-2 accuracy "
          f"({len(items)} items) | acc_norm | time |")
    print("|---|---|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        loaded = load_model("smollm2-135m", dtype=dtype)
        model, tokenizer = loaded.model, loaded.tokenizer
        perplexity(model, tokenizer, args.text, max_tokens=256)  # warm-up
        start = time.perf_counter()
        ppl = perplexity(model, tokenizer, args.text, max_tokens=args.max_tokens)
        t_ppl = time.perf_counter() - start
        start = time.perf_counter()
        task = evaluate_task(model, tokenizer, items)
        t_task = time.perf_counter() - start
        print(f"| {dtype} | {ppl.perplexity:.4f} | {t_ppl:.1f} s | {task.accuracy:.4f} | "
              f"{task.accuracy_norm:.4f} | {t_task:.1f} s |")


def paragraphs(path, n):
    lines = [line.strip() for line in open(path, encoding="utf-8")]
    return [line for line in lines if len(line) > 300 and not line.startswith("=")][:n]


def forward_rate(model, batches):
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(**batch, use_cache=False)
            tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument("--networks-dir", type=Path)
    parser.add_argument("--networks", type=int, default=20, help="networks in the sweep")
    parser.add_argument("--controls", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--model-dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--speed-target", action="store_true")
    parser.add_argument("--sweep-dtypes", default="bfloat16",
                        help="dtypes of the --speed-target sweep, e.g. 'float32,bfloat16'")
    parser.add_argument("--network-size", type=int, default=120)
    parser.add_argument("--dtype-report", action="store_true")
    parser.add_argument("--sst2", type=Path, default=Path("../shared/data/sst2"))
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}; torch threads {torch.get_num_threads()}")

    if args.speed_target:
        speed_target(args)
    if args.dtype_report:
        dtype_report(args)
    if args.skip_overhead and (args.skip_sweep or args.networks_dir is None):
        return
    loaded = load_model("smollm2-135m", dtype=args.model_dtype)
    model, tokenizer = loaded.model, loaded.tokenizer
    texts = paragraphs(args.text, 32)
    batches = [tokenizer(texts[i:i + 8], return_tensors="pt", padding=True, truncation=True,
                         max_length=256) for i in range(0, len(texts), 8)]
    rng = np.random.default_rng(0)
    mask = np.zeros((30, 1536), dtype=bool)
    mask.reshape(-1)[rng.choice(mask.size, 120, replace=False)] = True
    forward_rate(model, batches[:1])  # warm-up
    rates = {"plain": [], "inhibit": [], "amplify": []}
    # interleaved, so drift hits all three alike
    for _ in range(0 if args.skip_overhead else args.repeats):
        rates["plain"].append(forward_rate(model, batches))
        with inhibit(model, mask):
            rates["inhibit"].append(forward_rate(model, batches))
        with amplify(model, mask, 2.0):
            rates["amplify"].append(forward_rate(model, batches))
    if not args.skip_overhead:
        plain = statistics.median(rates["plain"])
        print("| forward | tokens/s (median) | overhead vs plain |")
        print("|---|---|---|")
        for name, values in rates.items():
            rate = statistics.median(values)
            print(f"| {name} | {rate:.0f} | {100 * (plain / rate - 1):+.1f} % |")

    if args.skip_sweep or args.networks_dir is None:
        return
    networks = FunctionalNetworks.load(args.networks_dir)
    evaluation = make_evaluation("wikitext2", args.text, max_tokens=args.max_tokens)
    start = time.perf_counter()
    rows = intervention_sweep(loaded, networks, [evaluation],
                              network_ids=list(range(min(args.networks, len(networks)))),
                              n_controls=args.controls, verbose=1)
    seconds = time.perf_counter() - start
    n_evals = 1 + (len(rows) - 1) * (1 + args.controls)
    print(f"\nsweep: {len(rows) - 1} networks x (1 + {args.controls} controls) + baseline = "
          f"{n_evals} perplexity evaluations on {args.max_tokens} tokens in {seconds / 60:.1f} min "
          f"({seconds / n_evals:.1f} s each)")


if __name__ == "__main__":
    main()
