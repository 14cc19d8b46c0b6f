"""What pruning removed: the removed neurons on the source model's grid, and per layer."""

import numpy as np

from llmfbn._utils import check_choice
from llmfbn.grid import NeuronGrid
from llmfbn.plotting._base import finish, layer_ticks, single_axes
from llmfbn.plotting._maps import plot_brain_map, plot_flat_map

__all__ = ["plot_pruning", "pruning_map"]

PRUNING_KINDS = ("mosaic", "flat", "bars")
#: Colour of a removed neuron (bright on the dark backdrop of the kept ones).
REMOVED_COLOR = "#f0643c"
#: Manifest keys the plots read (a manifest from :func:`llmfbn.io.read_pruning` has them all).
_NEEDED = ("method", "ratio", "protect_layers", "source_model", "kept")


def _check_manifest(manifest):
    if not isinstance(manifest, dict):
        raise TypeError(f"'manifest' must be a dict (llmfbn.io.read_pruning(folder)). "
                        f"{type(manifest).__name__} was provided.")
    missing = [key for key in _NEEDED if key not in manifest]
    source = manifest.get("source_model")
    if not missing and not (isinstance(source, dict) and "layer_widths" in source):
        missing = ["source_model.layer_widths"]
    if missing:
        raise ValueError(f"'manifest' must be a pruning manifest (llmfbn.io.read_pruning"
                         f"(folder)). It lacks {missing}.")
    widths, kept = list(source["layer_widths"]), manifest["kept"]
    if len(widths) != len(kept):
        raise ValueError(f"'manifest' keeps units of {len(kept)} layers but its source model "
                         f"has {len(widths)}.")
    if len(set(widths)) != 1:
        raise ValueError(f"'manifest' comes from a model of unequal layer widths {widths}; "
                         f"its neurons have no grid (llmfbn prune only prunes models of "
                         f"one width).")
    return manifest


def _number(value):
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def pruning_map(manifest):
    """The removed neurons as a map on the source model's grid.

    Parameters
    ----------
    manifest : dict
        A pruned folder's manifest, from :func:`llmfbn.io.read_pruning`.

    Returns
    -------
    data : ndarray of shape (n_layers, n_units), float64
        1 for every removed neuron, 0 for every kept one.
    grid : NeuronGrid
        The source model's MLP grid (``signal="mlp"``, its name and weights
        hash), so the map sits on the grid of that model's recordings and
        networks; ``grid.to_img(data)`` is the 3-D image.
    """
    _check_manifest(manifest)
    source = manifest["source_model"]
    widths = source["layer_widths"]
    n_layers, width = len(widths), int(widths[0])
    grid = NeuronGrid(n_layers, width, model=source.get("name"), signal="mlp",
                      weights_hash=source.get("weights_hash"), model_layers=n_layers)
    data = np.ones((n_layers, width))
    for layer, units in enumerate(manifest["kept"]):
        data[layer, np.asarray(units, dtype=np.int64)] = 0.0
    return data, grid


def plot_pruning(manifest, kind="mosaic", layers=None, color=REMOVED_COLOR, title=None,
                 n_columns=None, backdrop="dark", figure=None, axes=None, output_file=None):
    """Plot what a pruning removed (``llmfbn prune``), without loading any weights.

    Parameters
    ----------
    manifest : dict
        A pruned folder's manifest, from :func:`llmfbn.io.read_pruning`.
    kind : {"mosaic", "flat", "bars"}, default "mosaic"
        ``"mosaic"``: the removed neurons on the layer slices of the source
        model's grid (:func:`plot_brain_map` of :func:`pruning_map`; kept
        neurons show the backdrop). ``"flat"``: the same as one layer x unit
        image (:func:`plot_flat_map`). ``"bars"``: neurons removed per layer,
        protected layers shaded, the fraction of the layer on the right axis.
    layers : list of int, optional
        Layers of the mosaic (default all).
    color : matplotlib colour, default "#f0643c"
        Colour of the removed neurons (of the bars).
    title : str, optional
        Default: how many neurons the method removed.
    n_columns : int, optional
        Slices per row of the mosaic.
    backdrop : {"dark", "light", None}, default "dark"
        Colour of the kept neurons (mosaic and flat).
    figure, axes, output_file
        As everywhere; ``output_file`` saves, closes and returns None.

    Returns
    -------
    LayerMosaic (``"mosaic"``), matplotlib Axes (``"flat"``, ``"bars"``) or None
        For ``"bars"``, ``axes.containers[0]`` holds the bars, one per layer,
        of height the number of neurons removed.
    """
    from matplotlib.colors import ListedColormap, to_rgba

    check_choice(kind, PRUNING_KINDS, "kind")
    data, grid = pruning_map(manifest)
    try:
        color = to_rgba(color)
    except ValueError as err:
        raise ValueError(f"'color' must be a matplotlib colour. {color!r} was provided.") \
            from err
    what = f"{manifest['method']}, ratio {_number(manifest['ratio'])}"
    if title is None:
        title = (f"MLP neurons removed per layer ({what})" if kind == "bars" else
                 f"{int(data.sum())} of {data.size} MLP neurons removed ({what})")
    if kind == "bars":
        return _plot_bars(manifest, data, grid, color, title, figure, axes, output_file)
    common = dict(grid=grid, threshold=0.5, vmin=0.0, vmax=1.0, symmetric_cbar=False,
                  cmap=ListedColormap([color], name="removed"), colorbar=False,
                  backdrop=backdrop, title=title, figure=figure, axes=axes,
                  output_file=output_file, vmax_percentile=None)
    if kind == "flat":
        return plot_flat_map(data, **common)
    return plot_brain_map(data, layers=layers, n_columns=n_columns, **common)


def _plot_bars(manifest, data, grid, color, title, figure, axes, output_file):
    counts = data.sum(axis=1)
    figure, axes = single_axes(figure, axes, (min(12.0, max(6.0, 3 + 0.3 * grid.n_layers)), 3.6))
    positions = np.arange(grid.n_layers)
    for n, layer in enumerate(sorted(set(manifest["protect_layers"]))):
        axes.axvspan(layer - 0.5, layer + 0.5, color="0.92", zorder=0,
                     label="protected" if n == 0 else None)
    axes.bar(positions, counts, width=0.8, color=color, label="removed", zorder=2)
    axes.set_xlim(-0.6, grid.n_layers - 0.4)
    axes.set_ylim(0, max(float(counts.max()), 1.0) * 1.3)  # room for the legend
    ticks, labels = layer_ticks(grid.layers, max_ticks=30)
    axes.set_xticks(ticks, labels)
    axes.set_xlabel("layer")
    axes.set_ylabel("neurons removed")
    width = grid.width
    right = axes.secondary_yaxis("right", functions=(lambda n: 100.0 * n / width,
                                                     lambda p: p * width / 100.0))
    right.set_ylabel(f"% of the layer ({width} neurons)")
    axes.spines[["top"]].set_visible(False)
    axes.legend(loc="upper left", fontsize=8, frameon=False, ncols=2)
    if title:
        axes.set_title(title)
    return finish(figure, output_file, axes)
