"""
Inhibit and amplify a network, against matched random controls
===============================================================

A lesion study asks what a brain region is for by switching it off. In an
LLM the lesion is exact and reversible: a forward hook sets the network's
neurons to 0 (inhibit) or adds a value to them (amplify) while the model
runs, and removes itself when the ``with`` block ends.

An effect only means something against a control: any 300 neurons removed
from a model change its perplexity a little. Each network is therefore
compared with random neuron sets of the same size and the same count in
every layer (matched controls), reported with a 95 % confidence interval.

We measure perplexity on the held-out probe prose and zero-shot sentiment
accuracy (SST-2 style prompts; on SST-2's own dev set with ``--data``).
"""

# %%
# Settings, model and networks
# ----------------------------
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
N_CONTROLS = 2 if SMOKE else 5
PPL_TOKENS = 256 if SMOKE else None  # perplexity on the first tokens only, in smoke runs

from llmfbn.datasets import load_probe_heldout, load_probe_texts
from llmfbn.models import load_model
from llmfbn.networks import NetworkDecomposition
from llmfbn.recording import record

model = load_model("smollm2-135m")
probes = load_probe_texts()
recording = record(model, probes.path, RESULTS / "probes-recording", task="probes",
                   label_column="condition", max_tokens=MAX_TOKENS)
networks = NetworkDecomposition(n_components=N_COMPONENTS, random_state=0).fit(
    recording.out_dir).networks_
held_out = load_probe_heldout()

# %%
# One network by hand
# -------------------
# ``inhibit`` is a context manager; outside the block the model is untouched.
from llmfbn.evaluation import perplexity
from llmfbn.intervention import inhibit, matched_controls

k = int(np.argmax(networks.sizes))
base = perplexity(model.model, model.tokenizer, held_out.path, max_tokens=PPL_TOKENS)
with inhibit(model.model, networks, networks=[k]):
    lesioned = perplexity(model.model, model.tokenizer, held_out.path, max_tokens=PPL_TOKENS)
print(f"perplexity {base.perplexity:.2f} -> {lesioned.perplexity:.2f} with network {k} "
      f"({networks.sizes[k]} neurons) inhibited")

controls = matched_controls(networks.masks[k], n_controls=N_CONTROLS, random_state=0)
control_ppl = []
for mask in controls:
    with inhibit(model.model, mask):
        control_ppl.append(perplexity(model.model, model.tokenizer, held_out.path,
                                      max_tokens=PPL_TOKENS).perplexity)
print("matched controls:", np.round(control_ppl, 2))

# %%
# Every network, as a tidy table
# ------------------------------
# ``intervention_sweep`` does the same for each network and every evaluation,
# writes one CSV row per (network, task, metric) as it goes, and resumes from
# that CSV after an interruption. Sentiment is scored zero-shot by comparing
# the log-likelihood of " negative" and " positive" after an SST-2 prompt.
# The probe sentences also made the networks, so they only show the mechanics;
# ``--data`` adds SST-2's dev set, which the networks never saw.
from llmfbn.intervention import intervention_sweep, make_evaluation

sentiment = RESULTS / "probe_sentiment.tsv"  # the SST-2 layout: text <tab> label (0/1)
sentiment.write_text("text\tlabel\n" + "".join(
    f"{text}\t{int(condition == 'positive')}\n"
    for text, condition in zip(probes.texts, probes.conditions)
    if condition in ("positive", "negative")))
evaluations = [make_evaluation("text", held_out.path, max_tokens=PPL_TOKENS),
               make_evaluation("sst2", sentiment)]
if DATA:
    evaluations.append(make_evaluation("sst2", Path(DATA) / "sst2" / "dev.tsv",
                                       limit=50 if SMOKE else 200, name="sst2_dev"))
ids = [int(i) for i in np.argsort(networks.sizes)[::-1][: 2 if SMOKE else 4]]
inhibited = intervention_sweep(model, networks, evaluations, network_ids=ids,
                               n_controls=N_CONTROLS, out_csv=RESULTS / "inhibit.csv")
print(inhibited[["network", "task", "metric", "value", "control_mean", "ratio"]])

from llmfbn.plotting import plot_intervention

plot_intervention(inhibited, task="text", metric="perplexity")

# %%
# Amplification: a dose-response curve
# ------------------------------------
# Adding a constant to the network's neurons, at several strengths. Large
# values damage any neuron set, so the controls matter even more here.
amplified = intervention_sweep(model, networks, evaluations[:1], network_ids=ids[:1],
                               mode="amplify", values=(0.5, 1.0, 2.0) if not SMOKE else (0.5, 2.0),
                               n_controls=N_CONTROLS, out_csv=RESULTS / "amplify.csv")

from llmfbn.plotting import plot_dose_response

plot_dose_response(amplified, task="text", metric="perplexity")
plt.show()
