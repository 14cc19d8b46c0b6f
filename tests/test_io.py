"""llmfbn.io core: atomic writes, output locks, folder kinds, recovery after a kill, grid.json."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    FOLDER_FILE,
    FolderKindError,
    FormatError,
    OutputExistsError,
    OutputLock,
    OutputLockedError,
    atomic_path,
    check_folder,
    check_output_folder,
    file_sha256,
    folder_kind,
    folder_sha256,
    open_folder,
    read_grid,
    read_json,
    recover_interrupted,
    replace_file,
    replace_folder,
    write_grid,
)
from llmfbn.io._atomic import OLD_PREFIX, TMP_PREFIX, staging_name


def _make_networks_folder(path, content="old"):
    with replace_folder(path, "networks", overwrite=True) as staging:
        (staging / "a.txt").write_text(content)
        (staging / "b.txt").write_text(content)


# -- atomic files ------------------------------------------------------------


def test_atomic_path_keeps_old_content_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_read_json_names_the_file(tmp_path):
    broken = tmp_path / "grid.json"
    broken.write_text("{not json")
    with pytest.raises(FormatError, match="grid.json.*line 1"):
        read_json(broken, what="grid.json")
    with pytest.raises(FileNotFoundError, match="missing"):
        read_json(tmp_path / "absent.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(FormatError, match="list, not an object"):
        read_json(tmp_path / "list.json")


# -- locks -------------------------------------------------------------------


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    target = tmp_path / "out"
    with OutputLock(target):
        with pytest.raises(OutputLockedError, match=f"process {os.getpid()}"):
            OutputLock(target).acquire()
    assert not (tmp_path / "out.lock").exists()
    with OutputLock(target):  # released: free again
        pass


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    target = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    (tmp_path / "out.lock").write_text(json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "command": "x"}))
    with OutputLock(target):
        holder = json.loads((tmp_path / "out.lock").read_text())
        assert holder["pid"] == os.getpid()


def test_lock_held_by_another_live_process(tmp_path):
    target = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys, time
        from llmfbn.io import OutputLock
        with OutputLock({str(target)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"process {holder.pid}"):
            with replace_folder(target, "networks"):
                pytest.fail("must not get here")
        assert not target.exists()
    finally:
        holder.communicate("\n", timeout=30)
    assert not (tmp_path / "out.lock").exists()


# -- folder kinds ------------------------------------------------------------


def test_folder_kind_marker(tmp_path):
    assert folder_kind(tmp_path / "absent") is None
    assert folder_kind(tmp_path) is None  # empty
    _make_networks_folder(tmp_path / "net")
    assert folder_kind(tmp_path / "net") == "networks"
    marker = read_json(tmp_path / "net" / FOLDER_FILE)
    assert marker["kind"] == "networks" and marker["format_version"] == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert folder_kind(tmp_path / "other") == "foreign"


def test_unknown_folder_version_is_refused(tmp_path):
    _make_networks_folder(tmp_path / "net")
    (tmp_path / "net" / FOLDER_FILE).write_text(json.dumps(
        {"kind": "networks", "format_version": 99}))
    with pytest.raises(FormatError, match="format version 99.*upgrade llmfbn"):
        check_folder(tmp_path / "net", "networks")
    (tmp_path / "net" / FOLDER_FILE).write_text(json.dumps({"kind": "spaceship",
                                                              "format_version": 1}))
    with pytest.raises(FormatError, match="unknown folder kind 'spaceship'"):
        folder_kind(tmp_path / "net")


def test_check_folder_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="llmfbn networks"):
        check_folder(tmp_path / "absent", "networks")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderKindError, match="is a file"):
        check_folder(tmp_path / "file", "networks")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "grid.json").write_text("{}")
    with pytest.raises(FolderKindError, match="older llmfbn"):
        check_folder(legacy, "networks")
    _make_networks_folder(tmp_path / "net")
    with pytest.raises(FolderKindError, match="is a networks folder, not a recording folder"):
        check_folder(tmp_path / "net", "recording")
    assert check_folder(tmp_path / "net", ("networks", "glm")) == "networks"


def test_force_never_replaces_another_kind(tmp_path):
    recording = tmp_path / "rec"
    with open_folder(recording, "recording"):
        (recording / "grid.json").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(FolderKindError, match="recording folder; refusing"):
            with replace_folder(recording, "networks", overwrite=overwrite):
                pytest.fail("must not get here")
    assert (recording / "grid.json").read_text() == "precious"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(FolderKindError, match="not a folder llmfbn wrote"):
        check_output_folder(foreign, "networks", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderKindError, match="is a file"):
        check_output_folder(tmp_path / "file", "networks", overwrite=True)


def test_same_kind_needs_overwrite(tmp_path):
    _make_networks_folder(tmp_path / "net", "old")
    with pytest.raises(OutputExistsError, match="overwrite=True") as info:
        with replace_folder(tmp_path / "net", "networks"):
            pytest.fail("must not get here")
    assert info.value.path == tmp_path / "net"
    _make_networks_folder(tmp_path / "net", "new")
    assert (tmp_path / "net" / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_failed_replacement_leaves_the_old_folder_whole(tmp_path):
    _make_networks_folder(tmp_path / "net", "old")
    with pytest.raises(RuntimeError):
        with replace_folder(tmp_path / "net", "networks", overwrite=True) as staging:
            (staging / "a.txt").write_text("new")
            raise RuntimeError("killed half-way")
    assert (tmp_path / "net" / "a.txt").read_text() == "old"
    assert (tmp_path / "net" / "b.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_kill_between_the_two_renames_restores_the_old_folder(tmp_path):
    """A writer killed after setting the old folder aside: the next run puts it back."""
    _make_networks_folder(tmp_path / "net", "old")
    aside = tmp_path / staging_name("net", OLD_PREFIX)
    os.rename(tmp_path / "net", aside)
    half = tmp_path / staging_name("net")
    half.mkdir()
    (half / "a.txt").write_text("new")
    done = recover_interrupted(tmp_path / "net")
    assert any("restored" in line for line in done)
    assert (tmp_path / "net" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_leftovers_of_a_kill_are_cleaned_by_the_next_write(tmp_path):
    _make_networks_folder(tmp_path / "net", "old")
    for name in (staging_name("net"), staging_name("net", OLD_PREFIX)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_text("junk")
    (tmp_path / staging_name("net-2")).mkdir()  # another output's: left alone
    _make_networks_folder(tmp_path / "net", "new")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0].startswith(TMP_PREFIX) and names[0].endswith("-net-2")
    assert names[1:] == ["net"]


def test_recording_folder_grows_in_place_and_cleans_temporaries(tmp_path):
    rec = tmp_path / "rec"
    with open_folder(rec, "recording") as removed:
        assert removed == 0
        (rec / "run-1").write_text("1")
        (rec / (TMP_PREFIX + "0123456789ab-run-2")).write_text("half")
    with open_folder(rec, "recording") as removed:
        assert removed == 1
    assert sorted(p.name for p in rec.iterdir()) == [FOLDER_FILE, "run-1"]


def test_replace_file(tmp_path):
    target = tmp_path / "doc.json"
    with replace_file(target) as tmp:
        tmp.write_text("one")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        with replace_file(target) as tmp:
            pytest.fail("must not get here")
    with replace_file(target, overwrite=True) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"
    with pytest.raises(ValueError, match=r"must end in \.html"):
        with replace_file(tmp_path / "report.txt", suffixes=(".html",)):
            pytest.fail("must not get here")
    with pytest.raises(FolderKindError, match="is a folder"):
        with replace_file(tmp_path, overwrite=True):
            pytest.fail("must not get here")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


def test_hashes_follow_content(tmp_path):
    (tmp_path / "a").write_text("x")
    first = folder_sha256(tmp_path)
    assert file_sha256(tmp_path / "a") == file_sha256(tmp_path / "a")
    (tmp_path / "out.lock").write_text("ignored")
    (tmp_path / (TMP_PREFIX + "0123456789ab-a")).write_text("ignored")
    assert folder_sha256(tmp_path) == first
    (tmp_path / "a").write_text("y")
    assert folder_sha256(tmp_path) != first


# -- grid.json and the one compatibility check -------------------------------


def test_grid_json_round_trip_and_errors(tmp_path):
    grid = NeuronGrid(4, 24, model="m", signal="mlp", weights_hash="sha256:1", model_layers=6)
    write_grid(tmp_path / "grid.json", grid)
    back = read_grid(tmp_path)
    assert back == grid and back.weights_hash == "sha256:1" and back.model_layers == 6
    document = json.loads((tmp_path / "grid.json").read_text())
    document["format_version"] = 7
    (tmp_path / "grid.json").write_text(json.dumps(document))
    with pytest.raises(FormatError, match=r"grid\.json.*upgrade llmfbn"):
        read_grid(tmp_path)
    del document["width"]
    document["format_version"] = 2
    (tmp_path / "grid.json").write_text(json.dumps(document))
    with pytest.raises(FormatError, match=r"grid\.json.*lacks 'width'"):
        read_grid(tmp_path)
    (tmp_path / "grid.json").write_text("")
    with pytest.raises(FormatError, match=r"grid\.json"):
        read_grid(tmp_path)


def test_check_compatible():
    base = dict(width=24, signal="mlp", model_layers=6)
    networks = NeuronGrid(3, layers=[0, 2, 5], model="a", weights_hash="h1", **base)
    model = NeuronGrid(6, model="a", weights_hash="h1", **base)
    networks.check_compatible(model, subset=True)
    with pytest.raises(ValueError, match="layers"):
        networks.check_compatible(model)  # not a subset check: layers differ
    derived = NeuronGrid(6, model="a-tuned", weights_hash="h2", **base)
    with pytest.raises(ValueError, match="allow_other_model=True"):
        networks.check_compatible(derived, subset=True)
    networks.check_compatible(derived, subset=True, allow_other_model=True)
    deeper = NeuronGrid(8, model="b", weights_hash="h3", width=24, signal="mlp", model_layers=8)
    with pytest.raises(ValueError, match="a model of 6 vs 8 layers"):
        networks.check_compatible(deeper, subset=True, allow_other_model=True)
    wider = NeuronGrid(6, model="c", width=32, signal="mlp", model_layers=6)
    with pytest.raises(ValueError, match="24 vs 32 units"):
        networks.check_compatible(wider, subset=True, allow_other_model=True)
    residual = NeuronGrid(6, model="a", weights_hash="h1", width=24, signal="residual",
                          model_layers=6)
    with pytest.raises(ValueError, match="signal 'mlp' vs 'residual'"):
        networks.check_compatible(residual, subset=True)
    # same weights, other name (a path vs the built-in name): the same model
    renamed = NeuronGrid(6, model="/models/a", weights_hash="h1", **base)
    networks.check_compatible(renamed, subset=True)
