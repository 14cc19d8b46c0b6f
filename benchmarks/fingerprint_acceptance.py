"""Fingerprint acceptance on SmolLM2: derived vs unrelated models (issue 14's testbed).

Does ``llmfbn fingerprint`` tell a model that derives from SmolLM2-135M-Instruct
(``llmfbn.load_model()``'s default, the reference) from one that does not?
Every candidate is built here, offline, under ``--work``/models as a model
folder that ``load_model(folder)`` loads:

* **derived** (8): fine-tuned briefly (a plain AdamW loop, seeded, float32) on
  SST-2 train sentences (``finetune-sst2``) and on Python source code
  (``finetune-code``: the standard library's ``.py`` files, read where they lie,
  ``sysconfig.get_paths()["stdlib"]``, each file's first 2,000 characters);
  pruned by :func:`llmfbn.pruning.prune` (``flap``, as ``llmfbn prune``) at 10 and
  30 % of the MLP neurons (``flap-r10``, ``flap-r30``; calibrated on the
  even-numbered WikiText-2 test articles); cast to bfloat16 (run in bfloat16)
  and to float16 (run in float16 where llmfbn says the CPU runs it at speed,
  else cast back to float32: the table says which); each layer's MLP neurons
  permuted (gate/up rows and down columns: ``permuted``); each neuron's up row
  times c and down column times 1/c, c log-uniform in [0.1, 10] per neuron
  (``rescaled``: the gated MLP's function unchanged). The permuted and
  rescaled models' largest logit change on a probe text is recorded.
* **unrelated**: SmolLM2's architecture randomly initialised (``random-s<seed>``),
  and small Llama models trained from scratch on the even-numbered WikiText-2
  test articles with SmolLM2's tokenizer (``scratch-s<seed>``, the hard
  negative: the same data and tokenizer, no shared weights; their first and
  final training losses are reported beside the unigram entropy of their
  training tokens, the loss of the best model that ignores context).

Fingerprints: :func:`llmfbn.fingerprint.fingerprint`, both methods (``fbn``,
``cka``), one call per ICA seed (``--ica-seeds``) with every candidate and the
reference itself (a check: 1.0), on the first 10 paragraphs of the
odd-numbered articles (disjoint from every training and calibration text),
and one call (seed 0) on the first 3 of them. Reported per method: the AUC of
derived vs unrelated, the margin (lowest derived minus highest unrelated
score), the permuted model's score, the largest score change across the ICA
seeds (per candidate and overall) and from 10 to 3 texts, each against the
issue's target (met or not met; nothing here is tuned to pass). Wall time
and peak RSS (Linux ``VmHWM``, reset at each stage's start through
``/proc/self/clear_refs``) of every stage.

Resumes: each model folder holds ``fingerprint_build.json`` (its settings and
the SHA-256 of every other file in it) and is reused only when both match this
run; each score table ``scores/seed<S>-texts<N>.csv`` (written by
``llmfbn.io.write_fingerprints``) has a ``.json`` sidecar with the settings
that made it (texts, parameters, each candidate's files). Anything else stops
the run before any work, naming what differs. ``cka`` does not depend on the
ICA seed (only its null does), so its seed change is 0 by construction.

Run (about 40 minutes on 2 cores shared with other jobs, load average 2-4:
building the models 21 min, of which fine-tuning 6-7 min and training from
scratch 3 min each; each ``fingerprint()`` call 5-7 min on 10 texts, 2.5 min
on 3; peak RSS 3.9 GB. ``--quick``: tiny settings, to check the script end to
end)::

    nice -n 5 .venv/bin/python benchmarks/fingerprint_acceptance.py --data ../shared/data
    nice -n 5 .venv/bin/python benchmarks/fingerprint_acceptance.py --quick

It prints the markdown tables and writes ``fingerprint_acceptance.csv`` (one
row per candidate) and ``summary.json`` under ``--work``.
"""

import argparse
import copy
import csv
import gc
import hashlib
import json
import math
import os
import shutil
import sysconfig
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from networks_acceptance import wikitext_halves

REFERENCE = "smollm2-135m"
METHODS = ("fbn", "cka")
#: The issue's targets: AUC, margin, the permuted model's score, the largest seed change.
TARGETS = {"auc": 1.0, "margin": 0.2, "permuted": 0.9, "seed_change": 0.05}
#: Each built model folder's manifest, and its format.
MANIFEST = "fingerprint_build.json"
FORMAT_VERSION = 1
#: Characters of each standard-library file in the code corpus.
CODE_CHARS = 2000
#: Range of the per-neuron factor c of ``rescaled`` (log-uniform).
RESCALE_RANGE = (0.1, 10.0)
#: Tokens of the probe text on which permuted and rescaled logits are compared.
PROBE_TOKENS = 64

PRESETS = {
    "full": {
        "finetune": {"steps": 30, "batch": 1, "seq_len": 128, "lr": 1e-4, "seed": 0},
        "scratch": {"steps": 120, "batch": 4, "seq_len": 128, "lr": 2e-3, "warmup": 12,
                    "hidden_size": 128, "intermediate_size": 512, "layers": 4, "heads": 4},
        "ratios": [0.1, 0.3], "calibration_tokens": 4096,
        "n_texts": 10, "n_subset": 3, "n_components": 10, "n_permutations": 200,
        "max_tokens": 256, "ica_seeds": [0, 1, 2], "random_seeds": [0, 1],
        "scratch_seeds": [0, 1],
    },
    "quick": {
        "finetune": {"steps": 2, "batch": 1, "seq_len": 32, "lr": 1e-4, "seed": 0},
        "scratch": {"steps": 3, "batch": 2, "seq_len": 32, "lr": 2e-3, "warmup": 1,
                    "hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 2},
        "ratios": [0.3], "calibration_tokens": 256,
        "n_texts": 4, "n_subset": 2, "n_components": 4, "n_permutations": 20,
        "max_tokens": 48, "ica_seeds": [0, 1], "random_seeds": [0], "scratch_seeds": [0],
    },
}


# -- measuring a stage ----------------------------------------------------------------

def peak_rss_mb():
    """This process's peak RSS in MB since the last reset (Linux ``VmHWM``), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


@contextmanager
def stage(name):
    """Measure a stage: yields a dict that gets ``seconds`` and ``peak_rss_mb`` on exit.

    The peak is reset at the start (``/proc/self/clear_refs``), so it is the
    stage's own (what the process held before it included); where the reset
    fails it is the process's peak so far, and ``peak_reset`` says so.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    measured = {"stage": name, "peak_reset": reset}
    start = time.perf_counter()
    yield measured
    measured["seconds"] = round(time.perf_counter() - start, 1)
    measured["peak_rss_mb"] = peak_rss_mb()


# -- texts and corpora ------------------------------------------------------------------

def text_sha256(text):
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def sst2_sentences(path):
    with open(path, encoding="utf-8") as f:
        return [row["text"].strip() for row in csv.DictReader(f, delimiter="\t",
                                                               quoting=csv.QUOTE_NONE)]


def stdlib_sources():
    """``[(relative path, first CODE_CHARS characters)]`` of the standard library's .py files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if "site-packages" in relative.parts or "dist-packages" in relative.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")[:CODE_CHARS]
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            out.append((relative.as_posix(), text))
    if not out:
        raise FileNotFoundError(f"The standard library holds no readable .py file under {root}.")
    return out


def token_blocks(texts, tokenizer, n_tokens, seq_len, seed=None):
    """Blocks of ``seq_len`` tokens: the texts (in a seeded order), each closed by EOS.

    Parameters
    ----------
    texts : list of str
    n_tokens : int or None
        Tokens wanted (a multiple of ``seq_len``); None: every text, in order.

    Returns
    -------
    blocks : torch.LongTensor of shape (n_blocks, seq_len)
    digest : str
        ``sha256:`` of the texts used, in order (what the blocks were cut from).
    """
    import torch

    order = (np.arange(len(texts)) if seed is None
             else np.random.default_rng(seed).permutation(len(texts)))
    ids, digest = [], hashlib.sha256()
    for i in order:
        if n_tokens is not None and len(ids) >= n_tokens:
            break
        ids.extend(tokenizer(texts[i]).input_ids + [tokenizer.eos_token_id])
        digest.update(texts[i].encode("utf-8") + b"\x1e")
    usable = len(ids) if n_tokens is None else n_tokens
    usable -= usable % seq_len
    if usable < seq_len or len(ids) < usable:
        raise ValueError(f"The corpus gives {len(ids)} tokens; {usable or seq_len} are needed.")
    return torch.tensor(ids[:usable]).view(-1, seq_len), "sha256:" + digest.hexdigest()


# -- building the candidates ------------------------------------------------------------

def train(model, blocks, steps, batch, lr, seed, warmup=0, decay=False):
    """AdamW on next-token loss over ``blocks`` (seeded order, cycled); the step losses.

    ``warmup`` steps of linear warm-up, then constant (``decay=False``) or a
    cosine decay to a tenth of ``lr``.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch / len(blocks))
    order = torch.cat([torch.randperm(len(blocks), generator=generator) for _ in range(epochs)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        if not decay:
            return 1.0
        done = (step - warmup) / max(steps - warmup, 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    torch.manual_seed(seed)
    model.train()
    losses = []
    for step in range(steps):
        ids = blocks[order[step * batch:(step + 1) * batch]]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps}: loss {losses[-1]:.3f}", flush=True)
    model.eval()
    return losses


def weights_moved(reference, model):
    """``||theta - theta_ref|| / ||theta_ref||`` over the parameters of equal names and shapes."""
    import torch

    own = dict(reference.named_parameters())
    num = den = 0.0
    with torch.no_grad():
        for name, param in model.named_parameters():
            ref = own.get(name)
            if ref is not None and ref.shape == param.shape:
                ref = ref.float()
                num += float((param.float() - ref).pow(2).sum())
                den += float(ref.pow(2).sum())
    return math.sqrt(num / den)


def max_logit_change(reference, model, probe):
    import torch

    with torch.inference_mode():
        return float((model(probe).logits - reference(probe).logits).abs().max())


def save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def mlp_modules(model):
    """Each layer's (gate, up, down) projections of a Llama-family model (SmolLM2)."""
    out = []
    for layer in model.model.layers:
        mlp = layer.mlp
        if any(p.bias is not None for p in (mlp.gate_proj, mlp.up_proj, mlp.down_proj)):
            raise ValueError("The reference's MLP projections have biases: permuting and "
                             "rescaling here assume a Llama-style MLP without them.")
        out.append((mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    return out


def make_permuted(ref, seed, probe):
    import torch

    def make(staging):
        model = copy.deepcopy(ref.model)
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            for gate, up, down in mlp_modules(model):
                perm = torch.from_numpy(rng.permutation(down.in_features))
                gate.weight.copy_(gate.weight[perm])
                up.weight.copy_(up.weight[perm])
                down.weight.copy_(down.weight[:, perm])
        results = {"max_logit_change": max_logit_change(ref.model, model, probe),
                   "weights_moved": weights_moved(ref.model, model)}
        save(model, ref.tokenizer, staging)
        return results
    return make


def make_rescaled(ref, seed, probe):
    import torch

    def make(staging):
        model = copy.deepcopy(ref.model)
        rng = np.random.default_rng(seed)
        low, high = np.log(RESCALE_RANGE[0]), np.log(RESCALE_RANGE[1])
        with torch.no_grad():
            for _, up, down in mlp_modules(model):
                c = torch.from_numpy(np.exp(rng.uniform(low, high, down.in_features)))
                up.weight.mul_(c.to(up.weight.dtype)[:, None])
                down.weight.mul_((1 / c).to(down.weight.dtype)[None, :])
        results = {"max_logit_change": max_logit_change(ref.model, model, probe),
                   "weights_moved": weights_moved(ref.model, model)}
        save(model, ref.tokenizer, staging)
        return results
    return make


def make_cast(ref, dtype):
    import torch

    def make(staging):
        model = copy.deepcopy(ref.model).to(getattr(torch, dtype))
        results = {"weights_moved": weights_moved(ref.model, model)}
        save(model, ref.tokenizer, staging)
        return results
    return make


def make_random(ref, seed):
    import torch
    from transformers import AutoModelForCausalLM

    def make(staging):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(ref.model.config)
        results = {"weights_moved": weights_moved(ref.model, model)}
        save(model, ref.tokenizer, staging)
        return results
    return make


def make_pruned(ref, ratio, stats):
    from llmfbn.pruning import prune

    def make(staging):
        pruned = prune(ref, "flap", ratio, staging, calibration=stats(), verbose=0)
        return {"parameters_after": pruned.manifest["parameters_after"],
                "n_neurons_removed": pruned.manifest["n_neurons_removed"]}
    return make


def make_finetuned(ref, blocks, cfg):
    def make(staging):
        model = copy.deepcopy(ref.model)
        losses = train(model, blocks, cfg["steps"], cfg["batch"], cfg["lr"], cfg["seed"])
        results = {"losses": losses, "first_loss": losses[0],
                   "final_loss": float(np.mean(losses[-min(5, len(losses)):])),
                   "weights_moved": weights_moved(ref.model, model)}
        save(model, ref.tokenizer, staging)
        return results
    return make


def scratch_config(ref, cfg):
    from transformers import LlamaConfig

    source = ref.model.config
    return LlamaConfig(
        vocab_size=source.vocab_size, hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], num_key_value_heads=cfg["heads"],
        max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=source.bos_token_id, eos_token_id=source.eos_token_id,
        pad_token_id=getattr(source, "pad_token_id", None))


def unigram_entropy(blocks):
    """Entropy (nats) of the blocks' token frequencies: the best context-free loss."""
    counts = np.bincount(blocks.reshape(-1).numpy())
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def make_scratch(ref, blocks, cfg, seed):
    import torch
    from transformers import LlamaForCausalLM

    def make(staging):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(scratch_config(ref, cfg))
        losses = train(model, blocks, cfg["steps"], cfg["batch"], cfg["lr"], seed,
                       warmup=cfg["warmup"], decay=True)
        results = {"losses": losses, "first_loss": losses[0],
                   "final_loss": float(np.mean(losses[-min(10, len(losses)):])),
                   "unigram_entropy": unigram_entropy(blocks),
                   "parameters": int(sum(p.numel() for p in model.parameters())),
                   "tokens_seen": cfg["steps"] * cfg["batch"] * cfg["seq_len"]}
        save(model, ref.tokenizer, staging)
        return results
    return make


# -- what is reused ---------------------------------------------------------------------

def normalised(document):
    """``document`` as JSON gives it back (tuples as lists, numpy as Python)."""
    from llmfbn.io import jsonable

    return json.loads(json.dumps(jsonable(document)))


def _short(value, width=60):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _named(items):
    """``{name: item}`` of a list of dicts that all have a ``name``, else None."""
    if isinstance(items, list) and all(isinstance(x, dict) and "name" in x for x in items):
        return {x["name"]: x for x in items}
    return None


def differences(found, wanted, prefix=""):
    """``key=found (this run: wanted)`` for each leaf that differs; named lists by name."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(found) | set(wanted)):
            out += differences(found.get(key), wanted.get(key), f"{prefix}{key}.")
        return out
    named_found, named_wanted = _named(found), _named(wanted)
    if named_found is not None and named_wanted is not None:
        where = prefix.rstrip(".")
        out = [f"{where}: {name} not in this run" for name in named_found
               if name not in named_wanted]
        out += [f"{where}: {name} new in this run" for name in named_wanted
                if name not in named_found]
        if not out and list(named_found) != list(named_wanted):
            out.append(f"{where}: in another order")
        for name in named_found.keys() & named_wanted.keys():
            out += differences(named_found[name], named_wanted[name], f"{prefix}{name}.")
        return out
    if found == wanted:
        return []
    return [f"{prefix.rstrip('.')}={_short(found)} (this run: {_short(wanted)})"]


def file_hashes(folder):
    """``{relative name: sha256}`` of every file in a model folder but its manifest."""
    from llmfbn.io import file_sha256

    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST and p.suffix != ".lock"}


def files_digest(files):
    return text_sha256(json.dumps(files, sort_keys=True))


def check_built(folder, settings):
    """The manifest of a model folder built with ``settings``; anything else refused."""
    from llmfbn.io import check_format_version, read_json

    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} exists but holds no {MANIFEST}: it was not built by this "
                         f"benchmark; use another --work, or delete it.")
    manifest = read_json(path, MANIFEST)
    check_format_version(manifest, path, FORMAT_VERSION, MANIFEST)
    problems = differences(manifest.get("settings"), settings)
    if problems:
        raise ValueError(f"{folder} was built with other settings (" + "; ".join(problems[:4])
                         + "): use another --work, or delete it.")
    files = file_hashes(folder)
    changed = sorted(name for name in set(files) | set(manifest.get("files", {}))
                     if files.get(name) != manifest["files"].get(name))
    if changed:
        raise ValueError(f"{folder}: {changed[:4]} differ from what was built (SHA-256 in "
                         f"{MANIFEST}): use another --work, or delete it.")
    return manifest


def build(work, name, settings, make):
    """The folder of candidate ``name``: reused when verified, else built and sealed."""
    from llmfbn.io import write_json

    folder = work / "models" / name
    settings = normalised(settings)
    if folder.exists():
        manifest = check_built(folder, settings)
        print(f"{name}: reused (verified)", flush=True)
        return folder, {**manifest, "reused": True}
    staging = folder.with_name(f".building-{name}")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    print(f"{name}: building", flush=True)
    with stage(f"build {name}") as measured:
        results = make(staging)
        gc.collect()
    manifest = normalised({"format_version": FORMAT_VERSION, "name": name,
                           "settings": settings, "results": results,
                           "seconds": measured["seconds"],
                           "peak_rss_mb": measured["peak_rss_mb"],
                           "peak_reset": measured["peak_reset"],
                           "files": file_hashes(staging)})
    write_json(staging / MANIFEST, manifest)
    os.rename(staging, folder)
    print(f"{name}: built in {measured['seconds']:.0f} s", flush=True)
    return folder, {**manifest, "reused": False}


# -- the candidates ---------------------------------------------------------------------

class Candidate:
    """One scored model: its name, group, folder, manifest and the dtype it runs in."""

    def __init__(self, name, group, about, folder=None, manifest=None, run_dtype="float32"):
        self.name, self.group, self.about = name, group, about
        self.folder, self.manifest, self.run_dtype = folder, manifest, run_dtype

    @property
    def label(self):
        """Its name in ``fingerprint``'s table."""
        return REFERENCE if self.folder is None else str(self.folder)

    def identity(self):
        return {"name": self.name, "run_dtype": self.run_dtype,
                "files": None if self.folder is None else files_digest(self.manifest["files"])}


def float16_run_dtype(folder):
    """``(dtype, why)``: float16 where llmfbn runs it at speed on this CPU, else float32."""
    from llmfbn.models import check_dtype, load_model

    try:
        check_dtype("float16", "cpu")
    except ValueError:
        return "float32", "a float16 matrix product fails on this CPU"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(str(folder), dtype="float16")
    del loaded
    gc.collect()
    if any("float16" in str(w.message) and "slower" in str(w.message) for w in caught):
        return "float32", "float16 runs far slower than float32 on this CPU (llmfbn warns)"
    return "float16", "this CPU runs float16 at speed"


def build_all(work, ref, data, texts, preset):
    """Every candidate, in the table's order (the reference itself first)."""
    from llmfbn.pruning import calibration_stats

    source = {"name": REFERENCE, "weights_hash": ref.weights_hash}
    ft, sc = preset["finetune"], preset["scratch"]
    probe = ref.tokenizer(texts["calibration"], return_tensors="pt").input_ids[:, :PROBE_TOKENS]
    cands = [Candidate("self", "self", "the reference itself")]

    def add(name, group, about, settings, make):
        folder, manifest = build(work, name, {"source": source, **settings}, make)
        cands.append(Candidate(name, group, about, folder, manifest))

    add("permuted", "derived", "each layer's MLP neurons permuted", {"seed": 0},
        make_permuted(ref, 0, probe))
    add("rescaled", "derived", f"up rows x c, down columns x 1/c, c in {list(RESCALE_RANGE)}",
        {"seed": 0, "range": list(RESCALE_RANGE)}, make_rescaled(ref, 0, probe))
    add("bfloat16", "derived", "weights cast to bfloat16", {"dtype": "bfloat16"},
        make_cast(ref, "bfloat16"))
    add("float16", "derived", "weights cast to float16", {"dtype": "float16"},
        make_cast(ref, "float16"))

    cache = {}

    def stats():
        if "stats" not in cache:
            cache["stats"] = calibration_stats(ref, texts["calibration_file"],
                                               max_tokens=preset["calibration_tokens"],
                                               verbose=0)
        return cache["stats"]

    for ratio in preset["ratios"]:
        add(f"flap-r{round(100 * ratio):02d}", "derived",
            f"pruned by flap, {100 * ratio:.0f} % of MLP neurons",
            {"method": "flap", "ratio": ratio, "calibration": texts["calibration_sha"],
             "calibration_tokens": preset["calibration_tokens"]},
            make_pruned(ref, ratio, stats))

    n_tokens = ft["steps"] * ft["batch"] * ft["seq_len"]
    corpora = {
        "sst2": ("SST-2 train sentences", sst2_sentences(data / "sst2" / "train.tsv")),
        "code": (f"Python stdlib source (first {CODE_CHARS} characters of each file)",
                 [text for _, text in stdlib_sources()]),
    }
    for key, (about, corpus) in corpora.items():
        blocks, digest = token_blocks(corpus, ref.tokenizer, n_tokens, ft["seq_len"],
                                      seed=ft["seed"])
        add(f"finetune-{key}", "derived",
            f"fine-tuned {ft['steps']} steps x {ft['batch'] * ft['seq_len']} tokens on {about}",
            {"corpus": digest, "corpus_tokens": n_tokens, **ft},
            make_finetuned(ref, blocks, ft))

    for seed in preset["random_seeds"]:
        add(f"random-s{seed}", "unrelated", "SmolLM2's architecture, random init",
            {"seed": seed}, make_random(ref, seed))
    blocks, digest = token_blocks(texts["train"], ref.tokenizer, None, sc["seq_len"])
    for seed in preset["scratch_seeds"]:
        add(f"scratch-s{seed}", "unrelated",
            f"Llama {sc['layers']} x {sc['hidden_size']} ({sc['intermediate_size']} MLP "
            f"neurons/layer) trained from scratch on WikiText-2 (even articles)",
            {"seed": seed, "corpus": digest, "corpus_tokens": int(blocks.numel()), **sc,
             "config": scratch_config(ref, sc).to_diff_dict()},
            make_scratch(ref, blocks, sc, seed))
    return cands


# -- the fingerprints -------------------------------------------------------------------

def score_table(work, cands, texts_file, texts_sha, n_texts, seed, preset, ref_hash):
    """One ``fingerprint()`` call (all candidates, one seed), reused when verified."""
    from llmfbn.fingerprint import fingerprint
    from llmfbn.io import read_fingerprints, read_json, write_fingerprints, write_json
    from llmfbn.models import load_model

    atlas = preset["reference_atlas"]
    key = ("" if atlas == "none" else f"atlas-{atlas}-") + f"seed{seed}-texts{n_texts}"
    path = work / "scores" / f"{key}.csv"
    sidecar = path.with_suffix(".json")
    settings = normalised({
        "reference": {"name": REFERENCE, "weights_hash": ref_hash},
        "candidates": [c.identity() for c in cands], "texts": texts_sha, "n_texts": n_texts,
        "random_state": seed, **{k: preset[k] for k in ("n_components", "n_permutations",
                                                         "max_tokens")}})
    if atlas != "none":  # tables of CanICA references predate the option
        settings["reference_atlas"] = atlas
    if sidecar.is_file():
        document = read_json(sidecar, "score settings")
        problems = differences(document.get("settings"), settings)
        if problems:
            raise ValueError(f"{path} was made with other settings (" + "; ".join(problems[:4])
                             + "): use another --work, or delete it and its .json.")
        print(f"scores {key}: reused", flush=True)
        return read_fingerprints(path), {**document["measured"], "reused": True}
    print(f"scores {key}: {len(cands)} candidates", flush=True)
    with stage(f"fingerprint {key}") as measured:
        specs = [c.label if c.folder is None or c.run_dtype == "float32"
                 else load_model(str(c.folder), dtype=c.run_dtype) for c in cands]
        table = fingerprint(REFERENCE, specs, texts_file,
                            n_components=preset["n_components"],
                            n_permutations=preset["n_permutations"],
                            max_tokens=preset["max_tokens"], random_state=seed,
                            reference_atlas=atlas, verbose=1)
        del specs
        gc.collect()
    write_fingerprints(path, table, overwrite=True)
    write_json(sidecar, {"format_version": FORMAT_VERSION, "settings": settings,
                         "measured": measured})
    print(f"scores {key}: {measured['seconds']:.0f} s", flush=True)
    return table, {**measured, "reused": False}


# -- the report -------------------------------------------------------------------------

def auc(derived, unrelated):
    """P(a derived score > an unrelated one), ties counted half."""
    pairs = [(d > u) + 0.5 * (d == u) for d in derived for u in unrelated]
    return float(np.mean(pairs)) if pairs else math.nan


def lookup(table, label, method, column="score"):
    hit = table[(table.candidate == label) & (table.method == method)]
    if len(hit) != 1:
        raise ValueError(f"The score table has {len(hit)} rows for {label!r} ({method}).")
    return float(hit[column].iloc[0])


def per_candidate(cands, tables, preset):
    """One row per candidate: seed-0 scores on all texts, seed and text changes."""
    seeds = [s for s in preset["ica_seeds"] if (s, preset["n_texts"]) in tables]
    main, subset = tables[(0, preset["n_texts"])], tables.get((0, preset["n_subset"]))
    rows = []
    for c in cands:
        results = (c.manifest or {}).get("results", {})
        row = {"candidate": c.name, "group": c.group, "about": c.about,
               "run_dtype": c.run_dtype, "weights_moved": results.get("weights_moved"),
               "max_logit_change": results.get("max_logit_change"),
               "n_words": int(main.n_words.iloc[0])}
        for method in METHODS:
            for column in ("score", "p_value", "null_mean"):
                row[f"{method}_{column}"] = lookup(main, c.label, method, column)
            by_seed = [lookup(tables[(s, preset["n_texts"])], c.label, method) for s in seeds]
            for s, value in zip(seeds, by_seed):
                row[f"{method}_seed{s}"] = value
            row[f"{method}_seed_change"] = (max(by_seed) - min(by_seed) if len(by_seed) > 1
                                            else math.nan)
            small = math.nan if subset is None else lookup(subset, c.label, method)
            row[f"{method}_texts{preset['n_subset']}"] = small
            row[f"{method}_text_change"] = abs(small - row[f"{method}_score"])
        rows.append(row)
    return pd.DataFrame(rows)


def method_summary(frame, tables, cands, preset):
    """Per method: AUC, margin, permuted, largest changes, each against its target."""
    out = {}
    derived, unrelated = frame[frame.group == "derived"], frame[frame.group == "unrelated"]
    scored = frame[frame.group != "self"]
    subset = tables.get((0, preset["n_subset"]))
    for method in METHODS:
        d, u = derived[f"{method}_score"], unrelated[f"{method}_score"]
        line = {"auc": auc(d.tolist(), u.tolist()), "margin": float(d.min() - u.max()),
                "lowest_derived": derived.candidate[d.idxmin()],
                "highest_unrelated": unrelated.candidate[u.idxmax()],
                "permuted": float(frame.loc[frame.candidate == "permuted",
                                            f"{method}_score"].iloc[0]),
                "seed_change": float(scored[f"{method}_seed_change"].max()),
                "seed_change_candidate": (scored.candidate[scored[f"{method}_seed_change"]
                                                           .idxmax()]
                                          if scored[f"{method}_seed_change"].max() > 0
                                          else None),
                "text_change": float(scored[f"{method}_text_change"].max())}
        if subset is not None:
            small = f"{method}_texts{preset['n_subset']}"
            ds, us = derived[small], unrelated[small]
            line["auc_subset"] = auc(ds.tolist(), us.tolist())
            line["margin_subset"] = float(ds.min() - us.max())
        line["targets"] = {
            "auc": {"target": "= 1.0", "met": line["auc"] == TARGETS["auc"]},
            "margin": {"target": f">= {TARGETS['margin']}",
                       "met": line["margin"] >= TARGETS["margin"]},
            "permuted": {"target": f">= {TARGETS['permuted']}",
                         "met": line["permuted"] >= TARGETS["permuted"]},
            "seed_change": {"target": f"<= {TARGETS['seed_change']}",
                            "met": (bool(line["seed_change"] <= TARGETS["seed_change"])
                                    if not math.isnan(line["seed_change"]) else None)},
        }
        out[method] = line
    return out


def _f(value, fmt=".3f"):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:{fmt}}"


def _met(flag):
    return "n/a" if flag is None else ("met" if flag else "**not met**")


def markdown(frame, summary, stages, cands, preset):
    k = preset["n_subset"]
    head = ("| candidate | group | what it is | runs in | fbn | p (fbn) | cka | p (cka) | "
            f"fbn seed change | cka seed change | fbn, {k} texts | cka, {k} texts |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, r in frame.iterrows():
        out.append(" | ".join([
            f"| {r.candidate}", r.group, r.about, r.run_dtype, _f(r.fbn_score),
            _f(r.fbn_p_value, ".3g"), _f(r.cka_score), _f(r.cka_p_value, ".3g"),
            _f(r.fbn_seed_change), _f(r.cka_seed_change), _f(r[f"fbn_texts{k}"]),
            _f(r[f"cka_texts{k}"]) + " |"]))
    out += ["", "| method | AUC (target = 1.0) | margin (>= 0.2) | permuted (>= 0.9) | "
                "largest seed change (<= 0.05) | largest change "
                f"{preset['n_texts']} -> {k} texts | AUC, {k} texts | margin, {k} texts |",
            "|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        t = s["targets"]
        out.append(" | ".join([
            f"| {method}", f"{_f(s['auc'])} ({_met(t['auc']['met'])})",
            f"{_f(s['margin'])} ({_met(t['margin']['met'])}; {s['lowest_derived']} vs "
            f"{s['highest_unrelated']})",
            f"{_f(s['permuted'])} ({_met(t['permuted']['met'])})",
            f"{_f(s['seed_change'])} ({_met(t['seed_change']['met'])}"
            + (f"; {s['seed_change_candidate']})" if s["seed_change_candidate"] else ")"),
            _f(s["text_change"]), _f(s.get("auc_subset")), _f(s.get("margin_subset")) + " |"]))
    trained = [c for c in cands if c.manifest and "final_loss" in c.manifest["results"]]
    if trained:
        out += ["", "| trained model | steps | first loss | final loss | unigram entropy | "
                    "weights moved |", "|---|---|---|---|---|---|"]
        for c in trained:
            r, s = c.manifest["results"], c.manifest["settings"]
            out.append(f"| {c.name} | {s['steps']} x {s['batch']} x {s['seq_len']} | "
                       f"{r['first_loss']:.2f} | {r['final_loss']:.2f} | "
                       f"{_f(r.get('unigram_entropy'), '.2f')} | "
                       f"{_f(r.get('weights_moved'), '.4f')} |")
    out += ["", "| stage | wall (s) | peak RSS (MB) | this run |", "|---|---|---|---|"]
    for s in stages:
        out.append(f"| {s['stage']} | {s['seconds']:.0f} | {_f(s['peak_rss_mb'], '.0f')} | "
                   f"{'reused' if s['reused'] else 'yes'} |")
    return "\n".join(out)


# -- the run ----------------------------------------------------------------------------

def check_args(args, preset):
    for name in ("ica_seeds", "random_seeds", "scratch_seeds"):
        values = preset[name]
        if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
            raise ValueError(f"'--{name.replace('_', '-')}' must be distinct integers >= 0. "
                             f"{values} was provided.")
    if 0 not in preset["ica_seeds"]:
        raise ValueError(f"'--ica-seeds' must include 0 (the seed of the main table). "
                         f"{preset['ica_seeds']} was provided.")
    for path in (args.data / "wikitext-2-raw" / "wiki.test.raw", args.data / "sst2" / "train.tsv"):
        if not path.is_file():
            raise FileNotFoundError(f"'--data' must hold {path.relative_to(args.data)}. "
                                    f"{path} does not exist.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=None,
                        help="default results/fingerprint (results/fingerprint-quick)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a few minutes")
    parser.add_argument("--ica-seeds", type=int, nargs="+", help="seeds of fingerprint()")
    parser.add_argument("--random-seeds", type=int, nargs="+", help="random initialisations")
    parser.add_argument("--scratch-seeds", type=int, nargs="+", help="models from scratch")
    parser.add_argument("--reference-atlas", default="none",
                        help="the reference's networks: none (default: CanICA on the texts, "
                             "like the candidates') or a built-in atlas (smollm2-135m: its "
                             "networks, as many for the candidates); the report's files get "
                             "the suffix -atlas-NAME")
    args = parser.parse_args()
    preset = copy.deepcopy(PRESETS["quick" if args.quick else "full"])
    preset["reference_atlas"] = args.reference_atlas
    if args.reference_atlas != "none":
        preset["n_components"] = None  # the atlas's networks
    for name in ("ica_seeds", "random_seeds", "scratch_seeds"):
        if getattr(args, name) is not None:
            preset[name] = list(getattr(args, name))
    work = args.work or Path("results/fingerprint-quick" if args.quick
                             else "results/fingerprint")
    check_args(args, preset)

    from llmfbn.io import OutputLock, write_atomic, write_json
    from llmfbn.models import load_model

    started = time.perf_counter()
    even, odd = wikitext_halves(args.data / "wikitext-2-raw" / "wiki.test.raw")
    if preset["n_texts"] > len(odd):
        raise ValueError(f"The odd-numbered articles give {len(odd)} paragraphs; "
                         f"{preset['n_texts']} are needed.")
    contents = {f"odd-{n}": "\n".join(odd[:n]) + "\n"
                for n in (preset["n_texts"], preset["n_subset"])}
    contents["even"] = "\n".join(even) + "\n"
    files = {name: work / "texts" / f"wiki-{name}.txt" for name in contents}
    suffix = "" if args.reference_atlas == "none" else f"-atlas-{args.reference_atlas}"
    csv_path = work / f"fingerprint_acceptance{suffix}.csv"
    summary_path = work / f"summary{suffix}.json"
    stages = []
    with OutputLock(csv_path):
        for name, path in files.items():  # every product records the sha of the text it used
            if not path.is_file() or path.read_text(encoding="utf-8") != contents[name]:
                write_atomic(path, contents[name])
        with stage("load reference") as measured:
            ref = load_model(REFERENCE)
        stages.append({**measured, "reused": False})
        texts = {"calibration": even[0], "calibration_file": files["even"],
                 "calibration_sha": text_sha256(contents["even"]), "train": even}
        cands = build_all(work, ref, args.data, texts, preset)
        stages += [{"stage": f"build {c.name}", "seconds": c.manifest["seconds"],
                    "peak_rss_mb": c.manifest["peak_rss_mb"], "reused": c.manifest["reused"]}
                   for c in cands if c.manifest]
        ref_hash = ref.weights_hash
        del ref
        gc.collect()

        half = next(c for c in cands if c.name == "float16")
        half.run_dtype, float16_why = float16_run_dtype(half.folder)
        next(c for c in cands if c.name == "bfloat16").run_dtype = "bfloat16"
        print(f"float16 candidate runs in {half.run_dtype}: {float16_why}", flush=True)

        tables = {}
        calls = [(0, preset["n_texts"]), (0, preset["n_subset"])]
        calls += [(s, preset["n_texts"]) for s in preset["ica_seeds"] if s != 0]
        for seed, n in calls:
            tables[(seed, n)], measured = score_table(
                work, cands, files[f"odd-{n}"], text_sha256(contents[f"odd-{n}"]), n, seed,
                preset, ref_hash)
            stages.append(measured)

        frame = per_candidate(cands, tables, preset)
        summary = method_summary(frame, tables, cands, preset)
        write_atomic(csv_path, frame.to_csv(index=False))
        total = time.perf_counter() - started
        write_json(summary_path, normalised({
            "format_version": FORMAT_VERSION, "reference": {"name": REFERENCE,
                                                            "weights_hash": ref_hash},
            "preset": "quick" if args.quick else "full", "settings": preset,
            "n_words": {f"seed{s}-texts{n}": int(t.n_words.iloc[0])
                        for (s, n), t in tables.items()},
            "float16": {"run_dtype": half.run_dtype, "why": float16_why},
            "methods": summary, "candidates": frame.to_dict(orient="records"),
            "training": {c.name: c.manifest["results"] for c in cands
                         if c.manifest and "final_loss" in c.manifest["results"]},
            "stages": stages, "stages_seconds": round(sum(x["seconds"] for x in stages), 1),
            "this_run_seconds": round(total, 1)}))
    print(f"\n{markdown(frame, summary, stages, cands, preset)}\n")
    subset_words = int(tables[(0, preset["n_subset"])].n_words.iloc[0])
    print(f"{int(frame.n_words.iloc[0])} words in {preset['n_texts']} texts, {subset_words} "
          f"in {preset['n_subset']}; float16 candidate run in {half.run_dtype} ({float16_why})")
    in_all = sum(x["seconds"] for x in stages)
    print(f"wrote {csv_path} and {summary_path}; stages {in_all / 60:.1f} min in all, "
          f"this run {total / 60:.1f} min")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
