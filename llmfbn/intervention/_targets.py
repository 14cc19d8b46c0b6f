"""Which neurons to edit: every accepted form, resolved to ``{layer: unit indices}``.

Neurons are named by their units on the model's grid. A pruned model's grid
is its source model's (:attr:`NeuronLocation.source_width`): its neurons keep
their original units, and :func:`resolve_targets` maps them to the columns
of the narrowed down projections; a removed neuron cannot be a target.
"""

import numpy as np
import torch

from llmfbn.grid import NeuronGrid
from llmfbn.models import LoadedModel, locate_neurons

__all__ = ["check_networks_fit", "model_grid", "resolve_targets", "targets_to_mask"]


def _torch_model(model):
    return model.model if isinstance(model, LoadedModel) else model


def model_grid(model):
    """The grid of a whole model's MLP neurons (every layer, signal ``"mlp"``).

    Parameters
    ----------
    model : LoadedModel or transformers.PreTrainedModel
        A LoadedModel gives the grid its model name and weights hash; a bare
        model leaves them None.

    Returns
    -------
    NeuronGrid of shape (nx, ny, n_layers)
        For a pruned model, its source model's grid with the units it kept
        present (``units``).
    """
    location = locate_neurons(_torch_model(model))
    known = isinstance(model, LoadedModel)
    return NeuronGrid(location.n_layers, location.source_width,
                      model=model.name if known else None, signal="mlp",
                      weights_hash=model.weights_hash if known else None,
                      model_layers=location.n_layers, units=location.units)


def check_networks_fit(model, networks, allow_other_model=False):
    """Raise ValueError unless ``networks`` mean the same neurons in ``model``.

    Same signal (``mlp``), units per layer and number of model layers,
    layers the model has and the same neurons present in them (networks of
    a dense model do not fit a model pruned from it); and the same model
    (weights hash, else name) unless ``allow_other_model``. A bare
    transformers model carries no name or weights hash: only its grid is
    checked.

    Parameters
    ----------
    model : LoadedModel or transformers.PreTrainedModel
    networks : FunctionalNetworks
    allow_other_model : bool, default False
        Accept networks of another model with the same grid (e.g. the base
        model of a fine-tuned one).
    """
    target = model_grid(model)
    networks.grid.check_compatible(
        target, allow_other_model=allow_other_model or not isinstance(model, LoadedModel),
        subset=True, names=("the networks", "the model"))


def resolve_targets(model, targets, networks=None, allow_other_model=False):
    """Normalise a neuron selection to ``{model layer: LongTensor of unit indices}``.

    Parameters
    ----------
    model : LoadedModel or transformers.PreTrainedModel
        A LoadedModel lets networks be checked against the model's identity
        too (see :func:`check_networks_fit`).
    targets : FunctionalNetworks, dict, array or list of pairs
        - :class:`~llmfbn.networks.FunctionalNetworks` (with ``networks``
          choosing a subset; default all, as their union);
        - ``{layer: mask or indices}`` where a mask is a bool array/tensor of
          length ``n_units``;
        - a bool array of shape ``(n_layers, n_units)`` over all model layers;
        - a list of ``(layer, unit)`` pairs.

        ``n_units`` and units are the grid's (:func:`model_grid`): for a
        pruned model, its source model's width and unit indices.
    networks : sequence of int, optional
        Network indices when ``targets`` is a FunctionalNetworks.
    allow_other_model : bool, default False
        Accept FunctionalNetworks of another model with the same grid.

    Returns
    -------
    dict
        Only layers with at least one unit; indices sorted and unique: the
        columns of the layer's down projection, which are the units
        themselves unless the model was pruned (then each unit's position
        among the neurons its layer kept).

    Raises
    ------
    ValueError
        On layers or units out of range for this model, units a pruned model
        removed, networks that do not fit it, or an empty selection.
    """
    location = locate_neurons(_torch_model(model))
    n_layers, n_units = location.n_layers, location.source_width
    if hasattr(targets, "masks") and hasattr(targets, "grid"):  # FunctionalNetworks
        check_networks_fit(model, targets, allow_other_model=allow_other_model)
        grid = targets.grid
        union = targets.union_mask(networks)
        pairs = {layer: np.flatnonzero(union[slot]) for slot, layer in enumerate(grid.layers)}
    elif isinstance(targets, dict):
        pairs = {}
        for layer, sel in targets.items():
            sel = sel.cpu().numpy() if isinstance(sel, torch.Tensor) else np.asarray(sel)
            if sel.dtype == bool:
                if sel.shape != (n_units,):
                    raise ValueError(f"The mask for layer {layer} must have shape ({n_units},). "
                                     f"{sel.shape} was provided.")
                sel = np.flatnonzero(sel)
            pairs[int(layer)] = sel.astype(np.int64).ravel()
    elif isinstance(targets, (np.ndarray, torch.Tensor)) and np.asarray(targets).dtype == bool:
        array = np.asarray(targets)
        if array.shape != (n_layers, n_units):
            raise ValueError(f"A boolean neuron mask must have shape ({n_layers}, {n_units}) for "
                             f"this model. {array.shape} was provided.")
        pairs = {layer: np.flatnonzero(array[layer]) for layer in range(n_layers)}
    elif isinstance(targets, (list, tuple, np.ndarray)):
        array = (np.asarray(targets, dtype=np.int64).reshape(-1, 2) if len(targets)
                 else np.empty((0, 2), np.int64))
        pairs = {}
        for layer in np.unique(array[:, 0]):
            pairs[int(layer)] = array[array[:, 0] == layer, 1]
    else:
        raise TypeError("'targets' must be FunctionalNetworks, a {layer: mask} dict, a boolean "
                        f"(n_layers, n_units) array or (layer, unit) pairs. "
                        f"{type(targets).__name__} was provided.")
    resolved = {}
    for layer, units in sorted(pairs.items()):
        if not 0 <= layer < n_layers:
            raise ValueError(f"Layer {layer} is out of range: this model has {n_layers} layers.")
        units = np.unique(units)
        if len(units) and (units.min() < 0 or units.max() >= n_units):
            wrong = units[(units < 0) | (units >= n_units)][:5].tolist()
            raise ValueError(f"Units of layer {layer} must lie in [0, {n_units}). "
                             f"{wrong} were provided.")
        if len(units) and location.pruned:
            units = _columns(location.units[layer], units, layer)
        if len(units):
            resolved[layer] = torch.as_tensor(units, dtype=torch.long)
    if not resolved:
        raise ValueError("The neuron selection is empty: nothing to intervene on.")
    return resolved


def _columns(kept, units, layer):
    """Positions of grid ``units`` among a pruned layer's ``kept`` units, or ValueError."""
    columns = np.searchsorted(kept, units)
    found = columns < len(kept)
    found[found] = kept[columns[found]] == units[found]
    if not found.all():
        removed = units[~found]
        shown = ", ".join(map(str, removed[:8].tolist())) + (", ..." if len(removed) > 8 else "")
        raise ValueError(f"Units of layer {layer} must be neurons the pruned model kept. Units "
                         f"[{shown}] ({len(removed)} of {len(units)}) were removed by pruning.")
    return columns


def targets_to_mask(targets, n_layers, n_units):
    """``{layer: indices}`` -> bool array (n_layers, n_units)."""
    mask = np.zeros((n_layers, n_units), dtype=bool)
    for layer, units in targets.items():
        mask[layer, units.numpy()] = True
    return mask
