"""Pruning scores, selection and calibration (llmfbn.pruning._scores/_select/_calibration)."""

import numpy as np
import pytest
import torch

from conftest import make_loaded
from llmfbn.grid import NeuronGrid
from llmfbn.io import file_sha256
from llmfbn.networks import FunctionalNetworks
from llmfbn.pruning._calibration import bias_compensation, calibration_stats
from llmfbn.pruning._scores import (
    METHODS,
    NeuronScores,
    per_layer_ranks,
    score_neurons,
)
from llmfbn.pruning._select import default_protected_layers, select_neurons
from llmfbn.recording import record_activations

TEXTS = [
    "the cat sat on the mat .",
    "a dog ran far away",
    "the sun is big and the moon is small",
    "one two three",
    "it was a very good film , not a bad film !",
    "red house",
]


@pytest.fixture
def calib_file(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def _acts(loaded, texts=TEXTS):
    """Recorded ``mlp`` signal of every token, float64, shape (n_tokens, n_layers, width)."""
    return np.concatenate(record_activations(loaded, texts), axis=0).astype(np.float64)


def _down_weight(loaded, layer):
    """Down projection as (hidden, width) float64 numpy."""
    if loaded.model.config.model_type == "gpt2":
        return loaded.model.transformer.h[layer].mlp.c_proj.weight.detach().double().numpy().T
    return loaded.model.model.layers[layer].mlp.down_proj.weight.detach().double().numpy()


def _networks(loaded, maps, params=None, **grid_args):
    n_layers, width = maps.shape[1:]
    spec = dict(model=loaded.name, signal="mlp", weights_hash=loaded.weights_hash,
                model_layers=n_layers)
    spec.update(grid_args)
    grid = NeuronGrid(n_layers, width, **spec)
    return FunctionalNetworks(maps, maps >= 1.0, grid, params)


# -- calibration ------------------------------------------------------------------

@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_calibration_stats_match_recorded_activations(family, calib_file):
    loaded = make_loaded(family)
    x = _acts(loaded)
    stats = calibration_stats(loaded, calib_file, verbose=0)
    assert stats.n_tokens == len(x)
    assert stats.mean.dtype == np.float64 and stats.mean.shape == x.shape[1:]
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats.variance, x.var(axis=0, ddof=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.sq_norm, (x ** 2).sum(axis=0), rtol=1e-6, atol=1e-7)
    assert stats.record() == {"path": str(calib_file), "sha256": file_sha256(calib_file),
                              "n_tokens": len(x)}
    one = calibration_stats(loaded, calib_file, batch_size=1, verbose=0)
    # float32 forward passes of other batch shapes: agree to float32 rounding
    np.testing.assert_allclose(one.variance, stats.variance, rtol=1e-5, atol=1e-9)


def test_calibration_max_tokens_takes_tokens_in_file_order(calib_file):
    loaded = make_loaded("llama")
    stats = calibration_stats(loaded, calib_file, max_tokens=9, verbose=0)
    first = _acts(loaded, TEXTS[:1])  # 7 tokens, then 2 of the second text
    second = _acts(loaded, ["a dog"])
    x = np.concatenate([first, second])
    assert stats.n_tokens == 9 == len(x)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-6, atol=1e-7)


def test_calibration_splits_long_texts_at_the_position_limit(tmp_path):
    loaded = make_loaded("gpt2")  # 128 positions
    path = tmp_path / "long.txt"
    path.write_text(" ".join(["the cat sat on the mat ."] * 50) + "\n", encoding="utf-8")
    stats = calibration_stats(loaded, path, verbose=0)
    assert stats.n_tokens == 350


def test_calibration_errors(tmp_path, calib_file):
    loaded = make_loaded("llama")
    short = tmp_path / "short.txt"
    short.write_text("cat\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 2 tokens"):
        calibration_stats(loaded, short, verbose=0)
    with pytest.raises(ValueError, match="'max_tokens'"):
        calibration_stats(loaded, calib_file, max_tokens=1, verbose=0)
    with pytest.raises(FileNotFoundError):
        calibration_stats(loaded, tmp_path / "missing.txt", verbose=0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_bias_compensation_restores_the_mean_output(family, calib_file):
    loaded = make_loaded(family)
    stats = calibration_stats(loaded, calib_file, verbose=0)
    x = torch.as_tensor(_acts(loaded), dtype=torch.float32)
    keep = np.random.default_rng(0).random(stats.mean.shape) > 0.4
    keep[2] = True  # a layer that loses nothing gets no entry
    bias = bias_compensation(loaded, stats, keep)
    assert sorted(bias) == [0, 1]
    paths = {"gpt2": "transformer.h.{}.mlp.c_proj", "llama": "model.layers.{}.mlp.down_proj"}
    with torch.no_grad():
        for layer, shift in bias.items():
            down = loaded.model.get_submodule(paths[family].format(layer))
            assert shift.shape == (loaded.model.config.hidden_size,)
            assert shift.dtype == torch.float32
            mask = torch.as_tensor(keep[layer], dtype=torch.float32)
            full = down(x[:, layer]).double().mean(dim=0)
            pruned = (down(x[:, layer] * mask) + shift).double().mean(dim=0)
            torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-5)
            # and it is not trivially so: without the bias the means differ
            assert not torch.allclose((down(x[:, layer] * mask)).double().mean(dim=0), full,
                                      atol=1e-5)


def test_bias_compensation_checks_its_inputs(calib_file):
    loaded = make_loaded("llama")
    stats = calibration_stats(loaded, calib_file, verbose=0)
    with pytest.raises(ValueError, match="'keep'"):
        bias_compensation(loaded, stats, np.ones((3, 5), dtype=bool))
    with pytest.raises(ValueError, match="weights"):
        bias_compensation(make_loaded("llama", seed=1), stats, np.ones((3, 24), dtype=bool))


# -- scores -----------------------------------------------------------------------

@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_every_method_scores_every_neuron(family, calib_file):
    loaded = make_loaded(family)
    maps = np.random.default_rng(0).standard_normal((2, 3, 24)).astype(np.float32)
    extra = {"fbn": {"networks": _networks(loaded, maps)},
             "wanda": {"calibration": calib_file}, "flap": {"calibration": calib_file}}
    for method in METHODS:
        result = score_neurons(loaded, method, verbose=0, **extra.get(method, {}))
        assert isinstance(result, NeuronScores) and result.method == method
        assert result.scores.shape == (3, 24) and result.scores.dtype == np.float64
        assert np.isfinite(result.scores).all()
        assert result.details["selection"] in ("global", "per_layer")
        assert (result.calibration is not None) == (method in ("wanda", "flap"))


def test_random_scores_are_reproducible_by_seed():
    loaded = make_loaded("llama")
    a = score_neurons(loaded, "random", random_state=3, verbose=0).scores
    b = score_neurons(loaded, "random", random_state=3, verbose=0).scores
    c = score_neurons(loaded, "random", random_state=4, verbose=0).scores
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _magnitude_numpy(loaded, layer):
    if loaded.model.config.model_type == "gpt2":
        mlp = loaded.model.transformer.h[layer].mlp
        fc_in = mlp.c_fc.weight.detach().double().numpy()  # Conv1D (in, out): column j
        sq = (fc_in ** 2).sum(axis=0)
    else:
        mlp = loaded.model.model.layers[layer].mlp
        sq = sum((p.weight.detach().double().numpy() ** 2).sum(axis=1)
                 for p in (mlp.gate_proj, mlp.up_proj))
    return np.sqrt(sq + (_down_weight(loaded, layer) ** 2).sum(axis=0))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_magnitude_and_wanda_match_numpy(family, calib_file):
    from llmfbn.pruning._scores import magnitude_metric, wanda_metric

    loaded = make_loaded(family)
    expected = np.stack([_magnitude_numpy(loaded, layer) for layer in range(3)])
    np.testing.assert_allclose(magnitude_metric(loaded), expected, rtol=1e-10)
    magnitude = score_neurons(loaded, "magnitude", verbose=0)
    np.testing.assert_array_equal(magnitude.scores, per_layer_ranks(expected))
    x = _acts(loaded)
    stats = calibration_stats(loaded, calib_file, verbose=0)
    wanda = np.stack([np.abs(_down_weight(loaded, layer)).sum(axis=0)
                      * np.sqrt((x[:, layer] ** 2).sum(axis=0)) for layer in range(3)])
    np.testing.assert_allclose(wanda_metric(loaded, stats), wanda, rtol=1e-5)
    scores = score_neurons(loaded, "wanda", calibration=stats, verbose=0).scores
    np.testing.assert_array_equal(np.argsort(scores, axis=1), np.argsort(wanda, axis=1))


def test_flap_scores_are_standardised_fluctuations(calib_file):
    loaded = make_loaded("llama")
    x = _acts(loaded)
    metric = np.stack([x[:, layer].var(axis=0, ddof=1)
                       * (_down_weight(loaded, layer) ** 2).sum(axis=0) for layer in range(3)])
    expected = ((metric - metric.mean(axis=1, keepdims=True))
                / metric.std(axis=1, ddof=1, keepdims=True))
    scores = score_neurons(loaded, "flap", calibration=calib_file, verbose=0).scores
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)


def test_per_layer_methods_remove_the_same_count_from_each_layer():
    loaded = make_loaded("llama")
    scores = score_neurons(loaded, "magnitude", verbose=0)
    keep = select_neurons(scores, 0.5, protect_layers=[])
    assert (~keep).sum() == 36
    np.testing.assert_array_equal((~keep).sum(axis=1), [12, 12, 12])


def test_fbn_scores_are_the_largest_z_over_networks(tmp_path):
    loaded = make_loaded("llama")
    rng = np.random.default_rng(0)
    maps_a = rng.standard_normal((3, 3, 24)).astype(np.float32)
    maps_b = rng.standard_normal((2, 3, 24)).astype(np.float32)
    a = _networks(loaded, maps_a)
    result = score_neurons(loaded, "fbn", networks=a, verbose=0)
    np.testing.assert_array_equal(result.scores, maps_a.max(axis=0))
    assert result.details["n_components"] == 3
    two_sided = _networks(loaded, maps_a, params={"threshold_mode": "two_sided"})
    np.testing.assert_array_equal(score_neurons(loaded, "fbn", networks=two_sided,
                                                verbose=0).scores, np.abs(maps_a).max(axis=0))
    folder = _networks(loaded, maps_b).save(tmp_path / "nets")
    pooled = score_neurons(loaded, "fbn", networks=[a, folder], verbose=0)
    np.testing.assert_allclose(pooled.scores, np.maximum(maps_a.max(0), maps_b.max(0)))
    assert pooled.details["n_components"] == 5
    assert pooled.details["networks"][1]["path"] == str(folder)
    assert pooled.details["networks"][1]["sha256"].startswith("sha256:")
    # pruning at a ratio removes the neurons in no network at the threshold reaching it
    keep = select_neurons(result, 0.5, protect_layers=[])
    threshold = result.scores[keep].min()
    np.testing.assert_array_equal(keep, result.scores >= threshold)


def test_fbn_refuses_networks_of_another_grid():
    loaded = make_loaded("llama")
    maps = np.zeros((1, 3, 24), dtype=np.float32)
    with pytest.raises(ValueError, match="another model"):
        score_neurons(loaded, "fbn", networks=_networks(loaded, maps, weights_hash="x"),
                      verbose=0)
    with pytest.raises(ValueError, match="the model"):
        score_neurons(loaded, "fbn", networks=_networks(loaded, maps, signal="residual"),
                      verbose=0)
    some = _networks(loaded, maps[:, :2], model_layers=3)  # layers 0-1 of 3
    with pytest.raises(ValueError, match="layers"):
        score_neurons(loaded, "fbn", networks=some, verbose=0)
    with pytest.raises(ValueError, match="units per layer"):
        score_neurons(loaded, "fbn", networks=_networks(loaded, maps[:, :, :20]), verbose=0)


def test_score_neurons_parameter_errors(calib_file):
    loaded = make_loaded("llama")
    nets = _networks(loaded, np.zeros((1, 3, 24), dtype=np.float32))
    cases = [
        (dict(method="pca"), ValueError, "'method' must be one of"),
        (dict(method="fbn"), ValueError, "needs 'networks'"),
        (dict(method="wanda"), ValueError, "needs 'calibration'"),
        (dict(method="flap"), ValueError, "needs 'calibration'"),
        (dict(method="magnitude", networks=nets), ValueError, "'networks' are used"),
        (dict(method="random", calibration=calib_file), ValueError, "'calibration' is used"),
        (dict(method="random", random_state=-1), ValueError, "'random_state'"),
        (dict(method="random", random_state=0.5), TypeError, "'random_state'"),
        (dict(method="wanda", calibration=3), TypeError, "'calibration'"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            score_neurons(loaded, verbose=0, **kwargs)
    stats = calibration_stats(loaded, calib_file, verbose=0)
    with pytest.raises(ValueError, match="'max_tokens'"):
        score_neurons(loaded, "flap", calibration=stats, max_tokens=5, verbose=0)


# -- selection --------------------------------------------------------------------

def test_default_protected_layers():
    assert default_protected_layers(30) == [0, 1, 2, 28, 29]
    assert default_protected_layers(6) == [0, 1, 2, 4, 5]
    assert default_protected_layers(4) == [0, 1, 2, 3]
    assert default_protected_layers(1) == [0]
    with pytest.raises(ValueError, match="'n_layers'"):
        default_protected_layers(0)


def test_select_neurons_counts_protection_and_order():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((8, 10))
    keep = select_neurons(scores, 0.15)  # protects 0, 1, 2, 6, 7
    assert keep.dtype == bool and keep.shape == (8, 10)
    assert (~keep).sum() == 12
    assert keep[[0, 1, 2, 6, 7]].all()
    free = scores[3:6]
    assert free[~keep[3:6]].max() < free[keep[3:6]].min()  # the 12 lowest of layers 3-5
    # every unprotected layer keeps its best neuron, even at the largest ratio
    keep = select_neurons(scores, 27 / 80)
    assert (~keep).sum() == 27
    assert keep[3:6].sum(axis=1).tolist() == [1, 1, 1]
    assert keep[np.arange(3, 6), scores[3:6].argmax(axis=1)].all()


def test_select_neurons_breaks_ties_by_layer_then_unit():
    keep = select_neurons(np.zeros((3, 4)), 5 / 12, protect_layers=[])
    expected = np.ones((3, 4), dtype=bool)
    expected[0, :3] = False  # layer 0 keeps one neuron (its last, the "best" of equals)
    expected[1, :2] = False
    np.testing.assert_array_equal(keep, expected)


def test_select_neurons_accepts_neuron_scores_and_rounds():
    scores = NeuronScores("random", np.random.default_rng(1).random((2, 7)), None, {})
    keep = select_neurons(scores, 0.25, protect_layers=[1])  # round(3.5) = 4
    assert (~keep).sum() == 4 and keep[1].all()


def test_select_neurons_errors():
    scores = np.random.default_rng(0).random((8, 10))
    for ratio in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="'ratio' must lie in"):
            select_neurons(scores, ratio)
    for ratio in (True, "0.5", None):
        with pytest.raises(TypeError, match="'ratio'"):
            select_neurons(scores, ratio)
    with pytest.raises(ValueError, match="removes no neuron"):
        select_neurons(scores, 0.001)
    with pytest.raises(ValueError, match=r"largest possible ratio is 0\.3375"):
        select_neurons(scores, 0.5)
    with pytest.raises(ValueError, match=r"'protect_layers' must be layer indices in \[0, 8\)"):
        select_neurons(scores, 0.1, protect_layers=[0, 8])
    with pytest.raises(ValueError, match="largest possible ratio is 0"):
        select_neurons(scores, 0.1, protect_layers=range(8))
    bad = scores.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="'scores' must be finite"):
        select_neurons(bad, 0.1)
    with pytest.raises(ValueError, match="'scores' must have shape"):
        select_neurons(scores[0], 0.1)
