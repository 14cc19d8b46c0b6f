"""Maps over the neuron grid: layer mosaics (nilearn slicers), flat layer x unit maps, networks."""

import math

import numpy as np

from llmfbn.plotting._base import (
    VMAX_PERCENTILE,
    check_backdrop,
    check_network_index,
    check_networks,
    check_number,
    finish,
    layer_slots,
    layer_ticks,
    new_figure,
    pyplot,
    robust_color_range,
    scale_label,
    single_axes,
    stat_to_array,
    thresholded_cmap,
)

__all__ = ["LayerMosaic", "plot_brain_map", "plot_flat_map", "plot_network"]

NETWORK_KINDS = ("mosaic", "flat", "both")

# Layout of a mosaic, in inches.
_MAX_COLUMNS = 10
_FIG_WIDTH = 12.0
_LABEL_H = 0.2  # layer label above each slice
_TITLE_H = 0.4
_CBAR_W = 0.75  # colourbar with its tick labels
_MARGIN = 0.1
_GAP = 0.05  # fraction of a slice's width left blank on each side


class LayerMosaic:
    """Layer slices of the neuron grid, drawn in rows of nilearn z-slicers on one figure.

    Each row is a nilearn display (``ZSlicer``) cutting the grid's image at the
    slices of some layers; together they read like a lightbox: layer by layer,
    left to right and top to bottom.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    displays : list of nilearn ZSlicer
        One per row; use them for anything nilearn's displays offer.
    layers : list of int
        Model layer index of each slice shown, in reading order.
    axes : dict
        Model layer index -> matplotlib Axes of its slice.
    colorbar : matplotlib.colorbar.Colorbar or None
    flat_axes : matplotlib Axes or None
        The flat layer x unit map drawn under the mosaic (``plot_network(kind="both")``).
    """

    def __init__(self, figure, displays, layers, axes, colorbar=None, flat_axes=None):
        self.figure = figure
        self.displays = displays
        self.layers = layers
        self.axes = axes
        self.colorbar = colorbar
        self.flat_axes = flat_axes

    def add_overlay(self, img, **kwargs):
        """Draw ``img`` over every row (nilearn's ``display.add_overlay``)."""
        for display in self.displays:
            display.add_overlay(img, **kwargs)

    def add_contours(self, img, **kwargs):
        """Outline ``img`` on every row (nilearn's ``display.add_contours``)."""
        for display in self.displays:
            display.add_contours(img, **kwargs)

    def title(self, text, **kwargs):
        """Figure title, above the first row."""
        kwargs.setdefault("fontsize", 13)
        self.figure.suptitle(text, **kwargs)

    def savefig(self, filename, **kwargs):
        self.figure.savefig(filename, **kwargs)

    def close(self):
        pyplot().close(self.figure)

    def __repr__(self):
        return f"LayerMosaic(layers={self.layers}, rows={len(self.displays)})"


def _world_z(grid, slot):
    return float((grid.affine @ np.array([0.0, 0.0, slot, 1.0]))[2])


class _Inset:
    """Axes locator: nilearn's position, shrunk horizontally to leave a gap between slices."""

    def __init__(self, locator, gap):
        self.locator = locator
        self.gap = gap

    def __call__(self, axes, renderer):
        from matplotlib.transforms import Bbox

        box = self.locator(axes, renderer)
        pad = self.gap * box.width
        return Bbox.from_extents(box.x0 + pad, box.y0, box.x1 - pad, box.y1)


def mosaic_layout(grid, n_slices, n_columns=None, colorbar=True, title=None, width=None):
    """``(n_rows, n_columns, figsize)`` for a mosaic of ``n_slices`` layer slices."""
    if n_columns is None:
        n_rows = math.ceil(n_slices / _MAX_COLUMNS)
        n_columns = math.ceil(n_slices / n_rows)
    else:
        if isinstance(n_columns, bool) or not isinstance(n_columns, (int, np.integer)) \
                or n_columns < 1:
            raise ValueError(f"'n_columns' must be a positive int. {n_columns!r} was provided.")
        n_columns = min(int(n_columns), n_slices)
        n_rows = math.ceil(n_slices / n_columns)
    if width is None:
        width = min(_FIG_WIDTH, 2.4 * n_columns + (_CBAR_W if colorbar else 0) + 2 * _MARGIN)
    slice_w = (width - 2 * _MARGIN - (_CBAR_W if colorbar else 0)) / n_columns
    row_h = slice_w * (1 - 2 * _GAP) * grid.ny / grid.nx + _LABEL_H + 0.06
    height = n_rows * row_h + 2 * _MARGIN + (_TITLE_H if title else 0)
    return n_rows, n_columns, (width, max(height, 1.2))


def draw_mosaic(draw, grid, slots, figure, region=(0.0, 0.0, 1.0, 1.0), n_columns=None,
                title=None, colorbar=None, backdrop=None):
    """Draw layer slices in rows of nilearn displays; return a :class:`LayerMosaic`.

    Parameters
    ----------
    draw : callable
        ``draw(figure, rect, cut_coords) -> nilearn display`` for one row.
    region : (x, y, width, height)
        Part of the figure to fill, in figure fraction.
    colorbar : callable, optional
        ``colorbar(figure, rect) -> Colorbar``, drawn in a strip on the right.
    backdrop : matplotlib colour, optional
        Colour of the slice's neuron voxels behind the map.
    """
    from matplotlib.colors import ListedColormap

    n_rows, n_columns, _ = mosaic_layout(grid, len(slots), n_columns)
    fig_w, fig_h = figure.get_size_inches()
    x0, y0, width, height = region
    cbar_w = (_CBAR_W / fig_w) if colorbar is not None else 0.0
    title_h = min(_TITLE_H / fig_h, 0.3 * height) if title else 0.0
    margin_x, margin_y = _MARGIN / fig_w, min(_MARGIN / fig_h, 0.05 * height)
    slices_w = width - cbar_w - 2 * margin_x
    top = y0 + height - title_h - margin_y
    row_h = (height - title_h - 2 * margin_y) / n_rows
    label_h = min(_LABEL_H / fig_h, 0.4 * row_h)
    mask_img = grid.mask_img()
    displays, axes, layers = [], {}, []
    for row in range(n_rows):
        row_slots = slots[row * n_columns:(row + 1) * n_columns]
        rect = [x0 + margin_x, top - (row + 1) * row_h, slices_w * len(row_slots) / n_columns,
                row_h - label_h]
        display = draw(figure, rect, [_world_z(grid, s) for s in row_slots])
        cut_axes = list(display.axes.values())
        if backdrop is not None:
            before = {id(im) for a in cut_axes for im in a.ax.get_images()}
            display.add_overlay(mask_img, cmap=ListedColormap([backdrop]), threshold=0.5,
                                resampling_interpolation="nearest")
            for a in cut_axes:
                for im in a.ax.get_images():
                    im.set_zorder(2 if id(im) in before else 1)
        for slot, cut in zip(row_slots, cut_axes):
            layer = grid.layers[slot]
            cut.ax.set_axes_locator(_Inset(cut.ax.get_axes_locator(), _GAP))
            cut.ax.text(0.5, 1.03, f"layer {layer}", transform=cut.ax.transAxes, ha="center",
                        va="bottom", fontsize=9, color="0.15")
            axes[layer] = cut.ax
            layers.append(layer)
        displays.append(display)
    cbar = None
    if colorbar is not None:
        bar_h = min(top - (y0 + margin_y), 2.6 / fig_h)
        rect = [x0 + width - cbar_w + 0.1 / fig_w, top - bar_h, 0.12 / fig_w, bar_h]
        cbar = colorbar(figure, rect)
    mosaic = LayerMosaic(figure, displays, layers, axes, cbar)
    if title:
        figure.text(x0 + width / 2, y0 + height - title_h / 2, title, ha="center",
                    va="center", fontsize=13)
    return mosaic


def z_colorbar(cmap, vmin, vmax, threshold, label=None):
    """A colourbar drawer, the sub-threshold band in grey (as nilearn's)."""
    def colorbar(figure, rect):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cax = figure.add_axes(rect)
        mappable = ScalarMappable(Normalize(vmin, vmax),
                                  thresholded_cmap(cmap, vmin, vmax, threshold))
        cbar = figure.colorbar(mappable, cax=cax)
        if np.isclose(vmin, -vmax):
            ticks = [-vmax, 0.0, vmax]
            if threshold and 0.02 * vmax <= threshold < vmax:
                ticks = [-vmax, -threshold, 0.0, threshold, vmax]
            cbar.set_ticks(ticks)
            cbar.set_ticklabels([f"{t:.2g}" for t in ticks])
        cbar.ax.tick_params(labelsize=8)
        if label:
            cbar.set_label(label, fontsize=9)
        return cbar

    return colorbar


def plot_brain_map(stat, grid=None, threshold=None, vmax=None, layers=None, cmap="cold_hot",
                   title=None, colorbar=True, n_columns=None, backdrop="dark", vmin=None,
                   symmetric_cbar="auto", colorbar_label=None, figure=None, axes=None,
                   output_file=None, vmax_percentile=VMAX_PERCENTILE):
    """Plot a map over neurons as a mosaic of layer slices (nilearn's ``plot_stat_map``).

    Each layer is the axial slice of the grid's image; its units fill the
    slice row by row from the bottom left (unit ``u`` at ``x = u % nx``,
    ``y = u // nx``). Rows of at most 10 slices are separate nilearn
    z-slicers sharing one colour scale (symmetric for a map of both signs,
    as nilearn's); no MNI background, no left/right or coordinate
    annotations (they mean nothing on this grid).

    To draw a grid image with nilearn itself, pass ``bg_img=None`` (nilearn's
    default background is the MNI152 template, which means nothing here) and
    ``resampling_interpolation="nearest"``, e.g.
    ``nilearn.plotting.plot_stat_map(img, bg_img=None, display_mode="z",
    cut_coords=..., resampling_interpolation="nearest")``: this function does
    so, one z-slice per layer.

    Parameters
    ----------
    stat : Nifti image, path, or array of shape (n_layers, n_units)
        A 3-D map on the grid (e.g. one z-map), or its values per neuron.
    grid : NeuronGrid, optional
        Required for an array; checked against an image.
    threshold : float, optional
        Hide neurons with ``|value| < threshold`` (they show the backdrop).
        None shows every neuron.
    vmax : float, optional
        Top of the colour scale (``[-vmax, vmax]`` when symmetric); default
        the ``vmax_percentile`` percentile of the neurons' non-zero
        ``|values|`` (or values), so that a few outlier neurons do not wash
        out the map; the colour bar label then names the true maximum.
    layers : list of int, optional
        Model layers to show (default all), as in ``grid.layers``.
    cmap : str or Colormap, default "cold_hot"
    title : str, optional
    colorbar : bool, default True
        One colourbar for all slices, the hidden band in grey as in nilearn.
    n_columns : int, optional
        Slices per row; default: rows of at most 10 layers.
    backdrop : {"dark", "light", None}, default "dark"
        Colour of the neuron voxels behind the map (``cold_hot`` reads best
        on dark: its extremes are white). None: no backdrop.
    vmin : float, optional
        Bottom of a non-symmetric scale; default the minimum.
    symmetric_cbar : "auto" or bool, default "auto"
        As nilearn's: ``"auto"`` is symmetric when the map has both signs
        (a z-map), else from the minimum to the maximum.
    colorbar_label : str, optional
    figure : Figure, optional
    axes : Axes or [x, y, width, height], optional
        Region of ``figure`` to fill; an Axes is replaced by the mosaic.
    output_file : str or Path, optional
        Save the figure there and close it; returns None.
    vmax_percentile : float or None, default 99.9
        Percentile of the default ``vmax`` (never below ``threshold``);
        None: the largest absolute value, or the maximum (nilearn's rule).

    Returns
    -------
    display : LayerMosaic or None
        ``display.figure``, ``display.displays`` (the nilearn slicers, one per
        row) and ``display.axes`` (layer -> Axes).
    """
    from nilearn import plotting

    data, grid = stat_to_array(stat, grid)
    threshold = check_number(threshold, "threshold")
    vmin, vmax, symmetric, clipped = robust_color_range(data, vmin, vmax, symmetric_cbar,
                                                        vmax_percentile, threshold)
    colorbar_label = scale_label(colorbar_label, clipped, symmetric, vmax_percentile)
    slots = layer_slots(grid, layers)
    back = check_backdrop(backdrop)
    img = grid.to_img(data.astype(np.float32))
    nilearn_threshold = threshold if threshold else 1e-6  # padding voxels stay hidden

    def draw(fig, rect, cut_coords):
        return plotting.plot_stat_map(
            img, bg_img=None, cut_coords=cut_coords, display_mode="z", colorbar=False,
            figure=fig, axes=rect, threshold=nilearn_threshold, annotate=False,
            draw_cross=False, black_bg=False, cmap=cmap, symmetric_cbar=symmetric,
            vmin=vmin, vmax=vmax, resampling_interpolation="nearest")

    drawer = z_colorbar(cmap, vmin, vmax, threshold, colorbar_label) if colorbar else None
    return _mosaic_figure(draw, grid, slots, figure, axes, n_columns, title, drawer, back,
                          output_file)


def _mosaic_figure(draw, grid, slots, figure, axes, n_columns, title, colorbar, backdrop,
                   output_file):
    _, _, figsize = mosaic_layout(grid, len(slots), n_columns, colorbar is not None, title)
    figure, axes = new_figure(figure, axes, figsize)
    region = (0.0, 0.0, 1.0, 1.0)
    if axes is not None:
        if hasattr(axes, "get_position"):
            region = tuple(axes.get_position().bounds)
            axes.remove()
        else:
            region = tuple(float(v) for v in axes)
            if len(region) != 4:
                raise ValueError(f"'axes' must be an Axes or [x, y, width, height]. "
                                 f"{axes!r} was provided.")
    mosaic = draw_mosaic(draw, grid, slots, figure, region, n_columns, title, colorbar,
                         backdrop)
    return finish(figure, output_file, mosaic)


def plot_flat_map(stat, grid=None, threshold=None, vmax=None, cmap="cold_hot", title=None,
                  colorbar=True, backdrop="dark", vmin=None, symmetric_cbar="auto",
                  colorbar_label=None, figure=None, axes=None, output_file=None,
                  vmax_percentile=VMAX_PERCENTILE):
    """Plot a map over neurons as one flat layer x unit image.

    Layers run up the y axis (first layer at the bottom), units along x; one
    pixel per neuron. Sub-threshold neurons are masked (they show the
    backdrop).

    Parameters
    ----------
    stat : Nifti image, path, or array of shape (n_layers, n_units)
    grid : NeuronGrid, optional
        Required for an array.
    threshold : float, optional
        Mask neurons with ``|value| < threshold``.
    vmax, vmin, symmetric_cbar, colorbar_label, vmax_percentile
        Colour scale, as in :func:`plot_brain_map` (by default the 99.9th
        percentile of ``|values|``, the true maximum named on the colour bar).
    cmap : str or Colormap, default "cold_hot"
    title : str, optional
    colorbar : bool, default True
    backdrop : {"dark", "light", None}, default "dark"
    figure : Figure, optional
    axes : Axes, optional
    output_file : str or Path, optional
        Save the figure there and close it; returns None.

    Returns
    -------
    axes : matplotlib Axes or None
        ``axes.images[0]`` holds the (masked) array of shape (n_layers, n_units).

    Notes
    -----
    A large model has more units per layer than a screen has pixels: save
    with a high ``dpi`` (``figure.savefig(..., dpi=300)``) to see single neurons.
    """
    data, grid = stat_to_array(stat, grid)
    threshold = check_number(threshold, "threshold")
    vmin, vmax, symmetric, clipped = robust_color_range(data, vmin, vmax, symmetric_cbar,
                                                        vmax_percentile, threshold)
    colorbar_label = scale_label(colorbar_label, clipped, symmetric, vmax_percentile)
    back = check_backdrop(backdrop)
    figure, axes = single_axes(figure, axes, (11, 4.5))
    _draw_flat(axes, data, grid, threshold, vmin, vmax, cmap, back, colorbar, colorbar_label)
    if title:
        axes.set_title(title)
    return finish(figure, output_file, axes)


def _draw_flat(axes, data, grid, threshold, vmin, vmax, cmap, backdrop, colorbar, label=None):
    import nilearn.plotting.cm  # noqa: F401  registers nilearn's colour maps ("cold_hot")

    shown = np.ma.masked_where(np.abs(data) < threshold, data) if threshold \
        else np.ma.masked_array(data, mask=np.zeros(data.shape, bool))
    image = axes.imshow(shown, origin="lower", aspect="auto", interpolation="nearest",
                        cmap=cmap, vmin=vmin, vmax=vmax,
                        extent=(-0.5, grid.width - 0.5, -0.5, grid.n_layers - 0.5))
    if backdrop is not None:
        axes.set_facecolor(backdrop)
    positions, labels = layer_ticks(grid.layers)
    axes.set_yticks(positions, labels)
    axes.set_xlabel("unit")
    axes.set_ylabel("layer")
    if colorbar:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        mappable = ScalarMappable(Normalize(vmin, vmax),
                                  thresholded_cmap(cmap, vmin, vmax, threshold))
        cbar = axes.figure.colorbar(mappable, ax=axes, fraction=0.03, pad=0.015)
        if label:
            cbar.set_label(label)
    return image


def network_display(networks, k, threshold="auto"):
    """``(data, threshold)``: what to draw for network ``k``.

    ``"auto"``: the z-map at the threshold that made the networks
    (``networks.params``); when there is none (``top_k``, group templates),
    the z-map restricted to the network's neurons.
    """
    zmap = networks.maps[k].astype(np.float64)
    if threshold != "auto":
        return zmap, check_number(threshold, "threshold")
    params = networks.params
    if params.get("threshold") is not None and params.get("top_k") is None:
        return zmap, float(params["threshold"])
    # nilearn's own convention: |z| < 1e-6 is "no value" (here: not in the network).
    return np.where(networks.masks[k], zmap, 0.0), 1e-6


def plot_network(networks, k, kind="mosaic", threshold="auto", vmax=None, layers=None,
                 cmap="cold_hot", title=None, colorbar=True, backdrop="dark", figure=None,
                 axes=None, output_file=None, vmax_percentile=VMAX_PERCENTILE):
    """Plot one network: its z-map at the network's threshold.

    Parameters
    ----------
    networks : FunctionalNetworks
    k : int
        Network index.
    kind : {"mosaic", "flat", "both"}, default "mosaic"
        Layer slices (:func:`plot_brain_map`), the flat layer x unit map
        (:func:`plot_flat_map`), or both on one figure.
    threshold : "auto", float or None, default "auto"
        ``"auto"``: the threshold of ``networks.params`` (z >= 3.6 by
        default; negative z beyond it shows too, as nilearn draws maps); when
        the networks were not made by a threshold (``top_k``), only the
        network's own neurons are shown.
    vmax, layers, cmap, title, colorbar, backdrop, figure, axes, output_file, vmax_percentile
        As in :func:`plot_brain_map` (``axes`` only for ``"mosaic"`` and
        ``"flat"``). The default title is ``"network k (n neurons)"``; the
        default scale tops out at the 99.9th percentile of ``|z|``.

    Returns
    -------
    LayerMosaic (``"mosaic"``; ``"both"``, with ``flat_axes`` set), Axes (``"flat"``), or None
    """
    from llmfbn._utils import check_choice

    check_networks(networks)
    k = check_network_index(networks, k)
    check_choice(kind, NETWORK_KINDS, "kind")
    data, thr = network_display(networks, k, threshold)
    if title is None:
        title = f"network {k} ({int(networks.sizes[k])} neurons)"
    grid = networks.grid
    common = dict(grid=grid, threshold=thr, vmax=vmax, cmap=cmap, title=title,
                  colorbar=colorbar, backdrop=backdrop, symmetric_cbar=True,
                  colorbar_label="z", vmax_percentile=vmax_percentile)
    if kind == "mosaic":
        return plot_brain_map(data, layers=layers, figure=figure, axes=axes,
                              output_file=output_file, **common)
    if kind == "flat":
        return plot_flat_map(data, figure=figure, axes=axes, output_file=output_file, **common)
    if axes is not None:
        raise ValueError("'axes' cannot hold kind='both' (a mosaic and a flat map): pass "
                         "'figure', or draw each kind on its own axes.")
    vmin, vmax, _, _ = robust_color_range(data, None, vmax, True, vmax_percentile, thr)
    slots = layer_slots(grid, layers)
    _, _, (width, height) = mosaic_layout(grid, len(slots), None, colorbar, title)
    flat_h = 2.6
    figure, _ = new_figure(figure, None, (width, height + flat_h))
    fig_h = figure.get_size_inches()[1]
    frac = min(0.5, flat_h / fig_h)
    mosaic = plot_brain_map(data, layers=layers, figure=figure, axes=[0, frac, 1, 1 - frac],
                            **common)
    flat = figure.add_axes([0.07, 0.55 / fig_h, 0.86, frac - 0.85 / fig_h])
    _draw_flat(flat, data, grid, thr, vmin, vmax, cmap, check_backdrop(backdrop), False)
    mosaic.flat_axes = flat
    return finish(figure, output_file, mosaic)
