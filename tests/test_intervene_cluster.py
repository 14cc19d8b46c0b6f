"""``evaluate`` / ``intervene`` on a Dask cluster (LocalCluster of 2): the same CSV as one
process, a killed worker without loss or doubles, failures named in one line."""

import dataclasses
import functools
import os

import numpy as np
import pytest

from llmfbn.cli import main
from llmfbn.cluster import TaskFailedError, connect
from llmfbn.grid import NeuronGrid
from llmfbn.intervention import Evaluation, baseline_rows, intervention_sweep, make_evaluation
from llmfbn.io import settings_path
from llmfbn.networks import FunctionalNetworks

pytest.importorskip("distributed")

NOPE = "nope-model"  # a model that cannot load: errors that name it came after loading
SWEEP = dict(mode="amplify", values=[1, 2], n_controls=2, random_state=3, verbose=0)


@pytest.fixture(scope="module")
def session():
    with connect("local:2") as session:
        yield session


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmfbn.models import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir, loaded):
    """Evaluation files and a networks folder of the tiny model."""
    folder = tmp_path_factory.mktemp("cluster-inputs")
    text = folder / "text.txt"
    text.write_text("the cat sat on the mat .\nthe dog ran far away and it was good\n" * 5)
    sst = folder / "sst2"
    sst.mkdir()
    (sst / "dev.tsv").write_text("text\tlabel\nthe film was very good\t1\n"
                                 "the film was bad\t0\nit was good\t1\n")
    grid = NeuronGrid(3, 24, model=str(tiny_model_dir), signal="mlp",
                      weights_hash=loaded.weights_hash, model_layers=3)
    masks = np.zeros((3, 3, 24), bool)
    masks[0, 0, :4] = masks[1, 1, 4:10] = masks[2, 2, 10:12] = True
    FunctionalNetworks(masks.astype(np.float32), masks, grid).save(folder / "net")
    return text, sst, folder / "net"


@pytest.fixture(scope="module")
def evaluations(files):
    text, sst, _ = files
    return [make_evaluation("text", text, max_length=16, stride=8),
            make_evaluation("sst2", sst)]


@pytest.fixture(scope="module")
def networks(files):
    return FunctionalNetworks.load(files[2])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, loaded, networks, evaluations):
    """The sweep in this process: the CSV and settings every cluster run must equal."""
    out = tmp_path_factory.mktemp("reference") / "results.csv"
    intervention_sweep(loaded, networks, evaluations, out_csv=out, **SWEEP)
    return out.read_bytes(), settings_path(out).read_bytes()


def _read(out):
    return out.read_bytes(), settings_path(out).read_bytes()


_CALLS = [0]  # evaluations run by this (worker) process


def _dies_on_second_call(marker, run, model, tokenizer):
    """``run``, except that the process dies at its second evaluation while
    ``marker`` is absent (it is created first: the retried task runs through)."""
    _CALLS[0] += 1
    if _CALLS[0] == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return run(model, tokenizer)


def test_sweep_with_a_killed_worker_equals_one_process(session, loaded, networks, evaluations,
                                                       reference, tmp_path):
    marker = str(tmp_path / "died")
    dying = [Evaluation(e.task, functools.partial(_dies_on_second_call, marker, e.run),
                        e.settings) for e in evaluations]
    out = tmp_path / "results.csv"
    intervention_sweep(loaded, networks, dying, out_csv=out, scheduler=session, **SWEEP)
    assert os.path.exists(marker)  # a worker died inside an edited unit
    assert _read(out) == reference  # nothing lost, nothing doubled, same order


def test_resume_with_or_without_a_cluster_is_one_run(session, loaded, networks, evaluations,
                                                     reference, tmp_path):
    out = tmp_path / "results.csv"
    intervention_sweep(loaded, networks, evaluations, network_ids=[0], out_csv=out,
                       scheduler=session, **SWEEP)
    intervention_sweep(loaded, networks, evaluations, out_csv=out, **SWEEP)
    assert _read(out) == reference
    done = _read(out)
    intervention_sweep(loaded, networks, evaluations, out_csv=out, scheduler=session, **SWEEP)
    assert _read(out) == done  # resumed on the cluster: nothing to do, nothing changed


def test_evaluate_on_a_cluster_equals_one_process(session, loaded, evaluations, tmp_path):
    one, many = tmp_path / "one.csv", tmp_path / "many.csv"
    baseline_rows(loaded, evaluations, out_csv=one, verbose=0)
    rows = baseline_rows(loaded, evaluations, out_csv=many, scheduler=session, verbose=0)
    assert _read(many) == _read(one)
    assert list(rows.task) == ["text", "sst2", "sst2"]


def test_a_worker_with_other_weights_is_refused_naming_both(session, loaded, evaluations):
    other = dataclasses.replace(loaded, weights_hash="sha256:other")
    with pytest.raises(TaskFailedError, match=(
            r"^the baseline of task 'text' failed on the cluster: ValueError: The worker's "
            rf"model .* has weights {loaded.weights_hash}, the client's sha256:other")):
        baseline_rows(other, evaluations[:1], scheduler=session, verbose=0)


def _fails(model, tokenizer):
    raise ValueError("no items left")


def test_a_failed_evaluation_is_one_error_naming_its_unit(session, loaded, networks,
                                                           evaluations):
    bad = Evaluation("bad", _fails)
    with pytest.raises(TaskFailedError, match=r"^(the baseline of task 'bad'|network \d "
                                              r"\(amplify [12]\) on task 'bad') failed on the "
                                              r"cluster: ValueError: no items left$"):
        intervention_sweep(loaded, networks, [bad], scheduler=session, **SWEEP)


def _cli(command, model, files, out, *extra):
    text, sst, net = files
    args = [command, "--model", str(model), "--eval", f"text={text}", "--eval", f"sst2={sst}",
            "--max-length", "16", "--stride", "8", "--out", str(out), "-q", *extra]
    if command == "intervene":
        args += ["--networks", str(net), "--controls", "2", "--mode", "scale",
                 "--value", "0.5,2"]
    return main(args)


def test_cli_intervene_local_2_equals_one_process(tiny_model_dir, files, tmp_path):
    one, many = tmp_path / "one.csv", tmp_path / "many.csv"
    assert _cli("intervene", tiny_model_dir, files, one) == 0
    assert _cli("intervene", tiny_model_dir, files, many, "--scheduler", "local:2") == 0
    assert _read(many) == _read(one)


def test_cli_evaluate_on_a_running_scheduler_equals_one_process(session, tiny_model_dir, files,
                                                                tmp_path):
    one, many = tmp_path / "one.csv", tmp_path / "many.csv"
    address = session.client.scheduler.address
    assert _cli("evaluate", tiny_model_dir, files, one) == 0
    assert _cli("evaluate", tiny_model_dir, files, many, "--scheduler", address) == 0
    assert _read(many) == _read(one)


@pytest.mark.parametrize("command", ["evaluate", "intervene"])
@pytest.mark.parametrize("value, message", [
    ("local:0", "'--scheduler' must be 'local:N'"),
    ("host:8786", "'host:8786' was provided"),
    ("missing.json", "The scheduler file 'missing.json' does not exist"),
])
def test_a_bad_scheduler_is_one_line_before_the_model_loads(files, tmp_path, capsys, command,
                                                            value, message):
    assert _cli(command, NOPE, files, tmp_path / "r.csv", "--scheduler", value) == 2
    err = capsys.readouterr().err
    assert message in err and NOPE not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.csv").exists()


def _row(network):
    return dict(network=str(network), n_neurons=1, task="t", metric="m", mode="inhibit",
                edit_value="", value=1.0, control_mean=1.0, control_ci_low=1.0,
                control_ci_high=1.0, ratio=1.0, ratio_ci_low=1.0, ratio_ci_high=1.0,
                p_value=0.5, ci_method="x", n_controls=1, n_units=0, baseline=1.0)


def test_results_table_keeps_rows_in_the_order_of_their_positions(tmp_path):
    from llmfbn.io import open_results

    out = tmp_path / "r.csv"
    settings = {"command": "intervene", "tasks": {"t": {}}}
    with open_results(out, settings) as table:
        table.append([_row("r")])
    with open_results(out, settings) as table:  # resumed rows stay first
        for position, network in ((2, "c"), (None, "z"), (0, "a"), (1, "b"), (2, "d")):
            table.append([_row(network)], position=position)
    assert list(table.rows.network) == ["r", "a", "b", "c", "d", "z"]
    assert out.read_text().splitlines()[1:] == table.rows.to_csv(index=False).splitlines()[1:]
