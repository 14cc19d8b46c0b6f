"""
Functional networks with CanICA and DictLearning
================================================

Resting-state fMRI is decomposed into functional networks: sets of voxels
whose signals rise and fall together. nilearn's CanICA and DictLearning do it
on the images of tutorial 1 unchanged, as long as the neuron grid's own
settings are used: an explicit mask, no spatial smoothing (neighbouring voxels
are unrelated neurons) and z-scored neurons. ``NetworkDecomposition`` wraps
them with those settings, thresholds each component's z-map into a network
(z >= 3.6 by default) and keeps the fitted nilearn estimator for inspection.

We fit both methods, look at the networks as an atlas, as maps and as
per-layer profiles, read each network's top tokens, and check that calling
nilearn's CanICA directly gives the same components.
"""

# %%
# Settings and the recording
# --------------------------
# ``record`` resumes, so this reuses tutorial 1's recording when it exists.
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

from llmfbn.datasets import load_probe_texts
from llmfbn.models import load_model
from llmfbn.recording import record

model = load_model("smollm2-135m")
recording = record(model, load_probe_texts().path, RESULTS / "probes-recording",
                   task="probes", label_column="condition", max_tokens=MAX_TOKENS)
if DATA:  # more text makes steadier networks
    from llmfbn.datasets import load_wikitext2

    paragraphs = load_wikitext2(data_dir=DATA).paragraphs[: 8 if SMOKE else 128]
    recording = record(model, paragraphs, RESULTS / "wikitext-recording", task="wikitext",
                       max_tokens=2 * MAX_TOKENS)
source = recording.out_dir

# %%
# CanICA
# ------
from llmfbn.networks import NetworkDecomposition, top_tokens

canica = NetworkDecomposition(method="canica", n_components=N_COMPONENTS, random_state=0)
canica.fit(source)
networks = canica.networks_
print(f"{len(networks)} networks from {canica.n_timepoints_} tokens; sizes:", networks.sizes)

# %%
# The fitted nilearn estimator is kept: its components image is the usual
# 4-D Nifti. Calling nilearn's CanICA yourself with the grid's settings gives
# the same components.
from nilearn.decomposition import CanICA

direct = CanICA(mask=canica.mask_img_, n_components=N_COMPONENTS, smoothing_fwhm=None,
                standardize="zscore_sample", detrend=False, threshold=None,
                random_state=0).fit(canica.run_paths_)
same = np.allclose(direct.components_, canica.estimator_.components_, atol=1e-5)
print("nilearn CanICA called directly gives the same components:", same)

# %%
# The atlas, the layer profiles and one network
# ---------------------------------------------
from llmfbn.plotting import plot_atlas, plot_layer_profile, plot_network

plot_atlas(networks, title="CanICA networks")
plot_layer_profile(networks)
biggest = int(np.argmax(networks.sizes))
plot_network(networks, biggest, kind="both")

# %%
# What each network responds to
# -----------------------------
# A network's time series is the mean of its (z-scored) neurons; its top
# tokens are where that series peaks, shown in their context.
networks.top_tokens = top_tokens(networks, canica.run_paths_, n_tokens=5)
for k, rows in enumerate(networks.top_tokens):
    print(f"network {k} ({networks.sizes[k]} neurons): "
          + " | ".join(row["context"] for row in rows[:3]))

# %%
# DictLearning, and how its networks match CanICA's
# -------------------------------------------------
# nilearn's default sparsity (``alpha=10``) suits long fMRI runs; on a few
# hundred tokens it leaves the components almost empty, so we lower it.
# Networks are matched one to one (Hungarian assignment) on the absolute
# correlation of their maps (component signs are arbitrary), and we also
# report the overlap (IoU) of the thresholded networks.
import warnings

from sklearn.exceptions import ConvergenceWarning

from llmfbn.networks import iou, match_networks

with warnings.catch_warnings():  # the lasso steps stop early on so few tokens
    warnings.simplefilter("ignore", ConvergenceWarning)
    dictlearning = NetworkDecomposition(method="dictlearning", n_components=N_COMPONENTS,
                                        alpha=1, random_state=0).fit(source)
matching = match_networks(networks.maps, dictlearning.networks_.maps, metric="abs_correlation")
overlaps = iou(networks.masks, dictlearning.networks_.masks)  # (n_canica, n_dictlearning)
for (i, j), score in zip(matching.pairs, matching.scores):
    print(f"CanICA {i} <-> DictLearning {j}: |r| = {score:.2f}, IoU = {overlaps[i, j]:.2f}")

# %%
# Save the networks: Nifti images plus JSON, readable by ``llmfbn`` commands
# and by nilearn (``components.nii.gz`` is a 4-D image of z-maps).
canica.save(RESULTS / "probes-networks", overwrite=True)
print("saved to", RESULTS / "probes-networks")
plt.show()
