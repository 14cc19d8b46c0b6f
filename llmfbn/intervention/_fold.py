"""The permanent form of an edit: fold it into the down projection's weights."""

import torch

from llmfbn._utils import check_choice
from llmfbn.intervention._targets import resolve_targets
from llmfbn.models import locate_neurons

__all__ = ["fold_edit"]

FOLD_MODES = ("inhibit", "amplify", "scale")


def _columns(module):
    """A view of the weight with one *column per neuron*.

    (out, in) for Linear; Conv1D's weight transposed.
    """
    weight = module.weight
    if isinstance(module, torch.nn.Linear):
        return weight
    if hasattr(module, "nf") and hasattr(module, "nx"):  # transformers Conv1D: (in, out)
        return weight.T
    raise TypeError(f"Cannot fold an edit into a {type(module).__name__}.")


@torch.no_grad()
def fold_edit(model, targets, mode="inhibit", value=None, networks=None):
    """Edit the model's weights in place so that it behaves as under the hook.

    ``down(a)`` is ``W a + b`` with one column of ``W`` per neuron, so:
    inhibiting neuron ``u`` zeroes column ``u``; scaling multiplies it by
    ``value``; adding ``value`` to ``a_u`` adds ``value * W[:, u]`` to the bias
    (a zero bias is created when the layer has none).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Modified in place: pass a copy (``copy.deepcopy``) to keep the original.
    targets, networks
        See :func:`~llmfbn.intervention.resolve_targets`.
    mode : {"inhibit", "amplify", "scale"}, default "inhibit"
    value : float
        Added value (amplify) or factor (scale).

    Returns
    -------
    model
    """
    check_choice(mode, FOLD_MODES, "mode")
    if mode != "inhibit" and value is None:
        raise ValueError(f"'value' is required for mode={mode!r}.")
    location = locate_neurons(model)
    for layer, units in resolve_targets(model, targets, networks=networks).items():
        down = model.get_submodule(location.down_proj_paths[layer])
        columns = _columns(down)
        units = units.to(columns.device)
        if mode == "inhibit":
            columns[:, units] = 0
        elif mode == "scale":
            columns[:, units] *= float(value)
        else:
            shift = float(value) * columns[:, units].sum(dim=1)
            if down.bias is None:
                down.bias = torch.nn.Parameter(torch.zeros_like(shift))
            down.bias += shift
    return model
