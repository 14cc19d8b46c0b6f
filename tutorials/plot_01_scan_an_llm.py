"""
Scan an LLM: every MLP neuron at every token, as Nifti images
=============================================================

An fMRI scanner samples every voxel of a brain at every time point. Here the
brain is SmolLM2-135M-Instruct, a real pretrained language model that ships
with llmfbn: we run it over short texts and record the activation of each of
its 30 x 1536 MLP neurons at every token. Tokens are the time axis and neurons
are voxels: each transformer layer becomes one slice of a pseudo-volume, so a
recording is an ordinary 4-D Nifti image that nilearn reads unchanged.

This tutorial records the built-in probe texts (positive and negative
sentences, facts and code, written by the llmfbn team), opens the images with
plain nilearn and draws a carpet plot and a few "LLM brain maps".

Run it with ``python tutorials/plot_01_scan_an_llm.py``; add
``--data /path/to/data`` (or set ``LLMFBN_DATA``) to also scan WikiText-2
paragraphs from a local copy of the standard datasets.
"""

# %%
# Settings
# --------
# Everything is written under ``results/tutorials`` (``LLMFBN_RESULTS`` moves
# it). The test suite runs every tutorial with ``LLMFBN_SMOKE=1``: the same
# steps on fewer tokens.
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

# %%
# The model and the texts
# -----------------------
# ``load_model`` reads the embedded GGUF weights (nothing is downloaded). The
# probe set is a small table with one condition per text.
from llmfbn.datasets import load_probe_texts
from llmfbn.models import load_model

model = load_model("smollm2-135m")
probes = load_probe_texts()
print(probes.description)
print({c: probes.conditions.count(c) for c in probes.condition_names})

# %%
# Record
# ------
# One run per text, like one scanning run per block of stimuli. The events
# file of each run lists its tokens (``trial_type`` is the text's condition),
# so nilearn's GLM can use it later (tutorial 5). A rerun resumes: runs that
# are already on disk are kept.
from llmfbn.recording import record

recording = record(model, probes.path, RESULTS / "probes-recording", task="probes",
                   label_column="condition", max_tokens=MAX_TOKENS)
grid = recording.grid
print(grid)
print(f"{len(recording.bold_files)} runs, first one: {recording.bold_files[0].name}")

# %%
# Plain nilearn on the images
# ---------------------------
# A run is a 4-D image: 48 x 32 voxels per layer, 30 layers, one volume per
# token. The mask marks the voxels that hold a neuron. ``NiftiMasker`` turns a
# run into the familiar (time points x voxels) matrix, and
# ``grid.masked_to_neurons`` puts the voxels back in (layer, unit) order.
from nilearn import image
from nilearn.maskers import NiftiMasker

run = image.load_img(recording.bold_files[0])
print("image shape:", run.shape)
masker = NiftiMasker(mask_img=recording.mask_file, standardize=None).fit()
matrix = masker.transform(run)
neurons = grid.masked_to_neurons(matrix)
print("masker output:", matrix.shape, "-> neurons:", neurons.shape)

# %%
# The time series of one neuron is one column of that matrix. Language models
# have a few "massive activation" neurons; find the strongest one.
token, layer, unit = np.unravel_index(np.abs(neurons).argmax(), neurons.shape)
print(f"strongest neuron: layer {layer}, unit {unit}, {neurons[token, layer, unit]:.1f} at "
      f"token {token}")

# %%
# Carpet plot
# -----------
# nilearn's carpet plot shows every voxel (row) at every time point (column):
# here every neuron at every token of the first text, grouped by layer.
from llmfbn.plotting import plot_carpet

plot_carpet(recording.bold_files[0], grid=grid)

# %%
# LLM brain maps
# --------------
# Any statistic over neurons is a 3-D image. The mean absolute activation
# over all tokens of all runs, as layer slices (nilearn's own slicers, no
# anatomical background) and as a flat layer x unit view.
from llmfbn.plotting import plot_brain_map, plot_flat_map

mean_abs = np.mean([np.abs(grid.from_img(p)).mean(axis=0) for p in recording.bold_files],
                   axis=0)  # (n_layers, n_units)
log_mean = np.log10(mean_abs + 1e-3)
plot_brain_map(log_mean, grid=grid, cmap="viridis", title="log10 mean |activation|")
plot_flat_map(log_mean, grid=grid, cmap="viridis", title="log10 mean |activation|")

# %%
# Both colour scales top out at the 99.9th percentile of the values
# (``vmax_percentile``): a few neurons of SmolLM2 are a hundred times larger
# than the rest and would otherwise leave the map one flat colour; the colour
# bar names the true maximum. ``vmax_percentile=None`` (or a ``vmax``) gives
# nilearn's rule, the largest value.
#
# The image is ordinary Nifti: nilearn's own functions work on it unchanged,
# for example ``plot_stat_map`` on one token's volume. Pass ``bg_img=None``:
# nilearn's default background is the MNI152 brain template, which has nothing
# to do with this grid (each axial slice is one layer, each voxel one neuron;
# the grid's identity affine makes a voxel 1 "mm"), and nilearn would draw the
# map over it. ``cut_coords`` are then layer slots (``display_mode="z"``), and
# ``annotate=False`` drops the L/R and coordinate labels that mean nothing here.
from nilearn.plotting import plot_stat_map

one_token = image.index_img(run, int(token))
plot_stat_map(one_token, bg_img=None, display_mode="z", cut_coords=[2, 10, 20, 28],
              annotate=False, title=f"token {token} of run 1", vmax=5)

# %%
# A standard dataset
# ------------------
# With a local copy of the standard datasets, record WikiText-2 paragraphs the
# same way (a list of strings works as well as a file).
if DATA:
    from llmfbn.datasets import load_wikitext2

    wiki = load_wikitext2(data_dir=DATA)
    n = 8 if SMOKE else 64
    wiki_recording = record(model, wiki.paragraphs[:n], RESULTS / "wikitext-recording",
                            task="wikitext", max_tokens=MAX_TOKENS * 2)
    print(f"WikiText-2: {len(wiki_recording.bold_files)} runs in {wiki_recording.out_dir}")

plt.show()
