import json

import nibabel as nib
import numpy as np
import pytest

from conftest import planted_networks, write_synthetic_recording
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
        paths = write_synthetic_recording(folder, grid, runs)
        for p in paths:  # events with token strings, as `llmfbn record` writes them
            p.with_name(p.name.replace("_bold.nii", "_events.tsv")).write_text(
                "onset\tduration\ttrial_type\ttoken\n"
                + "".join(f"{t}\t1\ttoken\tw{t}\n" for t in range(100)))
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
    assert "different models or grids" in capsys.readouterr().err


@pytest.fixture
def tiny_networks_dir(tmp_path):
    from llmfbn.networks import FunctionalNetworks

    grid = NeuronGrid(3, 24, model=None, signal="mlp")
    masks = np.zeros((3, 3, 24), bool)
    masks[0, 0, :4] = masks[1, 1, 4:10] = masks[2, 2, 10:12] = True
    FunctionalNetworks(masks.astype(np.float32), masks, grid).save(tmp_path / "net")
    return tmp_path / "net"


@pytest.fixture
def tiny_eval_files(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat .\nthe dog ran far away and it was good\n" * 5)
    sst = tmp_path / "sst2"
    sst.mkdir()
    (sst / "dev.tsv").write_text("text\tlabel\nthe film was very good\t1\n"
                                 "the film was bad\t0\nit was good\t1\n")
    return text, sst


def test_intervene_cli_writes_contract_csv_and_resumes(tmp_path, tiny_model_dir,
                                                       tiny_networks_dir, tiny_eval_files,
                                                       capsys):
    import pandas as pd

    text, sst = tiny_eval_files
    out = tmp_path / "results.csv"
    args = ["intervene", "--model", str(tiny_model_dir), "--networks", str(tiny_networks_dir),
            "--network", "0,2", "--mode", "inhibit", "--eval", f"text={text}",
            "--eval", f"sst2={sst}", "--controls", "2", "--max-length", "16", "--stride", "8",
            "--out", str(out), "-q"]
    assert main(args) == 0
    rows = pd.read_csv(out, dtype={"network": str})
    assert list(rows.columns)[:10] == ["network", "n_neurons", "task", "metric", "mode",
                                       "edit_value", "value", "control_mean",
                                       "control_ci_low", "control_ci_high"][:10]
    assert {"ratio", "n_controls", "baseline"} <= set(rows.columns)
    assert set(rows.network) == {"none", "0", "2"}
    assert set(rows.metric) == {"perplexity", "accuracy", "accuracy_norm"}
    before = out.read_text()
    assert main(args) == 0  # resumed: nothing recomputed, nothing changed
    assert out.read_text() == before
    assert main(["evaluate", "--model", str(tiny_model_dir), "--eval", f"text={text}",
                 "--max-length", "16", "--stride", "8", "--out", str(tmp_path / "b.csv"),
                 "-q"]) == 0
    base = pd.read_csv(tmp_path / "b.csv")
    assert list(base.network.astype(str)) == ["none"]
    assert base.value[0] == pytest.approx(
        rows[(rows.network == "none") & (rows.metric == "perplexity")].value.iloc[0])


@pytest.mark.parametrize("extra, message", [
    (["--network", "9"], "out of range: the folder holds 3 networks"),
    (["--mode", "amplify"], "'--value' is required with --mode amplify"),
    (["--network", "two"], "'--network' takes indices"),
])
def test_intervene_cli_errors(tmp_path, tiny_model_dir, tiny_networks_dir, tiny_eval_files,
                              capsys, extra, message):
    text, _ = tiny_eval_files
    code = main(["intervene", "--model", str(tiny_model_dir), "--networks",
                 str(tiny_networks_dir), "--eval", f"text={text}", "--max-length", "16",
                 "--stride", "8", "--out", str(tmp_path / "r.csv"), "-q", *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_intervene_cli_bad_dataset_and_foreign_networks(tmp_path, tiny_model_dir,
                                                        tiny_eval_files, capsys):
    from llmfbn.networks import FunctionalNetworks

    text, sst = tiny_eval_files
    (sst / "dev.tsv").write_text("sentence\tgold\nhello\t1\n")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--eval", f"sst2={sst}",
                 "--out", str(tmp_path / "r.csv"), "-q"]) == 2
    assert "text" in capsys.readouterr().err
    grid = NeuronGrid(30, 1536, model="smollm2-135m", signal="mlp")
    masks = np.zeros((1, 30, 1536), bool)
    masks[0, 0, 0] = True
    FunctionalNetworks(masks.astype(np.float32), masks, grid).save(tmp_path / "foreign")
    assert main(["intervene", "--model", str(tiny_model_dir), "--networks",
                 str(tmp_path / "foreign"), "--eval", f"text={text}", "--max-length", "16",
                 "--stride", "8", "--out", str(tmp_path / "r2.csv"), "-q"]) == 2
    assert "1536 units per layer" in capsys.readouterr().err
