import copy

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_CONFIGS, make_loaded
from llmfbn.grid import NeuronGrid
from llmfbn.hooks import active_hook_count
from llmfbn.intervention import (
    COLUMNS,
    Evaluation,
    NonFiniteActivationError,
    amplify,
    confidence_interval,
    edit_neurons,
    fold_edit,
    inhibit,
    intervention_sweep,
    matched_controls,
    resolve_targets,
    scale,
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
    with pytest.raises(ValueError, match="1536 units per layer but this model's MLP has 24"):
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
