"""Which neurons to keep: the lowest-scored ones go, outside protected layers."""

import numbers

import numpy as np

__all__ = ["default_protected_layers", "select_neurons"]

#: Layers the reference never prunes: the first 3 and the last 2.
N_FIRST_PROTECTED = 3
N_LAST_PROTECTED = 2


def default_protected_layers(n_layers):
    """The reference's protected layers: the first 3 and the last 2.

    Parameters
    ----------
    n_layers : int

    Returns
    -------
    list of int
        Sorted, unique; every layer when the model has 5 layers or fewer.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, numbers.Integral) or n_layers < 1:
        raise ValueError(f"'n_layers' must be an int >= 1. {n_layers!r} was provided.")
    first = range(min(N_FIRST_PROTECTED, n_layers))
    last = range(max(n_layers - N_LAST_PROTECTED, 0), n_layers)
    return sorted(set(first) | set(last))


def check_ratio(ratio):
    """``ratio`` as a float in the open interval (0, 1), or TypeError / ValueError."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(f"'ratio' must be a number in (0, 1). {ratio!r} was provided.")
    if not 0 < float(ratio) < 1:
        raise ValueError(f"'ratio' must lie in (0, 1) (the fraction of all MLP neurons "
                         f"removed). {ratio!r} was provided.")
    return float(ratio)


def check_protect_layers(protect_layers, n_layers):
    """Sorted unique protected layers (default: :func:`default_protected_layers`)."""
    if protect_layers is None:
        return default_protected_layers(n_layers)
    layers = list(protect_layers)
    bad = [x for x in layers if isinstance(x, bool) or not isinstance(x, numbers.Integral)
           or not 0 <= x < n_layers]
    if bad:
        raise ValueError(f"'protect_layers' must be layer indices in [0, {n_layers}). "
                         f"{bad} was provided.")
    return sorted({int(x) for x in layers})


def select_neurons(scores, ratio, protect_layers=None):
    """Keep mask removing the ``round(ratio * n_neurons)`` lowest-scored neurons.

    Selection is global: one ranking over every neuron of the unprotected
    layers (each scoring method makes its scores comparable across layers,
    see :func:`~llmfbn.pruning.score_neurons`). Each unprotected layer keeps
    at least its highest-scored neuron. Ties are broken by position: among
    equal scores, the lower layer, then the lower unit, goes first.

    Parameters
    ----------
    scores : float array of shape (n_layers, n_units), or NeuronScores
        Importance, higher = kept first; finite.
    ratio : float in (0, 1)
        Fraction of *all* MLP neurons of the model to remove (protected ones
        included in the count).
    protect_layers : sequence of int, optional
        Layers never pruned. Default: the first 3 and the last 2
        (:func:`default_protected_layers`). ``[]`` protects none.

    Returns
    -------
    keep : bool array of shape (n_layers, n_units)
        True for kept neurons; exactly ``round(ratio * n_layers * n_units)``
        are False.

    Raises
    ------
    ValueError
        For a ratio outside (0, 1), one that removes no neuron, or one that
        needs more neurons than the unprotected layers can give (the message
        gives the largest possible ratio); for protected layers out of range.
    """
    scores = np.asarray(getattr(scores, "scores", scores), dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"'scores' must have shape (n_layers, n_units). {scores.shape} "
                         f"was provided.")
    if not np.isfinite(scores).all():
        raise ValueError(f"'scores' must be finite; {int((~np.isfinite(scores)).sum())} "
                         f"values are not.")
    ratio = check_ratio(ratio)
    n_layers, n_units = scores.shape
    protected = check_protect_layers(protect_layers, n_layers)
    free = [layer for layer in range(n_layers) if layer not in protected]
    n_all = n_layers * n_units
    n_remove = round(ratio * n_all)
    capacity = len(free) * (n_units - 1)
    if n_remove < 1:
        raise ValueError(f"'ratio' {ratio!r} removes no neuron of {n_all}; it must be above "
                         f"{0.5 / n_all:.3g}.")
    if n_remove > capacity:
        raise ValueError(
            f"'ratio' {ratio!r} removes {n_remove} of {n_all} neurons but the {len(free)} "
            f"unprotected layers (protect_layers={protected}) can give at most {capacity} "
            f"(one neuron kept per layer): the largest possible ratio is "
            f"{capacity / n_all:.6g}.")
    # Positions in ascending (score, layer, unit) order: a stable sort of the
    # row-major flattening breaks ties by layer, then unit.
    order = np.argsort(scores[free].ravel(), kind="stable")
    layer_of = np.repeat(np.asarray(free), n_units)[order]
    unit_of = np.tile(np.arange(n_units), len(free))[order]
    # Each layer's best neuron (its last in the order) is never removed.
    last = np.zeros(len(order), dtype=bool)
    _, first_from_end = np.unique(layer_of[::-1], return_index=True)
    last[len(order) - 1 - first_from_end] = True
    removable = np.flatnonzero(~last)[:n_remove]
    keep = np.ones((n_layers, n_units), dtype=bool)
    keep[layer_of[removable], unit_of[removable]] = False
    return keep
