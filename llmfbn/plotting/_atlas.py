"""All networks at once: an atlas of the neuron grid, and where each network sits in depth."""

import numpy as np

from llmfbn._utils import check_choice
from llmfbn.plotting._base import (
    check_backdrop,
    check_network_index,
    check_networks,
    finish,
    layer_slots,
    layer_ticks,
    network_labels,
    pyplot,
    single_axes,
)
from llmfbn.plotting._maps import _mosaic_figure

__all__ = ["network_colors", "plot_atlas", "plot_layer_profile"]

ATLAS_VALUES = ("masks", "maps")
PROFILE_KINDS = ("heatmap", "bars")


def network_colors(n, cmap=None):
    """``n`` distinct RGBA colours: ``tab10``/``tab20`` up to 20 networks, else ``gist_rainbow``."""
    plt = pyplot()
    if cmap is None:
        cmap = "tab10" if n <= 10 else "tab20" if n <= 20 else "gist_rainbow"
    cmap = plt.get_cmap(cmap)
    if getattr(cmap, "N", 256) < 256:  # qualitative: take its colours in order
        return [cmap(k % cmap.N) for k in range(n)]
    return [cmap(v) for v in np.linspace(0, 1, max(n, 1))][:n]


def _check_indices(networks, indices):
    if indices is None:
        return list(range(len(networks)))
    indices = [check_network_index(networks, k, "networks_shown") for k in indices]
    if not indices:
        raise ValueError("'networks_shown' must name at least one network. [] was provided.")
    return indices


def plot_atlas(networks, networks_shown=None, values="masks", layers=None, view_type="continuous",
               cmap=None, alpha=0.9, title=None, colorbar=True, n_columns=None,
               backdrop="light", figure=None, axes=None, output_file=None):
    """Plot all networks at once on the layer slices (nilearn's ``plot_prob_atlas``).

    Each network gets one colour; its neurons are drawn on the layer
    mosaic of :func:`plot_brain_map` (rows of nilearn z-slicers, no MNI
    background). A neuron in several networks shows the last one drawn.

    Parameters
    ----------
    networks : FunctionalNetworks
    networks_shown : list of int, optional
        Network indices to draw (default all).
    values : {"masks", "maps"}, default "masks"
        ``"masks"``: every neuron of a network in full colour. ``"maps"``:
        the network's neurons weighted by their |z| (stronger neurons more
        opaque, as nilearn draws probabilistic atlases).
    layers : list of int, optional
        Model layers to show (default all).
    view_type : {"continuous", "filled_contours", "contours"}, default "continuous"
        As in nilearn; contours of isolated neurons are small rings, so the
        filled view reads best on this grid.
    cmap : str or Colormap, optional
        Default ``tab10``/``tab20`` (distinct colours), ``gist_rainbow``
        above 20 networks.
    alpha : float, default 0.9
    title : str, optional
    colorbar : bool, default True
        A legend strip naming each network (``net k``, 0-based).
    backdrop : {"light", "dark", None}, default "light"
        Distinct network colours read best on a light slice.
    n_columns, figure, axes, output_file
        As in :func:`plot_brain_map`.

    Returns
    -------
    LayerMosaic or None
        Its ``displays`` are nilearn's ``plot_prob_atlas`` displays.
    """
    from matplotlib.colors import ListedColormap
    from nilearn import plotting

    check_networks(networks)
    check_choice(values, ATLAS_VALUES, "values")
    check_choice(view_type, ("continuous", "filled_contours", "contours"), "view_type")
    indices = _check_indices(networks, networks_shown)
    grid = networks.grid
    slots = layer_slots(grid, layers)
    back = check_backdrop(backdrop)
    colors = network_colors(len(indices), cmap)
    labels = [f"net {k}" for k in indices]
    # Empty networks have nothing to draw (nilearn would skip them); they keep their colour.
    drawn = [i for i, k in enumerate(indices) if networks.sizes[k] > 0]
    masks = networks.masks[[indices[i] for i in drawn]]
    if values == "masks":
        data = masks.astype(np.float32)
    else:
        data = np.where(masks, np.abs(networks.maps[[indices[i] for i in drawn]]), 0)
    img = grid.to_img(np.asarray(data, dtype=np.float32).reshape(
        (len(drawn), grid.n_layers, grid.width)))
    drawn_colors = [colors[i] for i in drawn]
    atlas_cmap = ListedColormap(drawn_colors if len(drawn) > 1 else drawn_colors * 2)

    def draw(fig, rect, cut_coords):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # masked element -> nan
            display = plotting.plot_prob_atlas(
                img, bg_img=None, view_type=view_type, threshold=1e-6, cut_coords=cut_coords,
                display_mode="z", figure=fig, axes=rect, annotate=False, draw_cross=False,
                black_bg=False, colorbar=False, cmap=atlas_cmap, alpha=alpha)
        if values == "masks" and view_type == "continuous":
            # nilearn fades a map's smallest value to half opacity; a mask has one
            # value, so give each network its plain colour.
            for cut in display.axes.values():
                images = cut.ax.get_images()
                if len(images) == len(drawn):
                    for image, color in zip(images, drawn_colors):
                        image.set_cmap(ListedColormap([color]))
        return display

    def legend(fig, rect):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm

        cax = fig.add_axes(rect)
        n = len(indices)
        mappable = ScalarMappable(BoundaryNorm(np.arange(n + 1) - 0.5, n),
                                  ListedColormap(colors))
        cbar = fig.colorbar(mappable, cax=cax)
        step = max(1, int(np.ceil(n / 20)))
        cbar.set_ticks(np.arange(0, n, step), labels=labels[::step])
        cbar.ax.tick_params(labelsize=8, length=0)
        return cbar

    return _mosaic_figure(draw, grid, slots, figure, axes, n_columns, title,
                          legend if colorbar else None, back, output_file)


def plot_layer_profile(networks, normalize=False, kind="heatmap", cmap=None, title=None,
                       colorbar=True, figure=None, axes=None, output_file=None):
    """Plot how many neurons each network has in each layer.

    Parameters
    ----------
    networks : FunctionalNetworks
    normalize : bool, default False
        Show each network's fraction of its neurons per layer instead of counts.
    kind : {"heatmap", "bars"}, default "heatmap"
        A networks x layers heatmap (``networks.layer_counts()``; counts
        written in the cells when they fit, empty cells blank), or bars per
        layer stacked over networks.
    cmap : str or Colormap, optional
        Default ``"viridis"`` (heatmap) or distinct colours (bars).
    title : str, optional
    colorbar : bool, default True
        Heatmap colourbar, or the bars' legend.
    figure, axes, output_file
        As everywhere; ``output_file`` saves, closes and returns None.

    Returns
    -------
    axes : matplotlib Axes or None
        For a heatmap, ``axes.images[0]`` holds the (n_networks, n_layers)
        values (a masked array, zeros masked).
    """
    check_networks(networks)
    check_choice(kind, PROFILE_KINDS, "kind")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"'normalize' must be a bool. {normalize!r} was provided.")
    counts = networks.layer_counts().astype(np.float64)
    if normalize:
        counts = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n_networks, n_layers = counts.shape
    layers = networks.grid.layers
    labels = network_labels(n_networks)
    what = "fraction of the network's neurons" if normalize else "neurons"
    if kind == "heatmap":
        size = (min(12, 2.2 + 0.32 * n_layers), min(9, 1.3 + 0.3 * n_networks))
        figure, axes = single_axes(figure, axes, size)
        # Empty cells stay blank: a layer without neurons differs from one with a few.
        image = axes.imshow(np.ma.masked_equal(counts, 0), aspect="auto",
                            interpolation="nearest", cmap=cmap or "viridis", vmin=0)
        axes.set_yticks(range(n_networks), labels)
        positions, ticks = layer_ticks(layers, max_ticks=30)
        axes.set_xticks(positions, ticks)
        axes.set_ylabel("network")
        if n_networks * n_layers <= 400:
            top = counts.max() if counts.size else 0
            for (i, j), value in np.ndenumerate(counts):
                if value:
                    text = f"{value:.2f}".lstrip("0") if normalize else f"{int(value)}"
                    axes.text(j, i, text, ha="center", va="center", fontsize=7,
                              color="black" if value > 0.6 * top else "white")
        if colorbar:
            axes.figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, label=what)
    else:
        figure, axes = single_axes(figure, axes, (11, 4.5))
        bottom = np.zeros(n_layers)
        colors = network_colors(n_networks, cmap)
        for k in range(n_networks):
            axes.bar(np.arange(n_layers), counts[k], bottom=bottom, color=colors[k],
                     label=labels[k], width=0.85)
            bottom += counts[k]
        positions, ticks = layer_ticks(layers, max_ticks=30)
        axes.set_xticks(positions, ticks)
        axes.set_ylabel(what)
        axes.spines[["top", "right"]].set_visible(False)
        if colorbar:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                        ncols=1 if n_networks <= 20 else 2)
    axes.set_xlabel("layer")
    if title:
        axes.set_title(title)
    return finish(figure, output_file, axes)
