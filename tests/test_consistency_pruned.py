"""Consistency statistics on the grid of a pruned model (``present``).

A pruned model's neurons sit on its source model's grid; the removed units lie
outside the mask (0 in maps, False in masks). With ``present`` the nulls draw
among the present units of each layer only and correlations ignore the removed
neurons: the results are those of the arrays with the removed units cut out.
"""

import json

import numpy as np
import pytest

from llmfbn.grid import NeuronGrid
from llmfbn.networks._consistency import (
    group_template,
    iou,
    match_networks,
    null_matched_correlation,
    null_matched_iou,
    random_masks_like,
    recurrence,
    spatial_correlation,
    split_half,
    stability,
)

N_LAYERS, WIDTH = 4, 40


def _present(kept, seed=0, n_layers=N_LAYERS, width=WIDTH):
    """A pruned grid's ``present``: ``kept[l]`` random units of layer ``l``."""
    rng = np.random.default_rng(seed)
    units = [np.sort(rng.choice(width, size=k, replace=False)) for k in kept]
    present = np.zeros((n_layers, width), dtype=bool)
    for layer, u in enumerate(units):
        present[layer, u] = True
    return present, units


def _masks_on(present, n, density, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((n,) + present.shape) < density) & present


def _maps_on(present, n, seed):
    return np.random.default_rng(seed).standard_normal((n,) + present.shape) * present


def _compact(values, present):
    """(n, n_layers, width) -> (n, n_layers, m): the removed units cut out (m per layer)."""
    m = present.sum(axis=1)
    assert (m == m[0]).all()
    return values[:, present].reshape(len(values), present.shape[0], m[0])


# ---------------------------------------------------------------------------
# Equal counts per layer: exactly the compact arrays' results, same draws
# ---------------------------------------------------------------------------


def test_random_masks_like_with_present_draws_the_compact_sets():
    present, _ = _present([30] * N_LAYERS)
    masks = _masks_on(present, 3, 0.3, seed=1)
    masks[1, 2] = present[2]  # a full layer (every present unit)
    masks[2, 0] = present[0] & (np.cumsum(present[0]) <= 20)  # > half: complement path
    drawn = random_masks_like(masks, 40, random_state=5, present=present)
    assert drawn.shape == (40, 3, N_LAYERS, WIDTH)
    assert not (drawn & ~present).any()  # never a removed neuron
    np.testing.assert_array_equal(drawn.sum(-1), np.broadcast_to(masks.sum(-1), (40, 3, 4)))
    compact = random_masks_like(_compact(masks, present), 40, random_state=5)
    np.testing.assert_array_equal(drawn[..., present].reshape(compact.shape), compact)


def test_null_iou_with_present_equals_compact_arrays():
    present, _ = _present([25] * N_LAYERS, seed=2)
    a, b = _masks_on(present, 5, 0.2, seed=3), _masks_on(present, 4, 0.3, seed=4)
    pruned = null_matched_iou(a, b, n_draws=300, random_state=7, present=present)
    compact = null_matched_iou(_compact(a, present), _compact(b, present), n_draws=300,
                               random_state=7)
    assert pruned.pairs == compact.pairs
    np.testing.assert_array_equal(pruned.scores, compact.scores)
    np.testing.assert_array_equal(pruned.null, compact.null)
    # the whole layer as universe lowers chance overlap, inflating "x chance"
    dense = null_matched_iou(a, b, n_draws=300, random_state=7)
    assert (dense.null_mean < pruned.null_mean).all()


def test_null_correlation_with_present_equals_compact_arrays():
    present, _ = _present([24] * N_LAYERS, seed=5)
    a, b = _maps_on(present, 4, seed=6), _maps_on(present, 3, seed=7)
    b[0] += a[2]  # one related pair
    for metric in ("correlation", "abs_correlation"):
        pruned = null_matched_correlation(a, b, n_draws=200, metric=metric, random_state=3,
                                          present=present)
        compact = null_matched_correlation(_compact(a, present), _compact(b, present),
                                           n_draws=200, metric=metric, random_state=3)
        assert pruned.pairs == compact.pairs
        np.testing.assert_allclose(pruned.scores, compact.scores, rtol=0, atol=1e-14)
        np.testing.assert_allclose(pruned.null, compact.null, rtol=0, atol=1e-14)


def test_match_recurrence_and_template_on_present_equal_compact():
    present, _ = _present([20] * N_LAYERS, seed=8)
    sets = [_masks_on(present, 4, 0.3, seed=s) for s in (9, 10, 11)]
    sets[1][:2] = sets[0][:2]
    maps = [_maps_on(present, 4, seed=s) for s in (12, 13, 14)]
    compact_sets = [_compact(s, present) for s in sets]
    rec = recurrence(sets, threshold=0.3, present=present)
    np.testing.assert_array_equal(rec.scores, recurrence(compact_sets, threshold=0.3).scores)
    rec = recurrence(maps, metric="abs_correlation", present=present)
    expected = recurrence([_compact(m, present) for m in maps], metric="abs_correlation")
    np.testing.assert_allclose(rec.scores, expected.scores, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(rec.matched, expected.matched)
    template = group_template(sets, maps, threshold=0.3, present=present)
    compact = group_template(compact_sets, [_compact(m, present) for m in maps], threshold=0.3)
    np.testing.assert_array_equal(_compact(template.masks, present), compact.masks)
    np.testing.assert_allclose(_compact(template.maps, present), compact.maps, atol=1e-14)
    assert not (template.masks & ~present).any() and not template.maps[:, ~present].any()


# ---------------------------------------------------------------------------
# Unequal counts per layer: correlation over the present neurons, uniform draws
# ---------------------------------------------------------------------------


KEPT = [40, 31, 22, 9]  # a protected (dense) layer and three pruned ones


def test_spatial_correlation_is_over_present_neurons_only():
    present, units = _present(KEPT, seed=15)
    grid = NeuronGrid(N_LAYERS, WIDTH, units=units)
    # maps not centred on the present neurons (centred ones, like z-maps, give the
    # same r either way: the removed zeros then sit at the mean)
    a = _maps_on(present, 3, seed=16) + 2.0 * present
    b = _maps_on(present, 2, seed=17) + 1.0 * present
    corr = spatial_correlation(a, b, present=present)
    flat_a, flat_b = grid.take_present(a), grid.take_present(b)  # (n, n_neurons)
    for i in range(3):
        for j in range(2):
            assert corr[i, j] == pytest.approx(np.corrcoef(flat_a[i], flat_b[j])[0, 1], abs=1e-12)
    # over every unit, the shared zeros of the removed neurons inflate r
    assert (spatial_correlation(a, b) > corr + 0.05).all()
    matching = match_networks(a, b, metric="correlation", present=present)
    np.testing.assert_array_equal(matching.score_matrix, corr)


def test_random_masks_with_present_overlap_at_the_hypergeometric_mean():
    present, _ = _present(KEPT, seed=18)
    n_present = present.sum(axis=1)
    a = np.zeros((1, N_LAYERS, WIDTH), dtype=bool)
    b = np.zeros_like(a)
    for layer, (ka, kb) in enumerate([(12, 20), (10, 25), (6, 14), (3, 5)]):
        on = np.flatnonzero(present[layer])
        a[0, layer, on[:ka]] = True
        b[0, layer, on[-kb:]] = True
    n_draws = 4000
    ra = random_masks_like(a, n_draws, random_state=0, present=present)[:, 0]
    rb = random_masks_like(b, n_draws, random_state=1, present=present)[:, 0]
    assert not ((ra | rb) & ~present).any()
    ka, kb = a[0].sum(-1), b[0].sum(-1)
    overlap = (ra & rb).sum(axis=-1).mean(axis=0)  # per layer
    expected = ka * kb / n_present
    sd = np.sqrt(expected * (1 - ka / n_present) * (n_present - kb)
                 / np.maximum(n_present - 1, 1) / n_draws)  # hypergeometric sd of the mean
    np.testing.assert_allclose(overlap, expected, atol=5 * sd.max())
    # uniform among a layer's present units: each included at rate k / n_present
    inclusion = ra.mean(axis=0)[present]
    rate = np.repeat(ka / n_present, n_present)
    z = (inclusion - rate) / np.sqrt(rate * (1 - rate) / n_draws)
    assert np.abs(z).max() < 5  # 102 units: |z| < 5 fails with probability < 1e-4
    # the IoU null samples that same overlap distribution
    report = null_matched_iou(a, b, n_draws=n_draws, random_state=2, present=present)
    inter = (ra & rb).sum(axis=(1, 2))
    brute = inter / (ka.sum() + kb.sum() - inter)
    assert report.null_mean[0] == pytest.approx(brute.mean(), rel=0.05)
    dense = null_matched_iou(a, b, n_draws=n_draws, random_state=2)
    assert dense.null_mean[0] < 0.85 * report.null_mean[0]


def test_null_correlation_permutes_among_present_units_of_each_layer():
    present, _ = _present(KEPT, seed=19)
    # map a is one value per layer on its present neurons: permuting present
    # units within a layer leaves it unchanged, so every null draw is the score
    a = (np.array([3.0, -1.0, 2.0, 5.0])[:, None] * present)[None]
    b = _maps_on(present, 1, seed=20) + a
    report = null_matched_correlation(a, b, n_draws=50, random_state=0, present=present)
    np.testing.assert_allclose(report.null[0], report.scores[0], atol=1e-12)
    # over every unit the removed neurons (0) are shuffled in and the null moves
    dense = null_matched_correlation(a, b, n_draws=50, random_state=0)
    assert np.abs(dense.null[0] - dense.scores[0]).max() > 0.1
    # random maps: null sd ~ 1 / sqrt(present neurons), not of the whole grid
    c, d = _maps_on(present, 3, seed=21), _maps_on(present, 3, seed=22)
    report = null_matched_correlation(c, d, n_draws=2000, random_state=0, present=present)
    assert report.null.std(axis=1) == pytest.approx(
        np.full(3, 1 / np.sqrt(present.sum())), rel=0.1)


def test_a_layer_with_every_unit_removed():
    present, _ = _present([40, 0, 17, 17], seed=23)
    a, b = _maps_on(present, 2, seed=24), _maps_on(present, 2, seed=25)
    report = null_matched_correlation(a, b, n_draws=20, random_state=0, present=present)
    assert np.isfinite(report.null).all()
    masks = _masks_on(present, 2, 0.3, seed=26)
    drawn = random_masks_like(masks, 10, random_state=0, present=present)
    assert not drawn[:, :, 1].any()
    assert np.isfinite(null_matched_iou(masks, masks, n_draws=10, present=present).null).all()


# ---------------------------------------------------------------------------
# Dense: present=None or every unit present, the same numbers
# ---------------------------------------------------------------------------


def test_every_unit_present_is_the_dense_computation():
    full = np.ones((N_LAYERS, WIDTH), dtype=bool)
    rng = np.random.default_rng(27)
    masks = rng.random((3, N_LAYERS, WIDTH)) < 0.2
    maps = rng.standard_normal((3, N_LAYERS, WIDTH))
    np.testing.assert_array_equal(random_masks_like(masks, 5, random_state=0, present=full),
                                  random_masks_like(masks, 5, random_state=0))
    np.testing.assert_array_equal(
        null_matched_iou(masks, masks[::-1], n_draws=20, random_state=0, present=full).null,
        null_matched_iou(masks, masks[::-1], n_draws=20, random_state=0).null)
    np.testing.assert_array_equal(
        null_matched_correlation(maps, maps[::-1], n_draws=20, random_state=0,
                                 present=full).null,
        null_matched_correlation(maps, maps[::-1], n_draws=20, random_state=0).null)
    np.testing.assert_array_equal(stability([maps, maps[::-1]], present=full).similarity,
                                  stability([maps, maps[::-1]]).similarity)


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------


def test_masks_or_maps_claiming_a_removed_neuron_are_refused():
    present, _ = _present(KEPT, seed=28)
    masks = _masks_on(present, 2, 0.3, seed=29)
    bad = masks.copy()
    removed = np.argwhere(~present)[:3]
    bad[1, removed[:, 0], removed[:, 1]] = True
    with pytest.raises(ValueError, match=r"^'masks_b' must select only neurons present on the "
                                         r"grid \('present'\); it selects 3 removed neurons\.$"):
        null_matched_iou(masks, bad, present=present)
    with pytest.raises(ValueError, match="'masks' must select only neurons present"):
        random_masks_like(bad, 2, present=present)
    with pytest.raises(ValueError, match=r"'network_sets\[1\]' must select only"):
        recurrence([masks, bad], present=present)
    with pytest.raises(ValueError, match="'masks_a' must select only"):
        iou(bad, masks, present=present)
    maps = _maps_on(present, 2, seed=30)
    leaky = maps.copy()
    leaky[0, removed[0, 0], removed[0, 1]] = 0.5
    with pytest.raises(ValueError, match=r"^'maps_a' must be 0 on the neurons removed from the "
                                         r"grid \('present' False\); it is nonzero on 1 of them"):
        null_matched_correlation(leaky, maps, present=present)
    with pytest.raises(ValueError, match=r"'maps_list\[1\]' must be 0 on the neurons removed"):
        stability([maps, leaky], present=present)
    with pytest.raises(ValueError, match=r"'maps_sets\[0\]' must be 0 on the neurons removed"):
        group_template([masks, masks], [leaky, maps], present=present)


def test_present_is_validated_before_any_work():
    masks = _masks_on(np.ones((N_LAYERS, WIDTH), dtype=bool), 2, 0.3, seed=31)
    with pytest.raises(TypeError, match="'present' must be None or a boolean array of shape "
                                        r"\(n_layers, n_units\)\. An array of dtype int64"):
        null_matched_iou(masks, masks, present=np.ones((N_LAYERS, WIDTH), dtype=np.int64))
    with pytest.raises(ValueError, match=r"'present' must have the grid's shape \(4, 40\)\. "
                                         r"An array of shape \(4, 39\) was provided"):
        spatial_correlation(masks * 1.0, masks * 1.0, present=np.ones((4, 39), dtype=bool))
    calls = []

    def fit_fn(runs):
        calls.append(runs)
        return masks, masks * 1.0

    with pytest.raises(ValueError, match=r"'present' must have the grid's shape \(n_layers, "
                                         r"n_units\)\. An array of shape \(160,\)"):
        split_half(fit_fn, [1, 2, 3], present=np.ones(160, dtype=bool))
    assert calls == []  # refused before any fit
    with pytest.raises(ValueError, match=r"'present' must have the grid's shape \(4, 40\)"):
        split_half(fit_fn, [1, 2, 3], present=np.ones((40, 4), dtype=bool))


def test_split_half_with_present_gives_the_compact_reports():
    present, _ = _present([30] * N_LAYERS, seed=32)
    planted = _maps_on(present, 3, seed=33)

    def fit_fn(runs):
        noise = _maps_on(present, 3, seed=sum(runs))
        maps = planted + 0.3 * noise
        return (maps >= 1.0) & present, maps

    def compact_fn(runs):
        masks, maps = fit_fn(runs)
        return _compact(masks, present), _compact(maps, present)

    runs = list(range(1, 8))
    pruned = split_half(fit_fn, runs, n_draws=30, random_state=0, present=present)[0]
    compact = split_half(compact_fn, runs, n_draws=30, random_state=0)[0]
    np.testing.assert_array_equal(pruned.iou.null, compact.iou.null)
    np.testing.assert_allclose(pruned.correlation.null, compact.correlation.null, atol=1e-14)


# ---------------------------------------------------------------------------
# compare_networks and `llmfbn consistency` on networks of a pruned model
# ---------------------------------------------------------------------------


def _pruned_networks(seed, present, units):
    from llmfbn.networks import FunctionalNetworks

    grid = NeuronGrid(N_LAYERS, WIDTH, model="m", signal="mlp", units=units)
    maps = _maps_on(present, 3, seed=seed).astype(np.float32)
    return FunctionalNetworks.from_maps(maps, grid, threshold=1.0)


def test_compare_networks_on_a_pruned_grid_uses_present(tmp_path):
    from llmfbn.cli import main
    from llmfbn.networks import compare_networks

    present, units = _present([28] * N_LAYERS, seed=34)
    a, b = _pruned_networks(35, present, units), _pruned_networks(36, present, units)
    b.maps[0] = a.maps[1] + 0.1 * b.maps[0]
    result = compare_networks([a, b], n_draws=50, random_state=4)
    pair = result.pairs[0]
    expected_iou = null_matched_iou(_compact(a.masks, present), _compact(b.masks, present),
                                    n_draws=50, random_state=4)
    expected_corr = null_matched_correlation(_compact(a.maps, present), _compact(b.maps, present),
                                             n_draws=50, random_state=4)
    np.testing.assert_array_equal(pair.iou.null, expected_iou.null)
    np.testing.assert_allclose(pair.correlation.null, expected_corr.null, atol=1e-14)
    np.testing.assert_allclose(pair.correlation.scores, expected_corr.scores, atol=1e-14)
    # the CLI writes the same numbers for the saved folders
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    out = tmp_path / "consistency.json"
    assert main(["consistency", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                 "--n-draws", "50", "--random-state", "4"]) == 0
    doc = json.loads(out.read_text())["pairs"][0]
    np.testing.assert_allclose(doc["iou"]["null_mean"], expected_iou.null_mean)
    np.testing.assert_allclose(doc["correlation"]["scores"], expected_corr.scores, atol=1e-6)
