"""The weights of each MLP neuron: its down-projection column and its input rows.

A neuron ``j`` of layer ``l`` owns column ``j`` of the down projection (what it
writes to the residual stream) and row ``j`` of each input projection (what it
reads: ``gate_proj`` and ``up_proj`` of a gated MLP, ``fc_in`` of a plain one).
:func:`~llmfbn.models.locate_neurons` names the down projections; the input
projections are named by the same table (``in_proj_paths``).
"""

import torch

__all__ = ["down_columns", "input_rows"]


def _is_conv1d(module):
    return hasattr(module, "nf") and hasattr(module, "nx")  # transformers' Conv1D


def down_columns(model, location, layer):
    """The down projection's weight with one column per neuron.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    location : NeuronLocation
        ``locate_neurons(model)``.
    layer : int

    Returns
    -------
    tensor of shape (hidden_size, n_units)
        A view of the weight (Linear's weight; Conv1D's transposed).
    """
    module = model.get_submodule(location.down_proj_paths[layer])
    if isinstance(module, torch.nn.Linear):
        return module.weight
    if _is_conv1d(module):
        return module.weight.T
    raise TypeError(f"Cannot read the neuron columns of a {type(module).__name__} "
                    f"({location.down_proj_paths[layer]}).")


def input_rows(model, location, layer):
    """The rows of the input projections that feed each neuron.

    The architecture table names them (:attr:`NeuronLocation.in_proj_paths`):
    gate and up in a gated MLP, fc_in in a plain one. A fused projection of
    ``in_blocks`` stacked blocks (Phi-3's ``gate_up_proj``: gate rows first,
    then up rows) gives one entry per block.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    location : NeuronLocation
    layer : int

    Returns
    -------
    list of (name, tensor of shape (n_units, fan_in))
        The projection's dotted path (``[k]`` appended for block ``k`` of a
        fused one) and its rows, views of the weights.
    """
    width = location.layer_widths[layer]
    found = []
    for path in location.in_proj_paths[layer]:
        module = model.get_submodule(path)
        if isinstance(module, torch.nn.Linear):
            weight = module.weight
        elif _is_conv1d(module):
            weight = module.weight.T
        else:
            raise TypeError(f"Cannot read the neuron rows of a {type(module).__name__} "
                            f"({path}).")
        blocks = location.in_blocks
        if weight.shape[0] != blocks * width:
            raise ValueError(f"{path} has {weight.shape[0]} output rows; {blocks} x {width} "
                             f"neurons were expected.")
        if blocks == 1:
            found.append((path, weight))
        else:
            found.extend((f"{path}[{k}]", weight[k * width:(k + 1) * width])
                         for k in range(blocks))
    return found
