"""One run of a recording as a carpet: every neuron over every token (nilearn's ``plot_carpet``)."""

from pathlib import Path

import nibabel as nib
import numpy as np

from llmfbn.io import find_runs, run_name
from llmfbn.plotting._base import check_grid, grid_of_img, layer_ticks, pyplot

__all__ = ["plot_carpet"]

# nilearn decimates runs longer than this many time points (tokens).
_LONG_CUTOFF = 800


def _run_image(recording, grid, run, task):
    """``(img, grid, name)``: the 4-D image of one run and its grid."""
    if isinstance(recording, nib.spatialimages.SpatialImage):
        if grid is None:
            grid = grid_of_img(recording)
        name = None
    else:
        if isinstance(recording, (str, Path)) and Path(recording).is_file():
            recording = [recording]
        paths, found = find_runs(recording, task=task, need_tokens="a carpet plot")
        if grid is not None and not grid.same_layout(found):
            raise ValueError(f"'grid' is {grid!r} but the recording is on {found!r}.")
        grid = found
        if isinstance(run, bool) or not isinstance(run, (int, np.integer)) \
                or not -len(paths) <= run < len(paths):
            raise ValueError(f"'run' must index one of the {len(paths)} runs "
                             f"(0 to {len(paths) - 1}). {run!r} was provided.")
        recording = nib.load(paths[run])
        name = run_name(paths[run])
    check_grid(grid)
    if len(recording.shape) != 4:
        raise ValueError(f"'recording_or_bold' must be a 4-D image (tokens last). An image of "
                         f"shape {recording.shape} was provided.")
    try:
        grid.check_img(recording)
    except ValueError as err:
        raise ValueError(f"'recording_or_bold' is not on 'grid': {err}") from err
    if recording.shape[3] < 2:
        raise ValueError(f"A carpet needs at least 2 tokens. The run has {recording.shape[3]}.")
    return recording, grid, name


def layer_labels_img(grid):
    """Integer image: ``slot + 1`` on each neuron of a layer, 0 on padding voxels."""
    labels = grid.mask().astype(np.int16) * (np.arange(grid.n_layers, dtype=np.int16) + 1)
    img = nib.Nifti1Image(labels, grid.affine)
    img.header.set_data_dtype(np.int16)
    return img


def plot_carpet(recording_or_bold, grid=None, run=0, task=None, layers_as_labels=True,
                detrend=True, vmin=None, vmax=None, cmap="gray", cmap_labels="viridis",
                title=None, figure=None, axes=None, output_file=None):
    """Plot one run as a carpet: neurons (rows, grouped by layer) over tokens (columns).

    nilearn's ``plot_carpet`` on the run's 4-D image with the grid's mask;
    with ``layers_as_labels`` the mask is an atlas of layers, so neurons are
    sorted by layer and a colour strip on the left tells the layers apart.

    Parameters
    ----------
    recording_or_bold : str, Path, list of paths, or 4-D Nifti image
        A recording folder, ``_bold`` image path(s), or an image on ``grid``.
    grid : NeuronGrid, optional
        Needed for an in-memory image; read from the recording otherwise.
    run : int, default 0
        Which run of a folder or list (in (task, run) order).
    task : str, optional
        Only the runs of this task (folders only).
    layers_as_labels : bool, default True
        Group neurons by layer with a labelled colour strip (needs 2 layers
        or more); False: one plain mask.
    detrend : bool, default True
        nilearn's cleaning: remove a linear trend over tokens and z-score
        each neuron (neurons' scales differ by orders of magnitude, so raw
        values show little). False plots raw activations.
    vmin, vmax : float, optional
        Grey scale; default nilearn's (mean +/- 2 standard deviations).
    cmap : default "gray"
    cmap_labels : default "viridis"
        Colours of the layer strip (first layer dark, last bright).
    title : str, optional
        Default: the run's file name.
    figure, axes, output_file
        ``output_file`` saves the figure, closes it and returns None.

    Returns
    -------
    figure : matplotlib Figure or None
        The carpet is ``figure.axes[-1]`` (x: token, y: neurons); with
        layers, ``figure.axes[0]`` is the layer strip.
    """
    from nilearn import plotting

    img, grid, name = _run_image(recording_or_bold, grid, run, task)
    n_tokens = img.shape[3]
    plt = pyplot()
    if axes is not None:
        figure = axes.figure
    elif figure is None:
        figure = plt.figure(figsize=(11, 5))
    if getattr(figure, "number", None) is not None:
        plt.figure(figure.number)  # nilearn's carpet draws its layer strip on the current figure
    with_labels = layers_as_labels and grid.n_layers > 1
    if with_labels:
        mask_img = layer_labels_img(grid)
        mask_labels = {f"layer {layer}": slot + 1 for slot, layer in enumerate(grid.layers)}
    else:
        mask_img, mask_labels = grid.mask_img(), None
    if title is None and name is not None:
        title = name
    import contextlib
    import io
    import warnings

    # nilearn prints "Coercing atlas_values to int" whenever labels are given.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        figure = plotting.plot_carpet(img, mask_img=mask_img, mask_labels=mask_labels, t_r=1.0,
                                      detrend=detrend, figure=figure, axes=axes, vmin=vmin,
                                      vmax=vmax, title=title, cmap=cmap, cmap_labels=cmap_labels)
    carpet = figure.axes[-1]
    decimation = 2 ** int(np.ceil(np.log2(np.ceil(n_tokens / _LONG_CUTOFF))))
    ticks = carpet.get_xticks()
    carpet.set_xticks(ticks, [str(int(round(t * decimation))) for t in ticks])
    carpet.set_xlabel("token")
    if with_labels:
        strip = figure.axes[0]
        values = np.unique(strip.images[0].get_array())
        centers = [float(np.mean(np.flatnonzero(strip.images[0].get_array()[:, 0] == v)))
                   for v in values]
        positions, labels = layer_ticks(grid.layers, max_ticks=10)
        strip.set_yticks([centers[p] for p in positions], labels, fontsize=8)
        strip.set_ylabel("layer")
    else:
        carpet.set_ylabel("neurons")
    if output_file is not None:
        output_file = Path(output_file)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(output_file)
        plt.close(figure)
        return None
    return figure
