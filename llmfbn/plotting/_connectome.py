"""Connectivity matrices between networks (nilearn's ``plot_matrix``)."""

import numpy as np

from llmfbn.plotting._base import (
    check_number,
    finish,
    network_labels,
    new_figure,
    single_axes,
)

__all__ = ["plot_connectivity", "plot_connectivity_comparison"]

# Kinds whose diagonal is 1 (or -1) by construction and carries no information.
_UNIT_DIAGONAL = ("correlation", "partial correlation")


def _as_matrix(connectome, labels, name, diagonal):
    """``(matrix, labels, kind)`` from a Connectome or a square array."""
    from llmfbn.networks import Connectome

    kind = None
    if isinstance(connectome, Connectome):
        matrix, kind = np.array(connectome.mean, dtype=np.float64), connectome.kind
        labels = connectome.labels if labels is None else labels
    else:
        if not isinstance(connectome, (np.ndarray, list, tuple)):
            raise TypeError(f"'{name}' must be a Connectome or a square array. "
                            f"{type(connectome).__name__} was provided.")
        matrix = np.array(connectome, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise ValueError(f"'{name}' must be a square matrix (n_networks, n_networks). "
                         f"An array of shape {matrix.shape} was provided.")
    labels = network_labels(len(matrix), labels)
    if diagonal is None:  # auto: blank a diagonal that says nothing
        diagonal = not (kind in _UNIT_DIAGONAL
                        or (kind is None and np.allclose(np.abs(np.diag(matrix)), 1)))
    if not diagonal:
        np.fill_diagonal(matrix, 0.0)
    return matrix, labels, kind


def _off_diagonal_vmax(matrices):
    values = [np.abs(m[~np.eye(len(m), dtype=bool)]) for m in matrices]
    values = np.concatenate(values) if values else np.zeros(0)
    vmax = float(values.max()) if values.size else 0.0
    if vmax == 0:
        vmax = max(float(np.max(np.abs(np.diag(m)))) for m in matrices)
    return vmax if vmax > 0 else 1.0


def _draw_matrix(axes, matrix, labels, vmax, cmap, title, colorbar, label):
    from nilearn import plotting

    shown = labels if len(labels) <= 40 else None
    plotting.plot_matrix(matrix, labels=shown, axes=axes, colorbar=False, cmap=cmap,
                         vmin=-vmax, vmax=vmax, title=None, auto_fit=False)
    if len(labels) > 40:
        axes.set_xlabel("network")
        axes.set_ylabel("network")
    fontsize = 9 if len(labels) <= 20 else 7
    axes.tick_params(labelsize=fontsize)
    if title:
        axes.set_title(title, fontsize=11)
    if colorbar:
        cbar = axes.figure.colorbar(axes.images[0], ax=axes, fraction=0.046, pad=0.03)
        if label:
            cbar.set_label(label)
    return axes


def plot_connectivity(connectome, labels=None, title=None, vmax=None, cmap="RdBu_r",
                      diagonal=None, colorbar=True, figure=None, axes=None, output_file=None):
    """Plot a connectivity matrix between networks (nilearn's ``plot_matrix``).

    Parameters
    ----------
    connectome : Connectome or array of shape (n_networks, n_networks)
        A :class:`~llmfbn.networks.Connectome` (its group ``mean`` is drawn:
        for ``kind="tangent"`` the geometric mean covariance) or any square
        matrix, e.g. ``connectome.matrices[run]``.
    labels : list of str, optional
        Default the connectome's labels (``net 0``, ...).
    title : str, optional
        Default: the kind and the number of runs of a Connectome.
    vmax : float, optional
        Colour scale ``[-vmax, vmax]``; default the largest absolute
        off-diagonal value.
    cmap : str or Colormap, default "RdBu_r"
    diagonal : bool, optional
        Show the diagonal. Default: hidden (set to 0) for correlations and
        partial correlations, whose diagonal is 1 by construction, shown
        otherwise.
    colorbar : bool, default True
    figure, axes, output_file
        ``output_file`` saves the figure, closes it and returns None.

    Returns
    -------
    axes : matplotlib Axes or None
        ``axes.images[0]`` holds the matrix drawn.
    """
    from llmfbn.networks import Connectome

    matrix, labels, kind = _as_matrix(connectome, labels, "connectome", diagonal)
    vmax = check_number(vmax, "vmax", positive=True) or _off_diagonal_vmax([matrix])
    size = min(10, 2.5 + 0.3 * len(labels))
    figure, axes = single_axes(figure, axes, (size + 1.2, size))
    if title is None and isinstance(connectome, Connectome):
        what = "group mean covariance (tangent reference)" if kind == "tangent" else kind
        title = f"{what} between networks, {connectome.n_runs} runs"
    _draw_matrix(axes, matrix, labels, vmax, cmap, title, colorbar, kind)
    return finish(figure, output_file, axes)


def plot_connectivity_comparison(connectomes, labels=None, title=None, vmax=None,
                                 cmap="RdBu_r", diagonal=None, difference=True, figure=None,
                                 output_file=None):
    """Plot connectivity matrices side by side on one colour scale.

    Parameters
    ----------
    connectomes : dict
        Name (e.g. the task) -> Connectome or square array; all of the same
        size. Drawn in the dict's order.
    labels : list of str, optional
    title : str, optional
        Figure title.
    vmax : float, optional
        Shared scale ``[-vmax, vmax]``; default the largest absolute
        off-diagonal value of all matrices.
    cmap : str or Colormap, default "RdBu_r"
    diagonal : bool, optional
        As in :func:`plot_connectivity`.
    difference : bool, default True
        With exactly two matrices, add a third panel: first minus second,
        on its own symmetric scale.
    figure, output_file
        ``output_file`` saves the figure, closes it and returns None.

    Returns
    -------
    figure : matplotlib Figure or None
        One Axes per matrix (and the difference), in order, then colourbars.
    """
    if not isinstance(connectomes, dict) or not connectomes:
        raise ValueError("'connectomes' must be a non-empty dict of name -> Connectome or "
                         f"matrix. {type(connectomes).__name__} was provided.")
    names = [str(name) for name in connectomes]
    parsed = [_as_matrix(c, labels, f"connectomes[{name!r}]", diagonal)
              for name, c in connectomes.items()]
    sizes = {name: len(m) for name, (m, _, _) in zip(names, parsed)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"'connectomes' must all have the same number of networks. "
                         f"Sizes {sizes} were provided.")
    matrices = [m for m, _, _ in parsed]
    labels = parsed[0][1]
    kinds = {k for _, _, k in parsed if k is not None}
    vmax = check_number(vmax, "vmax", positive=True) or _off_diagonal_vmax(matrices)
    panels = list(zip(names, matrices))
    with_difference = difference and len(matrices) == 2
    n_panels = len(panels) + with_difference
    size = min(6.0, 2.2 + 0.25 * len(labels), 13.6 / n_panels - 0.9)
    figure, _ = new_figure(figure, None, (n_panels * (size + 0.9) + 0.4, size + 0.8),
                           layout="constrained")
    grid_spec = figure.add_gridspec(1, n_panels)
    axes_list = [figure.add_subplot(grid_spec[0, i]) for i in range(n_panels)]
    label = kinds.pop() if len(kinds) == 1 else None
    for i, (name, matrix) in enumerate(panels):
        _draw_matrix(axes_list[i], matrix, labels, vmax, cmap, name, False, None)
        if i:
            axes_list[i].set_yticklabels([])
    cbar = figure.colorbar(axes_list[0].images[0], ax=axes_list[:len(panels)], fraction=0.046,
                           shrink=0.8)
    if label:
        cbar.set_label(label)
    if with_difference:
        diff = matrices[0] - matrices[1]
        dmax = _off_diagonal_vmax([diff])
        ax = axes_list[-1]
        _draw_matrix(ax, diff, labels, dmax, cmap, f"{names[0]} − {names[1]}", False, None)
        ax.set_yticklabels([])
        figure.colorbar(ax.images[0], ax=ax, fraction=0.046, shrink=0.8).set_label("difference")
    if title:
        figure.suptitle(title)
    return finish(figure, output_file, figure)
