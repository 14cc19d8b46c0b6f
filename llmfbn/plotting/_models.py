"""Which group networks each model expresses: a models x networks heatmap."""

import numpy as np

from llmfbn._utils import check_choice
from llmfbn.plotting._base import finish, network_labels, single_axes

__all__ = ["plot_model_expression"]

EXPRESSION_VALUES = ("spatial_r", "amplitude")
_COLUMNS = ("model", "recording", "network", "amplitude", "spatial_r", "expressed")


def _table(expression):
    """``(values by name, row labels, n_networks)`` from a ModelExpression or a models table."""
    import pandas as pd

    from llmfbn.networks import ModelExpression

    if isinstance(expression, ModelExpression):
        frame = expression.to_frame()
    elif isinstance(expression, pd.DataFrame):
        missing = [c for c in _COLUMNS if c not in expression.columns]
        if missing:
            raise ValueError(f"'expression' must have the columns of models.csv {list(_COLUMNS)}"
                             f". It lacks {missing}.")
        frame = expression
    else:
        raise TypeError(f"'expression' must be a ModelExpression or the models table of a "
                        f"networks folder (llmfbn.io.read_networks_folder(path).models). "
                        f"{type(expression).__name__} was provided.")
    if frame.empty:
        raise ValueError("'expression' must hold at least one row. An empty table was provided.")
    recordings = list(dict.fromkeys(frame["recording"].astype(str)))
    networks = sorted(set(int(k) for k in frame["network"]))
    if networks != list(range(len(networks))) or len(frame) != len(recordings) * len(networks):
        raise ValueError(f"'expression' must hold one row per recording and network (networks "
                         f"0 to n-1). {len(frame)} rows over {len(recordings)} recordings and "
                         f"networks {networks[:8]} were provided.")
    row = {r: i for i, r in enumerate(recordings)}
    values = {name: np.zeros((len(recordings), len(networks)))
              for name in ("amplitude", "spatial_r", "expressed")}
    models = [""] * len(recordings)
    for record in frame.to_dict("records"):
        i, k = row[str(record["recording"])], int(record["network"])
        for name in values:
            values[name][i, k] = float(record[name])
        models[i] = str(record["model"])
    repeated = {m for m in models if models.count(m) > 1 or not m}
    labels = [f"{m} ({r})" if m in repeated else m for m, r in zip(models, recordings)]
    return values, labels, len(networks)


def plot_model_expression(expression, values="spatial_r", cmap=None, vmin=None, vmax=None,
                          title=None, annotate=None, colorbar=True, figure=None, axes=None,
                          output_file=None):
    """Plot which networks each model expresses: models (rows) x networks (columns).

    Parameters
    ----------
    expression : ModelExpression or pandas.DataFrame
        From :func:`llmfbn.networks.model_expression` (``expression_`` of a
        :class:`~llmfbn.networks.NetworkDecomposition` fitted on several
        recordings), or a networks folder's models table
        (``llmfbn.io.read_networks_folder(path).models``, ``models.csv``).
    values : {"spatial_r", "amplitude"}, default "spatial_r"
        The colour: the cross-fitted spatial correlation of each model's own
        map with the group map, or the stage-1 amplitude.
    cmap : str or Colormap, optional
        Default ``"RdBu_r"`` (``spatial_r``, on [-1, 1]) or ``"viridis"``
        (``amplitude``, from 0).
    vmin, vmax : float, optional
        Default [-1, 1] (``spatial_r``) or [0, the largest amplitude].
    title : str, optional
    annotate : bool, optional
        Write each cell's value (default: when at most 400 cells).
    colorbar : bool, default True
    figure, axes, output_file
        As everywhere; ``output_file`` saves, closes and returns None.

    Returns
    -------
    axes : matplotlib Axes or None
        ``axes.images[0]`` holds the (n_models, n_networks) values; the
        expressed cells are outlined (``axes.patches``, one rectangle each).
    """
    from matplotlib.patches import Rectangle

    check_choice(values, EXPRESSION_VALUES, "values")
    if annotate is not None and not isinstance(annotate, (bool, np.bool_)):
        raise TypeError(f"'annotate' must be a bool or None. {annotate!r} was provided.")
    table, labels, n_networks = _table(expression)
    data, expressed = table[values], table["expressed"].astype(bool)
    if values == "spatial_r":
        cmap = cmap or "RdBu_r"
        vmin, vmax = (-1.0 if vmin is None else vmin), (1.0 if vmax is None else vmax)
        label = "spatial r with the group map"
    else:
        cmap = cmap or "viridis"
        vmin = 0.0 if vmin is None else vmin
        vmax = (float(data.max()) or 1.0) if vmax is None else vmax
        label = "amplitude (RMS)"
    n_models = len(labels)
    size = (min(14.0, 3.0 + 0.45 * n_networks), min(9.0, max(3.0, 1.6 + 0.45 * n_models)))
    figure, axes = single_axes(figure, axes, size)
    image = axes.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin,
                        vmax=vmax)
    for i, k in zip(*np.nonzero(expressed)):
        axes.add_patch(Rectangle((k - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black",
                                 linewidth=1.6))
    step = max(1, int(np.ceil(n_networks / 40)))
    axes.set_xticks(range(0, n_networks, step), network_labels(n_networks)[::step],
                    rotation=90 if n_networks > 12 else 0)
    axes.set_yticks(range(n_models), labels)
    axes.set_xlabel("network (outlined: expressed)")
    if annotate is None:
        annotate = data.size <= 400
    if annotate:
        for (i, k), value in np.ndenumerate(data):
            # white on the cells the colour map draws dark
            if values == "spatial_r":
                dark = abs(value) > 0.6 * max(abs(vmin), abs(vmax))
            else:
                dark = value < (vmin + vmax) / 2
            axes.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if dark else "black")
    if colorbar:
        axes.figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, label=label)
    if title is None:
        title = "Which networks each model expresses"
    if title:
        axes.set_title(title)
    return finish(figure, output_file, axes)
