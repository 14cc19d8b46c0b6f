"""Shared helpers of the plotting module: input checks, colour scales, layout, saving."""

from pathlib import Path

import nibabel as nib
import numpy as np

from llmfbn.grid import NeuronGrid

#: Colour of the neuron voxels of a slice (the "backdrop") behind a map.
BACKDROPS = {"dark": "0.16", "light": "0.91", None: None}
#: nilearn's colour for the sub-threshold part of a colourbar.
THRESHOLD_GREY = (0.5, 0.5, 0.5, 1.0)


def pyplot():
    """matplotlib.pyplot, imported lazily (the backend is the user's choice)."""
    import matplotlib.pyplot as plt

    return plt


def check_grid(grid, name="grid"):
    if not isinstance(grid, NeuronGrid):
        raise TypeError(f"'{name}' must be a NeuronGrid. {type(grid).__name__} was provided.")
    return grid


def check_networks(networks, name="networks"):
    from llmfbn.networks import FunctionalNetworks

    if not isinstance(networks, FunctionalNetworks):
        raise TypeError(f"'{name}' must be a FunctionalNetworks. "
                        f"{type(networks).__name__} was provided.")
    return networks


def check_network_index(networks, k, name="k"):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < len(networks):
        raise ValueError(f"'{name}' must be a network index in [0, {len(networks)}). "
                         f"{k!r} was provided.")
    return int(k)


def check_number(value, name, allow_none=True, positive=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"'{name}' must be a number. {value!r} was provided.")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"'{name}' must be a {'positive' if positive else 'non-negative'} "
                         f"finite number. {value} was provided.")
    return value


def check_backdrop(backdrop):
    if backdrop not in BACKDROPS:
        raise ValueError(f"'backdrop' must be one of {tuple(BACKDROPS)}. "
                         f"{backdrop!r} was provided.")
    return BACKDROPS[backdrop]


def grid_of_img(img):
    """The grid of an image written without its sidecar: one slice per layer, no padding."""
    nx, ny, nz = img.shape[:3]
    grid = NeuronGrid(nz, nx * ny, affine=img.affine)
    if grid.shape != (nx, ny, nz):
        raise ValueError(
            f"Cannot tell the neuron layout of an image of shape {img.shape[:3]} alone: "
            f"pass 'grid' (the recording's NeuronGrid, e.g. llmfbn.io.read_grid(folder)).")
    return grid


def load_img(img, name):
    if isinstance(img, (str, Path)):
        if not Path(img).exists():
            raise FileNotFoundError(f"'{name}': {img} does not exist.")
        return nib.load(img)
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    raise TypeError(f"'{name}' must be a Nifti image, a path or an array. "
                    f"{type(img).__name__} was provided.")


def stat_to_array(stat, grid=None, name="stat"):
    """``(data, grid)``: a map as an array of shape (n_layers, n_units) and its grid.

    ``stat`` is a 3-D image on the grid (or a 4-D image holding one volume), a
    path to one, or an array of shape (n_layers, n_units) with ``grid`` given.
    """
    if grid is not None:
        check_grid(grid)
    if isinstance(stat, np.ndarray) or isinstance(stat, (list, tuple)):
        data = np.asarray(stat, dtype=np.float64)
        if grid is None:
            raise ValueError(f"'grid' must be given when '{name}' is an array "
                             f"(shape {data.shape}); it places the neurons on the image.")
        expected = (grid.n_layers, grid.width)
        if data.shape != expected:
            raise ValueError(f"'{name}' must have shape (n_layers, n_units) = {expected} for "
                             f"{grid!r}. An array of shape {data.shape} was provided.")
    else:
        img = load_img(stat, name)
        if len(img.shape) == 4 and img.shape[3] == 1:
            img = nib.Nifti1Image(np.asanyarray(img.dataobj)[..., 0], img.affine)
        if len(img.shape) != 3:
            raise ValueError(f"'{name}' must be a 3-D image (one map). An image of shape "
                             f"{img.shape} was provided.")
        grid = grid_of_img(img) if grid is None else grid
        try:
            grid.check_img(img)
        except ValueError as err:
            raise ValueError(f"'{name}' is not on 'grid': {err}") from err
        data = grid.from_img(img).astype(np.float64)
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    # Maps are drawn from float32 images: compute colour ranges on the same values.
    return data.astype(np.float32).astype(np.float64), grid


def color_range(data, vmin=None, vmax=None, symmetric="auto"):
    """``(vmin, vmax, symmetric)`` of a colour scale, by nilearn's rule.

    ``symmetric="auto"``: symmetric (``[-vmax, vmax]``) when the data hold
    both signs (or when ``vmin == -vmax`` are both given), else from the
    data's minimum to its maximum. Given ``vmin`` / ``vmax`` are kept.
    """
    for value, name in ((vmin, "vmin"), (vmax, "vmax")):
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, float, np.number))
                                  or not np.isfinite(value)):
            raise ValueError(f"'{name}' must be a finite number. {value!r} was provided.")
    if symmetric not in ("auto", True, False):
        raise ValueError(f"'symmetric_cbar' must be one of ('auto', True, False). "
                         f"{symmetric!r} was provided.")
    data = np.asarray(data, dtype=np.float64)
    low = float(np.min(data)) if data.size else 0.0
    high = float(np.max(data)) if data.size else 0.0
    if symmetric == "auto":
        if vmin is None or vmax is None:
            symmetric = low < 0 < high
        else:
            symmetric = bool(np.isclose(vmin, -vmax))
    if symmetric:
        if vmax is not None:
            vmax = check_number(vmax, "vmax", positive=True)
        elif vmin is not None and vmin < 0:
            vmax = -float(vmin)
        else:
            vmax = max(abs(low), abs(high)) or 1.0  # an all-zero map still gets a scale
        if vmin is not None and not np.isclose(vmin, -vmax):
            raise ValueError(f"'vmin' must be -vmax ({-vmax:g}) for a symmetric colour scale. "
                             f"{vmin} was provided.")
        return -vmax, vmax, True
    vmin = low if vmin is None else float(vmin)
    vmax = high if vmax is None else float(vmax)
    if vmax <= vmin:
        if vmax < vmin:
            raise ValueError(f"'vmax' must be greater than 'vmin'. vmin={vmin:g}, "
                             f"vmax={vmax:g} were provided.")
        vmax = vmin + 1.0
    return vmin, vmax, False


#: Default colour scale of the map plots: this percentile of the neurons' |values|, so a
#: few huge outlier neurons (SmolLM2 has some hundred times the typical z) do not
#: wash the rest of the map out; the colour bar names the true extreme.
VMAX_PERCENTILE = 99.9


def robust_color_range(data, vmin=None, vmax=None, symmetric="auto", percentile=VMAX_PERCENTILE,
                       threshold=None):
    """:func:`color_range` with the top of the scale at a percentile of the data.

    Parameters
    ----------
    data : array
        The values drawn, e.g. shape (n_layers, n_units).
    vmin, vmax, symmetric
        As in :func:`color_range`; a given ``vmax`` (or ``vmin``) is kept.
    percentile : float or None, default 99.9
        With ``vmax`` None, the scale's top is this percentile of the non-zero
        ``|data|`` (symmetric) or of the non-zero data (else; the bottom stays
        the minimum), never below ``threshold`` nor above the true extreme.
        None: the true extreme (nilearn's rule).
    threshold : float, optional
        The display threshold: the scale never tops out below it.

    Returns
    -------
    vmin, vmax : float
    symmetric : bool
    clipped : float or None
        The data's true extreme (``max |data|`` when symmetric, else the
        maximum) when the scale stops short of it, else None.
    """
    if percentile is not None and (isinstance(percentile, bool)
                                   or not isinstance(percentile, (int, float, np.number))
                                   or not 0 < percentile <= 100):
        raise ValueError(f"'vmax_percentile' must lie in (0, 100] or be None. {percentile!r} "
                         f"was provided.")
    vmin, vmax_full, symmetric = color_range(data, vmin, vmax, symmetric)
    if vmax is not None or percentile is None:
        return vmin, vmax_full, symmetric, None
    values = np.asarray(data, dtype=np.float64)
    values = values[np.isfinite(values) & (values != 0)]
    if not values.size:
        return vmin, vmax_full, symmetric, None
    floor = abs(float(threshold)) if threshold else 0.0
    if symmetric:
        top = min(max(float(np.percentile(np.abs(values), percentile)), floor), vmax_full)
        if top <= 0:
            return vmin, vmax_full, symmetric, None
        clipped = vmax_full if top < vmax_full * (1 - 1e-9) else None
        return -top, top, True, clipped
    top = min(max(float(np.percentile(values, percentile)), floor), vmax_full)
    if top <= vmin:
        return vmin, vmax_full, symmetric, None
    clipped = vmax_full if top < vmax_full * (1 - 1e-9) else None
    return vmin, top, False, clipped


def scale_label(label, clipped, symmetric, percentile=VMAX_PERCENTILE):
    """A colour bar label naming the true extreme that a percentile scale clips."""
    if clipped is None:
        return label
    what = "|value|" if symmetric else "value"
    note = f"to {percentile:g}th percentile; max {what} {clipped:.3g}"
    return f"{label} ({note})" if label else note


def thresholded_cmap(cmap, vmin, vmax, threshold, n=256):
    """``cmap`` with the colours of ``|value| < threshold`` replaced by nilearn's grey."""
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    cmap = plt.get_cmap(cmap)
    if not threshold:
        return cmap
    values = np.linspace(vmin, vmax, n)
    colors = cmap(np.linspace(0, 1, n))
    colors[np.abs(values) < threshold] = THRESHOLD_GREY
    return ListedColormap(colors, name=f"{cmap.name}_thresholded")


def new_figure(figure, axes, figsize, layout=None):
    """``(figure, axes)``: the figure to draw on (``axes``'s, the given one, or a new one)."""
    plt = pyplot()
    if axes is not None and hasattr(axes, "figure"):
        return axes.figure, axes
    if figure is None:
        figure = plt.figure(figsize=figsize, layout=layout)
    elif isinstance(figure, (int, str)):
        figure = plt.figure(figure, figsize=figsize, layout=layout)
    elif not hasattr(figure, "add_axes"):
        raise TypeError(f"'figure' must be a matplotlib Figure, a figure number or None. "
                        f"{type(figure).__name__} was provided.")
    return figure, axes


def single_axes(figure, axes, figsize):
    """``(figure, axes)`` for a one-panel plot: ``axes`` if given, else a new subplot.

    A figure made here uses matplotlib's constrained layout (labels, colourbar
    and legend fit without overlap).
    """
    figure, axes = new_figure(figure, axes, figsize, layout="constrained")
    if axes is None:
        axes = figure.add_subplot(1, 1, 1)
    elif not hasattr(axes, "figure"):
        axes = figure.add_axes(axes)
    return figure, axes


def finish(figure, output_file, result):
    """Save and close the figure when ``output_file`` is given (returning None), else return."""
    if output_file is None:
        return result
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_file)
    pyplot().close(figure)
    return None


def layer_slots(grid, layers, name="layers"):
    """Slots (slice indices) of the model layers ``layers`` (default all)."""
    if layers is None:
        return list(range(grid.n_layers))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    slots = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or int(layer) not in grid.layers:
            raise ValueError(f"'{name}' must hold layers of the grid "
                             f"({grid.layers[0]} to {grid.layers[-1]}). "
                             f"{list(layers)!r} was provided.")
        slots.append(grid.layers.index(int(layer)))
    if not slots:
        raise ValueError(f"'{name}' must name at least one layer. [] was provided.")
    return slots


def layer_ticks(layers, max_ticks=12):
    """Positions and labels of at most ``max_ticks`` evenly spread layer ticks."""
    step = max(1, int(np.ceil(len(layers) / max_ticks)))
    positions = list(range(0, len(layers), step))
    return positions, [str(layers[p]) for p in positions]


def network_labels(n, labels=None, name="labels"):
    if labels is None:
        return [f"net {k}" for k in range(n)]
    labels = [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"'{name}' must hold {n} labels. {len(labels)} were provided.")
    return labels
