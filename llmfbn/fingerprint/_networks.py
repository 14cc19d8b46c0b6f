"""One model's functional networks on the word axis, and their time courses."""

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["ModelNetworks", "canonical_order", "fit_networks", "standardize", "time_courses"]


def standardize(data):
    """Each column z-scored over rows (ddof 0); a constant column becomes 0.

    Parameters
    ----------
    data : array of shape (n_samples, n_features)

    Returns
    -------
    float64 array of shape (n_samples, n_features)
    """
    data = np.asarray(data, dtype=np.float64)
    centred = data - data.mean(axis=0)
    std = centred.std(axis=0)
    std[std == 0] = 1
    return centred / std


def time_courses(standardized, maps):
    """Time courses of ``maps``: least squares of each sample on the maps, z-scored.

    What nilearn's ``NiftiMapsMasker`` computes (each volume regressed on
    the maps), here on the samples already in neuron order.

    Parameters
    ----------
    standardized : array of shape (n_samples, n_neurons)
    maps : array of shape (n_components, n_neurons)

    Returns
    -------
    float64 array of shape (n_samples, n_components)
        Each column z-scored over samples (a constant one is 0).
    """
    maps = np.asarray(maps, dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(maps.T, np.asarray(standardized, np.float64).T,
                                       rcond=None)
    return standardize(coefficients.T)


def canonical_order(activations, grid):
    """An order of the neurons that a permutation of a layer's neurons does not change.

    Within each layer (the grid's present neurons of each slice), the
    neurons sorted by their mean over the samples, then by their standard
    deviation; the layers keep their order.

    Parameters
    ----------
    activations : array of shape (n_samples, n_neurons)
        Present neurons only, in ``grid``'s neuron order.
    grid : NeuronGrid

    Returns
    -------
    int64 array of shape (n_neurons,)
        ``activations[:, order]`` is in canonical order.
    """
    activations = np.asarray(activations, dtype=np.float64)
    mean, std = activations.mean(axis=0), activations.std(axis=0)
    ends = np.cumsum(grid.present().sum(axis=1))
    order = [start + np.lexsort((std[start:end], mean[start:end]))
             for start, end in zip(np.concatenate([[0], ends[:-1]]), ends)]
    return np.concatenate(order).astype(np.int64)


@dataclass
class ModelNetworks:
    """Functional networks of one model over the words.

    Attributes
    ----------
    maps : float32 array of shape (n_components, n_neurons)
        CanICA's component maps, present neurons in the grid's neuron order
        (the estimator's own are in :func:`canonical_order`).
    time_courses : float64 array of shape (n_words, n_components)
        Each word's activations regressed on the maps, z-scored.
    estimator : nilearn.decomposition.CanICA
        The fitted estimator.
    """

    maps: np.ndarray
    time_courses: np.ndarray
    estimator: object


def fit_networks(activations, grid, n_components=10, n_init=10, random_state=0, name=None):
    """Fit nilearn's CanICA on one model's word activations.

    Each neuron is standardised over the words, the words become the
    volumes of one 4-D image on the model's grid, and CanICA runs with the
    settings a neuron grid needs (the grid's explicit mask, no smoothing,
    no detrending; see :class:`llmfbn.networks.NetworkDecomposition`).

    The neurons of each layer enter the image in :func:`canonical_order`,
    so that a model whose neurons are permuted runs the same computation
    (up to the rounding of its activations). Without it CanICA's choice
    among its ICA restarts can flip: on SmolLM2-135M (2041 words of
    WikiText-2, 10 components) a neuron-permuted copy matched the model's
    networks with a mean |r| of 0.947 in neuron order and 0.9999 in
    canonical order. The maps are returned in the grid's neuron order.

    Parameters
    ----------
    activations : array of shape (n_words, n_neurons)
        Present neurons only, in ``grid``'s neuron order.
    grid : NeuronGrid
    n_components : int, default 10
    n_init : int, default 10
        ICA restarts.
    random_state : int, default 0
    name : str, optional
        The model, for the one warning when some ICA restarts did not
        converge (instead of one warning per restart).

    Returns
    -------
    ModelNetworks

    Raises
    ------
    FloatingPointError
        When CanICA's maps or their time courses are not finite.
    """
    from nilearn.decomposition import CanICA
    from sklearn.exceptions import ConvergenceWarning

    order = canonical_order(activations, grid)
    standardized = standardize(np.asarray(activations)[:, order])
    img = grid.to_img(grid.put_present(standardized.astype(np.float32)))
    estimator = CanICA(mask=grid.mask_img(), n_components=n_components, smoothing_fwhm=None,
                       standardize="zscore_sample", detrend=False, threshold=None,
                       n_init=n_init, do_cca=True, random_state=random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(img)
    unconverged = 0
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            unconverged += 1
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if unconverged:
        model = "" if name is None else f" for {name!r}"
        warnings.warn(f"FastICA did not converge in {unconverged} of CanICA's {n_init} "
                      f"restarts{model}; CanICA keeps the sparsest restart, its networks "
                      f"may be less stable.", ConvergenceWarning, stacklevel=2)
    maps = grid.take_present(grid.masked_to_neurons(estimator.components_))  # canonical order
    courses = time_courses(standardized, maps)
    if not (np.isfinite(maps).all() and np.isfinite(courses).all()):
        model = "" if name is None else f" of {name!r}"
        raise FloatingPointError(
            f"CanICA gave non-finite networks{model}: its activations over these words vary "
            f"in fewer than n_components={n_components} directions. Lower 'n_components' or "
            f"give longer, more varied texts.")
    in_neuron_order = np.empty_like(maps, dtype=np.float32)
    in_neuron_order[:, order] = maps
    return ModelNetworks(in_neuron_order, courses, estimator)
