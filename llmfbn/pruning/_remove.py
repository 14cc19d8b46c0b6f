"""Physical removal of MLP neurons: a smaller model with per-layer widths.

Each layer keeps only its retained neurons: rows of the gate and up (or
fc_in) projections, columns of the down projection (GPT-2's Conv1D
transposed, Phi-3's fused gate_up both halves). The result computes exactly
what the full model computes with the removed neurons zeroed
(:func:`llmfbn.intervention.fold_edit` with ``mode="inhibit"``).

A pruned folder written by ``llmfbn prune`` loads with
``llmfbn.load_model(folder)``. With plain transformers, build the model from
its config, narrow each MLP to the widths in ``pruning.json`` and load the
weights (a Llama-family model shown; ``down_proj`` gets a zero bias first in
the ``bias_compensated_layers`` when the architecture has none)::

    import json, torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = "results/pruned"
    manifest = json.load(open(f"{folder}/pruning.json"))
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    for layer, width in zip(model.model.layers, manifest["layer_widths"]):
        mlp = layer.mlp
        mlp.gate_proj.weight = torch.nn.Parameter(mlp.gate_proj.weight[:width])
        mlp.up_proj.weight = torch.nn.Parameter(mlp.up_proj.weight[:width])
        mlp.down_proj.weight = torch.nn.Parameter(mlp.down_proj.weight[:, :width])
    for index in manifest["bias_compensated_layers"]:
        down = model.model.layers[index].mlp.down_proj
        down.bias = torch.nn.Parameter(torch.zeros(down.out_features))
    missing, unexpected = model.load_state_dict(load_file(f"{folder}/model.safetensors"),
                                                strict=False)  # missing: tied lm_head only
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(folder)
"""

import copy

import numpy as np

from llmfbn.models import LoadedModel, locate_neurons
from llmfbn.models._architectures import mark_pruned
from llmfbn.models._shrink import shrink_mlp

__all__ = ["kept_indices", "remove_neurons"]


def kept_indices(loaded, keep):
    """Per-layer kept neuron indices from a keep mask, checked against the model.

    Parameters
    ----------
    loaded : LoadedModel or transformers.PreTrainedModel
    keep : bool array of shape (n_layers, width), or sequence of bool arrays
        One mask per model layer, each as long as that layer's width (a
        sequence is needed for a model whose layers already differ).

    Returns
    -------
    list of int64 arrays
        Sorted kept indices of each layer.

    Raises
    ------
    ValueError
        Wrong number of layers or widths, or a layer that would keep nothing.
    """
    model = loaded.model if isinstance(loaded, LoadedModel) else loaded
    widths = locate_neurons(model).layer_widths
    if isinstance(keep, np.ndarray) and keep.ndim != 2:
        raise ValueError(f"'keep' must have shape (n_layers, width). {keep.shape} was provided.")
    if len(keep) != len(widths):
        raise ValueError(f"'keep' must have one mask for each of the model's {len(widths)} "
                         f"layers. {len(keep)} were provided.")
    indices = []
    for layer, (mask, width) in enumerate(zip(keep, widths)):
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (width,):
            raise ValueError(f"'keep' of layer {layer} must be a boolean mask of shape "
                             f"({width},). A {mask.dtype} array of shape {mask.shape} was "
                             f"provided.")
        if not mask.any():
            raise ValueError(f"'keep' would remove every neuron of layer {layer}; each layer "
                             f"must keep at least one.")
        indices.append(np.flatnonzero(mask).astype(np.int64))
    return indices


def remove_neurons(loaded, keep, bias=None):
    """A physically smaller deep copy of ``loaded`` without the removed MLP neurons.

    Parameters
    ----------
    loaded : LoadedModel
        Left unchanged.
    keep : bool array of shape (n_layers, width), or sequence of bool arrays
        True for the neurons kept (see :func:`kept_indices`).
    bias : dict of int to tensor of shape (hidden_size,), optional
        Added to that layer's down-projection bias (created, zero, if absent):
        bias compensation, see :func:`llmfbn.pruning.bias_compensation`.

    Returns
    -------
    LoadedModel
        The pruned copy (same tokenizer, device and dtype); ``weights_hash``
        is None until it is saved, ``extra["pruned_from"]`` names the source
        model and ``extra["layer_widths"]`` the per-layer widths. The model is
        marked with the source units it kept (as ``load_model`` marks a
        pruned folder; for a model already pruned, units of its source), so
        its neurons sit on the source model's grid.
    """
    if not isinstance(loaded, LoadedModel):
        raise TypeError(f"'loaded' must be a LoadedModel. {type(loaded).__name__} was "
                        f"provided.")
    indices = kept_indices(loaded, keep)
    location = locate_neurons(loaded.model)
    if location.pruned:  # kept columns of a pruned model -> units of its source
        kept = [units[index] for units, index in zip(location.units, indices)]
        source_widths = location.source_layer_widths
    else:
        kept, source_widths = indices, location.layer_widths
    model = copy.deepcopy(loaded.model)
    shrink_mlp(model, indices, bias=bias)
    mark_pruned(model, kept, source_widths)
    model.eval()
    widths = [int(len(i)) for i in indices]
    extra = {"pruned_from": {"name": loaded.name, "weights_hash": loaded.weights_hash},
             "layer_widths": widths}
    return LoadedModel(model, loaded.tokenizer, f"{loaded.name} (pruned)", loaded.source,
                       None, extra, device=loaded.device, dtype=loaded.dtype)
