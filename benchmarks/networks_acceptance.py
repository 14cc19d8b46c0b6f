"""Real-data acceptance of functional networks on SmolLM2 (the README's table).

Records WikiText-2 test paragraphs, split into two disjoint halves of
*articles*, and SST-2 train sentences with SmolLM2-135M-Instruct; fits CanICA
(20 components, z >= 3.6) on each; and reports how well the networks match
between the two WikiText halves and between WikiText and SST-2 against a
size- and per-layer-count-matched null, plus the ICASSO-style stability index
across seeds.

Run (takes about 20-30 minutes on 2 cores and ~20 GB of disk under results/)::

    .venv/bin/python benchmarks/networks_acceptance.py --data ../shared/data

Every stage resumes: recordings skip finished runs and fitted networks are
reused from their folders.
"""

import argparse
import csv
import json
import re
import time
from pathlib import Path

import numpy as np

from llmfbn.models import load_model
from llmfbn.recording import record

ARTICLE = re.compile(r"^ = [^=].* = $")
HEADING = re.compile(r"^ =( =)* .* =( =)* $")


def wikitext_halves(path, min_chars=200):
    """Paragraphs of even- and odd-numbered articles (two disjoint halves)."""
    halves = ([], [])
    article = -1
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if ARTICLE.match(line):
                article += 1
            elif not HEADING.match(line) and len(line.strip()) >= min_chars and article >= 0:
                halves[article % 2].append(line.strip())
    return halves


def sst2_sentences(path, n):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"].strip() for r in rows[:n]]


def fit(rec_dir, out_dir, seed, n_components, threshold):
    from llmfbn.networks import FunctionalNetworks, NetworkDecomposition

    if (out_dir / "networks.json").exists():
        return FunctionalNetworks.load(out_dir), None
    start = time.perf_counter()
    est = NetworkDecomposition(n_components=n_components, threshold=threshold,
                               random_state=seed, verbose=1).fit(rec_dir)
    est.save(out_dir)
    return est.networks_, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("results/acceptance"))
    parser.add_argument("--paragraphs", type=int, default=240, help="per WikiText half")
    parser.add_argument("--sst2-sentences", type=int, default=3000)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=3.6)
    parser.add_argument("--seeds", type=int, default=5, help="fits for the stability index")
    parser.add_argument("--n-draws", type=int, default=200, help="null draws")
    parser.add_argument("--record-only", action="store_true")
    args = parser.parse_args()

    texts = args.out / "texts"
    texts.mkdir(parents=True, exist_ok=True)
    half_a, half_b = wikitext_halves(args.data / "wikitext-2-raw" / "wiki.test.raw")
    (texts / "wikia.txt").write_text("\n".join(half_a[: args.paragraphs]) + "\n")
    (texts / "wikib.txt").write_text("\n".join(half_b[: args.paragraphs]) + "\n")
    (texts / "sst2train.txt").write_text(
        "\n".join(sst2_sentences(args.data / "sst2" / "train.tsv", args.sst2_sentences)) + "\n")

    model = load_model("smollm2-135m")
    recordings = {}
    for name, per_run in (("wikia", 1), ("wikib", 1), ("sst2train", 10)):
        recordings[name] = args.out / f"rec-{name}"
        start = time.perf_counter()
        rec = record(model, texts / f"{name}.txt", recordings[name], max_tokens=args.max_tokens,
                     texts_per_run=per_run, verbose=1)
        print(f"recorded {name}: {rec.summary['n_runs']} runs, {rec.summary['n_tokens']} tokens "
              f"({time.perf_counter() - start:.0f} s)")
    if args.record_only:
        return
    from llmfbn.networks import (
        match_summary,
        null_matched_correlation,
        null_matched_iou,
        stability,
    )

    nets, timings = {}, {}
    for name in recordings:
        nets[name], timings[name] = fit(recordings[name], args.out / f"net-{name}-seed0", 0,
                                        args.n_components, args.threshold)
    seeds = [nets["wikia"]] + [
        fit(recordings["wikia"], args.out / f"net-wikia-seed{s}", s, args.n_components,
            args.threshold)[0]
        for s in range(1, args.seeds)
    ]

    report = {"sizes": {k: v.sizes.tolist() for k, v in nets.items()}, "fit_seconds": timings}
    rows = []
    for a, b in (("wikia", "wikib"), ("wikia", "sst2train"), ("wikib", "sst2train")):
        by_iou = null_matched_iou(nets[a].masks, nets[b].masks, n_draws=args.n_draws,
                                  random_state=0)
        by_corr = null_matched_correlation(nets[a].maps, nets[b].maps, n_draws=args.n_draws,
                                           random_state=0)
        report[f"{a}-vs-{b}"] = {"iou": by_iou.to_dict(), "correlation": by_corr.to_dict()}
        rows.append((a, b, by_iou, by_corr))
    stab = stability([n.maps for n in seeds], random_state=0)
    report["stability_quality"] = np.asarray(stab.quality).tolist()
    (args.out / "acceptance.json").write_text(json.dumps(report, indent=1))

    print("\n| comparison | median matched IoU | null IoU (median) | x chance | pairs IoU > 0.2 "
          "| median matched r | median z (r) | pairs p < 0.05 (IoU) |")
    print("|---|---|---|---|---|---|---|---|")
    for a, b, by_iou, by_corr in rows:
        iou, corr = match_summary(by_iou), match_summary(by_corr)
        print(f"| {a} vs {b} | {iou['median_score']:.3f} | {iou['median_null']:.4f} "
              f"| {iou['times_chance']:.1f}x "
              f"| {int(np.sum(by_iou.scores > 0.2))}/{len(by_iou.scores)} "
              f"| {corr['median_score']:.3f} | {corr['median_z']:.1f} "
              f"| {int(np.sum(np.asarray(by_iou.p_value) < 0.05))}/{len(by_iou.scores)} |")
    quality = np.asarray(stab.quality)
    print(f"\nStability across {len(seeds)} seeds (wikia): median Iq {np.median(quality):.3f}, "
          f"{int(np.sum(quality > 0.8))}/{len(quality)} clusters with Iq > 0.8")
    print("network sizes:", {k: [int(np.min(v)), int(np.median(v)), int(np.max(v))]
                             for k, v in report["sizes"].items()}, "(min, median, max)")


if __name__ == "__main__":
    main()
