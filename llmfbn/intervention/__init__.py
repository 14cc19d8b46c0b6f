"""Interventions: inhibit or amplify neurons with torch hooks, against matched controls."""

from llmfbn.intervention._controls import (
    CI_METHODS,
    ControlComparison,
    compare_to_controls,
    confidence_interval,
    matched_controls,
)
from llmfbn.intervention._edit import (
    NonFiniteActivationError,
    amplify,
    edit_neurons,
    inhibit,
    scale,
)
from llmfbn.intervention._experiments import (
    COLUMNS,
    Evaluation,
    baseline_rows,
    check_network_ids,
    check_out_csv,
    intervention_sweep,
    make_evaluation,
    summarise_edit,
)
from llmfbn.intervention._fold import fold_edit
from llmfbn.intervention._sweep import evaluate_edits, shares_prefix
from llmfbn.intervention._targets import (
    check_networks_fit,
    model_grid,
    resolve_targets,
    targets_to_mask,
)

__all__ = [
    "CI_METHODS",
    "COLUMNS",
    "ControlComparison",
    "Evaluation",
    "NonFiniteActivationError",
    "amplify",
    "baseline_rows",
    "check_network_ids",
    "check_networks_fit",
    "check_out_csv",
    "compare_to_controls",
    "confidence_interval",
    "edit_neurons",
    "evaluate_edits",
    "fold_edit",
    "inhibit",
    "intervention_sweep",
    "make_evaluation",
    "matched_controls",
    "model_grid",
    "resolve_targets",
    "scale",
    "shares_prefix",
    "summarise_edit",
    "targets_to_mask",
]
