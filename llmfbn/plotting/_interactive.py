"""Interactive HTML views of maps over the neuron grid (nilearn's ``view_img``)."""

import re

import numpy as np

from llmfbn.plotting._base import (
    check_network_index,
    check_networks,
    check_number,
    color_range,
    stat_to_array,
)
from llmfbn.plotting._maps import network_display

__all__ = ["view_brain_map", "view_network"]


def view_brain_map(stat, grid=None, threshold=None, vmax=None, cmap="cold_hot", title=None,
                   layer=None, unit=None, black_bg=True, vmin=None, symmetric_cmap="auto",
                   width_view=600, opacity=1.0):
    """Interactive slice viewer of a map over neurons (nilearn's ``view_img``, no background).

    Three orthogonal cuts of the grid's image: the axial cut is one layer
    (its units, ``x = u % nx``, ``y = u // nx``), the two others show a row
    or a column of units across all layers (layer upwards). Click to move;
    the viewer shows the voxel ``(x, y, layer slot)`` and its value. The
    page is self-contained (jQuery and brainsprite are inlined by nilearn,
    images are base64) and works offline; the favicon link nilearn adds
    (to raw.githubusercontent.com) is removed, so the page requests nothing.

    Parameters
    ----------
    stat : Nifti image, path, or array of shape (n_layers, n_units)
    grid : NeuronGrid, optional
        Required for an array.
    threshold : float, optional
        Hide neurons with ``|value| < threshold``; None shows all.
    vmax, vmin : float, optional
        Colour scale; default ``[-vmax, vmax]`` with the largest absolute
        value for a map of both signs (a z-map), else its minimum to maximum.
    symmetric_cmap : "auto" or bool, default "auto"
        As ``symmetric_cbar`` of :func:`plot_brain_map`.
    cmap : default "cold_hot"
    title : str, optional
    layer, unit : int, optional
        Where the cuts start (model layer index and unit); default the
        neuron with the largest absolute value.
    black_bg : bool, default True
        Black viewer canvas (``cold_hot``'s extremes are white, invisible on
        white); the viewer has no brain background either way.
    width_view : int, default 600
        Width of the viewer in pixels.
    opacity : float, default 1.0

    Returns
    -------
    view : nilearn StatMapView
        ``view.save_as_html(path)``, ``view.open_in_browser()``, and it
        displays itself in a notebook (``_repr_html_``).
    """
    from nilearn import plotting

    data, grid = stat_to_array(stat, grid)
    threshold = check_number(threshold, "threshold")
    vmin, vmax, symmetric = color_range(data, vmin, vmax, symmetric_cmap)
    if layer is None and unit is None:
        slot, unit = np.unravel_index(np.argmax(np.abs(data)), data.shape)
    else:
        from llmfbn.plotting._base import layer_slots

        slot = layer_slots(grid, [grid.layers[0] if layer is None else layer], "layer")[0]
        unit = 0 if unit is None else unit
        if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) \
                or not 0 <= unit < grid.width:
            raise ValueError(f"'unit' must be an int in [0, {grid.width}). {unit!r} was "
                             f"provided.")
    i, j, k = grid.voxel_of(int(slot), int(unit))
    cut = grid.affine @ np.array([i, j, k, 1.0])
    img = grid.to_img(data.astype(np.float32))
    view = plotting.view_img(
        img, bg_img=False, cut_coords=tuple(float(c) for c in cut[:3]),
        threshold=threshold if threshold else 1e-6, cmap=cmap, symmetric_cmap=symmetric,
        vmax=vmax, vmin=None if symmetric else vmin, black_bg=bool(black_bg), annotate=True,
        draw_cross=True, show_lr=False,
        resampling_interpolation="nearest", title=title, width_view=width_view,
        opacity=opacity)
    if isinstance(getattr(view, "html", None), str):
        view.html = _FAVICON.sub("", view.html)
    return view


# nilearn's page template links its favicon on GitHub: the only outside request.
_FAVICON = re.compile(r'<link\s+rel="icon"[^>]*>', re.IGNORECASE)


def view_network(networks, k, threshold="auto", vmax=None, cmap="cold_hot", title=None,
                 black_bg=True, width_view=600):
    """Interactive view of network ``k``'s z-map at its threshold (see :func:`plot_network`).

    Returns
    -------
    view : nilearn StatMapView
    """
    check_networks(networks)
    k = check_network_index(networks, k)
    data, thr = network_display(networks, k, threshold)
    if title is None:
        title = f"network {k} ({int(networks.sizes[k])} neurons)"
    return view_brain_map(data, networks.grid, thr, vmax, cmap, title, black_bg=black_bg,
                          symmetric_cmap=True, width_view=width_view)
