"""
Are the networks real? Consistency across halves, tasks and seeds
=================================================================

A network found once may be an accident of the data or of the algorithm's
random start. Neuroimagers check networks for reproducibility: across halves
of the data, across tasks, across subjects and across random seeds. We do
the same for the networks of an LLM:

* two halves of the runs, networks matched one to one by overlap (IoU) against
  random neuron sets with the same size and the same count in every layer, and
  their maps by correlation against maps shuffled within layers;
* two tasks (the probe sentences and the held-out prose);
* several random seeds, clustered ICASSO-style (quality index Iq).
"""

# %%
# Settings and recordings
# -----------------------
import argparse
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=os.environ.get("LLMFBN_DATA"),
                    help="folder of the standard datasets (optional)")
DATA = parser.parse_known_args()[0].data
SMOKE = os.environ.get("LLMFBN_SMOKE") == "1"
RESULTS = Path(os.environ.get("LLMFBN_RESULTS", "results/tutorials"))
MAX_TOKENS = 32 if SMOKE else 64
N_COMPONENTS = 5 if SMOKE else 8
N_DRAWS = 50 if SMOKE else 500

from llmfbn.datasets import load_probe_heldout, load_probe_texts
from llmfbn.models import load_model
from llmfbn.recording import record

model = load_model("smollm2-135m")
probes = record(model, load_probe_texts().path, RESULTS / "probes-recording", task="probes",
                label_column="condition", max_tokens=MAX_TOKENS)
paragraphs = load_probe_heldout().paragraphs
prose = record(model, paragraphs, RESULTS / "heldout-recording", task="heldout",
               max_tokens=2 * MAX_TOKENS)
if DATA:  # WikiText-2 vs SST-2, as in the README's acceptance figures
    from llmfbn.datasets import load_sst2, load_wikitext2

    n = 16 if SMOKE else 200
    probes = record(model, load_wikitext2(data_dir=DATA).paragraphs[:n],
                    RESULTS / "wikitext-recording", task="wikitext", max_tokens=2 * MAX_TOKENS)
    prose = record(model, load_sst2(data_dir=DATA).texts[:n], RESULTS / "sst2-recording",
                   task="sst2", max_tokens=MAX_TOKENS)

# %%
# Split halves
# ------------
# Odd and even runs are fitted separately, then each half-A network is
# matched to one half-B network. The null draws random networks of the same
# size and per-layer counts; a score well above it means real overlap. On the
# ~400 tokens of the probe set the thresholded networks barely overlap while
# their maps already correlate far above chance; with ``--data`` (WikiText-2,
# 240 paragraphs per half) the README reports a median IoU 25 times the null.
# Thresholded networks of a few hundred tokens are small and noisy, so we
# also match the unthresholded maps by correlation (null: the same maps with
# their neurons shuffled within each layer). FastICA inside CanICA may stop
# before full convergence on so few tokens; we silence that warning.
import warnings

from sklearn.exceptions import ConvergenceWarning

from llmfbn.networks import (
    NetworkDecomposition,
    describe_match,
    match_summary,
    null_matched_correlation,
    null_matched_iou,
)

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def fit(runs, seed=0):
    return NetworkDecomposition(n_components=N_COMPONENTS, random_state=seed).fit(runs).networks_


def compare(a, b, what):
    by_iou = null_matched_iou(a.masks, b.masks, n_draws=N_DRAWS, random_state=0)
    by_map = null_matched_correlation(a.maps, b.maps, n_draws=N_DRAWS, random_state=0)
    # One definition of "x chance" and of the correlation's z everywhere (CLI, JSON, report).
    print(f"{what}: {describe_match(match_summary(by_iou))}; "
          f"{describe_match(match_summary(by_map))}")
    return by_iou, by_map


runs = probes.bold_files
half_a, half_b = fit(runs[0::2]), fit(runs[1::2])
halves_iou, halves_r = compare(half_a, half_b, "odd vs even runs")

from llmfbn.plotting import plot_consistency

plot_consistency(halves_r, title="odd vs even runs: matched map correlation vs null")

# %%
# Across tasks
# ------------
# Networks of one task matched to those of another: a network that recurs
# does not depend on what the model reads.
task_a, task_b = fit(probes.out_dir), fit(prose.out_dir)
tasks_iou, tasks_r = compare(task_a, task_b, f"{probes.out_dir.name} vs {prose.out_dir.name}")
plot_consistency(tasks_r, title="across tasks: matched map correlation vs null")

# %%
# Across seeds (ICASSO)
# ---------------------
# Components of several seeds are pooled and clustered on |correlation|; a
# stable component makes a tight cluster with one member from every seed
# (quality index Iq near 1).
from llmfbn.networks import stability

seeds = [task_a] + [fit(probes.out_dir, seed) for seed in (1, 2)]
icasso = stability([networks.maps for networks in seeds])
print("Iq per cluster:", np.round(np.sort(icasso.quality)[::-1], 2))

fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(range(len(icasso.quality)), np.sort(icasso.quality)[::-1], color="#2f6db5")
ax.set(xlabel="cluster (sorted)", ylabel="quality index Iq", ylim=(0, 1),
       title=f"ICASSO over {len(seeds)} seeds")
plt.show()
