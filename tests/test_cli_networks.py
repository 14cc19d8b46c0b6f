import json

import nibabel as nib
import numpy as np
import pytest

from conftest import planted_networks, token_events, write_synthetic_recording
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import read_grid


@pytest.fixture(scope="module")
def two_recordings(tmp_path_factory):
    """Two recordings of the same planted networks (different token signals)."""
    root = tmp_path_factory.mktemp("recs")
    grid = NeuronGrid(4, 64, model="syn", signal="mlp")
    folders = []
    for seed in (0, 1):
        runs, masks = planted_networks(seed=0)  # same networks
        fresh, _ = planted_networks(seed=seed + 10)  # other sources and noise
        rng = np.random.default_rng(seed)
        loadings = masks.reshape(len(masks), -1) * 1.5
        runs = [(rng.laplace(size=(100, 5)) ** 3 @ loadings
                 + 0.3 * rng.standard_normal((100, 256))).reshape(100, 4, 64).astype(np.float32)
                for _ in range(8)]
        del fresh
        folder = root / f"rec{seed}"
        write_synthetic_recording(folder, grid, runs, events=[token_events(100)] * len(runs))
        folders.append(folder)
    return folders, masks


def test_networks_cli_writes_the_contract_files(tmp_path, two_recordings, capsys):
    folders, masks = two_recordings
    out = tmp_path / "net"
    code = main(["networks", str(folders[0]), "--out", str(out), "--n-components", "5",
                 "--random-state", "0", "-q"])
    assert code == 0
    for name in ("components.nii.gz", "networks.nii.gz", "networks.json", "grid.json",
                 "params.json"):
        assert (out / name).exists(), name
    grid = read_grid(out)
    assert grid == read_grid(folders[0])
    components = nib.load(out / "components.nii.gz")
    assert components.shape == grid.shape + (5,)
    np.testing.assert_array_equal(components.affine, grid.affine)
    assert nib.load(out / "networks.nii.gz").get_data_dtype() == np.uint8
    doc = json.loads((out / "networks.json").read_text())
    assert doc["n_networks"] == 5
    first = doc["networks"][0]
    assert set(first) >= {"size", "layer_counts", "neurons", "top_tokens"}
    assert first["size"] == len(first["neurons"]) == sum(first["layer_counts"].values())
    assert first["top_tokens"][0]["token"].startswith("w")
    params = json.loads((out / "params.json").read_text())["params"]
    assert params["n_components"] == 5 and params["method"] == "canica"
    assert "Networks in" in capsys.readouterr().out


def test_networks_cli_refuses_to_overwrite(tmp_path, two_recordings, capsys):
    folders, _ = two_recordings
    out = tmp_path / "net"
    args = ["networks", str(folders[0]), "--out", str(out), "--n-components", "5", "-q"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_consistency_cli(tmp_path, two_recordings, capsys):
    folders, masks = two_recordings
    nets = []
    for n, folder in enumerate(folders):
        nets.append(tmp_path / f"net{n}")
        assert main(["networks", str(folder), "--out", str(nets[-1]), "--n-components", "5",
                     "--random-state", "0", "-q"]) == 0
    report = tmp_path / "consistency.json"
    assert main(["consistency", str(nets[0]), str(nets[1]), "--out", str(report),
                 "--n-draws", "50"]) == 0
    doc = json.loads(report.read_text())
    pair = doc["pairs"][0]
    assert len(pair["iou"]["scores"]) == 5
    assert min(pair["iou"]["scores"]) >= 0.9  # the same planted networks in both
    assert max(pair["iou"]["p_value"]) <= 1 / 51 + 1e-9
    assert doc["recurrence"]["counts"] == [1] * 5


def test_consistency_cli_refuses_different_grids(tmp_path, two_recordings, capsys):
    folders, _ = two_recordings
    assert main(["networks", str(folders[0]), "--out", str(tmp_path / "a"),
                 "--n-components", "5", "-q"]) == 0
    other = tmp_path / "rec-other"
    grid = NeuronGrid(4, 60, model="syn", signal="mlp")
    runs = [np.random.default_rng(0).standard_normal((60, 4, 60)).astype(np.float32)]
    write_synthetic_recording(other, grid, runs)
    assert main(["networks", str(other), "--out", str(tmp_path / "b"), "--n-components",
                 "3", "-q"]) == 0
    assert main(["consistency", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "c.json")]) == 2
    assert "60 vs 64 units per layer" in capsys.readouterr().err


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("llmfbn: warning")]
    assert len(lines) == 1 and lines[0].startswith("llmfbn: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def fitted(two_recordings, tmp_path_factory):
    """One networks folder per recording, written through the CLI (read-only here)."""
    folders, _ = two_recordings
    root = tmp_path_factory.mktemp("nets")
    nets = [root / f"net{n}" for n in range(2)]
    for folder, net in zip(folders, nets):
        assert main(["networks", str(folder), "--out", str(net), "--n-components", "5",
                     "--random-state", "0", "-q"]) == 0
    return nets


def test_networks_cli_force_never_replaces_a_recording(tmp_path, two_recordings, capsys):
    """Finding 2: --force replaced another recording's grid.json."""
    folders, _ = two_recordings
    before = {p: p.read_bytes() for p in folders[1].rglob("*") if p.is_file()}
    code = main(["networks", str(folders[0]), "--out", str(folders[1]), "--n-components", "5",
                 "--force", "-q"])
    assert code == 2
    line = _error_line(capsys)
    assert str(folders[1]) in line and "recording folder" in line and "even when" in line
    after = {p: p.read_bytes() for p in folders[1].rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("make_out", ["file", "glm"])
def test_networks_cli_out_of_another_kind_is_one_line(tmp_path, two_recordings, capsys,
                                                       make_out):
    """Finding 9: --out that is a file or a folder of another kind gave a traceback."""
    from llmfbn.io import replace_folder

    folders, _ = two_recordings
    out = tmp_path / "out"
    if make_out == "file":
        out.write_text("mine")
    else:
        with replace_folder(out, "glm") as staging:
            (staging / "glm.json").write_text("{}")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["networks", str(folders[0]), "--out", str(out), "--force", "-q"]) == 2
    line = _error_line(capsys)
    assert str(out) in line and ("is a file" in line or "glm folder" in line)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("args, flag", [
    (["--threshold", "nan"], "'--threshold' must be a finite number. nan"),
    (["--threshold", "inf"], "'--threshold' must be a finite number. inf"),
    (["--n-components", "0"], "'--n-components' must be >= 1. 0"),
    (["--n-top-tokens", "0"], "'--n-top-tokens' must be >= 1. 0"),
])
def test_networks_cli_bad_numbers_fail_before_any_work(tmp_path, capsys, args, flag):
    """Finding 9: --threshold nan was accepted; checks run before the recording is read."""
    out = tmp_path / "net"
    assert main(["networks", str(tmp_path / "no-recording"), "--out", str(out), *args]) == 2
    assert flag in _error_line(capsys)
    assert not out.exists()


def test_networks_cli_not_a_recording(tmp_path, fitted, capsys):
    assert main(["networks", str(fitted[0]), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "networks folder, not a recording folder" in _error_line(capsys)


def test_networks_cli_force_cleans_what_a_killed_run_left(tmp_path, two_recordings, fitted):
    """Finding 7: a kill left a mix of old and new files and .llmfbn-tmp-* leftovers."""
    import shutil

    from llmfbn.io._atomic import OLD_PREFIX, staging_name

    folders, _ = two_recordings
    out = tmp_path / "net"
    shutil.copytree(fitted[1], out)
    staged = tmp_path / staging_name("net")  # a staging folder, half written
    staged.mkdir()
    (staged / "components.nii.gz").write_bytes(b"half")
    (tmp_path / staging_name("net", OLD_PREFIX)).mkdir()  # an old copy not yet deleted
    assert main(["networks", str(folders[0]), "--out", str(out), "--n-components", "5",
                 "--random-state", "0", "--force", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]
    from llmfbn.networks import FunctionalNetworks

    np.testing.assert_array_equal(FunctionalNetworks.load(out).masks,
                                  FunctionalNetworks.load(fitted[0]).masks)


def test_consistency_cli_never_replaces_an_input(tmp_path, fitted, capsys):
    """Finding 1: --out A/networks.json destroyed an input without --force."""
    import shutil

    from llmfbn.networks import FunctionalNetworks

    net = tmp_path / "a"
    shutil.copytree(fitted[0], net)
    target = net / "networks.json"
    before = target.read_bytes()
    for extra in ([], ["--force"]):
        assert main(["consistency", str(net), str(fitted[1]), "--out", str(target),
                     "--n-draws", "5", *extra]) == 2
        assert "inside" in _error_line(capsys)
    assert target.read_bytes() == before
    FunctionalNetworks.load(net)  # still a whole networks folder


def test_consistency_cli_replaces_only_with_force(tmp_path, fitted, capsys):
    out = tmp_path / "c.json"
    argv = ["consistency", str(fitted[0]), str(fitted[1]), "--out", str(out), "--n-draws", "5"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "pass --force" in _error_line(capsys)
    assert main(argv + ["--force"]) == 0
    plain = tmp_path / "notes.json"
    plain.write_text('{"mine": true}')
    assert main(argv[:-4] + ["--out", str(plain), "--force"]) == 2
    assert "not a consistency file" in _error_line(capsys)
    assert plain.read_text() == '{"mine": true}'


def test_consistency_cli_broken_networks_json_is_one_line(tmp_path, fitted, capsys):
    """Finding 9: a broken networks.json gave a traceback."""
    import shutil

    net = tmp_path / "a"
    shutil.copytree(fitted[0], net)
    (net / "networks.json").write_text("{broken")
    assert main(["consistency", str(net), str(fitted[1]), "--out", str(tmp_path / "c.json"),
                 "--n-draws", "5"]) == 2
    assert "networks.json is not a valid networks.json" in _error_line(capsys)
    assert not (tmp_path / "c.json").exists()
