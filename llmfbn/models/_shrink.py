"""Physically narrow each layer's MLP to chosen neurons (the one place that slices weights).

A neuron ``u`` of layer ``l`` is row ``u`` of every input projection (gate
and up, or fc_in, with its bias entry) and column ``u`` of the down
projection. Keeping neurons ``K`` slices those rows and columns; the layer
then computes exactly what the full layer computes with the other neurons'
activations set to zero. Used by :func:`llmfbn.pruning.remove_neurons` (chosen
neurons) and by :func:`llmfbn.models.load_model` (a pruned folder: its
per-layer widths, before the saved weights are loaded).
"""

import torch

from llmfbn.models._architectures import locate_neurons

__all__ = ["shrink_mlp"]


def _is_conv1d(module):
    """transformers' Conv1D (GPT-2): weight (in, out), ``nx`` in, ``nf`` out."""
    return not isinstance(module, torch.nn.Linear) and hasattr(module, "nf") and hasattr(
        module, "nx")


def _check_module(module, path):
    if not (isinstance(module, torch.nn.Linear) or _is_conv1d(module)):
        raise TypeError(f"Cannot remove neurons at {path}: a {type(module).__name__}, not a "
                        f"Linear or Conv1D.")


def _param(tensor, like):
    return torch.nn.Parameter(tensor.contiguous().clone(), requires_grad=like.requires_grad)


def _narrow_outputs(module, rows):
    """Keep output units ``rows`` of an input projection (LongTensor of indices)."""
    if _is_conv1d(module):
        module.weight = _param(module.weight[:, rows], module.weight)
        module.nf = len(rows)
    else:
        module.weight = _param(module.weight[rows], module.weight)
        module.out_features = len(rows)
    if module.bias is not None:
        module.bias = _param(module.bias[rows], module.bias)


def _narrow_inputs(module, columns):
    """Keep input units ``columns`` of the down projection."""
    if _is_conv1d(module):
        module.weight = _param(module.weight[columns], module.weight)
        module.nx = len(columns)
    else:
        module.weight = _param(module.weight[:, columns], module.weight)
        module.in_features = len(columns)


def _add_bias(module, shift):
    """Add ``shift`` (hidden,) to the down projection's bias, creating a zero one if absent."""
    weight = module.weight
    if module.bias is None:
        module.bias = torch.nn.Parameter(
            torch.zeros(shift.shape[0], dtype=weight.dtype, device=weight.device),
            requires_grad=weight.requires_grad)
    with torch.no_grad():
        module.bias += shift.to(device=weight.device, dtype=weight.dtype)


@torch.no_grad()
def shrink_mlp(model, keep, bias=None):
    """Keep only ``keep[l]`` MLP neurons in each layer ``l`` of ``model``, in place.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Modified in place (pass a copy to keep the original).
    keep : sequence of 1-D int arrays or tensors, one per model layer
        Sorted, unique neuron indices to keep in each layer (at least one),
        within that layer's current width.
    bias : dict of int to tensor of shape (hidden_size,), optional
        Added to that layer's down-projection bias; a zero bias is created
        where the layer has none.

    Returns
    -------
    model
    """
    location = locate_neurons(model)
    if len(keep) != location.n_layers:
        raise ValueError(f"'keep' must give kept neurons for each of the model's "
                         f"{location.n_layers} layers. {len(keep)} layers were provided.")
    indices = []
    for layer, (kept, width) in enumerate(zip(keep, location.layer_widths)):
        kept = torch.as_tensor(kept, dtype=torch.long).reshape(-1)
        if len(kept) == 0:
            raise ValueError(f"'keep' must keep at least one neuron in every layer; layer "
                             f"{layer} keeps none.")
        if bool((kept < 0).any()) or bool((kept >= width).any()):
            raise ValueError(f"'keep' indices of layer {layer} must lie in [0, {width}).")
        if len(kept) > 1 and not bool((kept[1:] > kept[:-1]).all()):
            raise ValueError(f"'keep' indices of layer {layer} must be sorted and unique.")
        indices.append(kept)
    bias = {} if bias is None else {int(k): torch.as_tensor(v).reshape(-1)
                                    for k, v in bias.items()}
    bad = sorted(k for k in bias if not 0 <= k < location.n_layers)
    if bad:
        raise ValueError(f"'bias' layers must lie in [0, {location.n_layers}). {bad} were "
                         f"provided.")
    for layer, shift in bias.items():
        if shift.shape[0] != location.hidden_size:
            raise ValueError(f"'bias' of layer {layer} must have shape "
                             f"({location.hidden_size},). {tuple(shift.shape)} was provided.")
    for path in [*location.down_proj_paths, *(p for ps in location.in_proj_paths for p in ps)]:
        _check_module(model.get_submodule(path), path)
    for layer, kept in enumerate(indices):
        down = model.get_submodule(location.down_proj_paths[layer])
        width = location.layer_widths[layer]
        for path in location.in_proj_paths[layer]:
            module = model.get_submodule(path)
            rows = torch.cat([kept + block * width for block in range(location.in_blocks)])
            _narrow_outputs(module, rows.to(module.weight.device))
        _narrow_inputs(down, kept.to(down.weight.device))
        if layer in bias:
            _add_bias(down, bias[layer])
    return model
