"""Real-model acceptance of interventions on SmolLM2 (the README's tables).

Uses the networks of ``benchmarks/networks_acceptance.py`` (run it first):

* WikiText-2: networks estimated on the even-numbered articles
  (``net-wikia-seed0``); perplexity on held-out text, the odd-numbered
  articles' paragraphs, first ``--max-tokens`` tokens (sliding windows
  1024/512). The networks inhibited are the ``--wiki-networks`` most
  reproducible ones (highest matched IoU with the networks of the other half).
* SST-2: networks estimated on SST-2 train sentences (``net-sst2train-seed0``);
  accuracy on the first ``--sst2-limit`` SST-2 dev items. The
  ``--sst2-networks`` largest networks are inhibited and amplified (added
  value) over ``--values``.

Each edit is compared with ``--controls`` matched random neuron sets. Run::

    .venv/bin/python benchmarks/intervention_acceptance.py --data ../shared/data
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from networks_acceptance import wikitext_halves

from llmfbn.intervention import intervention_sweep, make_evaluation
from llmfbn.models import load_model
from llmfbn.networks import FunctionalNetworks, match_networks


def table(rows):
    edited = rows[rows.network != "none"]
    lines = ["| network | neurons | task | metric | mode | edit | value | controls mean "
             "[95 % CI] | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows[rows.network == "none"].itertuples():
        lines.append(f"| none | 0 | {r.task} | {r.metric} | none | | {r.value:.4g} | | |")
    for r in edited.itertuples():
        edit = "" if pd.isna(r.edit_value) or r.edit_value == "" else f"{float(r.edit_value):g}"
        lines.append(f"| {r.network} | {r.n_neurons} | {r.task} | {r.metric} | {r.mode} | {edit} "
                     f"| {r.value:.4g} | {r.control_mean:.4g} [{r.control_ci_low:.4g}, "
                     f"{r.control_ci_high:.4g}] | {r.ratio:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("results/acceptance"))
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--wiki-networks", type=int, default=4)
    parser.add_argument("--sst2-networks", type=int, default=2)
    parser.add_argument("--sst2-limit", type=int, default=200)
    parser.add_argument("--values", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--controls", type=int, default=5)
    args = parser.parse_args()

    model = load_model("smollm2-135m")
    held_out = args.out / "texts" / "wikib_all.txt"
    held_out.write_text("\n".join(wikitext_halves(args.data / "wikitext-2-raw" /
                                                  "wiki.test.raw")[1]) + "\n")
    wiki_a = FunctionalNetworks.load(args.out / "net-wikia-seed0")
    wiki_b = FunctionalNetworks.load(args.out / "net-wikib-seed0")
    matching = match_networks(wiki_a.masks, wiki_b.masks)
    order = np.argsort(matching.scores)[::-1][: args.wiki_networks]
    top_wiki = [int(matching.pairs[i][0]) for i in order]
    print("WikiText networks (most reproducible):", top_wiki,
          "matched IoU", np.round(np.asarray(matching.scores)[order], 3).tolist())

    start = time.perf_counter()
    wiki_rows = intervention_sweep(
        model, wiki_a, [make_evaluation("wikitext2", held_out, max_tokens=args.max_tokens)],
        network_ids=top_wiki, n_controls=args.controls,
        out_csv=args.out / "inhibit_wikitext2.csv")
    print(f"WikiText sweep: {(time.perf_counter() - start) / 60:.1f} min")

    sst = FunctionalNetworks.load(args.out / "net-sst2train-seed0")
    top_sst = [int(k) for k in np.argsort(sst.sizes)[::-1][: args.sst2_networks]]
    sst_eval = [make_evaluation("sst2", args.data / "sst2", limit=args.sst2_limit)]
    start = time.perf_counter()
    sst_rows = intervention_sweep(model, sst, sst_eval, network_ids=top_sst,
                                  n_controls=args.controls, out_csv=args.out / "sst2_edits.csv")
    sst_rows = intervention_sweep(model, sst, sst_eval, network_ids=top_sst, mode="amplify",
                                  values=args.values, n_controls=args.controls,
                                  out_csv=args.out / "sst2_edits.csv")
    print(f"SST-2 sweeps: {(time.perf_counter() - start) / 60:.1f} min")
    print("\n" + table(wiki_rows) + "\n\n" + table(sst_rows[sst_rows.metric == "accuracy"]))


if __name__ == "__main__":
    main()
