"""
Group analysis: connectomes across tasks and a task-GLM localizer
=================================================================

Two classic group analyses of fMRI, on an LLM.

**Functional connectivity.** Each network's mean activity over tokens is a
time series; nilearn's ``ConnectivityMeasure`` turns the time series of every
run into a network-by-network matrix (correlation, partial correlation, or the
tangent space across runs, each run being a "subject"). We compare the
connectome of two tasks: the probe sentences and the held-out prose.

**A task localizer.** Language areas are localized in fMRI by contrasting
conditions in a GLM. Here the conditions are the labels of the probe texts
(positive, negative, fact, code). nilearn's ``FirstLevelModel`` is fitted per
run (tokens as scans, no haemodynamic response, no drift) and
``SecondLevelModel`` across runs (texts are the random effect), giving a
z-map of neurons selective for "positive - negative". Thresholded, it is a
neuron mask that the intervention module takes directly.
"""

# %%
# Settings, recordings and networks
# ---------------------------------
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
N_COMPONENTS = 10  # in smoke runs too: some steps need runs longer than this

from llmfbn.datasets import load_probe_heldout, load_probe_texts
from llmfbn.models import load_model
from llmfbn.networks import NetworkDecomposition
from llmfbn.recording import record

model = load_model("smollm2-135m")
probes = record(model, load_probe_texts().path, RESULTS / "probes-recording", task="probes",
                label_column="condition", max_tokens=MAX_TOKENS)
paragraphs = load_probe_heldout().paragraphs
prose = record(model, paragraphs, RESULTS / "heldout-recording", task="heldout",
               max_tokens=2 * MAX_TOKENS)
networks = NetworkDecomposition(n_components=N_COMPONENTS, random_state=0).fit(
    probes.out_dir).networks_

# %%
# Connectomes of two tasks
# ------------------------
from llmfbn.networks import network_connectivity
from llmfbn.plotting import plot_connectivity, plot_connectivity_comparison

by_task = {name: network_connectivity(networks, rec.out_dir, kind="correlation")
           for name, rec in (("probe sentences", probes), ("held-out prose", prose))}
for name, connectome in by_task.items():
    print(f"{name}: {connectome.n_runs} runs, {sum(connectome.n_tokens)} tokens")
plot_connectivity_comparison(by_task)

# %%
# The tangent space is the usual choice for comparing connectomes across
# subjects: it measures each run against the group's geometric mean. It needs
# well-conditioned covariances, so more tokens per run than networks: the
# paragraphs of the held-out prose qualify, the one-sentence probe runs do not.
tangent = network_connectivity(networks, prose.out_dir, kind="tangent")
plot_connectivity(tangent, title="tangent-space group mean (held-out prose)")

# %%
# A task-GLM localizer
# --------------------
# The probe texts carry their condition as the events' ``trial_type``. One
# GLM per run, then a second-level model across runs.
from llmfbn.glm import TaskGLM

glm = TaskGLM().fit(probes.out_dir)
print("runs per condition:", glm.conditions_)
localizer = glm.localize(["positive-negative", "code-fact"], height_control="fdr", alpha=0.05)
localizer.save(RESULTS / "probes-glm", overwrite=True)
selective = localizer.networks  # one "network" per contrast: the neurons that survive
for k, contrast in enumerate(localizer.contrasts):
    layer, unit, z = localizer.peak(k)
    print(f"{contrast}: {selective.sizes[k]} neurons at FDR 0.05 (z >= "
          f"{localizer.thresholds[k]:.2f}); peak layer {layer}, unit {unit}, z = {z:.2f}")

# %%
# The z-maps, as layer slices and as a flat layer x unit view. With only a
# few short texts per condition, sentiment may not survive FDR while code vs
# facts does: more texts (``--data`` records SST-2) give more power.
from llmfbn.plotting import plot_brain_map, plot_flat_map

for k, contrast in enumerate(localizer.contrasts):
    threshold = localizer.thresholds[k] if np.isfinite(localizer.thresholds[k]) else None
    plot_brain_map(localizer.z_map_img(k), threshold=threshold, title=f"{contrast} (z)")
    plot_flat_map(localizer.z_map_img(k), threshold=threshold, title=f"{contrast} (z)")

# %%
# From a localizer to a lesion
# ----------------------------
# The selected neurons are a network like any other. Inhibit the
# code-vs-facts neurons and measure the model's loss (mean negative
# log-likelihood per token) on a short program and on a plain sentence,
# against matched random neurons: a code-selective set should hurt the
# program more than the prose.
import torch

from llmfbn.intervention import inhibit, matched_controls

SAMPLES = {
    "code": "def mean(values):\n    total = 0\n    for value in values:\n"
            "        total += value\n    return total / len(values)\n",
    "prose": "On Sunday morning we walked along the river, bought bread at the market "
             "and read the newspaper in the sun.",
}


def losses():
    """Mean loss per token of each sample, under the model as it is now."""
    out = {}
    for name, text in SAMPLES.items():
        ids = model.tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            out[name] = float(model.model(input_ids=ids, labels=ids).loss)
    return out


k = localizer.contrasts.index("code-fact")
if selective.sizes[k] > 0:
    base = losses()
    with inhibit(model.model, selective, networks=[k]):
        lesioned = losses()
    controls = []
    for mask in matched_controls(selective.masks[k], n_controls=5, random_state=0):
        with inhibit(model.model, mask):
            controls.append(losses())
    for name in SAMPLES:
        spread = [c[name] for c in controls]
        print(f"{name}: loss {base[name]:.2f} unmodified, {lesioned[name]:.2f} with the "
              f"{selective.sizes[k]} code-vs-facts neurons inhibited, {np.mean(spread):.2f} "
              f"+/- {np.std(spread):.2f} with matched controls")
else:
    print("No neuron survived the threshold with these settings; try more text or --data.")
plt.show()
