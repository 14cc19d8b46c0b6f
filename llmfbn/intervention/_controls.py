"""Matched random controls: same size, same count per layer, outside the network."""

import numpy as np
from scipy import stats
from sklearn.utils import check_random_state

from llmfbn._utils import check_positive_int

__all__ = ["confidence_interval", "matched_controls"]


def matched_controls(mask, n_controls=5, exclude=None, random_state=None):
    """Random neuron sets matched to ``mask`` layer by layer.

    Parameters
    ----------
    mask : bool array of shape (n_layers, n_units)
        The network.
    n_controls : int, default 5
    exclude : bool array of shape (n_layers, n_units), optional
        Neurons never drawn. Default: the network itself.
    random_state : int, RandomState or None

    Returns
    -------
    controls : bool array of shape (n_controls, n_layers, n_units)
        Each has exactly ``mask[l].sum()`` neurons in layer ``l``, none in
        ``exclude``.
    """
    mask = np.asarray(mask, dtype=bool)
    check_positive_int(n_controls, "n_controls")
    exclude = mask if exclude is None else np.asarray(exclude, dtype=bool) | mask
    rng = check_random_state(random_state)
    controls = np.zeros((n_controls,) + mask.shape, dtype=bool)
    for layer in range(mask.shape[0]):
        count = int(mask[layer].sum())
        if not count:
            continue
        pool = np.flatnonzero(~exclude[layer])
        if len(pool) < count:
            raise ValueError(f"Layer {layer} has {count} network neurons but only {len(pool)} "
                             f"neurons outside it to draw a matched control from.")
        for k in range(n_controls):
            controls[k, layer, rng.choice(pool, size=count, replace=False)] = True
    return controls


def confidence_interval(values, level=0.95):
    """Mean and Student-t confidence interval of ``values``: (mean, low, high).

    With one value, the interval is that value.
    """
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + level / 2, df=len(values) - 1) * stats.sem(values)
    return mean, float(mean - half), float(mean + half)
