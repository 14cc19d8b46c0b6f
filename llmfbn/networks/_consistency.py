"""Consistency of functional networks: overlap, matching, null models, stability.

Every function works on plain arrays over the neuron grid:

- ``masks``: boolean array of shape (n_networks, n_layers, n_units); each
  network is a set of neurons.
- ``maps``: float array of shape (n_networks, n_layers, n_units); each
  network's z-scored component map.

Null models preserve the size of a network *and its count of neurons in each
layer*: a network concentrated in a few layers is compared with random sets
concentrated in the same layers, never with sets spread over the whole model.

On the grid of a pruned model (:attr:`NeuronGrid.pruned`) some units of a
layer were removed: pass ``present`` (:meth:`NeuronGrid.present`, bool array
of shape (n_layers, n_units)) and random sets are drawn among the present
units of each layer only, correlations are computed over the present neurons
only, and masks or maps holding a removed neuron are refused. The results
are those of the same arrays with the removed units cut out. ``present=None``
(or every unit present) is a dense grid.

Needs numpy, scipy and scikit-learn only (no torch, no nilearn).
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering
from sklearn.utils import check_random_state

from llmfbn._utils import check_choice, check_positive_int

__all__ = [
    "GroupTemplate",
    "MatchReport",
    "Matching",
    "Recurrence",
    "SplitHalf",
    "Stability",
    "describe_match",
    "format_times_chance",
    "group_template",
    "iou",
    "match_networks",
    "match_summary",
    "null_matched_correlation",
    "null_matched_iou",
    "null_z",
    "random_masks_like",
    "recurrence",
    "spatial_correlation",
    "split_half",
    "stability",
    "times_chance",
]

METRICS = ("iou", "correlation", "abs_correlation")
CORRELATION_METRICS = ("correlation", "abs_correlation")

# Elements (n_draws x rows x n_units) handled at once when drawing random sets.
_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _check_masks(masks, name):
    masks = np.asarray(masks)
    if masks.dtype != bool:
        raise TypeError(
            f"'{name}' must be a boolean array of shape (n_networks, n_layers, "
            f"n_units). An array of dtype {masks.dtype} was provided."
        )
    if masks.ndim != 3:
        raise ValueError(
            f"'{name}' must have shape (n_networks, n_layers, n_units). "
            f"An array of shape {masks.shape} was provided."
        )
    return masks


def _check_maps(maps, name):
    maps = np.asarray(maps)
    if not (np.issubdtype(maps.dtype, np.number) or maps.dtype == bool) or np.iscomplexobj(maps):
        raise TypeError(
            f"'{name}' must be a real array of shape (n_networks, n_layers, "
            f"n_units). An array of dtype {maps.dtype} was provided."
        )
    if maps.ndim != 3:
        raise ValueError(
            f"'{name}' must have shape (n_networks, n_layers, n_units). "
            f"An array of shape {maps.shape} was provided."
        )
    maps = maps.astype(np.float64, copy=False)
    if not np.isfinite(maps).all():
        raise ValueError(f"'{name}' must contain only finite values; it holds NaN or inf.")
    return maps


def _check_present(present, shape=None):
    """``present`` as a bool array of ``shape`` (n_layers, n_units); None when every unit is.

    ``shape=None`` checks the type and the number of axes only.
    """
    if present is None:
        return None
    present = np.asarray(present)
    if present.dtype != bool:
        raise TypeError(
            f"'present' must be None or a boolean array of shape (n_layers, n_units). "
            f"An array of dtype {present.dtype} was provided."
        )
    if present.ndim != 2 or (shape is not None and present.shape != tuple(shape)):
        expected = "(n_layers, n_units)" if shape is None else str(tuple(shape))
        raise ValueError(
            f"'present' must have the grid's shape {expected}. An array of shape "
            f"{present.shape} was provided."
        )
    return None if present.all() else present


def _check_claims(values, present, name):
    """Refuse masks or maps that hold a neuron outside ``present`` (a removed one)."""
    if present is None:
        return
    held = int((values[:, ~present] != 0).any(axis=0).sum())
    if held and values.dtype == bool:
        raise ValueError(f"'{name}' must select only neurons present on the grid ('present'); "
                         f"it selects {held} removed neurons.")
    if held:
        raise ValueError(f"'{name}' must be 0 on the neurons removed from the grid ('present' "
                         f"False); it is nonzero on {held} of them.")


def _check_same_grid(a, b):
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"Network sets have different grids: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}."
        )


def _check_inputs(a, b, metric, names=("a", "b"), present=None):
    """Validate a pair of network sets (and ``present``) for ``metric``.

    Returns ``(a, b, present)``, with ``present`` None on a dense grid.
    """
    check_choice(metric, METRICS, "metric")
    check = _check_masks if metric == "iou" else _check_maps
    a, b = check(a, names[0]), check(b, names[1])
    _check_same_grid(a, b)
    present = _check_present(present, a.shape[1:])
    _check_claims(a, present, names[0])
    _check_claims(b, present, names[1])
    return a, b, present


def _check_sets(network_sets, metric, name="network_sets", minimum=2, present=None):
    """Validate network sets on one grid, none holding a removed neuron; ``(sets, present)``."""
    if not hasattr(network_sets, "__len__"):
        raise TypeError(
            f"'{name}' must be a list of arrays of shape (n_networks, n_layers, "
            f"n_units). {type(network_sets).__name__} was provided."
        )
    if len(network_sets) < minimum:
        raise ValueError(
            f"'{name}' must hold at least {minimum} network sets. "
            f"{len(network_sets)} were provided."
        )
    check = _check_masks if metric == "iou" else _check_maps
    sets = [check(s, f"{name}[{k}]") for k, s in enumerate(network_sets)]
    for s in sets[1:]:
        _check_same_grid(sets[0], s)
    present = _check_present(present, sets[0].shape[1:])
    for k, s in enumerate(sets):
        _check_claims(s, present, f"{name}[{k}]")
    return sets, present


def _check_reference(reference, n_sets):
    if isinstance(reference, bool) or not isinstance(reference, (int, np.integer)):
        raise TypeError(f"'reference' must be an int. {reference!r} was provided.")
    if not -n_sets <= reference < n_sets:
        raise ValueError(
            f"'reference' must index one of the {n_sets} network sets "
            f"(0 to {n_sets - 1}). {reference} was provided."
        )
    return int(reference) % n_sets


def _check_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"'{name}' must be a number. {value!r} was provided.")
    if not 0 <= value <= 1:
        raise ValueError(f"'{name}' must be between 0 and 1. {value} was provided.")
    return float(value)


def _generator(random_state):
    """A numpy Generator from anything ``check_random_state`` accepts (or a Generator)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    legacy = check_random_state(random_state)
    return np.random.default_rng(legacy.randint(0, 2**32, size=4, dtype=np.uint64))


# ---------------------------------------------------------------------------
# Similarities
# ---------------------------------------------------------------------------


def _iou_from_counts(intersection, size_a, size_b):
    """IoU from integer counts; 0 where both sets are empty."""
    union = size_a + size_b - intersection
    return np.divide(
        intersection, union, out=np.zeros(np.broadcast(intersection, union).shape),
        where=union > 0,
    )


def iou(masks_a, masks_b, present=None):
    """Intersection over union between every pair of networks.

    Parameters
    ----------
    masks_a : bool array of shape (n_a, n_layers, n_units)
    masks_b : bool array of shape (n_b, n_layers, n_units)
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid (:meth:`NeuronGrid.present` of a pruned
        model's grid); masks selecting another are refused. Default None:
        every neuron.

    Returns
    -------
    scores : float array of shape (n_a, n_b)
        ``|A_i & B_j| / |A_i | B_j|``; 0 when both networks are empty.
    """
    masks_a, masks_b, _ = _check_inputs(masks_a, masks_b, "iou", ("masks_a", "masks_b"),
                                        present)
    flat_a = masks_a.reshape(len(masks_a), -1).astype(np.float64)
    flat_b = masks_b.reshape(len(masks_b), -1).astype(np.float64)
    intersection = flat_a @ flat_b.T  # exact integers below 2**53 neurons
    return _iou_from_counts(intersection, flat_a.sum(1)[:, None], flat_b.sum(1)[None, :])


def _standardize(maps, present=None):
    """Rows centred and scaled to unit norm, shape (n, n_neurons); constant rows are 0.

    With ``present``, over the present neurons only, in neuron order (layer by
    layer): the columns of the arrays with the removed units cut out.
    """
    flat = maps.reshape(len(maps), -1) if present is None else maps[:, present]
    flat = flat.astype(np.float64)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norm, out=np.zeros_like(flat), where=norm > 0)


def spatial_correlation(maps_a, maps_b, present=None):
    """Pearson correlation between every pair of flattened maps.

    Parameters
    ----------
    maps_a : float array of shape (n_a, n_layers, n_units)
    maps_b : float array of shape (n_b, n_layers, n_units)
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid (:meth:`NeuronGrid.present` of a pruned
        model's grid): the correlation is over these only (removed neurons,
        0 in both maps, would inflate it); maps nonzero elsewhere are
        refused. Default None: every neuron.

    Returns
    -------
    correlation : float array of shape (n_a, n_b)
        Correlation over all (present) neurons; 0 for a constant map.
    """
    maps_a, maps_b, present = _check_inputs(maps_a, maps_b, "correlation",
                                            ("maps_a", "maps_b"), present)
    return np.clip(_standardize(maps_a, present) @ _standardize(maps_b, present).T, -1.0, 1.0)


def _score_matrix(a, b, metric, present=None):
    if metric == "iou":
        return iou(a, b, present)
    corr = spatial_correlation(a, b, present)
    return np.abs(corr) if metric == "abs_correlation" else corr


# ---------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------


@dataclass
class Matching:
    """One-to-one matching of the networks of two sets.

    Attributes
    ----------
    pairs : list of (int, int)
        Matched ``(i, j)``: network ``i`` of the first set and ``j`` of the
        second, sorted by ``i``; ``min(n_a, n_b)`` pairs.
    scores : float array of shape (n_pairs,)
        ``score_matrix[i, j]`` for each pair.
    score_matrix : float array of shape (n_a, n_b)
    metric : str
    """

    pairs: list
    scores: np.ndarray
    score_matrix: np.ndarray = field(repr=False)
    metric: str = "iou"


def match_networks(a, b, metric="iou", present=None):
    """Match networks one to one, maximising the total score (Hungarian algorithm).

    Parameters
    ----------
    a : array of shape (n_a, n_layers, n_units)
        Boolean masks for ``metric="iou"``, maps otherwise.
    b : array of shape (n_b, n_layers, n_units)
    metric : {"iou", "correlation", "abs_correlation"}, default "iou"
        Intersection over union of masks, Pearson correlation of maps, or its
        absolute value (for maps whose sign is arbitrary).
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (see :func:`spatial_correlation`).
        Default None: every neuron.

    Returns
    -------
    matching : Matching
    """
    return _match(a, b, metric, present, ("a", "b"))


def _match(a, b, metric, present, names):
    """:func:`match_networks`, naming the arguments ``names`` in its messages."""
    a, b, present = _check_inputs(a, b, metric, names, present)
    score_matrix = _score_matrix(a, b, metric, present)
    rows, cols = linear_sum_assignment(score_matrix, maximize=True)
    pairs = [(int(i), int(j)) for i, j in zip(rows, cols)]
    return Matching(pairs, score_matrix[rows, cols].copy(), score_matrix, metric)


# ---------------------------------------------------------------------------
# Null models
# ---------------------------------------------------------------------------


def _draw_sets(counts, n_units, n_draws, rng):
    """Random subsets of ``range(n_units)``, ``counts[r]`` elements in row ``r``.

    Returns a bool array of shape (n_draws, n_rows, n_units). Each row gets
    independent uniform keys and keeps the units whose keys are among its
    ``counts[r]`` smallest; only the smallest ``max(counts)`` keys are
    sorted, and rows more than half full draw their complement. Keys are
    float32; the rare row whose threshold key is tied (about one in 10**4)
    is redrawn with ``rng.choice``, so every subset stays exactly uniform.
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    n_rows = len(counts)
    flip = counts > n_units // 2
    k = np.where(flip, n_units - counts, counts)  # units to draw, <= n_units // 2
    out = np.zeros((n_draws, n_rows, n_units), dtype=bool)
    out[:, flip & (k == 0)] = True  # full rows
    active = np.flatnonzero(k > 0)
    if active.size == 0:
        return out
    # Few active rows: draw only those (fancy indexing). Many: draw every
    # row and write in place, which is cheaper than scattering.
    dense = 2 * active.size >= n_rows
    rows = np.arange(n_rows) if dense else active
    k, flip = k[rows], flip[rows]
    k_max = int(k.max())
    # Key below every draw for rows with nothing to draw.
    empty = k == 0
    position = np.arange(len(rows))
    step = max(1, _CHUNK_ELEMENTS // (len(rows) * n_units))
    for start in range(0, n_draws, step):
        stop = min(start + step, n_draws)
        keys = rng.random((stop - start, len(rows), n_units), dtype=np.float32)
        smallest = np.partition(keys, k_max - 1, axis=-1)[..., :k_max]
        smallest.sort(axis=-1)
        threshold = smallest[:, position, np.maximum(k - 1, 0)]
        threshold[:, empty] = -1.0
        chosen = out[start:stop] if dense else np.empty(keys.shape, dtype=bool)
        np.less_equal(keys, threshold[..., None], out=chosen)
        for d, r in np.argwhere(chosen.sum(axis=-1) != k):
            chosen[d, r] = False
            chosen[d, r, rng.choice(n_units, size=k[r], replace=False)] = True
        np.logical_xor(chosen, flip[:, None], out=chosen)
        if not dense:
            out[start:stop, rows] = chosen
    return out


def _layer_groups(present):
    """Layers grouped by their count of present units, smallest count first.

    Yields ``(layers, columns)`` for each count ``m > 0``: ``layers`` an int
    array of shape (n_group,), ``columns`` an int array of shape (n_group, m),
    the positions of those layers' present units in neuron order (the
    columns of ``maps[:, present]``).
    """
    sizes = present.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for size in np.unique(sizes[sizes > 0]):
        layers = np.flatnonzero(sizes == size)
        yield layers, offsets[layers][:, None] + np.arange(size)


def _draw_present(counts, present, n_draws, rng):
    """Random sets among the present units of each layer (:func:`_draw_sets` per group).

    ``counts`` has shape (n_networks, n_layers); returns a bool array of shape
    (n_draws, n_networks, n_layers, n_units). The layers of each group of
    :func:`_layer_groups` (``m`` units present) draw subsets of ``range(m)``,
    then placed on their present units in order: each set is uniform among
    its layer's present units, independently for every draw, network and
    layer. When every layer has ``m`` units present, the draws are exactly
    those of the arrays with the removed units cut out.
    """
    n_networks = len(counts)
    n_layers, n_units = present.shape
    units = np.nonzero(present)[1]  # unit of each present neuron, in neuron order
    out = np.zeros((n_draws, n_networks, n_layers, n_units), dtype=bool)
    for layers, columns in _layer_groups(present):
        size = columns.shape[1]
        drawn = _draw_sets(counts[:, layers], size, n_draws, rng)
        out[:, :, layers[:, None], units[columns]] = drawn.reshape(
            n_draws, n_networks, len(layers), size)
    return out


def random_masks_like(masks, n_draws, random_state=None, present=None):
    """Random networks with the same number of neurons in each layer.

    For every network and layer, as many units as the network has in that
    layer are drawn uniformly without replacement, independently for each
    draw, network and layer.

    Parameters
    ----------
    masks : bool array of shape (n_networks, n_layers, n_units)
    n_draws : int
        Number of random sets per network (>= 1).
    random_state : int, RandomState instance or None, default None
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (:meth:`NeuronGrid.present`):
        units are drawn among the present units of each layer only; masks
        selecting a removed neuron are refused. Default None: every unit.

    Returns
    -------
    random_masks : bool array of shape (n_draws, n_networks, n_layers, n_units)
        ``random_masks[d].sum(axis=-1) == masks.sum(axis=-1)`` for every draw.
    """
    masks = _check_masks(masks, "masks")
    check_positive_int(n_draws, "n_draws")
    present = _check_present(present, masks.shape[1:])
    _check_claims(masks, present, "masks")
    rng = _generator(random_state)
    n_networks, n_layers, n_units = masks.shape
    if present is not None:
        return _draw_present(masks.sum(axis=-1), present, n_draws, rng)
    drawn = _draw_sets(masks.sum(axis=-1), n_units, n_draws, rng)
    return drawn.reshape(n_draws, n_networks, n_layers, n_units)


@dataclass
class MatchReport:
    """Matched pairs of two network sets, each against a null distribution.

    Attributes
    ----------
    pairs : list of (int, int)
        Matched ``(i, j)`` (network ``i`` of the first set, ``j`` of the second).
    scores : float array of shape (n_pairs,)
        Observed score of each pair.
    null_mean, null_p95 : float arrays of shape (n_pairs,)
        Mean and 95th percentile of each pair's null scores.
    null_sd : float array of shape (n_pairs,)
        Standard deviation of each pair's null scores (for ``z``).
    ratio : float array of shape (n_pairs,)
        ``scores / null_mean``: ``inf`` when the null mean is 0 and the score
        positive, ``nan`` when both are 0. Meaningful for non-negative
        metrics (IoU, absolute correlation); for signed correlation the null
        mean is close to 0 and the ratio unstable: use ``p_value``.
    p_value : float array of shape (n_pairs,)
        ``(1 + #(null >= score)) / (1 + n_draws)``; ties count as exceedances.
        The smallest possible value is ``1 / (1 + n_draws)``.
    metric : str
    n_draws : int
    null : float array of shape (n_pairs, n_draws)
        The null scores themselves.
    """

    pairs: list
    scores: np.ndarray
    null_mean: np.ndarray
    null_p95: np.ndarray
    ratio: np.ndarray
    p_value: np.ndarray
    metric: str = "iou"
    n_draws: int = 0
    null: np.ndarray = field(default=None, repr=False)
    null_sd: np.ndarray = None

    @property
    def z(self):
        """``(scores - null_mean) / null_sd`` per pair: float array of shape (n_pairs,)."""
        return null_z(self.scores, self.null_mean, self.null_sd)

    def summary(self, alpha=0.05):
        """:func:`match_summary` of this report."""
        return match_summary(self, alpha=alpha)

    def to_dict(self, include_null=False):
        """Plain, JSON-serialisable summary.

        Non-finite numbers (an infinite or undefined ``ratio``) become ``None``
        (JSON ``null``). ``null`` is left out unless ``include_null=True``.

        Returns
        -------
        summary : dict
            ``metric``, ``n_draws``, one list entry per pair for ``pairs``
            (``[i, j]``), ``scores``, ``null_mean``, ``null_p95``, ``null_sd``,
            ``z``, ``ratio`` and ``p_value``, and ``summary``
            (:func:`match_summary`).
        """
        summary = {
            "metric": self.metric,
            "n_draws": int(self.n_draws),
            "pairs": [[int(i), int(j)] for i, j in self.pairs],
        }
        for name in ("scores", "null_mean", "null_p95", "null_sd", "z", "ratio", "p_value"):
            if getattr(self, name) is not None:
                summary[name] = _to_list(getattr(self, name))
        summary["summary"] = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                              for k, v in self.summary().items()}
        if include_null and self.null is not None:
            summary["null"] = [_to_list(row) for row in self.null]
        return summary


def _to_list(values):
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _report(matching, null, n_draws):
    scores = np.asarray(matching.scores, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64).reshape(len(scores), n_draws)
    null_mean = null.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = scores / null_mean
    # Ties count as exceedances; the tolerance absorbs rounding differences.
    exceed = (null >= scores[:, None] - 1e-12).sum(axis=1)
    return MatchReport(
        pairs=list(matching.pairs),
        scores=scores,
        null_mean=null_mean,
        null_p95=np.percentile(null, 95, axis=1) if null.size else np.zeros(0),
        ratio=ratio,
        p_value=(1.0 + exceed) / (1.0 + n_draws),
        metric=matching.metric,
        n_draws=n_draws,
        null=null,
        null_sd=null.std(axis=1, ddof=1) if n_draws > 1 else np.full(len(scores), np.nan),
    )


# ---------------------------------------------------------------------------
# One summary of a matching against its null ("x chance", z)
# ---------------------------------------------------------------------------


def _floats(values):
    return np.array([np.nan if v is None else v for v in np.ravel(values)], dtype=float)


def times_chance(scores, null_mean):
    """How many times chance a matching scores: ``median(scores) / median(null_mean)``.

    The one definition of "x chance" (CLI, consistency JSON, report and
    figures). Meaningful for non-negative scores (IoU, absolute
    correlation); for signed correlation the null is near 0 and the ratio
    unstable: use :func:`null_z` or the p-values.

    Parameters
    ----------
    scores : float array of shape (n_pairs,)
        Matched pairs' scores.
    null_mean : float array of shape (n_pairs,)
        Each pair's mean null score.

    Returns
    -------
    float
        NaN without pairs or when the median null is not above 0.
    """
    scores, null_mean = _floats(scores), _floats(null_mean)
    if not scores.size or np.isnan(scores).all() or np.isnan(null_mean).all():
        return math.nan
    null = float(np.nanmedian(null_mean))
    return float(np.nanmedian(scores)) / null if null > 0 else math.nan


def null_z(scores, null_mean, null_sd):
    """Each pair's score as a z-score against its null: ``(score - mean) / sd``.

    Returns
    -------
    float array of shape (n_pairs,)
        NaN where ``null_sd`` is 0 or unknown.
    """
    scores, null_mean = _floats(scores), _floats(null_mean)
    null_sd = np.full(scores.shape, np.nan) if null_sd is None else _floats(null_sd)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(null_sd > 0, (scores - null_mean) / null_sd, np.nan)


def match_summary(match, alpha=0.05):
    """One summary of a matching against its null, shown the same way everywhere.

    Parameters
    ----------
    match : MatchReport or dict
        A report or its :meth:`MatchReport.to_dict` (as in the consistency
        JSON; ``null_sd`` may be missing in files of older llmfbn).
    alpha : float, default 0.05

    Returns
    -------
    dict
        ``metric``; ``n_pairs``; ``median_score`` and ``median_null`` (median
        over pairs of the score and of the null mean); ``times_chance``
        (:func:`times_chance`; NaN for signed correlation, whose null is near
        0); ``median_z`` (median over pairs of :func:`null_z`; NaN without
        ``null_sd``); ``n_significant`` (pairs with ``p_value < alpha``).
    """
    get = match.get if isinstance(match, dict) else (lambda key: getattr(match, key, None))
    metric = get("metric") or "iou"
    scores, null_mean = _floats(get("scores")), _floats(get("null_mean"))
    p_values = _floats(get("p_value"))
    z = null_z(scores, null_mean, get("null_sd"))
    nan = math.nan
    return {
        "metric": metric,
        "n_pairs": int(scores.size),
        "median_score": float(np.nanmedian(scores)) if scores.size else nan,
        "median_null": float(np.nanmedian(null_mean)) if scores.size else nan,
        "times_chance": nan if metric == "correlation" else times_chance(scores, null_mean),
        "median_z": float(np.nanmedian(z)) if np.isfinite(z).any() else nan,
        "n_significant": int(np.sum(p_values < alpha)),
    }


def describe_match(summary, alpha=0.05):
    """The one line of a :func:`match_summary`, as the CLI and the figures print it.

    ``"median matched IoU 0.057 · null 0.0023 · 25× chance · 15/20 pairs p < 0.05"``;
    signed correlation gives ``"median z 12.3"`` instead of "x chance".
    """
    name = {"iou": "IoU", "correlation": "r", "abs_correlation": "|r|"}.get(
        summary["metric"], summary["metric"])
    parts = [f"median matched {name} {summary['median_score']:.3g}",
             f"null {summary['median_null']:.2g}"]
    if summary["metric"] == "correlation":
        if np.isfinite(summary["median_z"]):
            parts.append(f"median z {summary['median_z']:.1f}")
    elif np.isfinite(summary["times_chance"]):
        parts.append(format_times_chance(summary["times_chance"]))
    parts.append(f"{summary['n_significant']}/{summary['n_pairs']} pairs p < {alpha:g}")
    return " · ".join(parts)


def format_times_chance(value):
    """``"25× chance"``: :func:`times_chance` as every llmfbn text shows it."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.3g}× chance"


def null_matched_iou(masks_a, masks_b, n_draws=100, random_state=None, present=None):
    """IoU of matched networks against size- and layer-matched random networks.

    Networks are matched on IoU (:func:`match_networks`). For a pair
    ``(i, j)``, each null draw replaces *both* networks by random networks
    with the same count of neurons in every layer (as
    :func:`random_masks_like`) and computes their IoU. Within a layer, the
    overlap of two independent uniform sets of sizes ``k_a`` and ``k_b`` out
    of its ``n`` units (present units with ``present``) is hypergeometric,
    so it is sampled directly: this is
    exactly the distribution of intersecting two ``random_masks_like`` draws
    (and also of one fixed and one random network), at a cost of
    ``n_layers`` numbers per draw.

    Parameters
    ----------
    masks_a : bool array of shape (n_a, n_layers, n_units)
    masks_b : bool array of shape (n_b, n_layers, n_units)
    n_draws : int, default 100
    random_state : int, RandomState instance or None, default None
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (:meth:`NeuronGrid.present`):
        random networks lie among the present units of each layer; masks
        selecting a removed neuron are refused; the null is that of the
        arrays with the removed units cut out. Default None: every unit.

    Returns
    -------
    report : MatchReport
    """
    check_positive_int(n_draws, "n_draws")
    matching = _match(masks_a, masks_b, "iou", present, ("masks_a", "masks_b"))
    masks_a, masks_b = np.asarray(masks_a), np.asarray(masks_b)
    present = _check_present(present, masks_a.shape[1:])
    rng = _generator(random_state)
    # units to draw from in each layer
    n_units = masks_a.shape[2] if present is None else present.sum(axis=1)
    rows = [i for i, _ in matching.pairs]
    cols = [j for _, j in matching.pairs]
    counts_a = masks_a[rows].sum(axis=-1)  # (n_pairs, n_layers)
    counts_b = masks_b[cols].sum(axis=-1)
    overlap = rng.hypergeometric(
        counts_a, n_units - counts_a, counts_b, size=(n_draws,) + counts_a.shape
    ).sum(axis=-1)  # (n_draws, n_pairs)
    null = _iou_from_counts(overlap, counts_a.sum(-1), counts_b.sum(-1))
    return _report(matching, null.T, n_draws)


def null_matched_correlation(maps_a, maps_b, n_draws=100, metric="correlation",
                             random_state=None, present=None):
    """Correlation of matched maps against maps with neurons shuffled within layers.

    Maps are matched on ``metric`` (:func:`match_networks`). For a pair
    ``(i, j)``, each null draw permutes the neurons of map ``i`` of the first
    set independently within every layer and correlates it with map ``j``.
    Permuting one side only is enough: permuting both gives the same
    distribution. The per-layer value distribution (hence layer-wise means
    and spreads) is preserved; only the neuron identities are scrambled.

    Parameters
    ----------
    maps_a : float array of shape (n_a, n_layers, n_units)
    maps_b : float array of shape (n_b, n_layers, n_units)
    n_draws : int, default 100
    metric : {"correlation", "abs_correlation"}, default "correlation"
    random_state : int, RandomState instance or None, default None
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (:meth:`NeuronGrid.present`):
        correlations are over the present neurons only, which are permuted
        among the present units of their layer; maps nonzero on a removed
        neuron are refused; the null is that of the arrays with the removed
        units cut out (the same draws when every layer keeps as many units).
        Default None: every neuron.

    Returns
    -------
    report : MatchReport
    """
    check_choice(metric, CORRELATION_METRICS, "metric")
    check_positive_int(n_draws, "n_draws")
    matching = _match(maps_a, maps_b, metric, present, ("maps_a", "maps_b"))
    rng = _generator(random_state)
    maps_a = np.asarray(maps_a, dtype=np.float64)
    maps_b = np.asarray(maps_b, dtype=np.float64)
    present = _check_present(present, maps_a.shape[1:])
    rows = [i for i, _ in matching.pairs]
    cols = [j for _, j in matching.pairs]
    # Within-layer permutations leave each flattened map's mean and norm
    # unchanged, so standardise once and correlate with a dot product.
    za, zb = _standardize(maps_a[rows], present), _standardize(maps_b[cols], present)
    if present is None:
        shape = maps_a.shape[1:]
        blocks = [(za.reshape((len(rows),) + shape), zb.reshape((len(cols),) + shape))]
    else:  # (n_pairs, n_group, m) per group of layers with m units present
        blocks = [(za[:, columns], zb[:, columns]) for _, columns in _layer_groups(present)]
    null = np.zeros((n_draws, len(rows)))
    step = max(1, _CHUNK_ELEMENTS // max(za.size, 1))
    for start in range(0, n_draws, step):
        stop = min(start + step, n_draws)
        for k, (block_a, block_b) in enumerate(blocks):
            shuffled = rng.permuted(
                np.broadcast_to(block_a, (stop - start,) + block_a.shape), axis=-1)
            dot = np.einsum("dplu,plu->dp", shuffled, block_b)
            if k == 0:
                null[start:stop] = dot
            else:
                null[start:stop] += dot
    null = np.clip(null, -1.0, 1.0)
    if metric == "abs_correlation":
        null = np.abs(null)
    return _report(matching, null.T, n_draws)


# ---------------------------------------------------------------------------
# Group level
# ---------------------------------------------------------------------------


@dataclass
class Recurrence:
    """How often each reference network recurs in the other network sets.

    Attributes
    ----------
    counts : int array of shape (n_ref,)
        Number of *other* sets in which the network is matched with
        ``score >= threshold``.
    fraction : float array of shape (n_ref,)
        ``counts / (n_sets - 1)``.
    matched : int array of shape (n_sets, n_ref)
        Index of the network matched to each reference network in each set;
        -1 when the set has too few networks to match it. The reference row
        is ``arange(n_ref)``.
    scores : float array of shape (n_sets, n_ref)
        Score of each match (nan when unmatched; the reference row holds
        each network's score with itself).
    recurs : bool array of shape (n_sets, n_ref)
        ``scores >= threshold`` (True on the reference row).
    reference : int
    threshold : float
    metric : str
    """

    counts: np.ndarray
    fraction: np.ndarray
    matched: np.ndarray
    scores: np.ndarray
    recurs: np.ndarray
    reference: int
    threshold: float
    metric: str


def recurrence(network_sets, reference=0, threshold=0.2, metric="iou", present=None):
    """Count in how many network sets each reference network recurs.

    Each set (one per group, subject or fit; they may hold different numbers
    of networks) is matched one to one to the reference set
    (:func:`match_networks`); a reference network recurs in a set when its
    match scores at least ``threshold``.

    Parameters
    ----------
    network_sets : list of arrays of shape (n_networks_k, n_layers, n_units)
        Boolean masks for ``metric="iou"``, maps otherwise; at least 2 sets.
    reference : int, default 0
        Index of the reference set in ``network_sets``.
    threshold : float, default 0.2
    metric : {"iou", "correlation", "abs_correlation"}, default "iou"
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (see :func:`match_networks`).
        Default None: every neuron.

    Returns
    -------
    result : Recurrence
    """
    check_choice(metric, METRICS, "metric")
    sets, present = _check_sets(network_sets, metric, present=present)
    reference = _check_reference(reference, len(sets))
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise TypeError(f"'threshold' must be a number. {threshold!r} was provided.")
    ref = sets[reference]
    n_ref = len(ref)
    matched = np.full((len(sets), n_ref), -1, dtype=np.int64)
    scores = np.full((len(sets), n_ref), np.nan)
    for k, other in enumerate(sets):
        if k == reference:
            matched[k] = np.arange(n_ref)
            scores[k] = np.diag(_score_matrix(ref, ref, metric, present))
            continue
        matching = match_networks(ref, other, metric, present)
        for (i, j), score in zip(matching.pairs, matching.scores):
            matched[k, i] = j
            scores[k, i] = score
    with np.errstate(invalid="ignore"):
        recurs = scores >= threshold
    recurs[reference] = True
    others = np.arange(len(sets)) != reference
    counts = recurs[others].sum(axis=0)
    return Recurrence(
        counts=counts,
        fraction=counts / (len(sets) - 1),
        matched=matched,
        scores=scores,
        recurs=recurs,
        reference=reference,
        threshold=float(threshold),
        metric=metric,
    )


def _neurons(values, present):
    """One map ``(n_layers, n_units)`` as a flat array of its (present) neurons."""
    return values.ravel() if present is None else values[present]


@dataclass
class GroupTemplate:
    """Consensus networks over several network sets.

    Attributes
    ----------
    masks : bool array of shape (n_templates, n_layers, n_units)
        Neurons present in at least half of the matched masks.
    maps : float array of shape (n_templates, n_layers, n_units) or None
        Mean of the matched maps, each sign-aligned to the reference map;
        None when no maps were given.
    indices : int array of shape (n_templates,)
        Reference networks kept.
    fraction : float array of shape (n_templates,)
        Fraction of the other sets in which each kept network recurs.
    n_matched : int array of shape (n_templates,)
        Number of masks (reference included) behind each template.
    """

    masks: np.ndarray
    maps: np.ndarray
    indices: np.ndarray
    fraction: np.ndarray
    n_matched: np.ndarray


def group_template(network_sets, maps_sets=None, reference=0, min_fraction=0.5,
                   threshold=0.2, present=None):
    """Consensus networks for the reference networks that recur across sets.

    Networks are matched on IoU to the reference set (:func:`recurrence`).
    A reference network recurring (IoU >= ``threshold``) in at least
    ``min_fraction`` of the other sets gives a template: the neurons present
    in at least half of its matched masks (the reference mask and those of
    the sets where it recurs) and, when maps are given, the mean of the
    corresponding maps.

    Parameters
    ----------
    network_sets : list of bool arrays of shape (n_networks_k, n_layers, n_units)
    maps_sets : list of float arrays, optional
        One per entry of ``network_sets``, with the same shapes.
    reference : int, default 0
    min_fraction : float, default 0.5
        Between 0 and 1.
    threshold : float, default 0.2
        IoU at which a match counts as a recurrence.
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (:meth:`NeuronGrid.present`):
        masks or maps holding another are refused, and maps are sign-aligned
        on the present neurons. Default None: every neuron.

    Returns
    -------
    template : GroupTemplate
    """
    rec = recurrence(network_sets, reference=reference, threshold=threshold, metric="iou",
                     present=present)
    min_fraction = _check_fraction(min_fraction, "min_fraction")
    sets = [np.asarray(s) for s in network_sets]
    if maps_sets is not None:
        maps_sets, present = _check_sets(maps_sets, "correlation", name="maps_sets", minimum=1,
                                         present=present)
        if len(maps_sets) != len(sets):
            raise ValueError(
                f"'maps_sets' must hold one entry per network set ({len(sets)}). "
                f"{len(maps_sets)} were provided."
            )
        for k, (masks, maps) in enumerate(zip(sets, maps_sets)):
            if masks.shape != maps.shape:
                raise ValueError(
                    f"'maps_sets[{k}]' must match 'network_sets[{k}]': "
                    f"shape {maps.shape} vs {masks.shape}."
                )
    keep = np.flatnonzero(rec.fraction >= min_fraction - 1e-12)
    grid = sets[0].shape[1:]
    template_masks = np.zeros((len(keep),) + grid, dtype=bool)
    template_maps = None if maps_sets is None else np.zeros((len(keep),) + grid)
    n_matched = np.zeros(len(keep), dtype=np.int64)
    for t, i in enumerate(keep):
        members = [(k, rec.matched[k, i]) for k in range(len(sets)) if rec.recurs[k, i]]
        n_matched[t] = len(members)
        votes = np.sum([sets[k][j] for k, j in members], axis=0)
        template_masks[t] = 2 * votes >= len(members)
        if maps_sets is not None:
            ref_map = _neurons(maps_sets[rec.reference][i], present)
            total = np.zeros(grid)
            for k, j in members:
                member = maps_sets[k][j]
                values = _neurons(member, present)
                sign = -1.0 if np.dot(values - values.mean(), ref_map) < 0 else 1.0
                total += sign * member
            template_maps[t] = total / len(members)
    return GroupTemplate(template_masks, template_maps, keep, rec.fraction[keep], n_matched)


# ---------------------------------------------------------------------------
# Stability across fits (ICASSO)
# ---------------------------------------------------------------------------


@dataclass
class Stability:
    """Clusters of components pooled over several fits (ICASSO).

    Clusters are sorted by decreasing ``quality`` (nan last).

    Attributes
    ----------
    quality : float array of shape (n_clusters,)
        Quality index Iq: mean absolute correlation between members minus
        mean absolute correlation between members and non-members (0 when
        every component is a member); nan for a single-member cluster.
    labels : int array of shape (n_pooled,)
        Cluster of each pooled component; pooled order is fit 0's
        components, then fit 1's, etc. (see ``pooled_index``).
    centrotypes : list of (int, int)
        ``(fit, component)`` of each cluster's centrotype, the member with
        the largest summed similarity to the other members.
    representative_maps : float array of shape (n_clusters, n_layers, n_units)
        Mean of each cluster's members, sign-aligned (``signs``) so that
        they agree with the centrotype and the centrotype's peak is positive.
    n_fits : int array of shape (n_clusters,)
        Number of distinct fits with a member in the cluster.
    sizes : int array of shape (n_clusters,)
    pooled_index : int array of shape (n_pooled, 2)
        ``(fit, component)`` of each pooled component.
    signs : float array of shape (n_pooled,)
        +1 or -1: the sign applied to each component before averaging.
    similarity : float array of shape (n_pooled, n_pooled)
        Absolute correlation between pooled components.
    """

    quality: np.ndarray
    labels: np.ndarray
    centrotypes: list
    representative_maps: np.ndarray = field(repr=False)
    n_fits: np.ndarray
    sizes: np.ndarray
    pooled_index: np.ndarray = field(repr=False)
    signs: np.ndarray = field(repr=False)
    similarity: np.ndarray = field(repr=False)


def _cluster_quality(similarity, labels, n_clusters):
    """ICASSO quality index Iq of each cluster (Himberg et al., 2004)."""
    quality = np.full(n_clusters, np.nan)
    for c in range(n_clusters):
        inside = labels == c
        n_in = int(inside.sum())
        if n_in < 2:
            continue
        block = similarity[np.ix_(inside, inside)]
        intra = (block.sum() - np.trace(block)) / (n_in * (n_in - 1))
        extra = similarity[np.ix_(inside, ~inside)].mean() if n_in < len(labels) else 0.0
        quality[c] = intra - extra
    return quality


def stability(maps_list, n_clusters=None, random_state=None, present=None):
    """Cluster components from several fits and rate each cluster (ICASSO).

    All components are pooled and compared with the absolute Pearson
    correlation of their maps (ICA signs are arbitrary); agglomerative
    clustering with average linkage on ``1 - |corr|`` groups them. A stable
    component gives a tight cluster with one member from every fit and a
    high quality index (Himberg et al., 2004, NeuroImage 22:1214-1222).

    Parameters
    ----------
    maps_list : list of float arrays of shape (n_components_k, n_layers, n_units)
        One entry per fit (e.g. per seed), at least 2.
    n_clusters : int, optional
        Defaults to the number of components of the first fit.
    random_state : None
        Accepted for a uniform signature; average-linkage clustering is
        deterministic, so it is unused.
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (:meth:`NeuronGrid.present`):
        correlations are over these only; maps nonzero elsewhere are
        refused. Default None: every neuron.

    Returns
    -------
    result : Stability
    """
    fits, present = _check_sets(maps_list, "correlation", name="maps_list", present=present)
    n_pooled = sum(len(f) for f in fits)
    if n_clusters is None:
        n_clusters = len(fits[0])
    check_positive_int(n_clusters, "n_clusters")
    if n_clusters > n_pooled:
        raise ValueError(
            f"'n_clusters' must be <= the {n_pooled} pooled components. "
            f"{n_clusters} was provided."
        )
    pooled = np.concatenate(fits)
    pooled_index = np.array(
        [(k, c) for k, f in enumerate(fits) for c in range(len(f))], dtype=np.int64
    )
    z = _standardize(pooled, present)
    corr = np.clip(z @ z.T, -1.0, 1.0)
    similarity = np.abs(corr)
    np.fill_diagonal(similarity, 1.0)
    if n_clusters == n_pooled:
        raw = np.arange(n_pooled)
    elif n_clusters == 1:
        raw = np.zeros(n_pooled, dtype=np.int64)
    else:
        distance = 1.0 - similarity
        np.fill_diagonal(distance, 0.0)
        raw = AgglomerativeClustering(
            n_clusters=n_clusters, metric="precomputed", linkage="average"
        ).fit_predict(distance)
    quality = _cluster_quality(similarity, raw, n_clusters)
    order = np.argsort(np.where(np.isnan(quality), -np.inf, quality), kind="stable")[::-1]
    relabel = np.empty(n_clusters, dtype=np.int64)
    relabel[order] = np.arange(n_clusters)
    labels = relabel[raw]
    quality = quality[order]

    n_layers_units = pooled.shape[1:]
    representative = np.zeros((n_clusters,) + n_layers_units)
    signs = np.ones(n_pooled)
    centrotypes, n_fits, sizes = [], np.zeros(n_clusters, np.int64), np.zeros(n_clusters, np.int64)
    for c in range(n_clusters):
        members = np.flatnonzero(labels == c)
        summed = similarity[np.ix_(members, members)].sum(axis=1)
        centro = members[np.argmax(summed)]
        centro_map = z[centro]
        peak_sign = 1.0 if centro_map[np.argmax(np.abs(centro_map))] >= 0 else -1.0
        member_signs = np.where(corr[members, centro] < 0, -1.0, 1.0) * peak_sign
        signs[members] = member_signs
        representative[c] = np.tensordot(
            member_signs, pooled[members], axes=1
        ) / len(members)
        centrotypes.append(tuple(int(v) for v in pooled_index[centro]))
        n_fits[c] = len(np.unique(pooled_index[members, 0]))
        sizes[c] = len(members)
    return Stability(
        quality=quality,
        labels=labels,
        centrotypes=centrotypes,
        representative_maps=representative,
        n_fits=n_fits,
        sizes=sizes,
        pooled_index=pooled_index,
        signs=signs,
        similarity=similarity,
    )


# ---------------------------------------------------------------------------
# Split-half reproducibility
# ---------------------------------------------------------------------------


@dataclass
class SplitHalf:
    """Reproducibility between the networks fitted on two halves of the runs.

    Attributes
    ----------
    iou : MatchReport
        Masks of the two halves, matched on IoU (:func:`null_matched_iou`).
    correlation : MatchReport
        Maps of the two halves, matched on correlation
        (:func:`null_matched_correlation`).
    halves : tuple of two int arrays
        Indices into ``runs`` of each half, sorted.
    """

    iou: MatchReport
    correlation: MatchReport
    halves: tuple

    def to_dict(self):
        """JSON-serialisable summary (see :meth:`MatchReport.to_dict`)."""
        return {
            "iou": self.iou.to_dict(),
            "correlation": self.correlation.to_dict(),
            "halves": [[int(v) for v in h] for h in self.halves],
        }


def split_half(fit_fn, runs, n_splits=1, n_draws=100, metric="correlation",
               random_state=None, present=None):
    """Fit networks on two random halves of the runs and compare them.

    Parameters
    ----------
    fit_fn : callable
        ``fit_fn(list_of_runs) -> (masks, maps)``, with ``masks`` a bool
        array and ``maps`` a float array, both of shape
        (n_networks, n_layers, n_units).
    runs : sequence
        At least 2 items (e.g. image paths). Each split shuffles them and
        cuts them into two disjoint halves of ``len(runs) // 2`` and the
        rest (one more when the count is odd); every run is used.
    n_splits : int, default 1
        Number of independent random splits.
    n_draws : int, default 100
        Null draws per report.
    metric : {"correlation", "abs_correlation"}, default "correlation"
        Map similarity for the correlation report.
    random_state : int, RandomState instance or None, default None
        Seeds the splits and the null draws.
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid of a pruned model (:meth:`NeuronGrid.present`),
        for both nulls (see :func:`null_matched_iou`,
        :func:`null_matched_correlation`). Default None: every neuron.

    Returns
    -------
    results : list of SplitHalf
        One per split.
    """
    if not callable(fit_fn):
        raise TypeError(f"'fit_fn' must be callable. {type(fit_fn).__name__} was provided.")
    runs = list(runs)
    if len(runs) < 2:
        raise ValueError(f"'runs' must hold at least 2 runs. {len(runs)} were provided.")
    check_positive_int(n_splits, "n_splits")
    check_positive_int(n_draws, "n_draws")
    check_choice(metric, CORRELATION_METRICS, "metric")
    _check_present(present)  # type and axes now, the shape once the fits give the grid
    rng = _generator(random_state)
    results = []
    for _ in range(n_splits):
        order = rng.permutation(len(runs))
        halves = (np.sort(order[: len(runs) // 2]), np.sort(order[len(runs) // 2:]))
        fitted = []
        for half in halves:
            out = fit_fn([runs[k] for k in half])
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError(
                    "'fit_fn' must return a tuple (masks, maps). "
                    f"{type(out).__name__} was returned."
                )
            fitted.append(out)
        (masks_1, maps_1), (masks_2, maps_2) = fitted
        results.append(SplitHalf(
            iou=null_matched_iou(masks_1, masks_2, n_draws=n_draws, random_state=rng,
                                 present=present),
            correlation=null_matched_correlation(
                maps_1, maps_2, n_draws=n_draws, metric=metric, random_state=rng,
                present=present,
            ),
            halves=halves,
        ))
    return results
