"""LLM brain maps: the neuron grid drawn the way nilearn draws brains.

``plot_*`` functions draw with matplotlib and nilearn and return the
display (a :class:`LayerMosaic` of nilearn slicers, a matplotlib Axes or a
Figure, as each one documents), or save it to ``output_file``, close it and
return None. ``view_*`` functions return nilearn's self-contained HTML
viewer (``save_as_html``, shown inline in a notebook).

No MNI background anywhere: a layer is a slice of the grid, not of a brain.
Needs matplotlib (and nilearn, pandas for the results); no torch.
"""

from llmfbn.plotting._atlas import network_colors, plot_atlas, plot_layer_profile
from llmfbn.plotting._connectome import plot_connectivity, plot_connectivity_comparison
from llmfbn.plotting._interactive import view_brain_map, view_network
from llmfbn.plotting._maps import LayerMosaic, plot_brain_map, plot_flat_map, plot_network
from llmfbn.plotting._models import plot_model_expression
from llmfbn.plotting._pruning import plot_pruning, pruning_map
from llmfbn.plotting._recording import plot_carpet
from llmfbn.plotting._results import (
    plot_consistency,
    plot_dose_response,
    plot_intervention,
    read_results,
)

__all__ = [
    "LayerMosaic",
    "network_colors",
    "plot_atlas",
    "plot_brain_map",
    "plot_carpet",
    "plot_connectivity",
    "plot_connectivity_comparison",
    "plot_consistency",
    "plot_dose_response",
    "plot_flat_map",
    "plot_intervention",
    "plot_layer_profile",
    "plot_model_expression",
    "plot_network",
    "plot_pruning",
    "pruning_map",
    "read_results",
    "view_brain_map",
    "view_network",
]
