"""One unit of an intervention sweep: a network edited, with its matched controls.

The same functions run in one process (:func:`~llmfbn.intervention.intervention_sweep`)
and on a cluster worker (:mod:`llmfbn.intervention._distributed`), so a unit's
scores do not depend on where it ran.
"""

import numpy as np
import torch

from llmfbn.intervention._controls import matched_controls
from llmfbn.intervention._sweep import evaluate_edits
from llmfbn.models import locate_neurons

__all__ = ["control_seed", "edit_fn", "edited_scores", "value_key"]


def edit_fn(mode, value):
    """The function ``inhibit`` / ``amplify`` / ``scale`` apply to the selected neurons."""
    if mode == "inhibit":
        return torch.zeros_like
    value = float(value)
    if mode == "amplify":
        return lambda x: x + value
    return lambda x: x * value


def control_seed(random_state, network):
    """The seed of network ``network``'s matched controls under ``random_state``."""
    return int(np.random.SeedSequence([random_state, network]).generate_state(1)[0])


def value_key(value):
    """``edit_value`` as the results CSV writes it: ``""`` for None, else ``%g``."""
    return "" if value is None else f"{float(value):g}"


def removed_neurons(model, layers):
    """Units a pruned model removed, bool (n_slots, source width), on ``layers``; else None.

    Never drawn as matched controls: a control is drawn from the neurons the
    model has.
    """
    location = locate_neurons(model)
    if not location.pruned:
        return None
    removed = np.ones((len(layers), location.source_width), dtype=bool)
    for slot, layer in enumerate(layers):
        removed[slot, location.units[layer]] = False
    return removed


def edited_scores(model, tokenizer, evaluation, mask, layers, mode, value, n_controls, seed):
    """Scores of ``evaluation`` with a network edited, then with each matched control.

    Parameters
    ----------
    model, tokenizer
        Of a :class:`~llmfbn.models.LoadedModel`.
    evaluation : Evaluation
    mask : bool array of shape (n_layers, n_units)
        The network, on the grid's layers.
    layers : sequence of int
        The model layer of each grid slot (``NeuronGrid.layers``).
    mode : {"inhibit", "amplify", "scale"}
    value : float or None
    n_controls : int
    seed : int
        The controls' seed (:func:`control_seed`).

    Returns
    -------
    list of dict of {str: MetricScore or float}, length 1 + n_controls
        The network's scores first, then each control's.
    """
    mask = np.asarray(mask, dtype=bool)
    controls = matched_controls(mask, n_controls, exclude=removed_neurons(model, layers),
                                random_state=seed)
    # The network and its controls share the layers before their first edited one
    # (same per-layer counts): evaluate_edits computes those once per batch.
    targets = [{layer: m[slot] for slot, layer in enumerate(layers)} for m in [mask, *controls]]
    return evaluate_edits(model, tokenizer, evaluation, targets, edit_fn(mode, value))
