"""``fingerprint(..., scheduler=...)`` and ``llmfbn fingerprint --scheduler``: the same table.

The library tests share one LocalCluster of 2 worker processes through its
``tcp://`` address (1 torch thread per worker); the CLI test starts
``local:2`` itself. The one-process reference runs with the workers' torch
thread count (see tests/test_record_cluster.py: some CPU kernels give bits
that depend on it).
"""

import os

import pandas as pd
import pytest
import torch
from test_fingerprint import K, _one_line_error, _texts
from test_record_cluster import threads

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.cluster import TaskFailedError, connect
from llmfbn.fingerprint import _fingerprint, fingerprint

distributed = pytest.importorskip("distributed")

@pytest.fixture
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(_texts()) + "\n")
    return path


@pytest.fixture(scope="module")
def address():
    """A running LocalCluster of 2 workers (1 thread each): fingerprints connect to it."""
    with connect("local:2", threads_per_worker=1) as session:
        yield session.client.scheduler.address


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_model_dir):
    """The tiny Llama (seed 0), an independent one (seed 1) and one whose MLP gives NaN."""
    root = tmp_path_factory.mktemp("fingerprint-cluster-models")
    independent, broken = make_loaded("llama", seed=1), make_loaded("llama", seed=0)
    with torch.no_grad():
        broken.model.model.layers[1].mlp.up_proj.weight.fill_(float("nan"))
    folders = {"reference": tiny_model_dir}
    for name, loaded in (("independent", independent), ("broken", broken)):
        loaded.model.save_pretrained(root / name)
        loaded.tokenizer.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def test_cluster_table_is_the_one_process_table_bit_for_bit(model_dirs, address, tmp_path,
                                                             monkeypatch):
    # Relative paths: the workers are given them absolute, the table keeps them as given.
    monkeypatch.chdir(model_dirs["independent"].parent)
    candidates = ["independent", str(model_dirs["reference"]), "independent"]
    settings = dict(n_components=K, n_permutations=49, max_tokens=64, batch_size=4)
    with threads(1):
        here = fingerprint(str(model_dirs["reference"]), candidates, _texts(), **settings)
    there = fingerprint(str(model_dirs["reference"]), candidates, _texts(), scheduler=address,
                        **settings)
    assert there["candidate"].tolist() == [c for c in candidates for _ in range(2)]
    assert there["score"].iloc[2:4].tolist() == pytest.approx([1.0, 1.0], abs=1e-9)
    assert there["score"].iloc[0] < 0.9
    pd.testing.assert_frame_equal(there, here, check_exact=True)


def test_a_loaded_model_or_a_bad_scheduler_is_refused_before_any_load(model_dirs, monkeypatch):
    loads = []
    monkeypatch.setattr(_fingerprint, "load_model", lambda *a, **k: loads.append(a))
    reference = str(model_dirs["reference"])
    with pytest.raises(TypeError, match=r"name or a path .* LoadedModel was provided for "
                                        r"\['tiny-llama'\]"):
        fingerprint(reference, [make_loaded("llama")], _texts(), n_components=K,
                    scheduler="local:1")
    for bad in ("local:0", "localhost", "absent.json"):
        with pytest.raises(ValueError, match="'scheduler' must be"):
            fingerprint(reference, [reference], _texts(), n_components=K, scheduler=bad)
    assert loads == []


def test_model_checks_on_workers_fail_as_in_one_process(model_dirs, address, tmp_path):
    missing = str(tmp_path / "no-such-model")
    settings = dict(n_components=K, n_permutations=9, max_tokens=64)
    errors = []
    for scheduler in (None, address):
        with pytest.raises(ValueError, match="candidate '.*no-such-model' cannot be loaded") \
                as err:
            fingerprint(str(model_dirs["reference"]), [missing], _texts(), scheduler=scheduler,
                        **settings)
        errors.append(str(err.value))
    assert errors[0] == errors[1]
    with pytest.raises(ValueError, match="'n_components' must be at most the 72 MLP neurons"):
        fingerprint(str(model_dirs["reference"]), [str(model_dirs["independent"])], _texts(),
                    scheduler=address, **dict(settings, n_components=73))


def test_a_failing_task_names_its_model_in_one_line(model_dirs, address, texts_file, tmp_path,
                                                    capsys):
    broken = str(model_dirs["broken"])
    with pytest.raises(TaskFailedError, match=(
            f"^fingerprinting the candidate '{broken}' failed on the cluster: "
            f"FloatingPointError: The candidate '{broken}' gave .* non-finite activations")):
        fingerprint(str(model_dirs["reference"]), [broken], _texts(), n_components=K,
                    n_permutations=9, scheduler=address)
    out = tmp_path / "scores.csv"
    assert main(["fingerprint", str(model_dirs["reference"]), broken, "--texts",
                 str(texts_file), "--out", str(out), "--n-components", str(K),
                 "--scheduler", address]) == 2
    line = _one_line_error(capsys)
    assert f"fingerprinting the candidate '{broken}' failed on the cluster" in line
    assert not out.exists()


def test_cli_with_local_2_writes_the_same_bytes(model_dirs, texts_file, tmp_path, capsys):
    args = ["fingerprint", str(model_dirs["reference"]), str(model_dirs["independent"]),
            str(model_dirs["reference"]), "--texts", str(texts_file), "--n-components", str(K),
            "--n-permutations", "49", "--max-tokens", "64", "--quiet"]
    with threads(max((os.cpu_count() or 1) // 2, 1)):  # a local:2 worker's torch threads
        assert main(args + ["--out", str(tmp_path / "here.csv")]) == 0
    assert main(args + ["--out", str(tmp_path / "there.csv"), "--scheduler", "local:2"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "here.csv"),
                                               str(tmp_path / "there.csv")]
    assert (tmp_path / "there.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()


@pytest.mark.parametrize("scheduler, expected", [
    ("local:0", "'--scheduler' must be 'local:N'"),
    ("nowhere.json", "The scheduler file 'nowhere.json' does not exist"),
])
def test_cli_bad_scheduler_is_one_line_before_any_load(model_dirs, texts_file, tmp_path, capsys,
                                                        monkeypatch, scheduler, expected):
    loads = []
    monkeypatch.setattr(_fingerprint, "load_model", lambda *a, **k: loads.append(a))
    out = tmp_path / "scores.csv"
    assert main(["fingerprint", str(model_dirs["reference"]), str(model_dirs["independent"]),
                 "--texts", str(texts_file), "--out", str(out), "--n-components", str(K),
                 "--scheduler", scheduler]) == 2
    assert expected in _one_line_error(capsys)
    assert loads == [] and not out.exists()
