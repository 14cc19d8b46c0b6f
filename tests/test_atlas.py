"""The atlas folder (llmfbn.io._atlas) and llmfbn.datasets.load_atlas."""

import json

import nibabel as nib
import numpy as np
import pytest

from llmfbn.datasets import ATLASES, atlas_path, load_atlas
from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    ATLAS_FILE,
    ATLAS_MAPS,
    FormatError,
    OutputExistsError,
    read_atlas,
    write_atlas,
)


def _grid(units=None):
    return NeuronGrid(3, 10, model="tiny", signal="mlp", weights_hash="sha256:abc",
                      model_layers=3, units=units)


def _maps(grid, n=2, seed=0):
    maps = np.random.default_rng(seed).normal(size=(n, grid.n_layers, grid.width))
    maps[:, ~grid.present()] = 0
    return maps.astype(np.float32)


def _manifest(n=2):
    return {"name": "tiny", "labels": [f"N{k:02d} · a" for k in range(1, n + 1)],
            "top_tokens": [["a", "b"]] * n, "quality": [0.9] * n,
            "description": "a test atlas", "build": {"seed": 0}}


def test_write_read_roundtrip(tmp_path):
    grid, maps = _grid(), _maps(_grid())
    out = write_atlas(tmp_path / "atlas", maps, grid, _manifest())
    document, read_grid, read_maps = read_atlas(out)
    assert read_grid == grid and read_grid.weights_hash == "sha256:abc"
    np.testing.assert_array_equal(read_maps, maps)
    assert document["labels"] == _manifest()["labels"]
    assert sorted(p.name for p in out.iterdir()) == sorted([ATLAS_FILE, ATLAS_MAPS, "grid.json"])
    assert nib.load(out / ATLAS_MAPS).shape == grid.shape + (2,)


def test_pruned_grid_roundtrip(tmp_path):
    grid = _grid(units=[[0, 2, 5], list(range(10)), [9]])
    maps = _maps(grid)
    _, read_grid, read_maps = read_atlas(write_atlas(tmp_path / "a", maps, grid, _manifest()))
    assert read_grid == grid
    np.testing.assert_array_equal(read_maps, maps)


def test_never_replaced_and_nothing_left_on_error(tmp_path):
    grid = _grid()
    out = write_atlas(tmp_path / "atlas", _maps(grid), grid, _manifest())
    before = (out / ATLAS_MAPS).read_bytes()
    with pytest.raises(OutputExistsError, match="never replaced"):
        write_atlas(out, _maps(grid, seed=1), grid, _manifest())
    assert (out / ATLAS_MAPS).read_bytes() == before
    with pytest.raises(FormatError, match="3 networks"):
        write_atlas(tmp_path / "bad", _maps(grid, n=3), grid, _manifest(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas"]


def test_refuses_bad_maps_and_manifest(tmp_path):
    grid = _grid()
    maps = _maps(grid)
    maps[0, 0, 0] = np.nan
    with pytest.raises(FormatError, match="non-finite"):
        write_atlas(tmp_path / "a", maps, grid, _manifest())
    pruned = _grid(units=[[0, 1], [0, 1], [0, 1]])
    with pytest.raises(FormatError, match="does not have"):
        write_atlas(tmp_path / "a", _maps(grid), pruned, _manifest())
    manifest = _manifest()
    manifest["labels"] = ["same", "same"]
    with pytest.raises(FormatError, match="unique"):
        write_atlas(tmp_path / "a", _maps(grid), grid, manifest)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("damage, match", [
    (lambda d: d.pop("labels"), "labels"),
    (lambda d: d.update(kind="other"), "kind"),
    (lambda d: d.update(format_version=99), "format_version|version"),
    (lambda d: d.update(quality=[0.9, "high"]), "quality"),
])
def test_damaged_manifest_named(tmp_path, damage, match):
    grid = _grid()
    out = write_atlas(tmp_path / "atlas", _maps(grid), grid, _manifest())
    document = json.loads((out / ATLAS_FILE).read_text())
    damage(document)
    (out / ATLAS_FILE).write_text(json.dumps(document))
    with pytest.raises(FormatError, match=match) as err:
        read_atlas(out)
    assert ATLAS_FILE in str(err.value)


def test_maps_of_another_grid_named(tmp_path):
    grid = _grid()
    out = write_atlas(tmp_path / "atlas", _maps(grid), grid, _manifest())
    other = NeuronGrid(3, 40, model="tiny")
    nib.save(other.to_img(np.zeros((2, 3, 40), np.float32)), out / ATLAS_MAPS)
    with pytest.raises(FormatError, match=ATLAS_MAPS):
        read_atlas(out)


def test_load_atlas_of_a_folder(tmp_path):
    grid = _grid()
    maps = _maps(grid)
    out = write_atlas(tmp_path / "atlas", maps, grid, _manifest())
    atlas = load_atlas(out)
    assert atlas.maps.shape == grid.shape + (2,)
    np.testing.assert_array_equal(grid.from_img(atlas.maps), maps)
    np.testing.assert_array_equal(atlas.neuron_maps, maps)
    assert atlas.labels == _manifest()["labels"] and atlas.description == "a test atlas"
    assert atlas.model == "tiny" and atlas.path == out and atlas.quality.tolist() == [0.9, 0.9]


def test_load_atlas_bad_input(tmp_path):
    with pytest.raises(ValueError, match="'atlas' must be a built-in atlas"):
        load_atlas("no-such-atlas")
    with pytest.raises(TypeError, match="'atlas'"):
        load_atlas(3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=ATLAS_FILE):
        load_atlas(tmp_path / "empty")


def test_shipped_atlas():
    """The default model's atlas ships in the package, small, with stable networks only."""
    assert ATLASES == ("smollm2-135m",)
    path = atlas_path("smollm2-135m")
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size < 1_000_000
    atlas = load_atlas()
    assert atlas.grid.n_layers == 30 and atlas.grid.width == 1536
    assert atlas.model == "smollm2-135m" and atlas.grid.weights_hash.startswith("sha256:")
    n = len(atlas.labels)
    assert n >= 3 and atlas.maps.shape == (*atlas.grid.shape, n)
    assert (atlas.quality >= atlas.build["min_quality"]).all()
    assert all(len(tokens) > 0 for tokens in atlas.top_tokens)
    assert "WikiText-2" in atlas.description
