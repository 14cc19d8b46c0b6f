"""One scoring interface for every pruning method: an importance per MLP neuron.

Higher = kept first. :func:`~llmfbn.pruning.select_neurons` ranks all
neurons of the unprotected layers at once, so each method returns scores
that are comparable across layers in the way it prunes:

- ``fbn`` (global): the neuron's largest z over the networks' z-maps. The
  maps are z-scored over the whole model, and the reference prunes with one
  threshold for all layers: removing the lowest scores removes the neurons
  that belong to no network at the highest z threshold reaching the ratio.
- ``random`` (global): seeded uniform scores, so every set of neurons of the
  right size is equally likely and layers lose neurons in proportion.
- ``magnitude`` (per layer): weight norms differ in scale between layers,
  so, as the structured magnitude baseline of An et al. (2024), each
  unprotected layer loses the same number of neurons (within one).
- ``wanda`` (per layer): Wanda-sp as defined by An et al. (2024), uniform
  across layers, as in that paper.
- ``flap`` (global): FLAP's fluctuation metric, standardised per layer
  (zero mean, unit standard deviation) so that one global ranking adapts
  the width of each layer, as FLAP's adaptive structure search over MLP
  neurons (``AL-MM``).

Per-layer methods return each neuron's rank in its layer divided by the
width (``[0, 1)``, ties by unit index): one global ranking then removes the
same count from every unprotected layer, give or take one. The raw metrics
are :func:`magnitude_metric`, :func:`wanda_metric`, :func:`flap_metric` and
:func:`fbn_metric`.
"""

import hashlib
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmfbn._utils import check_choice, log
from llmfbn.grid import NeuronGrid
from llmfbn.io import folder_sha256
from llmfbn.models import LoadedModel, locate_neurons
from llmfbn.networks import FunctionalNetworks
from llmfbn.pruning._calibration import CalibrationStats, calibration_stats, check_stats_fit
from llmfbn.pruning._weights import down_columns, input_rows

__all__ = ["METHODS", "NeuronScores", "fbn_metric", "flap_metric", "magnitude_metric",
           "score_neurons", "wanda_metric"]

METHODS = ("fbn", "random", "magnitude", "wanda", "flap")
#: Methods that need calibration text.
CALIBRATED = ("wanda", "flap")
#: How each method's scores are ranked across layers (see the module docstring).
SELECTION = {"fbn": "global", "random": "global", "magnitude": "per_layer",
             "wanda": "per_layer", "flap": "global"}
METRICS = {
    "fbn": "max over networks of the neuron's z (|z| for networks thresholded two-sided)",
    "random": "uniform random numbers, seeded by random_state",
    "magnitude": "L2 norm of the neuron's weights: its down-projection column and its rows "
                 "of the input projections (gate and up, or fc_in); biases left out",
    "wanda": "Wanda-sp: ||W_down[:, j]||_1 * ||x_j||_2 over calibration tokens",
    "flap": "FLAP WIFV: var(x_j) * ||W_down[:, j]||_2^2, standardised per layer",
}


@dataclass
class NeuronScores:
    """Importance of every MLP neuron for one pruning method.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    scores : float64 array of shape (n_model_layers, n_units)
        Higher = kept first; comparable across layers as the method prunes.
    calibration : dict or None
        ``{"path", "sha256", "n_tokens"}`` of the calibration text
        (``wanda``, ``flap``), else None.
    details : dict
        Method-specific and JSON-able: ``selection`` (``"global"`` or
        ``"per_layer"``), ``metric``, and for ``fbn`` the networks used
        (path, hash, number of components), for ``random`` the seed.
    """

    method: str
    scores: np.ndarray
    calibration: object = None
    details: dict = field(default_factory=dict)


# -- raw metrics -------------------------------------------------------------

def _down_norms(loaded, order):
    location = locate_neurons(loaded.model)
    with torch.no_grad():
        rows = [torch.linalg.vector_norm(down_columns(loaded.model, location, layer)
                                         .to(torch.float64), ord=order, dim=0)
                for layer in range(location.n_layers)]
    return torch.stack(rows).cpu().numpy()


def magnitude_metric(loaded):
    """L2 norm of all weights of each neuron.

    For gated MLPs: down-projection column ``j`` with rows ``j`` of gate and
    up projections; for plain MLPs: fc_out column ``j`` with fc_in row ``j``
    (see :func:`~llmfbn.pruning._weights.input_rows`). Biases are left out.

    Returns
    -------
    float64 array of shape (n_layers, n_units)
    """
    location = locate_neurons(loaded.model)
    out = np.empty((location.n_layers, location.n_units))
    with torch.no_grad():
        for layer in range(location.n_layers):
            sq = down_columns(loaded.model, location, layer).to(torch.float64).pow(2).sum(dim=0)
            for _, rows in input_rows(loaded.model, location, layer):
                sq = sq + rows.to(torch.float64).pow(2).sum(dim=1)
            out[layer] = sq.sqrt().cpu().numpy()
    return out


def wanda_metric(loaded, stats):
    """Wanda-sp: ``||W_down[:, j]||_1 * ||x_j||_2``.

    Sun et al. (2024) score a weight by ``|W_ij| * ||x_j||_2``; An et al.
    (2024) sum it over the output rows of the down projection for a whole
    neuron (their Wanda-sp uses the mean, a constant factor apart).

    Parameters
    ----------
    loaded : LoadedModel
    stats : CalibrationStats

    Returns
    -------
    float64 array of shape (n_layers, n_units)
    """
    return _down_norms(loaded, 1) * np.sqrt(stats.sq_norm)


def flap_metric(loaded, stats):
    """FLAP's weighted input feature variance, ``var(x_j) * ||W_down[:, j]||_2^2``.

    An et al. (2024), "Fluctuation-based adaptive structured pruning for
    large language models" (metric ``WIFV``), before standardisation.

    Returns
    -------
    float64 array of shape (n_layers, n_units)
    """
    return stats.variance * _down_norms(loaded, 2) ** 2


def fbn_metric(networks):
    """Each neuron's largest z over all networks' z-maps.

    Parameters
    ----------
    networks : list of FunctionalNetworks
        On one grid; each contributes ``z`` (``|z|`` when its masks were
        thresholded two-sided, ``params["threshold_mode"]``).

    Returns
    -------
    float64 array of shape (n_layers, n_units)
    """
    best = None
    for net in networks:
        maps = np.asarray(net.maps, dtype=np.float64)
        if net.params.get("threshold_mode") == "two_sided":
            maps = np.abs(maps)
        top = maps.max(axis=0)
        best = top if best is None else np.maximum(best, top)
    return best


def per_layer_ranks(metric):
    """Rank of each neuron in its layer over the width, float64 in ``[0, 1)``.

    Ties are ranked by unit index.
    """
    metric = np.asarray(metric, dtype=np.float64)
    order = np.argsort(metric, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(metric.shape[1])[None, :], axis=1)
    return ranks / metric.shape[1]


def standardize_layers(metric):
    """``(x - mean) / std`` per layer (``ddof=1``, as FLAP; a constant layer gives 0)."""
    metric = np.asarray(metric, dtype=np.float64)
    std = metric.std(axis=1, ddof=1, keepdims=True)
    std[~(std > 0)] = 1.0
    return (metric - metric.mean(axis=1, keepdims=True)) / std


# -- checks -------------------------------------------------------------------

def check_unpruned(location, loaded):
    """Refuse a model that was already pruned, in one line (prune its source model)."""
    if location.pruned:
        removed = sum(location.source_layer_widths) - sum(location.layer_widths)
        raise ValueError(
            f"'model' must be a model that was not pruned. {loaded.name!r} is already pruned "
            f"({removed} of its source model's {sum(location.source_layer_widths)} MLP neurons "
            f"removed): prune the source model instead, with the total ratio.")


def _model_grid(loaded):
    location = locate_neurons(loaded.model)
    return NeuronGrid(location.n_layers, location.n_units, model=loaded.name, signal="mlp",
                      weights_hash=loaded.weights_hash, model_layers=location.n_layers)


def _maps_hash(net):
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(net.maps).tobytes()).hexdigest()


def _load_networks(networks, loaded):
    """``[(FunctionalNetworks, record)]``, each checked against the model's grid."""
    items = list(networks) if isinstance(networks, (list, tuple)) else [networks]
    if not items:
        raise ValueError("'networks' must name at least one networks folder. [] was provided.")
    target = _model_grid(loaded)
    out = []
    for item in items:
        if isinstance(item, FunctionalNetworks):
            net, record = item, {"path": None, "sha256": _maps_hash(item)}
        elif isinstance(item, (str, Path)):
            net = FunctionalNetworks.load(item)
            record = {"path": str(item), "sha256": folder_sha256(item)}
        else:
            raise TypeError(f"'networks' must be a networks folder, FunctionalNetworks or a "
                            f"list of them. {type(item).__name__} was provided.")
        name = record["path"] or "the networks"
        net.grid.check_compatible(target, allow_other_model=True,
                                  names=(f"'networks' ({name})", "the model"))
        if not net.grid.same_model(target):
            raise ValueError(
                f"'networks' ({name}) come from model {net.grid.model!r} (weights "
                f"{net.grid.weights_hash}) but the model is {loaded.name!r} (weights "
                f"{loaded.weights_hash}): networks of another model are refused.")
        record["n_components"] = len(net)
        out.append((net, record))
    return out


def _check_random_state(random_state):
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise TypeError(f"'random_state' must be an int >= 0. {random_state!r} was provided.")
    if random_state < 0:
        raise ValueError(f"'random_state' must be an int >= 0. {random_state!r} was provided.")
    return int(random_state)


def _stats(loaded, calibration, max_tokens, batch_size, verbose):
    if isinstance(calibration, CalibrationStats):
        check_stats_fit(loaded, calibration)
        if max_tokens is not None and max_tokens != calibration.max_tokens:
            raise ValueError(f"'max_tokens' ({max_tokens}) applies when 'calibration' is a "
                             f"path; the CalibrationStats given were computed with "
                             f"max_tokens={calibration.max_tokens}.")
        return calibration
    if isinstance(calibration, (str, Path)):
        return calibration_stats(loaded, calibration, max_tokens=max_tokens,
                                 batch_size=batch_size, verbose=verbose)
    raise TypeError(f"'calibration' must be a text file path or CalibrationStats. "
                    f"{type(calibration).__name__} was provided.")


def check_score_params(method, networks=None, calibration=None, random_state=0):
    """The cheap checks of :func:`score_neurons` (no model, no file read)."""
    check_choice(method, METHODS, "method")
    if method == "fbn" and networks is None:
        raise ValueError("method 'fbn' needs 'networks' (a networks folder of this model).")
    if method != "fbn" and networks is not None:
        raise ValueError(f"'networks' are used by method 'fbn' only. method={method!r} "
                         f"was provided.")
    if method in CALIBRATED and calibration is None:
        raise ValueError(f"method {method!r} needs 'calibration' (a text file, never the "
                         f"evaluation text).")
    if method not in CALIBRATED and calibration is not None:
        raise ValueError(f"'calibration' is used by methods {CALIBRATED} only; method "
                         f"{method!r} scores without it (for bias compensation, compute "
                         f"calibration_stats separately).")
    if method == "random":
        _check_random_state(random_state)


# -- the interface --------------------------------------------------------------

def score_neurons(loaded, method, networks=None, calibration=None, max_tokens=None,
                  batch_size=8, random_state=0, verbose=1):
    """Importance of every MLP neuron of ``loaded`` for ``method``.

    Parameters
    ----------
    loaded : LoadedModel
    method : {"fbn", "random", "magnitude", "wanda", "flap"}
        See the module docstring for each method and how it ranks across layers.
    networks : str, Path, FunctionalNetworks or list of them
        ``fbn`` only: networks of this model's grid (signal ``mlp``, every
        layer, same weights). Several (e.g. ICA runs with different seeds)
        are pooled: a neuron's score is its largest z over all of them.
    calibration : str, Path or CalibrationStats
        ``wanda`` and ``flap`` only: a calibration text file (read by
        :func:`calibration_stats`) or its statistics.
    max_tokens : int, optional
        Most calibration tokens when ``calibration`` is a path.
    batch_size : int, default 8
        Calibration windows per forward pass.
    random_state : int, default 0
        Seed of ``random``.
    verbose : int, default 1

    Returns
    -------
    NeuronScores
        ``scores`` of shape (n_model_layers, n_units), float64.
    """
    if not isinstance(loaded, LoadedModel):
        raise TypeError(f"'loaded' must be a LoadedModel. {type(loaded).__name__} was provided.")
    check_score_params(method, networks, calibration, random_state)
    location = locate_neurons(loaded.model)
    check_unpruned(location, loaded)
    shape = (location.n_layers, location.n_units)
    details = {"selection": SELECTION[method], "metric": METRICS[method]}
    record = None
    if method == "fbn":
        pairs = _load_networks(networks, loaded)
        scores = fbn_metric([net for net, _ in pairs])
        details.update(networks=[r for _, r in pairs],
                       n_components=sum(r["n_components"] for _, r in pairs))
    elif method == "random":
        seed = _check_random_state(random_state)
        scores = np.random.default_rng(seed).random(shape)
        details["random_state"] = seed
    elif method == "magnitude":
        scores = per_layer_ranks(magnitude_metric(loaded))
        prefix = len(location.layer_paths[0]) + 1
        details["input_projections"] = [name[prefix:] for name, _ in
                                        input_rows(loaded.model, location, 0)]
    else:
        stats = _stats(loaded, calibration, max_tokens, batch_size, verbose)
        record = stats.record()
        if method == "wanda":
            scores = per_layer_ranks(wanda_metric(loaded, stats))
        else:
            scores = standardize_layers(flap_metric(loaded, stats))
    log(f"scores: method {method}, {SELECTION[method]} ranking of {shape[0]} layers x "
        f"{shape[1]} neurons", verbose)
    return NeuronScores(method=method, scores=np.asarray(scores, dtype=np.float64),
                        calibration=record, details=details)
