"""Functional networks: images -> components -> neuron masks, and their consistency.

Needs numpy, nibabel, nilearn and scikit-learn; no torch.
"""

from llmfbn.networks._compare import NetworkComparison, PairComparison, compare_networks
from llmfbn.networks._connectivity import CONNECTIVITY_KINDS, Connectome, network_connectivity
from llmfbn.networks._consistency import (
    GroupTemplate,
    Matching,
    MatchReport,
    Recurrence,
    SplitHalf,
    Stability,
    describe_match,
    format_times_chance,
    group_template,
    iou,
    match_networks,
    match_summary,
    null_matched_correlation,
    null_matched_iou,
    null_z,
    random_masks_like,
    recurrence,
    spatial_correlation,
    split_half,
    stability,
    times_chance,
)
from llmfbn.networks._decomposition import (
    NetworkDecomposition,
    find_recording_images,
    split_half_reproducibility,
)
from llmfbn.networks._expression import EXPRESSED_MIN_R, ModelExpression, model_expression
from llmfbn.networks._group import GroupRecording, find_group_runs
from llmfbn.networks._group_pca import MIGP, parse_memory_size
from llmfbn.networks._networks import FunctionalNetworks, threshold_maps, zscore_maps
from llmfbn.networks._provenance import LeakageWarning, check_leakage, source_files
from llmfbn.networks._timeseries import network_time_series, top_tokens

__all__ = [
    "CONNECTIVITY_KINDS",
    "Connectome",
    "EXPRESSED_MIN_R",
    "FunctionalNetworks",
    "GroupRecording",
    "GroupTemplate",
    "LeakageWarning",
    "MIGP",
    "MatchReport",
    "Matching",
    "ModelExpression",
    "NetworkComparison",
    "NetworkDecomposition",
    "PairComparison",
    "Recurrence",
    "SplitHalf",
    "Stability",
    "check_leakage",
    "compare_networks",
    "describe_match",
    "find_group_runs",
    "find_recording_images",
    "format_times_chance",
    "group_template",
    "iou",
    "match_networks",
    "match_summary",
    "model_expression",
    "network_connectivity",
    "network_time_series",
    "null_matched_correlation",
    "null_matched_iou",
    "null_z",
    "parse_memory_size",
    "random_masks_like",
    "source_files",
    "recurrence",
    "spatial_correlation",
    "split_half",
    "split_half_reproducibility",
    "stability",
    "threshold_maps",
    "times_chance",
    "top_tokens",
    "zscore_maps",
]
