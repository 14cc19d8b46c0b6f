"""``llmfbn fingerprint`` with an atlas as the reference's networks (``reference_atlas``)."""

import numpy as np
import pytest
from test_fingerprint import (  # the shared helpers; the autouse one-torch-thread fixture
    K,
    _one_torch_thread,  # noqa: F401
    _permuted,
    _rows,
    _texts,
)

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.fingerprint import fingerprint, model_grid
from llmfbn.grid import NeuronGrid
from llmfbn.io import read_fingerprints, write_atlas


def _atlas(path, loaded, n=K, seed=0, grid=None):
    """An atlas of ``n`` sparse random maps on ``loaded``'s grid."""
    grid = model_grid(loaded) if grid is None else grid
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(n, grid.n_layers, grid.width)) * (rng.random(
        (n, grid.n_layers, grid.width)) < 0.3)
    manifest = {"name": "tiny", "labels": [f"N{k:02d}" for k in range(1, n + 1)],
                "top_tokens": [["a"]] * n, "quality": [0.9] * n, "description": "test",
                "build": {}}
    return write_atlas(path, maps.astype(np.float32), grid, manifest)


def test_atlas_reference_scores_a_permuted_copy_as_the_reference(tmp_path):
    reference = make_loaded("llama", seed=0)
    atlas = _atlas(tmp_path / "atlas", reference, n=4)
    independent = make_loaded("llama", seed=1)
    independent.name = "independent"
    texts = _texts()
    table = fingerprint(reference, [reference, _permuted(reference), independent], texts,
                        n_permutations=49, reference_atlas=atlas)
    assert (table["n_components"] == 4).all()  # the atlas's networks, by default
    self_fbn, self_cka = _rows(table, "tiny-llama")
    perm_fbn, _ = _rows(table, "permuted")
    other_fbn, _ = _rows(table, "independent")
    assert self_cka["score"] == pytest.approx(1.0)
    assert perm_fbn["score"] == pytest.approx(self_fbn["score"], abs=0.02)
    assert other_fbn["score"] < self_fbn["score"]
    # "none" fits the reference's own networks: the reference itself scores 1
    plain = fingerprint(reference, [reference], texts, n_components=K, n_permutations=9,
                        reference_atlas="none")
    assert _rows(plain, "tiny-llama")[0]["score"] == pytest.approx(1.0)
    # "auto" finds no built-in atlas for a tiny model: the same table as "none"
    auto = fingerprint(reference, [reference], texts, n_components=K, n_permutations=9)
    assert auto.equals(plain)


def test_atlas_of_another_grid_or_model_is_refused_naming_the_file(tmp_path):
    reference = make_loaded("llama", seed=0)
    other = _atlas(tmp_path / "wide", reference, grid=NeuronGrid(2, 40, model="x",
                                                                 signal="mlp"))
    with pytest.raises(ValueError, match=f"reference atlas {other} is of another grid"):
        fingerprint(reference, [reference], _texts(), reference_atlas=other)
    independent = make_loaded("llama", seed=1)
    same_grid = _atlas(tmp_path / "same-grid", independent)
    with pytest.raises(ValueError, match=f"{same_grid} is of model"):
        fingerprint(reference, [reference], _texts(), reference_atlas=same_grid)
    with pytest.raises(ValueError, match="'reference_atlas' must be"):
        fingerprint(reference, [reference], _texts(), reference_atlas=tmp_path / "absent")


def test_cli_reference_atlas(tmp_path, tiny_model_dir, capsys):
    from llmfbn.models import load_model

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(_texts()) + "\n")
    wrong = _atlas(tmp_path / "wrong", load_model(tiny_model_dir),
                   grid=NeuronGrid(2, 40, model="x", signal="mlp"))
    out = tmp_path / "scores.csv"
    code = main(["fingerprint", str(tiny_model_dir), str(tiny_model_dir), "--texts", str(texts),
                 "--out", str(out), "--reference-atlas", str(wrong), "-q"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert f"reference atlas {wrong} is of another grid" in error and not out.exists()
    atlas = _atlas(tmp_path / "atlas", load_model(tiny_model_dir), n=4)
    main(["fingerprint", str(tiny_model_dir), str(tiny_model_dir), "--texts", str(texts),
          "--out", str(out), "--reference-atlas", str(atlas), "--n-permutations", "9", "-q"])
    table = read_fingerprints(out)
    assert (table["reference_networks"] == f"atlas:{atlas}").all()
    assert (table["n_components"] == 4).all()
