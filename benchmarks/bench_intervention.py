"""Cost of an intervention: hooked vs plain forward, and the wall time of a sweep.

1. Overhead: tokens/s of SmolLM2 forward passes (batches of WikiText-2
   paragraphs) with no hook, and inside ``inhibit`` / ``amplify`` on a
   network-sized neuron set (~120 neurons over 30 layers, as CanICA finds),
   interleaved over repeats; the target is <= 5 % overhead.
2. Sweep: wall time of ``llmfbn.intervention.intervention_sweep`` inhibiting
   ``--networks`` networks with ``--controls`` controls each, on the first
   ``--max-tokens`` tokens of a text (perplexity, sliding windows 1024/512).

Run::

    .venv/bin/python benchmarks/bench_intervention.py \\
        --text ../shared/data/wikitext-2-raw/wiki.test.raw \\
        --networks-dir results/acceptance/net-wikia-seed0 --networks 20 --controls 5 \\
        --max-tokens 8192
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmfbn.intervention import amplify, inhibit, intervention_sweep, make_evaluation
from llmfbn.models import load_model
from llmfbn.networks import FunctionalNetworks


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
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}; torch threads {torch.get_num_threads()}")

    loaded = load_model("smollm2-135m")
    model, tokenizer = loaded.model, loaded.tokenizer
    texts = paragraphs(args.text, 32)
    batches = [tokenizer(texts[i:i + 8], return_tensors="pt", padding=True, truncation=True,
                         max_length=256) for i in range(0, len(texts), 8)]
    rng = np.random.default_rng(0)
    mask = np.zeros((30, 1536), dtype=bool)
    mask.reshape(-1)[rng.choice(mask.size, 120, replace=False)] = True
    forward_rate(model, batches[:1])  # warm-up
    rates = {"plain": [], "inhibit": [], "amplify": []}
    for _ in range(args.repeats):  # interleaved, so drift hits all three alike
        rates["plain"].append(forward_rate(model, batches))
        with inhibit(model, mask):
            rates["inhibit"].append(forward_rate(model, batches))
        with amplify(model, mask, 2.0):
            rates["amplify"].append(forward_rate(model, batches))
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
