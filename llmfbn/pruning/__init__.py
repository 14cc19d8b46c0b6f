"""Pruning MLP neurons: scores, selection, physical removal and a saved smaller model.

:func:`prune` runs the whole method (``llmfbn prune``): :func:`score_neurons`
(one interface for ``fbn``, ``random``, ``magnitude``, ``wanda``, ``flap``),
:func:`select_neurons` (protected layers, ratio of all MLP neurons), optional
:func:`bias_compensation` over :func:`calibration_stats`, then
:func:`remove_neurons` (a physically smaller copy with per-layer widths) and a
folder that :func:`llmfbn.load_model` loads back.
"""

from llmfbn.pruning._calibration import CalibrationStats, bias_compensation, calibration_stats
from llmfbn.pruning._prune import BIAS_COMPENSATION, PrunedModel, prune
from llmfbn.pruning._remove import kept_indices, remove_neurons
from llmfbn.pruning._scores import METHODS, NeuronScores, score_neurons
from llmfbn.pruning._select import default_protected_layers, select_neurons

__all__ = [
    "BIAS_COMPENSATION",
    "METHODS",
    "CalibrationStats",
    "NeuronScores",
    "PrunedModel",
    "bias_compensation",
    "calibration_stats",
    "default_protected_layers",
    "kept_indices",
    "prune",
    "remove_neurons",
    "score_neurons",
    "select_neurons",
]
