import json

import numpy as np
import pytest

from llmfbn.networks._consistency import (
    MatchReport,
    _cluster_quality,
    _draw_sets,
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

GRID = (3, 10)  # n_layers, n_units for hand-made masks


def _masks(*neuron_lists, grid=GRID):
    """Boolean masks from lists of (layer, unit) neurons."""
    masks = np.zeros((len(neuron_lists),) + grid, dtype=bool)
    for n, neurons in enumerate(neuron_lists):
        for layer, unit in neurons:
            masks[n, layer, unit] = True
    return masks


def _random_masks(rng, n_networks, grid, density):
    return rng.random((n_networks,) + grid) < density


def _corr(x, y):
    return np.corrcoef(np.ravel(x), np.ravel(y))[0, 1]


# ---------------------------------------------------------------------------
# iou / spatial_correlation
# ---------------------------------------------------------------------------


def test_iou_hand_computed():
    a = _masks(
        [(0, 0), (1, 1)],  # identical to b[0]
        [(0, 0), (0, 1)],  # half overlap with b[1]: {0,1} vs {1,2} -> 1/3
        [(2, 5)],  # disjoint from everything in b
        [],  # empty
    )
    b = _masks([(0, 0), (1, 1)], [(0, 1), (0, 2)], [])
    scores = iou(a, b)
    assert scores.shape == (4, 3)
    expected = np.array([
        [1.0, 0.0, 0.0],
        [1 / 3, 1 / 3, 0.0],  # a[1] = {(0,0),(0,1)} vs b[0] = {(0,0),(1,1)}: 1 / 3
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],  # empty vs empty is 0, not nan
    ])
    np.testing.assert_allclose(scores, expected)


def test_iou_matches_set_definition_on_random_masks():
    rng = np.random.default_rng(0)
    a, b = _random_masks(rng, 5, (4, 30), 0.2), _random_masks(rng, 6, (4, 30), 0.3)
    scores = iou(a, b)
    for i in range(5):
        for j in range(6):
            inter = np.logical_and(a[i], b[j]).sum()
            union = np.logical_or(a[i], b[j]).sum()
            assert scores[i, j] == pytest.approx(inter / union)


def test_iou_rejects_non_boolean_masks():
    masks = _masks([(0, 0)])
    with pytest.raises(TypeError, match="'masks_a' must be a boolean array.*int64"):
        iou(masks.astype(np.int64), masks)
    with pytest.raises(TypeError, match="'masks_b'"):
        iou(masks, masks.astype(float))


def test_iou_rejects_wrong_ndim():
    with pytest.raises(ValueError, match=r"'masks_a' must have shape .*\(3, 10\) was provided"):
        iou(np.zeros(GRID, dtype=bool), _masks([(0, 0)]))


def test_mismatched_grids_name_both_sides():
    a = np.zeros((2, 30, 1536), dtype=bool)
    b = np.zeros((3, 28, 1536), dtype=bool)
    message = r"Network sets have different grids: \(30, 1536\) vs \(28, 1536\)\."
    with pytest.raises(ValueError, match=message):
        iou(a, b)
    with pytest.raises(ValueError, match=message):
        spatial_correlation(a.astype(float), b.astype(float))
    with pytest.raises(ValueError, match=message):
        match_networks(a, b)


def test_spatial_correlation_matches_corrcoef():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 4, 25)).astype(np.float32)
    b = rng.normal(size=(5, 4, 25))
    b[2] = 2.0 * a[1] + 1.0  # affine copy: correlation exactly 1
    b[3] = -a[0]
    corr = spatial_correlation(a, b)
    assert corr.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            assert corr[i, j] == pytest.approx(_corr(a[i], b[j]), abs=1e-6)
    assert corr[1, 2] == pytest.approx(1.0)
    assert corr[0, 3] == pytest.approx(-1.0)


def test_spatial_correlation_constant_map_is_zero_and_nan_rejected():
    maps = np.random.default_rng(2).normal(size=(2, 3, 8))
    constant = np.ones((1, 3, 8))
    np.testing.assert_array_equal(spatial_correlation(constant, maps), 0.0)
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'maps_a' must contain only finite values"):
        spatial_correlation(bad, maps)


# ---------------------------------------------------------------------------
# match_networks
# ---------------------------------------------------------------------------


def test_match_networks_recovers_permutation_on_masks():
    rng = np.random.default_rng(3)
    a = _random_masks(rng, 6, (5, 40), 0.15)
    perm = rng.permutation(6)
    b = a[perm]  # b[j] = a[perm[j]]
    matching = match_networks(a, b, metric="iou")
    expected = [(int(perm[j]), j) for j in range(6)]
    assert matching.pairs == sorted(expected)
    np.testing.assert_allclose(matching.scores, 1.0)
    assert matching.score_matrix.shape == (6, 6)
    assert matching.metric == "iou"


def test_match_networks_maximises_total_not_greedy():
    # Greedy would take (0, 0) = 0.9 and leave (1, 1) = 0.0; the optimum is
    # (0, 1) + (1, 0) = 0.8 + 0.8. Build masks with these IoUs.
    a = _masks(
        [(0, u) for u in range(10)],
        [(1, u) for u in range(5)] + [(0, 0)],
    )
    b = _masks(
        [(0, u) for u in range(9)] + [(1, 0)],
        [(0, u) for u in range(8)],
    )
    scores = iou(a, b)
    rows_greedy = scores[0].argmax()
    assert rows_greedy == 0
    matching = match_networks(a, b)
    total = matching.scores.sum()
    assert total == pytest.approx(max(scores[0, 0] + scores[1, 1], scores[0, 1] + scores[1, 0]))


def test_match_networks_correlation_and_abs_correlation():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, 3, 50))
    perm = np.array([2, 0, 3, 1])
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    b = a[perm] * signs[:, None, None] + 0.1 * rng.normal(size=(4, 3, 50))
    expected = sorted((int(perm[j]), j) for j in range(4))
    absolute = match_networks(a, b, metric="abs_correlation")
    assert absolute.pairs == expected
    assert (absolute.scores > 0.95).all()
    signed = match_networks(a, b, metric="correlation")
    assert signed.pairs != expected  # sign-flipped maps are anti-correlated


def test_match_networks_rectangular():
    rng = np.random.default_rng(5)
    a = _random_masks(rng, 3, (2, 50), 0.2)
    b = np.concatenate([_random_masks(rng, 2, (2, 50), 0.2), a[[2, 0, 1]]])
    matching = match_networks(a, b)
    assert matching.pairs == [(0, 3), (1, 4), (2, 2)]
    matching = match_networks(b, a)
    assert len(matching.pairs) == 3
    assert {i for i, _ in matching.pairs} == {2, 3, 4}


def test_match_networks_rejects_unknown_metric():
    masks = _masks([(0, 0)])
    with pytest.raises(ValueError, match=r"'metric' must be one of \('iou', 'correlation', "
                                         r"'abs_correlation'\)\. 'dice' was provided"):
        match_networks(masks, masks, metric="dice")


# ---------------------------------------------------------------------------
# random_masks_like
# ---------------------------------------------------------------------------


def test_random_masks_like_preserves_per_layer_counts():
    rng = np.random.default_rng(6)
    masks = _random_masks(rng, 5, (4, 64), 0.1)
    masks[0] = False  # empty network
    masks[1, 2] = True  # full layer
    masks[2, 1] = rng.random(64) < 0.8  # more than half full: complement path
    drawn = random_masks_like(masks, 30, random_state=0)
    assert drawn.shape == (30, 5, 4, 64) and drawn.dtype == bool
    np.testing.assert_array_equal(drawn.sum(axis=-1), np.broadcast_to(masks.sum(-1), (30, 5, 4)))
    assert not drawn[:, 0].any()
    assert drawn[:, 1, 2].all()
    # draws differ from each other and from the original
    assert not np.array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[0, 3], masks[3])


def test_random_masks_like_is_reproducible():
    masks = _random_masks(np.random.default_rng(7), 3, (2, 40), 0.2)
    first = random_masks_like(masks, 5, random_state=42)
    np.testing.assert_array_equal(first, random_masks_like(masks, 5, random_state=42))
    assert not np.array_equal(first, random_masks_like(masks, 5, random_state=43))
    legacy = np.random.RandomState(42)
    np.testing.assert_array_equal(first, random_masks_like(masks, 5, random_state=legacy))


def test_random_masks_like_is_uniform_within_layers():
    # one network with 3 of 12 units in layer 0 and 9 of 12 (complement path) in layer 1
    masks = np.zeros((1, 2, 12), dtype=bool)
    masks[0, 0, :3] = True
    masks[0, 1, :9] = True
    drawn = random_masks_like(masks, 6000, random_state=0)
    inclusion = drawn.mean(axis=0)[0]
    np.testing.assert_allclose(inclusion[0], 0.25, atol=0.025)
    np.testing.assert_allclose(inclusion[1], 0.75, atol=0.025)
    # pairs are included jointly at the rate of sampling without replacement
    joint = (drawn[:, 0, 0, 0] & drawn[:, 0, 0, 11]).mean()
    assert joint == pytest.approx(3 / 12 * 2 / 11, abs=0.015)


def test_draw_sets_redraws_tied_keys_exactly():
    class AllTied:
        """Every key is 0: every row needs the tie fallback."""

        def __init__(self):
            self.rng = np.random.default_rng(0)

        def random(self, size, dtype):
            return np.zeros(size, dtype=dtype)

        def choice(self, *args, **kwargs):
            return self.rng.choice(*args, **kwargs)

    counts = np.array([0, 1, 3, 7, 10])
    drawn = _draw_sets(counts, 10, 50, AllTied())
    np.testing.assert_array_equal(drawn.sum(axis=-1), np.broadcast_to(counts, (50, 5)))
    assert not np.all(drawn[:, 2] == drawn[0, 2])  # not always the first units


def test_random_masks_like_validates():
    masks = _masks([(0, 0)])
    with pytest.raises(ValueError, match="'n_draws' must be >= 1. 0 was provided"):
        random_masks_like(masks, 0)
    with pytest.raises(TypeError, match="'n_draws' must be an int"):
        random_masks_like(masks, 2.5)
    with pytest.raises(TypeError, match="'masks' must be a boolean array"):
        random_masks_like(masks.astype(np.uint8), 3)


def test_random_masks_like_is_fast_at_model_scale():
    import time

    masks = _random_masks(np.random.default_rng(8), 20, (30, 1536), 0.01)
    start = time.perf_counter()
    drawn = random_masks_like(masks, 100, random_state=0)
    elapsed = time.perf_counter() - start
    assert drawn.shape == (100, 20, 30, 1536)
    assert elapsed < 5.0


# ---------------------------------------------------------------------------
# null_matched_iou / null_matched_correlation
# ---------------------------------------------------------------------------


def test_null_iou_matches_analytic_expectation_and_brute_force():
    rng = np.random.default_rng(9)
    grid = (3, 500)
    a = _random_masks(rng, 4, grid, 0.04)
    b = _random_masks(rng, 4, grid, 0.04)
    report = null_matched_iou(a, b, n_draws=2000, random_state=0)
    n_units = grid[1]
    for p, (i, j) in enumerate(report.pairs):
        ka, kb = a[i].sum(-1), b[j].sum(-1)
        expected_inter = (ka * kb).sum() / n_units  # hypergeometric mean per layer
        analytic = expected_inter / (ka.sum() + kb.sum() - expected_inter)
        assert report.null_mean[p] == pytest.approx(analytic, rel=0.1)
        assert 0.005 < report.null_mean[p] < 0.05  # ~ size / n_neurons scale
    # brute force: intersect random_masks_like draws of both networks
    i, j = report.pairs[0]
    ra = random_masks_like(a[[i]], 2000, random_state=1)[:, 0]
    rb = random_masks_like(b[[j]], 2000, random_state=2)[:, 0]
    inter = (ra & rb).sum(axis=(1, 2))
    brute = inter / (a[i].sum() + b[j].sum() - inter)
    assert report.null_mean[0] == pytest.approx(brute.mean(), rel=0.1)
    assert report.null_p95[0] == pytest.approx(np.percentile(brute, 95), rel=0.2)
    # unrelated random networks are not significant
    assert np.median(report.p_value) > 0.05


def test_null_iou_planted_pair_is_significant():
    rng = np.random.default_rng(10)
    a = _random_masks(rng, 3, (4, 300), 0.03)
    b = _random_masks(rng, 3, (4, 300), 0.03)
    b[1] = a[2]  # planted identical pair
    n_draws = 200
    report = null_matched_iou(a, b, n_draws=n_draws, random_state=0)
    p = report.pairs.index((2, 1))
    assert report.scores[p] == 1.0
    assert report.p_value[p] == pytest.approx(1 / (1 + n_draws))
    assert report.ratio[p] > 20
    assert report.null_p95[p] < 0.1
    assert report.null.shape == (3, n_draws)
    # the other pairs are at chance
    others = [q for q in range(3) if q != p]
    assert (report.p_value[others] > 1 / (1 + n_draws)).all()


def test_null_iou_counts_ties_as_exceedances():
    # One neuron out of two: a random copy is identical (IoU 1, a tie with
    # the observed score) half of the time, so p is about 1/2, not 1/(1+n).
    masks = np.array([[[True, False]]])
    report = null_matched_iou(masks, masks, n_draws=400, random_state=0)
    ties = (report.null[0] == 1.0).sum()
    assert 150 < ties < 250
    assert report.p_value[0] == pytest.approx((1 + ties) / 401)


def test_null_iou_is_reproducible_and_validates():
    masks = _random_masks(np.random.default_rng(11), 2, (2, 50), 0.1)
    first = null_matched_iou(masks, masks, n_draws=20, random_state=3)
    second = null_matched_iou(masks, masks, n_draws=20, random_state=3)
    np.testing.assert_array_equal(first.null, second.null)
    with pytest.raises(ValueError, match="'n_draws' must be >= 1"):
        null_matched_iou(masks, masks, n_draws=0)
    with pytest.raises(TypeError, match="boolean"):
        null_matched_iou(masks.astype(float), masks)


def test_null_correlation_planted_pair_and_chance():
    rng = np.random.default_rng(12)
    grid = (4, 250)
    a = rng.normal(size=(3,) + grid)
    b = rng.normal(size=(3,) + grid)
    b[0] = a[1] + 0.5 * rng.normal(size=grid)
    n_draws = 300
    report = null_matched_correlation(a, b, n_draws=n_draws, random_state=0)
    p = report.pairs.index((1, 0))
    assert report.scores[p] > 0.8
    assert report.p_value[p] == pytest.approx(1 / (1 + n_draws))
    n_neurons = np.prod(grid)
    # null of a permuted map: mean ~ 0, spread ~ 1 / sqrt(n_neurons)
    assert abs(report.null_mean[p]) < 0.01
    assert report.null[p].std() == pytest.approx(1 / np.sqrt(n_neurons), rel=0.2)
    json.dumps(report.to_dict())


def test_null_correlation_permutes_within_layers():
    # Both maps share only a per-layer offset. Shuffling neurons across the
    # whole grid would destroy it (tiny p-value); shuffling within layers
    # keeps it, so the match is not significant.
    rng = np.random.default_rng(13)
    offsets = np.array([-3.0, -1.0, 1.0, 3.0])[:, None]
    a = (offsets + rng.normal(size=(4, 200)))[None]
    b = (offsets + rng.normal(size=(4, 200)))[None]
    report = null_matched_correlation(a, b, n_draws=200, random_state=0)
    assert report.scores[0] > 0.8
    assert report.null_mean[0] == pytest.approx(report.scores[0], abs=0.05)
    assert report.p_value[0] > 0.05


def test_null_abs_correlation_has_positive_null_and_finite_ratio():
    rng = np.random.default_rng(14)
    a = rng.normal(size=(2, 2, 300))
    b = -a + 0.3 * rng.normal(size=a.shape)
    report = null_matched_correlation(a, b, n_draws=100, metric="abs_correlation",
                                      random_state=0)
    assert report.metric == "abs_correlation"
    assert (report.scores > 0.9).all()
    assert (report.null >= 0).all() and (report.null_mean > 0).all()
    assert (report.ratio > 10).all() and np.isfinite(report.ratio).all()
    with pytest.raises(ValueError, match=r"'metric' must be one of \('correlation', "
                                         r"'abs_correlation'\)\. 'iou' was provided"):
        null_matched_correlation(a, b, metric="iou")


def test_match_report_to_dict_is_plain_json():
    report = MatchReport(
        pairs=[(np.int64(0), np.int64(2)), (1, 0)],
        scores=np.array([0.5, 0.0]),
        null_mean=np.array([0.0, 0.0]),
        null_p95=np.array([0.0, 0.0]),
        ratio=np.array([np.inf, np.nan]),
        p_value=np.array([0.01, 1.0]),
        metric="iou",
        n_draws=99,
        null=np.zeros((2, 99)),
    )
    summary = report.to_dict()
    assert summary["ratio"] == [None, None]
    assert summary["pairs"] == [[0, 2], [1, 0]]
    assert "null" not in summary
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["scores"] == [0.5, 0.0]
    assert all(type(v) is float for v in summary["p_value"])
    assert len(report.to_dict(include_null=True)["null"]) == 2


# ---------------------------------------------------------------------------
# recurrence / group_template
# ---------------------------------------------------------------------------


def _jitter(mask, rng, n_swap):
    """Move ``n_swap`` neurons of ``mask`` elsewhere in the same layer."""
    mask = mask.copy()
    for _ in range(n_swap):
        layer = rng.integers(mask.shape[0])
        on, off = np.flatnonzero(mask[layer]), np.flatnonzero(~mask[layer])
        if len(on) and len(off):
            mask[layer, rng.choice(on)] = False
            mask[layer, rng.choice(off)] = True
    return mask


def _recurring_sets(seed=15, n_sets=4):
    """Network 0 recurs (jittered) in every set; network 1 is new in each set."""
    rng = np.random.default_rng(seed)
    grid = (3, 200)
    shared = rng.random(grid) < 0.1
    sets = []
    for k in range(n_sets):
        own = rng.random(grid) < 0.1
        extra = rng.random((k % 2,) + grid) < 0.1  # different n_networks per set
        sets.append(np.concatenate([_jitter(shared, rng, 5)[None], own[None], extra]))
    return sets


def test_recurrence_counts_recurring_and_unique_networks():
    sets = _recurring_sets()
    rec = recurrence(sets, reference=0, threshold=0.2)
    np.testing.assert_array_equal(rec.counts, [3, 0])
    np.testing.assert_allclose(rec.fraction, [1.0, 0.0])
    assert rec.matched.shape == (4, 2) and rec.scores.shape == (4, 2)
    np.testing.assert_array_equal(rec.matched[:, 0], 0)  # matched to the shared network
    assert (rec.scores[1:, 0] > 0.7).all()
    assert (rec.scores[1:, 1] < 0.2).all()
    assert rec.recurs[0].all()  # reference row
    np.testing.assert_allclose(rec.scores[0], 1.0)


def test_recurrence_other_reference_and_unmatched():
    sets = _recurring_sets()
    sets[2] = sets[2][:1]  # a set with a single network
    rec = recurrence(sets, reference=-1, threshold=0.2)  # set 3 (3 networks)
    assert rec.reference == 3
    assert rec.counts.shape == (3,)
    assert rec.counts[0] == 3
    # set 2 has one network: two of the three reference networks stay unmatched
    assert (rec.matched[2] == -1).sum() == 2
    assert np.isnan(rec.scores[2]).sum() == 2


def test_recurrence_validates():
    sets = _recurring_sets()
    with pytest.raises(ValueError, match="'network_sets' must hold at least 2 network sets. 1"):
        recurrence(sets[:1])
    with pytest.raises(ValueError, match="'reference' must index one of the 4 network sets"):
        recurrence(sets, reference=4)
    with pytest.raises(TypeError, match=r"'network_sets\[1\]' must be a boolean array"):
        recurrence([sets[0], sets[1].astype(int)])
    with pytest.raises(ValueError, match="different grids"):
        recurrence([sets[0], sets[1][:, :2]])
    with pytest.raises(ValueError, match="'metric' must be one of"):
        recurrence(sets, metric="dice")


def test_recurrence_on_maps():
    rng = np.random.default_rng(16)
    base = rng.normal(size=(2, 3, 100))
    sets = [base, np.stack([base[0] + 0.2 * rng.normal(size=(3, 100)),
                            rng.normal(size=(3, 100))])]
    rec = recurrence(sets, threshold=0.5, metric="correlation")
    np.testing.assert_array_equal(rec.counts, [1, 0])


def test_group_template_consensus_by_hand():
    ref = _masks([(0, 0), (0, 1), (0, 2)], [(2, 9)])
    set_b = _masks([(0, 0), (0, 1), (0, 3)], [(1, 5)])
    set_c = _masks([(0, 0), (0, 1), (0, 2), (0, 4)], [(1, 7)])
    # network 0 IoU: ref vs b = 2/4, ref vs c = 3/4 -> recurs in both;
    # network 1 is disjoint from everything -> recurs in none.
    maps = [m.astype(float) for m in (ref, set_b, set_c)]
    maps[1] = -maps[1]  # a sign-flipped copy is aligned back before averaging
    template = group_template([ref, set_b, set_c], maps_sets=maps, threshold=0.4)
    np.testing.assert_array_equal(template.indices, [0])
    np.testing.assert_array_equal(template.n_matched, [3])
    np.testing.assert_allclose(template.fraction, [1.0])
    # votes: units 0, 1: 3; unit 2: 2; units 3, 4: 1 -> keep votes >= 1.5
    expected = _masks([(0, 0), (0, 1), (0, 2)])
    np.testing.assert_array_equal(template.masks, expected)
    expected_map = (maps[0][0] - maps[1][0] + maps[2][0]) / 3
    np.testing.assert_allclose(template.maps[0], expected_map)
    assert template.maps.shape == (1,) + GRID


def test_group_template_min_fraction_and_without_maps():
    sets = _recurring_sets()
    template = group_template(sets, min_fraction=0.5)
    np.testing.assert_array_equal(template.indices, [0])
    assert template.maps is None
    assert template.masks.shape == (1, 3, 200)
    # the consensus of jittered copies is close to each copy
    assert iou(template.masks, sets[0][:1])[0, 0] > 0.8
    everything = group_template(sets, min_fraction=0.0)
    np.testing.assert_array_equal(everything.indices, [0, 1])
    np.testing.assert_array_equal(everything.masks[1], sets[0][1])  # only the reference
    with pytest.raises(ValueError, match="'min_fraction' must be between 0 and 1. 1.5"):
        group_template(sets, min_fraction=1.5)
    with pytest.raises(ValueError, match="'maps_sets' must hold one entry per network set"):
        group_template(sets, maps_sets=[s.astype(float) for s in sets[:2]])
    with pytest.raises(ValueError, match=r"'maps_sets\[0\]' must match 'network_sets\[0\]'"):
        group_template(sets, maps_sets=[s[:1].astype(float) for s in sets])


# ---------------------------------------------------------------------------
# stability
# ---------------------------------------------------------------------------


def _planted_fits(rng, n_fits=3, n_planted=4, n_noise=0, grid=(4, 200), noise=0.3):
    planted = rng.standard_t(3, size=(n_planted,) + grid)
    fits, truth = [], []
    for _ in range(n_fits):
        comps = planted + noise * rng.normal(size=planted.shape)
        comps = np.concatenate([comps, rng.normal(size=(n_noise,) + grid)])
        order = rng.permutation(len(comps))
        signs = rng.choice([-1.0, 1.0], size=len(comps))
        fits.append(comps[order] * signs[:, None, None])
        truth.append(np.where(order < n_planted, order, -1))  # planted id or -1 (noise)
    return planted, fits, truth


def test_stability_recovers_planted_components():
    rng = np.random.default_rng(17)
    planted, fits, truth = _planted_fits(rng)
    result = stability(fits, random_state=0)
    assert result.quality.shape == (4,)
    np.testing.assert_array_equal(result.n_fits, [3, 3, 3, 3])
    np.testing.assert_array_equal(result.sizes, [3, 3, 3, 3])
    assert (result.quality > 0.8).all()
    assert (np.diff(result.quality) <= 0).all()  # sorted by decreasing quality
    # each cluster holds the three copies of one planted map
    pooled_truth = np.concatenate(truth)
    for c in range(4):
        assert len(set(pooled_truth[result.labels == c])) == 1
    # representative maps correlate with the planted ones, with positive peaks
    corr = spatial_correlation(result.representative_maps, planted)
    assert (np.abs(corr).max(axis=1) > 0.9).all()
    for rep, (fit, comp) in zip(result.representative_maps, result.centrotypes):
        assert rep.ravel()[np.abs(rep).argmax()] > 0
        assert result.labels[np.flatnonzero((result.pooled_index == (fit, comp)).all(1))[0]] \
            == list(result.centrotypes).index((fit, comp))
    # sign alignment: every aligned member correlates positively with its representative
    pooled = np.concatenate(fits) * result.signs[:, None, None]
    member_corr = spatial_correlation(pooled, result.representative_maps)
    assert (member_corr[np.arange(12), result.labels] > 0.9).all()


def test_stability_weak_component_ranks_last():
    # A fifth component shared by the fits but buried in noise (fit-to-fit
    # correlation ~0.2) forms its own cluster, with a much lower quality.
    rng = np.random.default_rng(18)
    grid = (4, 500)
    planted, fits, truth = _planted_fits(rng, n_planted=5, grid=grid)
    for fit, ids in zip(fits, truth):
        weak = np.flatnonzero(ids == 4)[0]
        fit[weak] = planted[4] + 4.0 * rng.normal(size=grid)
    result = stability(fits)  # n_clusters defaults to 5 components per fit
    assert result.quality.shape == (5,)
    pooled_truth = np.concatenate(truth)
    np.testing.assert_array_equal(pooled_truth[result.labels == 4], [4, 4, 4])
    assert result.n_fits[4] == 3
    assert result.quality[4] < 0.3
    assert (result.quality[:4] > 0.8).all()


def test_pure_noise_cluster_has_low_quality():
    # Quality of a cluster made of unrelated components (one per fit),
    # next to clusters of planted components.
    rng = np.random.default_rng(21)
    _, fits, truth = _planted_fits(rng, n_noise=1)
    pooled_truth = np.concatenate(truth)
    labels = np.where(pooled_truth < 0, 4, pooled_truth)
    similarity = np.abs(spatial_correlation(np.concatenate(fits), np.concatenate(fits)))
    quality = _cluster_quality(similarity, labels, 5)
    assert abs(quality[4]) < 0.1
    assert (quality[:4] > 0.8).all()


def test_cluster_quality_by_hand():
    similarity = np.array([
        [1.0, 0.9, 0.1, 0.2],
        [0.9, 1.0, 0.3, 0.0],
        [0.1, 0.3, 1.0, 0.5],
        [0.2, 0.0, 0.5, 1.0],
    ])
    labels = np.array([0, 0, 1, 2])
    quality = _cluster_quality(similarity, labels, 3)
    assert quality[0] == pytest.approx(0.9 - (0.1 + 0.2 + 0.3 + 0.0) / 4)
    assert np.isnan(quality[1]) and np.isnan(quality[2])  # singletons, as in ICASSO
    everyone = _cluster_quality(similarity, np.zeros(4, int), 1)
    off_diagonal = (similarity.sum() - 4) / 12
    assert everyone[0] == pytest.approx(off_diagonal)


def test_stability_validates():
    rng = np.random.default_rng(19)
    _, fits, _ = _planted_fits(rng, n_fits=2)
    with pytest.raises(ValueError, match="'maps_list' must hold at least 2 network sets"):
        stability(fits[:1])
    with pytest.raises(ValueError, match="'n_clusters' must be <= the 8 pooled components. 9"):
        stability(fits, n_clusters=9)
    with pytest.raises(ValueError, match="'n_clusters' must be >= 1"):
        stability(fits, n_clusters=0)
    with pytest.raises(ValueError, match="different grids"):
        stability([fits[0], fits[1][:, :2]])
    singletons = stability(fits, n_clusters=8)
    assert np.isnan(singletons.quality).all()


# ---------------------------------------------------------------------------
# split_half
# ---------------------------------------------------------------------------


def _planted_fit_fn(calls):
    """Deterministic 'fit': the same 3 planted networks plus run-dependent noise."""
    rng = np.random.default_rng(20)
    planted = rng.standard_t(3, size=(3, 3, 150))

    def fit_fn(runs):
        calls.append(list(runs))
        noise_rng = np.random.default_rng(sum(runs))
        maps = planted[::-1] + 0.3 * noise_rng.normal(size=planted.shape)
        return maps >= 2.0, maps

    return fit_fn


def test_split_half_with_deterministic_fit():
    calls = []
    runs = list(range(1, 12))  # odd number of runs
    results = split_half(_planted_fit_fn(calls), runs, n_splits=2, n_draws=50, random_state=0)
    assert len(results) == 2 and len(calls) == 4
    for result, (first, second) in zip(results, zip(calls[::2], calls[1::2])):
        assert sorted(first + second) == runs  # disjoint halves covering every run
        assert {len(first), len(second)} == {5, 6}
        np.testing.assert_array_equal(np.asarray(runs)[result.halves[0]], first)
        for report in (result.iou, result.correlation):
            assert sorted(report.pairs) == [(0, 0), (1, 1), (2, 2)]
            np.testing.assert_allclose(report.p_value, 1 / 51)
        assert (result.correlation.scores > 0.9).all()
        assert (result.iou.scores > 0.5).all()
        json.dumps(result.to_dict())
    assert calls[0] != calls[2]  # the two splits differ
    again = []
    split_half(_planted_fit_fn(again), runs, n_splits=2, n_draws=50, random_state=0)
    assert again == calls


def test_split_half_validates():
    fit_fn = _planted_fit_fn([])
    with pytest.raises(ValueError, match="'runs' must hold at least 2 runs. 1 were provided"):
        split_half(fit_fn, [1])
    with pytest.raises(TypeError, match="'fit_fn' must be callable"):
        split_half("fit", [1, 2])
    with pytest.raises(TypeError, match=r"'fit_fn' must return a tuple \(masks, maps\)"):
        split_half(lambda runs: np.zeros((1, 2, 3)), [1, 2])
    with pytest.raises(ValueError, match="'n_splits' must be >= 1"):
        split_half(fit_fn, [1, 2], n_splits=0)


def test_compare_networks_document_and_grid_check():
    from llmfbn.grid import NeuronGrid
    from llmfbn.networks import FunctionalNetworks, compare_networks

    grid = NeuronGrid(2, 16, model="m", signal="mlp")
    maps = np.random.default_rng(0).standard_normal((3, 2, 16)).astype(np.float32)
    a = FunctionalNetworks.from_maps(maps, grid, threshold=1.0)
    b = FunctionalNetworks.from_maps(maps[::-1].copy(), grid, threshold=1.0)
    result = compare_networks([a, b], names=["A", "B"], n_draws=5)
    doc = json.loads(json.dumps(result.to_dict()))  # plain JSON
    assert doc["folders"] == ["A", "B"] and len(doc["pairs"]) == 1
    assert doc["pairs"][0]["iou"]["scores"] == [1.0, 1.0, 1.0]
    assert doc["recurrence"]["counts"] == [1, 1, 1]
    other = FunctionalNetworks.from_maps(maps, NeuronGrid(2, 16, model="other", signal="mlp"))
    with pytest.raises(ValueError, match="come from model 'other'"):
        compare_networks([a, other], names=["A", "C"])
    with pytest.raises(ValueError, match="'recurrence_threshold' must be a number in"):
        compare_networks([a, b], recurrence_threshold=float("nan"))


# ---------------------------------------------------------------------------
# "x chance" and z: one definition everywhere (issue 10)
# ---------------------------------------------------------------------------


def test_times_chance_and_z_definitions():
    from llmfbn.networks import match_summary, null_z, times_chance

    scores, null_mean = [0.4, 0.1, 0.2], [0.01, 0.02, 0.04]
    assert times_chance(scores, null_mean) == pytest.approx(0.2 / 0.02)  # medians
    assert np.isnan(times_chance([0.3], [0.0])) and np.isnan(times_chance([], []))
    np.testing.assert_allclose(null_z([0.5, 0.1], [0.1, 0.1], [0.2, 0.0]), [2.0, np.nan])
    report = null_matched_correlation(*_two_map_sets(), n_draws=50, random_state=0)
    summary = match_summary(report)
    np.testing.assert_allclose(report.z, (report.scores - report.null.mean(1))
                               / report.null.std(1, ddof=1))
    assert np.isnan(summary["times_chance"])  # never a ratio against a null near 0
    assert summary["median_z"] == pytest.approx(np.median(report.z)) and summary["median_z"] > 3
    # a document of an older llmfbn (no null_sd) still gets x chance and p-values
    old = {k: v for k, v in null_matched_iou(*_two_mask_sets(), n_draws=20,
                                             random_state=0).to_dict().items()
           if k not in ("null_sd", "z", "summary")}
    assert np.isnan(match_summary(old)["median_z"]) and match_summary(old)["times_chance"] > 1


def _two_mask_sets():
    rng = np.random.default_rng(0)
    a = _random_masks(rng, 4, (3, 60), 0.1)
    b = a.copy()
    b[:, :, :6] = _random_masks(rng, 4, (3, 6), 0.1)
    return a, b


def _two_map_sets():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((4, 3, 60))
    return maps, maps + 0.8 * rng.standard_normal(maps.shape)


def test_one_times_chance_in_cli_json_report_and_figure(tmp_path, capsys):
    import re

    from llmfbn.cli import main
    from llmfbn.grid import NeuronGrid
    from llmfbn.networks import FunctionalNetworks, format_times_chance, match_summary
    from llmfbn.plotting import plot_consistency
    from llmfbn.reports import make_report

    grid = NeuronGrid(3, 60, model="m", signal="mlp")
    maps_a, maps_b = _two_map_sets()
    folders = []
    for name, maps in (("a", maps_a), ("b", maps_b)):
        FunctionalNetworks.from_maps(maps.astype(np.float32), grid, threshold=1.0).save(
            tmp_path / name)
        folders.append(str(tmp_path / name))
    out = tmp_path / "consistency.json"
    assert main(["consistency", *folders, "--out", str(out), "--n-draws", "30"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    doc = json.loads(out.read_text())
    iou_doc, corr_doc = doc["pairs"][0]["iou"], doc["pairs"][0]["correlation"]
    # the mean null over pairs differs from the median: one definition must be used
    assert np.mean(iou_doc["null_mean"]) != pytest.approx(np.median(iou_doc["null_mean"]))
    expected = float(np.median(iou_doc["scores"]) / np.median(iou_doc["null_mean"]))
    assert iou_doc["summary"]["times_chance"] == pytest.approx(expected)
    assert match_summary(iou_doc)["times_chance"] == pytest.approx(expected)
    shown = format_times_chance(expected)
    assert f"· {shown} ·" in line  # CLI
    html = (make_report([out], tmp_path / "r.html", verbose=0)).read_text()
    assert f"<td>{shown}</td>" in html  # report table
    axes = plot_consistency(doc)
    assert shown in "\n".join(t.get_text() for t in axes.texts)  # figure
    # correlation: a z-score and p-values, never a ratio
    assert corr_doc["summary"]["times_chance"] is None
    z = f"median z {corr_doc['summary']['median_z']:.1f}"
    assert re.search(r"median matched r [^;]*" + re.escape(z), line)
    assert "chance" not in line.split(";")[1]
    corr_axes = plot_consistency(doc, metric="correlation")
    assert f"z {corr_doc['summary']['median_z']:.1f}" in corr_axes.texts[1].get_text()
    assert "×" not in "".join(t.get_text() for t in corr_axes.texts)
    assert f'<td class="num">{corr_doc["summary"]["median_z"]:.4g}</td>' in html
    assert "<th>median z (r)</th>" in html and "x chance" in html


# ---------------------------------------------------------------------------
# Dense grids: the numbers of before `present` (pruned grids), same seeds
# ---------------------------------------------------------------------------


def test_dense_nulls_are_unchanged_for_fixed_seeds():
    """Values computed with llmfbn before ``present`` existed (commit 665d944)."""
    import hashlib

    def digest(array):
        return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]

    rng = np.random.default_rng(7)
    masks_a = rng.random((4, 5, 40)) < 0.15
    masks_b = rng.random((3, 5, 40)) < 0.25
    maps_a = rng.standard_normal((4, 5, 40))
    maps_b = rng.standard_normal((3, 5, 40))
    drawn = random_masks_like(masks_a, 6, random_state=3)
    assert digest(drawn) == "efc8234811fe0702"
    assert np.flatnonzero(drawn.ravel())[:6].tolist() == [5, 7, 21, 22, 31, 40]
    report = null_matched_iou(masks_a, masks_b, n_draws=50, random_state=11)
    assert digest(report.null) == "5656d2761d4ba576"
    assert report.null.sum() == pytest.approx(16.517542310980673, rel=1e-12)
    report = null_matched_correlation(maps_a, maps_b, n_draws=50, random_state=11)
    assert report.pairs == [(0, 2), (2, 0), (3, 1)]
    assert report.null.sum() == pytest.approx(0.5815461624726144, rel=1e-9)
    np.testing.assert_allclose(report.null[:, 0], [0.08259678699897198, -0.029693516397813462,
                                                   -0.07175568861491748], rtol=1e-9)
    report = null_matched_correlation(maps_a, maps_b, n_draws=50, metric="abs_correlation",
                                      random_state=5)
    assert report.null.sum() == pytest.approx(8.233030948667743, rel=1e-9)
    np.testing.assert_allclose(spatial_correlation(maps_a, maps_b)[0],
                               [-0.04998834411939085, -0.03916754770927652, 0.1379998652756338],
                               rtol=1e-9)
    quality = stability([maps_a, maps_b + maps_a[:3]]).quality
    np.testing.assert_allclose(quality[:3], [0.6879907991280202, 0.6634160172800506,
                                             0.6305857404229416], rtol=1e-9)
    from llmfbn.grid import NeuronGrid
    from llmfbn.networks import FunctionalNetworks, compare_networks

    grid = NeuronGrid(2, 16, model="m", signal="mlp")
    a, b = (FunctionalNetworks.from_maps(
        np.random.default_rng(seed).standard_normal((3, 2, 16)).astype(np.float32), grid,
        threshold=1.0) for seed in (0, 1))
    pair = compare_networks([a, b], n_draws=20).pairs[0]
    assert pair.iou.null.sum() == pytest.approx(2.7055555555555557, rel=1e-12)
    assert pair.correlation.null.sum() == pytest.approx(-0.6488722915641305, rel=1e-6)
