"""``llmfbn evaluate`` / ``llmfbn intervene``: the results CSV, its resume and its checks."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.grid import NeuronGrid
from llmfbn.io import OutputLock, settings_path
from llmfbn.networks import FunctionalNetworks

NOPE = "nope-model"  # a model that cannot load: errors that name it came after loading


@pytest.fixture(scope="module")
def tiny_model_hash(tiny_model_dir):
    from llmfbn.models import load_model

    return load_model(tiny_model_dir).weights_hash


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    """Another tiny Llama (other weights, same grid) as a model folder."""
    folder = tmp_path_factory.mktemp("other-llama")
    loaded = make_loaded("llama", seed=1)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def _save_networks(folder, grid, shift=0):
    masks = np.zeros((3, grid.n_layers, grid.width), bool)
    masks[0, 0, shift:shift + 4] = masks[1, 1, 4:10] = masks[2, grid.n_layers - 1, 10:12] = True
    FunctionalNetworks(masks.astype(np.float32), masks, grid).save(folder)
    return folder


def _grid(model_dir, weights_hash, n_layers=3, model_layers=3):
    return NeuronGrid(n_layers, 24, model=str(model_dir), signal="mlp",
                      weights_hash=weights_hash, model_layers=model_layers)


@pytest.fixture
def tiny_networks_dir(tmp_path, tiny_model_dir, tiny_model_hash):
    return _save_networks(tmp_path / "net", _grid(tiny_model_dir, tiny_model_hash))


@pytest.fixture
def tiny_eval_files(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat .\nthe dog ran far away and it was good\n" * 5)
    sst = tmp_path / "sst2"
    sst.mkdir()
    (sst / "dev.tsv").write_text("text\tlabel\nthe film was very good\t1\n"
                                 "the film was bad\t0\nit was good\t1\n")
    return text, sst


def _intervene(model, networks, out, *extra):
    return main(["intervene", "--model", str(model), "--networks", str(networks),
                 "--max-length", "16", "--stride", "8", "--controls", "1", "--out", str(out),
                 "-q", *map(str, extra)])


def test_intervene_cli_writes_contract_csv_and_resumes(tmp_path, tiny_model_dir,
                                                       tiny_networks_dir, tiny_eval_files,
                                                       capsys):
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
    (["--controls", "0"], "'--controls' must be a positive integer. 0 was provided."),
    (["--limit", "-1"], "'--limit' must be a positive integer. -1 was provided."),
    (["--batch-size", "0"], "'--batch-size' must be a positive integer"),
    (["--max-length", "8"], "'--stride' must be <= '--max-length' (8). 512 was provided."),
])
def test_intervene_cli_errors_come_before_the_model_loads(tmp_path, tiny_networks_dir,
                                                          tiny_eval_files, capsys, extra,
                                                          message):
    text, _ = tiny_eval_files
    code = main(["intervene", "--model", NOPE, "--networks", str(tiny_networks_dir),
                 "--eval", f"text={text}", "--out", str(tmp_path / "r.csv"), "-q", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and NOPE not in err and len(err.strip().splitlines()) == 1


def test_out_that_is_a_folder_is_refused(tmp_path, tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    assert main(["evaluate", "--model", NOPE, "--eval", f"text={text}", "--out",
                 str(tmp_path), "-q"]) == 2
    assert "'--out' must be a CSV file path" in capsys.readouterr().err


def test_intervene_cli_bad_dataset_and_foreign_networks(tmp_path, tiny_model_dir,
                                                        tiny_eval_files, capsys):
    text, sst = tiny_eval_files
    (sst / "dev.tsv").write_text("sentence\tgold\nhello\t1\n")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--eval", f"sst2={sst}",
                 "--out", str(tmp_path / "r.csv"), "-q"]) == 2
    assert "text" in capsys.readouterr().err
    grid = NeuronGrid(30, 1536, model="smollm2-135m", signal="mlp")
    masks = np.zeros((1, 30, 1536), bool)
    masks[0, 0, 0] = True
    FunctionalNetworks(masks.astype(np.float32), masks, grid).save(tmp_path / "foreign")
    assert _intervene(tiny_model_dir, tmp_path / "foreign", tmp_path / "r2.csv",
                      "--eval", f"text={text}") == 2
    assert "1536 vs 24 units per layer" in capsys.readouterr().err


def test_resume_with_changed_settings_is_refused_before_the_model_loads(
        tmp_path, tiny_model_dir, tiny_model_hash, tiny_networks_dir, tiny_eval_files, capsys):
    text, sst = tiny_eval_files
    out = tmp_path / "r.csv"
    evals = ["--eval", f"text={text}", "--eval", f"sst2={sst}", "--network", "0"]
    assert _intervene(tiny_model_dir, tiny_networks_dir, out, *evals, "--limit", "2") == 0
    before = out.read_bytes(), settings_path(out).read_bytes()
    other_networks = _save_networks(tmp_path / "net2", _grid(tiny_model_dir, tiny_model_hash),
                                    shift=3)
    other_text = tmp_path / "other.txt"
    other_text.write_text("one two three four five six\n" * 4)
    for networks, extra, message in [
            (tiny_networks_dir, ["--limit", "3"], "--limit of task 'sst2' was 2, now 3"),
            (tiny_networks_dir, ["--limit", "2", "--controls", "2"], "--controls was 1, now 2"),
            (other_networks, ["--limit", "2"], "--networks was 3 networks"),
            (tiny_networks_dir, ["--limit", "2", "--eval", f"text={other_text}"], None)]:
        if message is None:  # the same task name with another file: refused too
            extra = ["--limit", "2", "--eval", f"text={other_text}", "--eval", f"sst2={sst}",
                     "--network", "0"]
            message = f"the --eval file of task 'text' was {text.resolve()}"
            code = _intervene(NOPE, networks, out, *extra)
        else:
            code = _intervene(NOPE, networks, out, *evals, *extra)
        err = capsys.readouterr().err
        assert code == 2, err
        assert message in err and "pass --force to start over" in err, err
        assert NOPE not in err and "overwrite=True" not in err
        assert (out.read_bytes(), settings_path(out).read_bytes()) == before
    assert _intervene(tiny_model_dir, tiny_networks_dir, out, *evals, "--limit", "3",
                      "--force") == 0
    settings = json.loads(settings_path(out).read_text())
    assert settings["tasks"]["sst2"]["limit"] == 3


def test_evaluate_with_another_model_is_refused(tmp_path, tiny_model_dir, other_model_dir,
                                                tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    out = tmp_path / "base.csv"
    args = ["--eval", f"text={text}", "--max-length", "16", "--stride", "8", "--out", str(out),
            "-q"]
    assert main(["evaluate", "--model", str(tiny_model_dir), *args]) == 0
    before = out.read_bytes()
    assert main(["evaluate", "--model", str(other_model_dir), *args]) == 2
    err = capsys.readouterr().err
    assert f"--model was '{tiny_model_dir}'" in err and f"now '{other_model_dir}'" in err
    assert out.read_bytes() == before


def test_same_task_twice_is_refused(tmp_path, tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    other = tmp_path / "other.txt"
    other.write_text("one two three\n")
    assert main(["evaluate", "--model", NOPE, "--eval", f"text={text}", "--eval",
                 f"text={other}", "--out", str(tmp_path / "r.csv"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"names task 'text' twice ({text} and {other})" in err


def test_repeated_network_gives_one_set_of_rows(tmp_path, tiny_model_dir, tiny_networks_dir,
                                                tiny_eval_files):
    text, _ = tiny_eval_files
    out = tmp_path / "r.csv"
    assert _intervene(tiny_model_dir, tiny_networks_dir, out, "--eval", f"text={text}",
                      "--network", "0,0") == 0
    assert pd.read_csv(out, dtype={"network": str}).network.tolist() == ["none", "0"]


def test_csv_without_settings_needs_force(tmp_path, tiny_model_dir, tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    out = tmp_path / "old.csv"
    out.write_text("network,n_neurons,task,metric,mode,edit_value,value,control_mean,"
                   "control_ci_low,control_ci_high,ratio,n_controls,baseline\n"
                   "none,0,text,perplexity,none,,1.0,,,,,0,1.0\n")
    args = ["evaluate", "--model", NOPE, "--eval", f"text={text}", "--max-length", "16",
            "--stride", "8", "--out", str(out), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has no settings file" in err and "--force" in err and NOPE not in err
    args[2] = str(tiny_model_dir)
    assert main(args + ["--force"]) == 0
    assert pd.read_csv(out).value[0] != 1.0 and settings_path(out).exists()


def test_networks_of_another_model_need_allow_other_model(tmp_path, tiny_model_dir,
                                                          tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    networks = _save_networks(tmp_path / "net", _grid("base-model", "sha256:other"))
    args = ["--eval", f"text={text}", "--network", "0"]
    assert _intervene(tiny_model_dir, networks, tmp_path / "r.csv", *args) == 2
    err = capsys.readouterr().err
    assert "come from model 'base-model'" in err and "--allow-other-model" in err
    assert not (tmp_path / "r.csv").exists()
    assert _intervene(tiny_model_dir, networks, tmp_path / "r.csv", *args,
                      "--allow-other-model") == 0


def test_networks_of_a_model_with_other_layers_are_refused_even_when_allowed(
        tmp_path, tiny_model_dir, tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    networks = _save_networks(tmp_path / "net", _grid("two-layer-model", "sha256:other",
                                                      n_layers=2, model_layers=2))
    assert _intervene(tiny_model_dir, networks, tmp_path / "r.csv", "--eval", f"text={text}",
                      "--allow-other-model") == 2
    assert "a model of 2 vs 3 layers" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_a_second_writer_fails_before_the_model_loads(tmp_path, tiny_eval_files, capsys):
    text, _ = tiny_eval_files
    out = tmp_path / "r.csv"
    with OutputLock(out):
        assert main(["evaluate", "--model", NOPE, "--eval", f"text={text}", "--out", str(out),
                     "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{out} is being written by process" in err and NOPE not in err
