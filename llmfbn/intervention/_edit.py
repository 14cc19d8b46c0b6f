"""Edit MLP neurons during forward passes: inhibit, amplify, scale, or any function.

Every edit is a forward pre-hook on a layer's MLP down projection, the same
hook point the ``mlp`` recording signal reads, so a network found in a
recording is edited exactly where it was measured. Hooks live in a
:class:`~llmfbn.hooks.HookGroup`: they are removed on any exit, nested
contexts unwind in order, and parameters are never touched.
"""

from contextlib import contextmanager

import torch

from llmfbn.hooks import HookGroup
from llmfbn.intervention._targets import resolve_targets
from llmfbn.models import locate_neurons

__all__ = ["NonFiniteActivationError", "amplify", "edit_neurons", "inhibit", "scale"]


class NonFiniteActivationError(FloatingPointError):
    """An edit produced NaN or inf activations."""


def edit_units(values, index, fn, layer, check_finite=True):
    """Replace ``values[..., index]`` by ``fn`` of them, in place.

    Parameters
    ----------
    values : Tensor of shape (..., n_units)
        A down projection's input (or rows of it).
    index : LongTensor of shape (n_selected,), on ``values``' device
    fn : callable
        ``fn(selected) -> new values`` of the same shape.
    layer : int
        For the error message.
    check_finite : bool, default True
        Raise :class:`NonFiniteActivationError` when ``fn`` gives NaN or inf.
    """
    new = fn(values.index_select(-1, index))
    if check_finite and not torch.isfinite(new).all():
        raise NonFiniteActivationError(
            f"The edit made activations of layer {layer} non-finite (NaN or inf); "
            f"use a smaller value.")
    values.index_copy_(-1, index, new.to(values.dtype))


def _make_pre_hook(units, fn, layer, check_finite):
    cache = {}

    def hook(module, args):
        hidden = args[0]
        # The down projection's input is a fresh temporary (act(gate) * up): edit it
        # in place, unless autograd may need the original.
        edited = hidden.clone() if hidden.requires_grad and torch.is_grad_enabled() else hidden
        index = cache.get(hidden.device)
        if index is None:
            index = cache[hidden.device] = units.to(hidden.device)
        edit_units(edited, index, fn, layer, check_finite)
        return (edited,) + tuple(args[1:])

    return hook


@contextmanager
def edit_neurons(model, targets, fn, networks=None, check_finite=True):
    """Apply ``fn`` to the selected neurons' activations inside the block.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    targets : FunctionalNetworks, dict, bool array or (layer, unit) pairs
        See :func:`~llmfbn.intervention.resolve_targets`.
    fn : callable
        ``fn(values) -> new values``, ``values`` of shape (..., n_selected)
        for one layer.
    networks : sequence of int, optional
        Subset of a FunctionalNetworks' networks.
    check_finite : bool, default True
        Stop with :class:`NonFiniteActivationError` if an edit yields NaN/inf.

    Yields
    ------
    dict
        The resolved ``{layer: unit indices}``.
    """
    resolved = resolve_targets(model, targets, networks=networks)
    location = locate_neurons(model)
    with HookGroup(model) as hooks:
        for layer, units in resolved.items():
            hooks.add(location.down_proj_paths[layer],
                      _make_pre_hook(units, fn, layer, check_finite), on="input")
        yield resolved


def inhibit(model, targets, networks=None):
    """Set the selected neurons to 0 (removes their contribution exactly)."""
    return edit_neurons(model, targets, torch.zeros_like, networks=networks)


def amplify(model, targets, value, networks=None):
    """Add ``value`` to the selected neurons (the reference's "additive editing")."""
    value = float(value)
    return edit_neurons(model, targets, lambda x: x + value, networks=networks)


def scale(model, targets, factor, networks=None):
    """Multiply the selected neurons by ``factor``."""
    factor = float(factor)
    return edit_neurons(model, targets, lambda x: x * factor, networks=networks)
