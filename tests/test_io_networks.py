"""Networks, GLM and consistency files: written whole, read with checks, never mixed."""

import gzip
import json

import numpy as np
import pytest

from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    FOLDER_FILE,
    FolderKindError,
    FormatError,
    OutputExistsError,
    folder_sha256,
    open_folder,
    read_consistency,
    read_networks_folder,
    write_consistency,
    write_grid,
)
from llmfbn.io._atomic import OLD_PREFIX, TMP_PREFIX, staging_name
from llmfbn.networks import FunctionalNetworks


def _networks(seed=0, n=3):
    grid = NeuronGrid(2, 16, model="m", signal="mlp")
    maps = np.random.default_rng(seed).standard_normal((n, 2, 16)).astype(np.float32)
    return FunctionalNetworks.from_maps(maps, grid, threshold=1.0)


def _recording_folder(path, grid):
    """A folder of kind "recording" (marker and grid.json; no runs needed here)."""
    with open_folder(path, "recording"):
        write_grid(path / "grid.json", grid)
    return path


def test_round_trip_keeps_runs_estimator_and_kind(tmp_path):
    nets = _networks()
    nets.top_tokens = [[{"token": "a"}] for _ in range(len(nets))]
    nets.save(tmp_path / "net")
    folder = read_networks_folder(tmp_path / "net")
    assert folder.kind == "networks" and folder.runs is None and folder.estimator is None
    np.testing.assert_array_equal(folder.masks, nets.masks)
    assert folder.top_tokens == nets.top_tokens
    doc = json.loads((tmp_path / "net" / "networks.json").read_text())
    assert doc["format_version"] == 1
    assert json.loads((tmp_path / "net" / FOLDER_FILE).read_text())["kind"] == "networks"


# -- finding 2: --force replaces its own kind only ---------------------------------------


def test_save_never_replaces_a_recording_even_with_overwrite(tmp_path):
    grid = NeuronGrid(2, 16, model="m", signal="mlp")
    rec = _recording_folder(tmp_path / "rec", grid)
    before = folder_sha256(rec)
    with pytest.raises(FolderKindError, match="recording folder.*even when asked"):
        _networks().save(rec, overwrite=True)
    assert folder_sha256(rec) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]  # no staging, no lock


def test_save_refuses_a_file_and_a_foreign_folder(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FolderKindError, match="is a file"):
        _networks().save(tmp_path / "file", overwrite=True)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("mine")
    with pytest.raises(FolderKindError, match="not a folder llmfbn wrote"):
        _networks().save(tmp_path / "foreign", overwrite=True)
    assert (tmp_path / "file").read_text() == "mine"
    assert [p.name for p in (tmp_path / "foreign").iterdir()] == ["keep.txt"]


def test_existing_networks_need_overwrite(tmp_path):
    _networks(0).save(tmp_path / "net")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        _networks(1).save(tmp_path / "net")
    _networks(1).save(tmp_path / "net", overwrite=True)
    np.testing.assert_array_equal(FunctionalNetworks.load(tmp_path / "net").masks,
                                  _networks(1).masks)


# -- finding 7: a killed or failed save leaves old or new, never a mix -----------------------


def test_failed_save_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    import llmfbn.io._networks as owner

    _networks(0).save(tmp_path / "net")
    before = folder_sha256(tmp_path / "net")
    calls = []
    real = owner.save_image

    def fail_second(img, path):
        calls.append(path)
        if len(calls) == 2:  # components written, masks not yet
            raise OSError("disk full")
        real(img, path)

    monkeypatch.setattr(owner, "save_image", fail_second)
    with pytest.raises(OSError, match="disk full"):
        _networks(1).save(tmp_path / "net", overwrite=True)
    assert folder_sha256(tmp_path / "net") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_leftovers_of_a_kill_are_restored_or_cleaned_by_the_next_save(tmp_path):
    net = tmp_path / "net"
    _networks(0).save(net)
    before = folder_sha256(net)
    # killed between its two renames: the old folder set aside, the new one still staged
    old = net.rename(tmp_path / staging_name("net", OLD_PREFIX))
    staged = tmp_path / staging_name("net", TMP_PREFIX)
    staged.mkdir()
    (staged / "components.nii.gz").write_bytes(b"half")
    with pytest.raises(OutputExistsError):  # the old folder is back, so it is not replaced
        _networks(1).save(net)
    assert folder_sha256(net) == before and not old.exists() and not staged.exists()
    _networks(1).save(net, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]
    np.testing.assert_array_equal(FunctionalNetworks.load(net).masks, _networks(1).masks)


# -- finding 9: damaged files are one clear error naming the file --------------------------


def _damage(folder, name, how):
    path = folder / name
    if how == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    elif how == "delete":
        path.unlink()
    else:
        how(path)


def _edit_json(key, value):
    def edit(path):
        doc = json.loads(path.read_text())
        doc[key] = value
        path.write_text(json.dumps(doc))
    return edit


@pytest.mark.parametrize("name, how, match", [
    ("networks.json", lambda p: p.write_text("{broken"), r"networks\.json is not a valid"),
    ("networks.json", _edit_json("networks", []), r"networks\.json describes 0 networks"),
    ("networks.json", _edit_json("format_version", 99), r"networks\.json .*newer"),
    ("networks.json", _edit_json("format_version", None), r"networks\.json has no format_"),
    ("networks.json", "delete", "networks.json is missing"),
    ("params.json", _edit_json("runs", "x"), r"params\.json is not a valid"),
    ("params.json", "delete", "params.json is missing"),
    ("components.nii.gz", "truncate", r"components\.nii\.gz is not a readable"),
    ("networks.nii.gz", lambda p: p.write_bytes(gzip.compress(b"not nifti")),
     r"networks\.nii\.gz is not a readable"),
    ("grid.json", _edit_json("width", 17), r"grid\.json"),
])
def test_damaged_networks_folder_names_the_file(tmp_path, name, how, match):
    _networks().save(tmp_path / "net")
    _damage(tmp_path / "net", name, how)
    with pytest.raises(FormatError, match=match):
        FunctionalNetworks.load(tmp_path / "net")


def test_mixed_files_are_refused(tmp_path):
    _networks(0).save(tmp_path / "a")
    _networks(1).save(tmp_path / "b")
    (tmp_path / "a" / "networks.nii.gz").write_bytes((tmp_path / "b" / "networks.nii.gz")
                                                     .read_bytes())
    with pytest.raises(FormatError, match="damaged or mixed"):
        FunctionalNetworks.load(tmp_path / "a")


def test_load_refuses_other_kinds_and_old_folders(tmp_path):
    rec = _recording_folder(tmp_path / "rec", NeuronGrid(2, 16, model="m"))
    with pytest.raises(FolderKindError, match="recording folder, not a networks or glm"):
        FunctionalNetworks.load(rec)
    old = tmp_path / "old"
    old.mkdir()
    (old / "networks.json").write_text("{}")
    with pytest.raises(FolderKindError, match="older llmfbn"):
        FunctionalNetworks.load(old)


# -- finding 1: the consistency document ------------------------------------------------------


def _document():
    return {"folders": ["a", "b"], "pairs": [{"a": "a", "b": "b",
            "iou": {"scores": [0.5], "null_mean": [0.1], "p_value": [0.01]},
            "correlation": {"scores": [0.7], "null_mean": [0.0], "p_value": [0.02]}}],
            "recurrence": {}, "n_draws": 10, "recurrence_threshold": 0.2}


def test_consistency_round_trip_and_overwrite(tmp_path):
    out = tmp_path / "c.json"
    write_consistency(out, _document())
    assert read_consistency(out)["format_version"] == 1
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_consistency(out, _document())
    write_consistency(out, dict(_document(), n_draws=20), overwrite=True)
    assert read_consistency(out)["n_draws"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_consistency_never_replaces_a_file_of_a_folder_or_another_file(tmp_path):
    _networks().save(tmp_path / "net")
    target = tmp_path / "net" / "networks.json"
    before = target.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(FolderKindError, match="inside .*net"):
            write_consistency(target, _document(), overwrite=overwrite)
    assert target.read_bytes() == before
    other = tmp_path / "settings.json"
    other.write_text('{"mine": 1}')
    with pytest.raises(FolderKindError, match="not a consistency file"):
        write_consistency(other, _document(), overwrite=True)
    assert other.read_text() == '{"mine": 1}'


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("format_version"), "has no format_version"),
    (lambda d: d["pairs"][0].pop("iou"), r"lacks \['iou'\]"),
    (lambda d: d["pairs"][0]["iou"].update(scores=[1, 2]), "lists of one length"),
])
def test_damaged_consistency_names_the_file(tmp_path, edit, match):
    out = tmp_path / "c.json"
    write_consistency(out, _document())
    doc = json.loads(out.read_text())
    edit(doc)
    out.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=match):
        read_consistency(out)
