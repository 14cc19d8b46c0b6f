import copy
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_CONFIGS, make_loaded
from llmfbn.evaluation import MetricScore
from llmfbn.grid import NeuronGrid
from llmfbn.hooks import active_hook_count
from llmfbn.intervention import (
    CI_METHODS,
    COLUMNS,
    Evaluation,
    NonFiniteActivationError,
    amplify,
    baseline_rows,
    compare_to_controls,
    confidence_interval,
    edit_neurons,
    fold_edit,
    inhibit,
    intervention_sweep,
    make_evaluation,
    matched_controls,
    resolve_targets,
    scale,
    summarise_edit,
)
from llmfbn.io import (
    FormatError,
    OutputExistsError,
    OutputLock,
    OutputLockedError,
    ResumeMismatchError,
    read_results,
    settings_path,
)
from llmfbn.networks import FunctionalNetworks
from llmfbn.recording import record_activations

TEXTS = ["the cat sat on the mat .", "a dog ran far away", "one two three four five"]


def _logits(loaded, texts=TEXTS):
    tok = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = loaded.model(**tok)
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state), tok["attention_mask"]


def _targets():
    return {0: [1, 5], 2: [0, 3, 23]}


def test_inhibit_zeroes_exactly_the_selected_neurons():
    loaded = make_loaded("llama")
    base = record_activations(loaded, TEXTS[:1])[0]
    recorded = {}
    with inhibit(loaded.model, _targets()):
        # the recording hook reads the down-projection input after the edit hook
        recorded = record_activations(loaded, TEXTS[:1])[0]
    assert np.all(recorded[:, 0, [1, 5]] == 0) and np.all(recorded[:, 2, [0, 3, 23]] == 0)
    untouched = np.ones((3, 24), bool)
    untouched[0, [1, 5]] = untouched[2, [0, 3, 23]] = False
    np.testing.assert_allclose(recorded[:, 0][:, untouched[0]], base[:, 0][:, untouched[0]])
    # later layers see the edit's downstream effect
    assert not np.allclose(recorded[:, 1], base[:, 1])


def test_amplify_and_scale_values():
    loaded = make_loaded("llama")
    base = record_activations(loaded, TEXTS[:1])[0]
    with amplify(loaded.model, {0: [4]}, 2.5):
        added = record_activations(loaded, TEXTS[:1])[0]
    np.testing.assert_allclose(added[:, 0, 4], base[:, 0, 4] + 2.5, rtol=1e-6)
    with scale(loaded.model, {0: [4]}, -3.0):
        scaled = record_activations(loaded, TEXTS[:1])[0]
    np.testing.assert_allclose(scaled[:, 0, 4], base[:, 0, 4] * -3.0, rtol=1e-6)


def test_outputs_after_exit_are_bit_identical_and_parameters_untouched():
    loaded = make_loaded("llama")
    before, _ = _logits(loaded)
    params = {n: p.clone() for n, p in loaded.model.named_parameters()}
    with inhibit(loaded.model, _targets()):
        during, _ = _logits(loaded)
    after, _ = _logits(loaded)
    assert not torch.equal(before, during)
    assert torch.equal(before, after)
    for name, p in loaded.model.named_parameters():
        assert torch.equal(p, params[name]), name


def test_no_hook_left_after_an_error_and_nesting_unwinds_in_order():
    loaded = make_loaded("llama")
    model = loaded.model
    assert active_hook_count(model) == 0
    with pytest.raises(RuntimeError, match="inside"):
        with inhibit(model, _targets()):
            raise RuntimeError("inside")
    assert active_hook_count(model) == 0
    base = record_activations(loaded, TEXTS[:1])[0]
    with amplify(model, {0: [2]}, 1.0):
        assert active_hook_count(model) == 1
        with scale(model, {0: [2]}, 10.0):  # applied after the outer edit
            assert active_hook_count(model) == 2
            both = record_activations(loaded, TEXTS[:1])[0]
        assert active_hook_count(model) == 1
        outer = record_activations(loaded, TEXTS[:1])[0]
    assert active_hook_count(model) == 0
    np.testing.assert_allclose(both[:, 0, 2], (base[:, 0, 2] + 1.0) * 10.0, rtol=1e-5)
    np.testing.assert_allclose(outer[:, 0, 2], base[:, 0, 2] + 1.0, rtol=1e-6)


@pytest.mark.parametrize("family", sorted(set(TINY_CONFIGS) - {"bert"}))
def test_batched_padded_inputs_and_generate(family):
    loaded = make_loaded(family)
    tok = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with inhibit(loaded.model, _targets()), torch.no_grad():
        batched = loaded.model(**tok).logits
        single = loaded.model(**loaded.tokenizer(TEXTS[1:2], return_tensors="pt")).logits
        generated = loaded.model.generate(**loaded.tokenizer(TEXTS[:1], return_tensors="pt"),
                                          max_new_tokens=3, do_sample=False,
                                          pad_token_id=0)
    n = single.shape[1]
    torch.testing.assert_close(batched[1, :n], single[0], rtol=1e-4, atol=1e-5)
    assert generated.shape[1] == len(TEXTS[0].split()) + 3
    assert active_hook_count(loaded.model) == 0


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt", "phi3"])
@pytest.mark.parametrize("mode, value", [("inhibit", None), ("amplify", 1.5), ("scale", 0.3)])
def test_folded_weights_match_the_hook(family, mode, value):
    loaded = make_loaded(family)
    edit = {"inhibit": lambda: inhibit(loaded.model, _targets()),
            "amplify": lambda: amplify(loaded.model, _targets(), value),
            "scale": lambda: scale(loaded.model, _targets(), value)}[mode]
    with edit():
        hooked, mask = _logits(loaded)
    folded_model = fold_edit(copy.deepcopy(loaded.model), _targets(), mode=mode, value=value)
    tok = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        folded = folded_model(**tok).logits
    real = mask.bool()
    torch.testing.assert_close(folded[real], hooked[real], rtol=1e-4, atol=1e-5)


def test_targets_from_networks_and_other_forms():
    loaded = make_loaded("llama")
    grid = NeuronGrid(2, 24, layers=[0, 2], model="tiny-llama", signal="mlp")
    masks = np.zeros((2, 2, 24), bool)
    masks[0, 0, [1, 5]] = True
    masks[1, 1, [3]] = True
    nets = FunctionalNetworks(masks.astype(np.float32), masks, grid)
    resolved = resolve_targets(loaded.model, nets, networks=[0])
    assert {k: v.tolist() for k, v in resolved.items()} == {0: [1, 5]}
    union = resolve_targets(loaded.model, nets)
    assert {k: v.tolist() for k, v in union.items()} == {0: [1, 5], 2: [3]}
    pairs = resolve_targets(loaded.model, [(2, 3), (0, 5), (0, 1)])
    assert {k: v.tolist() for k, v in pairs.items()} == {0: [1, 5], 2: [3]}
    full = np.zeros((3, 24), bool)
    full[2, 3] = True
    assert resolve_targets(loaded.model, full)[2].tolist() == [3]


@pytest.mark.parametrize("targets, error, match", [
    ({5: [0]}, ValueError, "Layer 5 is out of range: this model has 3 layers"),
    ({0: [24]}, ValueError, r"must lie in \[0, 24\)"),
    ({0: []}, ValueError, "selection is empty"),
    (np.zeros((2, 24), bool), ValueError, r"shape \(3, 24\)"),
    ("network 3", TypeError, "'targets' must be"),
])
def test_bad_targets(targets, error, match):
    with pytest.raises(error, match=match):
        resolve_targets(make_loaded("llama").model, targets)


def test_networks_of_another_model_are_refused():
    grid = NeuronGrid(3, 1536, model="smollm2-135m", signal="mlp")
    masks = np.zeros((1, 3, 1536), bool)
    masks[0, 0, 0] = True
    nets = FunctionalNetworks(masks.astype(np.float32), masks, grid)
    with pytest.raises(ValueError, match="1536 vs 24 units per layer"):
        resolve_targets(make_loaded("llama").model, nets)


def test_non_finite_edit_stops_with_a_clear_error():
    loaded = make_loaded("llama")
    with pytest.raises(NonFiniteActivationError, match="non-finite"):
        with amplify(loaded.model, {0: [1]}, float("inf")):
            _logits(loaded)
    assert active_hook_count(loaded.model) == 0


def test_matched_controls_keep_layer_counts_and_avoid_the_network():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 1536)) < 0.02
    controls = matched_controls(mask, n_controls=5, random_state=0)
    assert controls.shape == (5, 30, 1536)
    np.testing.assert_array_equal(controls.sum(axis=2), np.repeat(mask.sum(axis=1)[None], 5, 0))
    assert not (controls & mask).any()
    assert not np.array_equal(controls[0], controls[1])
    np.testing.assert_array_equal(controls, matched_controls(mask, 5, random_state=0))
    with pytest.raises(ValueError, match="only 0 neurons outside"):
        matched_controls(np.ones((2, 4), bool), 1)


def test_confidence_interval():
    mean, low, high = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 * 1 / np.sqrt(3), rel=1e-5)
    assert confidence_interval([5.0]) == (5.0, 5.0, 5.0)


def _toy_networks():
    grid = NeuronGrid(3, 24, model="tiny-llama", signal="mlp")
    masks = np.zeros((3, 3, 24), bool)
    masks[0, 0, :4] = True
    masks[1, 1, 4:10] = True
    masks[2, 2, 10:12] = True
    return FunctionalNetworks(masks.astype(np.float32), masks, grid)


def _mean_logit_evaluation(calls):
    def run(model, tokenizer):
        calls.append(1)
        logits, _ = _logits(type("L", (), {"model": model, "tokenizer": tokenizer})())
        return {"mean_logit": float(logits.mean()), "max_logit": float(logits.max())}
    return Evaluation("toy", run)


def test_sweep_writes_tidy_csv_and_resumes(tmp_path):
    loaded = make_loaded("llama")
    nets = _toy_networks()
    calls = []
    out = tmp_path / "results.csv"
    rows = intervention_sweep(loaded, nets, [_mean_logit_evaluation(calls)], network_ids=[0, 2],
                              n_controls=3, out_csv=out, verbose=0)
    assert len(calls) == 1 + 2 * (1 + 3)
    table = pd.read_csv(out, dtype={"network": str})
    assert list(table.columns) == COLUMNS
    assert len(rows) == len(table) == 2 + 2 * 2  # baseline + 2 networks, 2 metrics each
    assert set(table.network) == {"none", "0", "2"}
    base = table[table.network == "none"].set_index("metric")
    row = table[(table.network == "0") & (table.metric == "mean_logit")].iloc[0]
    assert row.n_neurons == 4 and row.n_controls == 3 and row["mode"] == "inhibit"
    assert row.ratio == pytest.approx(row.value / row.control_mean)
    assert row.control_ci_low <= row.control_mean <= row.control_ci_high
    assert row.baseline == pytest.approx(base.loc["mean_logit", "value"])
    with inhibit(loaded.model, {0: [0, 1, 2, 3]}):
        expected = _mean_logit_evaluation([]).run(loaded.model, loaded.tokenizer)["mean_logit"]
    assert row.value == pytest.approx(expected)
    calls.clear()
    again = intervention_sweep(loaded, nets, [_mean_logit_evaluation(calls)],
                               network_ids=[0, 1, 2], n_controls=3, out_csv=out, verbose=0)
    assert len(calls) == 1 + 3  # only network 1 is new
    assert len(again) == 2 + 3 * 2
    # controls are seeded per network, so a resumed run equals a fresh one
    fresh = intervention_sweep(loaded, nets, [_mean_logit_evaluation([])], network_ids=[1],
                               n_controls=3, verbose=0)
    new = again[again.network == "1"].set_index("metric")
    np.testing.assert_allclose(fresh[fresh.network == "1"].set_index("metric").control_mean,
                               new.control_mean)


def test_amplify_dose_response_rows(tmp_path):
    loaded = make_loaded("llama")
    rows = intervention_sweep(loaded, _toy_networks(), [_mean_logit_evaluation([])],
                              network_ids=[1], mode="amplify", values=[0.5, 2.0], n_controls=2,
                              verbose=0)
    edited = rows[rows.network == "1"]
    assert sorted(edited.edit_value.unique()) == ["0.5", "2"]
    assert (edited["mode"] == "amplify").all()


@pytest.mark.parametrize("kwargs, match", [
    ({"network_ids": [7]}, "out of range: the folder holds 3 networks"),
    ({"mode": "zero"}, r"'mode' must be one of \('inhibit', 'amplify', 'scale'\)"),
    ({"mode": "amplify"}, "must be numbers"),
])
def test_sweep_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        intervention_sweep(make_loaded("llama"), _toy_networks(), [], verbose=0, **kwargs)


def test_empty_network_is_refused():
    nets = _toy_networks()
    nets.masks[2] = False
    with pytest.raises(ValueError, match="Network 2 is empty"):
        intervention_sweep(make_loaded("llama"), nets, [], network_ids=[2], verbose=0)


def test_edit_neurons_general_callable():
    loaded = make_loaded("llama")
    base = record_activations(loaded, TEXTS[:1])[0]
    with edit_neurons(loaded.model, {1: [0, 1]}, lambda x: x.abs()) as resolved:
        edited = record_activations(loaded, TEXTS[:1])[0]
    assert resolved[1].tolist() == [0, 1]
    np.testing.assert_allclose(edited[:, 1, :2], np.abs(base[:, 1, :2]), rtol=1e-6)


# -- the results CSV: resume only what the settings file verifies (issue 9) ---------


def _networks(grid=None, seed=0):
    grid = grid or NeuronGrid(3, 24, model="tiny-llama", signal="mlp", weights_hash="seed:0",
                              model_layers=3)
    masks = np.zeros((2, grid.n_layers, 24), bool)
    masks[0, 0, seed:seed + 4] = True
    masks[1, grid.n_layers - 1, 10:12] = True
    return FunctionalNetworks(masks.astype(np.float32), masks, grid)


@pytest.fixture
def eval_files(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat .\nthe dog ran far away and it was good\n")
    sst = tmp_path / "sst2"
    sst.mkdir()
    (sst / "dev.tsv").write_text("text\tlabel\nthe film was very good\t1\n"
                                 "the film was bad\t0\nit was good\t1\n")
    return text, sst


def _evaluations(eval_files, limit=2, max_tokens=None):
    text, sst = eval_files
    return [make_evaluation("text", text, max_tokens=max_tokens, max_length=8, stride=4),
            make_evaluation("sst2", sst, limit=limit)]


def _sweep(loaded, out, evaluations, networks=None, **kwargs):
    kwargs = dict(dict(network_ids=[0], n_controls=1, verbose=0), **kwargs)
    return intervention_sweep(loaded, networks or _networks(), evaluations, out_csv=out,
                              **kwargs)


@pytest.mark.parametrize("change, message", [
    (dict(networks=_networks(seed=5)), "the networks was 2 networks"),
    (dict(limit=3), "limit of task 'sst2' was 2, now 3"),
    (dict(max_tokens=5), "max_tokens of task 'text' was not set, now 5"),
    (dict(n_controls=2), "n_controls was 1, now 2"),
    (dict(random_state=1), "random_state was 0, now 1"),
    (dict(seed=1), "the model was 'tiny-llama' (weights seed:0), now 'tiny-llama' "
                   "(weights seed:1)"),
    (dict(text="the sun is big\n"), "the evaluation file of task 'text' was"),
])
def test_resume_with_other_settings_is_refused_and_changes_nothing(tmp_path, eval_files,
                                                                   change, message):
    out = tmp_path / "r.csv"
    _sweep(make_loaded(), out, _evaluations(eval_files))
    settings = json.loads(settings_path(out).read_text())
    assert settings["model"] == {"name": "tiny-llama", "weights_hash": "seed:0"}
    assert settings["tasks"]["sst2"]["limit"] == 2
    assert settings["tasks"]["text"]["file"]["sha256"].startswith("sha256:")
    before = out.read_bytes(), settings_path(out).read_bytes()
    if "text" in change:
        eval_files[0].write_text(change.pop("text"))
    loaded = make_loaded(seed=change.pop("seed", 0))
    evaluations = _evaluations(eval_files, limit=change.pop("limit", 2),
                               max_tokens=change.pop("max_tokens", None))
    change["networks"] = change.get("networks") or _networks()
    change["networks"].grid.weights_hash = loaded.weights_hash  # networks of this model
    with pytest.raises(ResumeMismatchError, match=re.escape(message)) as info:
        _sweep(loaded, out, evaluations, **change)
    assert "pass overwrite=True to start over" in str(info.value)
    assert (out.read_bytes(), settings_path(out).read_bytes()) == before
    rows = _sweep(loaded, out, evaluations, overwrite=True, **change)  # start afresh
    assert len(rows) == len(read_results(out)) == 3 + 3  # baselines + network 0, 3 metrics


def test_resume_with_the_same_settings_adds_only_what_is_new(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    _sweep(make_loaded(), out, _evaluations(eval_files)[:1])
    calls = []
    counted = _mean_logit_evaluation(calls)
    rows = _sweep(make_loaded(), out, _evaluations(eval_files)[:1] + [counted],
                  network_ids=[0, 1])
    assert len(calls) == 1 + 2 * 2  # the new task: baseline, 2 networks x (edit + 1 control)
    assert sorted(json.loads(settings_path(out).read_text())["tasks"]) == ["text", "toy"]
    assert len(rows[(rows.task == "text") & (rows.network != "none")]) == 2


def test_baseline_of_another_model_is_not_reused(tmp_path, eval_files):
    out = tmp_path / "base.csv"
    evaluations = _evaluations(eval_files)[:1]
    baseline_rows(make_loaded(seed=0), evaluations, out_csv=out, verbose=0)
    with pytest.raises(ResumeMismatchError, match="the model was"):
        baseline_rows(make_loaded(seed=1), evaluations, out_csv=out, verbose=0)
    other = _networks()
    other.grid.weights_hash = "seed:1"
    with pytest.raises(ResumeMismatchError, match="the model was"):
        _sweep(make_loaded(seed=1), out, evaluations, networks=other)


def test_evaluate_then_intervene_share_a_csv_until_the_networks_change(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    evaluations = _evaluations(eval_files)[:1]
    base = baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0)
    rows = _sweep(make_loaded(), out, evaluations)
    assert rows[rows.network == "none"].value.tolist() == base.value.tolist()
    assert baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0).shape == rows.shape
    with pytest.raises(ResumeMismatchError, match="the networks was"):
        _sweep(make_loaded(), out, evaluations, networks=_networks(seed=5))
    assert json.loads(settings_path(out).read_text())["commands"] == ["evaluate", "intervene"]


def test_csv_without_settings_is_refused_unless_overwrite(tmp_path, eval_files):
    out = tmp_path / "old.csv"
    pd.DataFrame([dict(network="none", n_neurons=0, task="text", metric="perplexity",
                       mode="none", edit_value="", value=1.0, control_mean=np.nan,
                       control_ci_low=np.nan, control_ci_high=np.nan, ratio=np.nan,
                       n_controls=0, baseline=1.0)], columns=COLUMNS).to_csv(out, index=False)
    evaluations = _evaluations(eval_files)[:1]
    with pytest.raises(OutputExistsError, match="has no settings file"):
        baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0)
    rows = baseline_rows(make_loaded(), evaluations, out_csv=out, overwrite=True, verbose=0)
    assert rows.value.iloc[0] != 1.0 and settings_path(out).exists()


def test_settings_file_of_an_unknown_version_is_refused(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    evaluations = _evaluations(eval_files)[:1]
    baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0)
    document = json.loads(settings_path(out).read_text())
    settings_path(out).write_text(json.dumps(dict(document, format_version=99)))
    for read in (lambda: read_results(out),
                 lambda: baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0)):
        with pytest.raises(FormatError, match="format version 99, newer"):
            read()


def test_a_second_writer_of_the_csv_fails_at_once(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    with OutputLock(out):
        with pytest.raises(OutputLockedError, match="is being written by"):
            baseline_rows(make_loaded(), _evaluations(eval_files)[:1], out_csv=out, verbose=0)
    assert not out.exists()


def test_two_evaluations_of_one_task_name_are_refused(tmp_path, eval_files):
    text, _ = eval_files
    other = tmp_path / "other.txt"
    other.write_text("one two three\n")
    twins = [make_evaluation("text", text), make_evaluation("text", other)]
    with pytest.raises(ValueError, match=f"named 'text' \\({text}.* and {other}\\)"):
        baseline_rows(make_loaded(), twins, verbose=0)
    with pytest.raises(ValueError, match="named 'text'"):
        _sweep(make_loaded(), None, twins)
    named = [twins[0], make_evaluation("text", other, name="text_other")]
    rows = baseline_rows(make_loaded(), named, verbose=0)
    assert rows.task.tolist() == ["text", "text_other"]


def test_repeated_network_ids_give_one_network(tmp_path):
    rows = _sweep(make_loaded(), None, [_mean_logit_evaluation([])], network_ids=[0, 0])
    assert rows[rows.network != "none"].network.tolist() == ["0", "0"]  # two metrics
    rows = _sweep(make_loaded(), None, [_mean_logit_evaluation([])], mode="amplify",
                  values=[2, 2.0])
    assert len(rows[rows.network != "none"]) == 2


def test_networks_of_a_model_with_other_layers_are_refused_even_when_allowed():
    two_layer = NeuronGrid(2, 24, model="tiny-llama-2", signal="mlp", weights_hash="other",
                           model_layers=2)
    for allow in (False, True):
        with pytest.raises(ValueError, match="a model of 2 vs 3 layers"):
            _sweep(make_loaded(), None, [_mean_logit_evaluation([])],
                   networks=_networks(two_layer), allow_other_model=allow)
    old = NeuronGrid(4, 24, model="tiny-llama", signal="mlp")  # no model_layers recorded
    with pytest.raises(ValueError, match=r"layers \[3\] that the model lacks"):
        resolve_targets(make_loaded(), _networks(old), allow_other_model=True)


def test_networks_of_another_model_with_the_same_grid_need_allow_other_model():
    grid = NeuronGrid(3, 24, model="tiny-llama", signal="mlp", weights_hash="seed:1",
                      model_layers=3)
    calls = []
    with pytest.raises(ValueError, match="allow_other_model=True"):
        _sweep(make_loaded(seed=0), None, [_mean_logit_evaluation(calls)],
               networks=_networks(grid))
    assert calls == []  # refused before any evaluation
    rows = _sweep(make_loaded(seed=0), None, [_mean_logit_evaluation(calls)],
                  networks=_networks(grid), allow_other_model=True)
    assert set(rows.network) == {"none", "0"}


def test_read_results_needs_neither_torch_nor_the_intervention_code(tmp_path):
    out = tmp_path / "r.csv"
    pd.DataFrame(columns=COLUMNS).to_csv(out, index=False)
    code = ("import sys; import llmfbn.plotting as p; import llmfbn.io as io; "
            f"assert p.read_results is io.read_results; io.read_results({str(out)!r}); "
            "assert 'llmfbn.intervention' not in sys.modules and 'torch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'llmfbn.interv')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_overwrite_replaces_a_settings_file_of_an_unknown_version(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    evaluations = _evaluations(eval_files)[:1]
    baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0)
    settings_path(out).write_text(json.dumps({"format_version": 99, "tasks": {}}))
    baseline_rows(make_loaded(), evaluations, out_csv=out, overwrite=True, verbose=0)
    assert json.loads(settings_path(out).read_text())["format_version"] == 2


# -- honest statistics (issue 10) ---------------------------------------------------


def _perplexity_scores(n_controls, rng, n=24, effect=0.05, spread=0.01, difficulty=0.5,
                       noise=0.02):
    """Network and controls on the same windows: a shared per-window difficulty."""
    tokens = rng.integers(400, 600, n).astype(float)
    hardness = rng.normal(3.0, difficulty, n)
    network = MetricScore.perplexity(tokens * (hardness + effect + rng.normal(0, noise, n)),
                                     tokens)
    controls = [MetricScore.perplexity(tokens * (hardness + shift + rng.normal(0, noise, n)),
                                       tokens)
                for shift in rng.normal(0.0, spread, n_controls)]
    return network, controls


@pytest.mark.parametrize("n_controls", [2, 3])
def test_perplexity_intervals_stay_above_zero(n_controls):
    # controls far apart: Student-t on raw perplexity goes below zero
    values = [5.0, 60.0, 30.0][:n_controls]
    assert confidence_interval(values)[1] < 0
    controls = [MetricScore(v, "perplexity") for v in values]
    stats = compare_to_controls(MetricScore(40.0, "perplexity"), controls)
    assert stats.ci_method == "t-log-controls"
    assert 0 < stats.control_ci_low < stats.control_mean < stats.control_ci_high
    assert stats.control_mean == pytest.approx(np.exp(np.mean(np.log(values))))  # geometric
    assert 0 < stats.ratio_ci_low < stats.ratio < stats.ratio_ci_high
    assert stats.ratio == pytest.approx(40.0 / stats.control_mean)
    rng = np.random.default_rng(0)
    network, controls = _perplexity_scores(n_controls, rng, spread=1.0)
    paired = compare_to_controls(network, controls)
    assert paired.ci_method == "paired-t-log-units+controls" and paired.n_units == 24
    assert 0 < paired.control_ci_low < paired.control_mean < paired.control_ci_high
    assert 0 < paired.ratio_ci_low < paired.ratio < paired.ratio_ci_high


@pytest.mark.parametrize("n_controls", [2, 3])
@pytest.mark.parametrize("accuracies", [(0.97, 1.0, 0.99), (0.0, 0.04, 0.02), (0.3, 0.9, 0.6)])
def test_accuracy_intervals_stay_in_0_1(n_controls, accuracies):
    n = 100
    controls = [MetricScore.proportion(np.arange(n) < round(a * n))
                for a in accuracies[:n_controls]]
    network = MetricScore.proportion(np.arange(n) < 50)
    for scores in (controls, [MetricScore(c.value, "proportion") for c in controls]):
        edited = network if scores is controls else MetricScore(0.5, "proportion")
        stats = compare_to_controls(edited, scores)
        assert stats.ci_method in ("paired-wilson-units+controls", "wilson-controls")
        assert 0 <= stats.control_ci_low <= stats.control_mean <= stats.control_ci_high <= 1
        if stats.control_mean > 0:
            assert 0 < stats.ratio_ci_low <= stats.ratio <= stats.ratio_ci_high
        else:
            assert np.isnan(stats.ratio_ci_low)  # a ratio to 0 has no log-scale interval


def test_paired_interval_is_narrower_when_units_share_their_difficulty():
    network, controls = _perplexity_scores(3, np.random.default_rng(1))
    paired = compare_to_controls(network, controls)
    unpaired = compare_to_controls(network, controls, paired=False)
    assert unpaired.ci_method == "t-log-units+controls"
    assert paired.ratio == pytest.approx(unpaired.ratio)
    width = paired.ratio_ci_high - paired.ratio_ci_low
    assert width < (unpaired.ratio_ci_high - unpaired.ratio_ci_low) / 5
    assert paired.ratio_ci_low > 1 and paired.p_value < 0.05  # the 5 % effect is found
    assert unpaired.ratio_ci_low < 1  # ... and lost in the windows' difficulty unpaired
    # accuracy: items hard or easy for every model
    rng = np.random.default_rng(2)
    easy = rng.random(300) < 0.7
    network = MetricScore.proportion(easy & (rng.random(300) < 0.85))
    controls = [MetricScore.proportion(easy & (rng.random(300) < 0.97)) for _ in range(3)]
    paired = compare_to_controls(network, controls)
    unpaired = compare_to_controls(network, controls, paired=False)
    assert (paired.ratio_ci_high - paired.ratio_ci_low
            < 0.8 * (unpaired.ratio_ci_high - unpaired.ratio_ci_low))


def test_paired_interval_covers_the_truth_at_its_level_with_3_controls():
    # both sources matter here: control-to-control spread and window sampling
    rng = np.random.default_rng(3)
    covered, unit_only = [], []
    for _ in range(400):
        network, controls = _perplexity_scores(3, rng, spread=0.02, noise=0.05)
        stats = compare_to_controls(network, controls)
        covered.append(stats.ratio_ci_low <= np.exp(0.05) <= stats.ratio_ci_high)
        one = compare_to_controls(network, controls[:1])  # 1 control: unit sampling only
        assert one.ci_method == "paired-t-log-units"
        unit_only.append(one.ratio_ci_low <= np.exp(0.05) <= one.ratio_ci_high)
    assert 0.92 <= np.mean(covered) <= 0.99
    assert np.mean(unit_only) < 0.85  # ignoring the controls' spread would under-cover


def test_compare_to_controls_bad_input():
    with pytest.raises(ValueError, match="at least 1 score"):
        compare_to_controls(1.0, [])
    with pytest.raises(ValueError, match="share one scale"):
        compare_to_controls(MetricScore(2.0, "perplexity"), [2.0, 3.0])
    one = compare_to_controls(MetricScore(2.0, "perplexity"), [MetricScore(3.0, "perplexity")])
    assert one.ci_method == "none" and np.isnan(one.control_ci_low)
    assert set(CI_METHODS) >= {"none", "t-controls", "t-log-controls", "wilson-controls"}


def test_summarise_edit_rows():
    network, controls = _perplexity_scores(2, np.random.default_rng(4))
    base = MetricScore.perplexity(network.units * 0.9, network.weights)
    rows = summarise_edit({"perplexity": network}, [{"perplexity": c} for c in controls],
                          {"perplexity": base}, network=3, n_neurons=12, task="wiki",
                          mode="amplify", edit_value=2.0)
    assert len(rows) == 1 and list(rows[0]) == COLUMNS
    row = rows[0]
    assert (row["network"], row["edit_value"], row["n_controls"], row["n_units"]) == \
        ("3", "2", 2, 24)
    assert row["baseline"] == base.value and row["ci_method"] in CI_METHODS
    assert row["ratio"] == pytest.approx(row["value"] / row["control_mean"])


def test_sweep_csv_names_the_method_of_every_interval(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    evaluations = _evaluations(eval_files, limit=3) + [_mean_logit_evaluation([])]
    _sweep(make_loaded(), out, evaluations, n_controls=2)
    table = pd.read_csv(out, dtype={"network": str}, keep_default_na=False)
    assert list(table.columns) == COLUMNS
    edited = table[table.network == "0"].set_index("metric")
    assert edited.loc["perplexity", "ci_method"] == "paired-t-log-units+controls"
    assert edited.loc["accuracy", "ci_method"] == "paired-wilson-units+controls"
    assert edited.loc["mean_logit", "ci_method"] == "t-controls"
    assert edited.loc["accuracy", "n_units"] == 3 and edited.loc["perplexity", "n_units"] > 1
    assert (table[table.network == "none"].ci_method == "").all()
    assert (edited.loc["perplexity", ["control_ci_low", "ratio_ci_low"]].astype(float) > 0).all()
    rows = read_results(out)
    assert rows.ci_method.tolist() == table.ci_method.tolist()


def test_a_csv_of_format_1_is_read_but_never_resumed(tmp_path, eval_files):
    out = tmp_path / "r.csv"
    evaluations = _evaluations(eval_files)[:1]
    _sweep(make_loaded(), out, evaluations, n_controls=2)
    old_columns = ["network", "n_neurons", "task", "metric", "mode", "edit_value", "value",
                   "control_mean", "control_ci_low", "control_ci_high", "ratio",
                   "n_controls", "baseline"]
    pd.read_csv(out, dtype={"network": str})[old_columns].to_csv(out, index=False)
    settings = json.loads(settings_path(out).read_text())
    settings_path(out).write_text(json.dumps(dict(settings, format_version=1)))
    before = out.read_bytes()
    rows = read_results(out)  # still plotted and reported
    assert list(rows.columns) == COLUMNS
    assert rows.set_index("network").ci_method.to_dict() == {"none": "", "0": "t-controls"}
    assert rows.ratio_ci_low.isna().all()
    for run in (lambda: _sweep(make_loaded(), out, evaluations, n_controls=2),
                lambda: baseline_rows(make_loaded(), evaluations, out_csv=out, verbose=0)):
        with pytest.raises(OutputExistsError, match="results of format 1 .* this llmfbn writes "
                                                    "format 2"):
            run()
    assert out.read_bytes() == before
    _sweep(make_loaded(), out, evaluations, n_controls=2, overwrite=True)
    assert read_results(out).ci_method.tolist() == ["", "paired-t-log-units+controls"]
