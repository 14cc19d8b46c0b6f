"""Integration tests on the embedded SmolLM2-135M-Instruct with real SST-2 sentences."""

import csv
import json
import time

import numpy as np
import pytest
import torch
from nilearn.maskers import NiftiMasker

from conftest import shared_data
from llmfbn.models import load_model
from llmfbn.models._loading import _gguf_to_cached_folder, builtin_gguf_path
from llmfbn.recording import record

pytestmark = pytest.mark.integration


def _sst2_dev(n):
    with open(shared_data("sst2/dev.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[:n]


def _plain_hook_activations(model, tokenizer, text):
    """Down-projection inputs from a plain forward hook, one text, no batching."""
    seen = {}
    handles = [
        layer.mlp.down_proj.register_forward_pre_hook(
            lambda module, args, i=i: seen.__setitem__(i, args[0][0].clone()))
        for i, layer in enumerate(model.model.layers)
    ]
    try:
        with torch.no_grad():
            model(**tokenizer(text, return_tensors="pt"))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([seen[i] for i in range(len(seen))], dim=1).numpy()


def test_smollm2_recording_matches_plain_forward_hook(tmp_path, smollm2):
    rows = _sst2_dev(6)
    sst = tmp_path / "sst2dev.tsv"
    with open(sst, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    rec = record(smollm2, sst, tmp_path / "out", label_column="label", batch_size=4, verbose=0)
    grid = rec.grid
    assert grid.shape == (48, 32, 30)
    assert (grid.n_layers, grid.width) == (30, 1536)
    assert len(rec.bold_files) == 6
    masker = NiftiMasker(mask_img=rec.mask_file, standardize=None).fit()
    for row, bold in zip(rows, rec.bold_files):
        expected = _plain_hook_activations(smollm2.model, smollm2.tokenizer, row["text"])
        recorded = grid.from_img(bold)
        assert recorded.shape == expected.shape
        scale = np.abs(expected).max()
        np.testing.assert_allclose(recorded, expected, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_array_equal(grid.masked_to_neurons(masker.transform(bold)), recorded)
        sidecar = json.loads(bold.with_suffix(".json").read_text())
        assert sidecar["WeightsHash"] == smollm2.weights_hash
        assert sidecar["Labels"] == [row["label"]]


def test_gguf_cache_gives_identical_model(tmp_path, monkeypatch):
    """The cached safetensors reload fast and equal the de-quantised GGUF exactly."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("LLMFBN_CACHE_DIR", str(tmp_path / "cache"))
    gguf = builtin_gguf_path("smollm2-135m")
    folder, digest = _gguf_to_cached_folder(gguf)
    assert folder.parent == tmp_path / "cache" / "gguf"
    assert json.loads((folder / "llmfbn_source.json").read_text())["sha256"] == digest
    start = time.perf_counter()
    cached = load_model("smollm2-135m")
    load_seconds = time.perf_counter() - start
    assert load_seconds < 10, f"cached load took {load_seconds:.1f} s"
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    ids = cached.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_array_equal(cached.model(**ids).logits.numpy(),
                                      direct(**ids).logits.numpy())
    assert cached.weights_hash == f"sha256:{digest}"


def test_fingerprint_takes_the_shipped_atlas_as_smollm2s_networks(smollm2):
    """``reference_atlas="auto"``: SmolLM2's networks are the shipped atlas's, not refitted."""
    from llmfbn.datasets import load_atlas
    from llmfbn.fingerprint import fingerprint

    atlas = load_atlas("smollm2-135m")
    assert atlas.grid.weights_hash == smollm2.weights_hash
    texts = [row["text"] for row in _sst2_dev(16)]
    table = fingerprint(smollm2, [smollm2], texts, n_permutations=19)
    assert (table["reference_networks"] == "atlas:smollm2-135m").all()
    assert (table["n_components"] == len(atlas.labels)).all()
    fbn, cka = table.set_index("method").loc[["fbn", "cka"], "score"]
    assert cka == pytest.approx(1.0)
    # the atlas's networks, found on WikiText-2, against SmolLM2's own on these sentences
    assert 0.3 < fbn < 1.0
    # a number of networks asked for: CanICA on the texts for the reference too
    table = fingerprint(smollm2, [smollm2], texts, n_components=3, n_permutations=9)
    assert (table["reference_networks"] == "canica").all()
    assert table.set_index("method").loc["fbn", "score"] == pytest.approx(1.0)
