"""What a network responds to: its activity over tokens and its top tokens."""

from pathlib import Path

import numpy as np

from llmfbn._utils import check_choice, check_positive_int
from llmfbn.io import check_token_runs, read_events

__all__ = ["network_time_series", "top_tokens"]


def _read_tokens(bold):
    """The run's token strings, or None when it has no events file or no token column."""
    try:
        events = read_events(bold)
    except FileNotFoundError:
        return None
    return events["token"].tolist() if "token" in events.columns else None


def neuron_moments(grid, paths):
    """Mean and standard deviation of every neuron over all tokens of ``paths``.

    Two running sums, one run in memory at a time. Returns two arrays of
    shape (n_neurons,). Reduced runs are refused (they hold no tokens).
    """
    check_token_runs(paths, "neuron moments")
    total = np.zeros(grid.n_neurons)
    squares = np.zeros(grid.n_neurons)
    count = 0
    for p in paths:
        data = grid.take_present(grid.from_img(p)).reshape(-1, grid.n_neurons)
        data = data.astype(np.float64)
        total += data.sum(axis=0)
        squares += (data ** 2).sum(axis=0)
        count += len(data)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    std[std == 0] = 1.0
    return mean, std


def network_time_series(networks, paths, method="mean", moments=None):
    """Each network's activity at every token of each run.

    Parameters
    ----------
    networks : FunctionalNetworks
    paths : list of Path
        ``_bold`` images on ``networks.grid``.
    method : {"mean", "maps"}, default "mean"
        ``"mean"``: mean of the network's neurons, each z-scored over all
        tokens of ``paths``. ``"maps"``: nilearn's ``NiftiMapsMasker`` on the
        z-maps (a least-squares fit of each token on all maps at once).
    moments : (mean, std), optional
        Precomputed :func:`neuron_moments`.

    Returns
    -------
    list of arrays of shape (n_tokens, n_networks), one per run

    Raises
    ------
    ValueError
        When a run is reduced (``llmfbn record --reduce``): it has no tokens.
    """
    check_choice(method, ("mean", "maps"), "method")
    check_token_runs(paths, "network time series")
    grid = networks.grid
    if method == "maps":
        from nilearn.maskers import NiftiMapsMasker

        masker = NiftiMapsMasker(maps_img=networks.maps_img(), mask_img=grid.mask_img(),
                                 standardize="zscore_sample").fit()
        return [masker.transform(str(p)) for p in paths]
    mean, std = neuron_moments(grid, paths) if moments is None else moments
    weights = grid.take_present(networks.masks).T.astype(np.float64)
    weights /= np.maximum(weights.sum(axis=0, keepdims=True), 1)
    series = []
    for p in paths:
        data = grid.take_present(grid.from_img(p)).reshape(-1, grid.n_neurons)
        series.append(((data - mean) / std) @ weights)
    return series


def top_tokens(networks, paths, n_tokens=10, context=6, moments=None, recordings=None):
    """The tokens where each network is most active, with their context.

    Parameters
    ----------
    networks : FunctionalNetworks
    paths : list of Path
        ``_bold`` images with their ``_events.tsv`` beside them.
    n_tokens : int, default 10
    context : int, default 6
        Tokens of left context shown before the top token (right context: 2).
    moments : (mean, std), optional
        Precomputed :func:`neuron_moments` of all ``paths``.
    recordings : list of str, optional
        Runs of several models (a group decomposition): per path, the
        recording it belongs to. Each neuron is then z-scored over its own
        recording's tokens (models differ in scale), the top tokens are taken
        from every recording, and each row names its ``recording``.
        Not with ``moments``.

    Returns
    -------
    list (one per network) of lists of dict
        ``{"run": file name, "onset": token index, "token": str,
        "context": "... left [token] right", "activation": float}``, and
        first ``"recording"`` when ``recordings`` is given,
        strongest first. ``activation`` is the network's mean z-scored activity.
        An empty network (no neuron passed its threshold) has no top tokens: ``[]``.
    """
    check_positive_int(n_tokens, "n_tokens")
    check_token_runs(paths, "top tokens")
    if recordings is None:
        series = network_time_series(networks, paths, moments=moments)
    else:
        series = _series_per_recording(networks, paths, recordings, moments)
    candidates = [[] for _ in range(len(networks))]
    for run, values in enumerate(series):
        for k in range(len(networks)):
            top = np.argsort(values[:, k])[::-1][:n_tokens]
            candidates[k].extend((float(values[t, k]), run, int(t)) for t in top)
    token_cache = {}
    out = []
    empty = networks.sizes == 0
    for k in range(len(networks)):
        best = [] if empty[k] else sorted(candidates[k], reverse=True)[:n_tokens]
        rows = []
        for activation, run, t in best:
            if run not in token_cache:
                token_cache[run] = _read_tokens(paths[run])
            tokens = token_cache[run]
            token = tokens[t] if tokens else "n/a"
            left = "".join(tokens[max(0, t - context):t]) if tokens else ""
            right = "".join(tokens[t + 1:t + 3]) if tokens else ""
            row = {} if recordings is None else {"recording": str(recordings[run])}
            row.update({"run": Path(paths[run]).name, "onset": t, "token": token,
                        "context": f"{left}[{token}]{right}",
                        "activation": round(activation, 3)})
            rows.append(row)
        out.append(rows)
    return out


def _series_per_recording(networks, paths, recordings, moments):
    """:func:`network_time_series` with each recording's runs z-scored over that recording."""
    if moments is not None:
        raise ValueError("'moments' must be None when 'recordings' is given (each "
                         "recording's moments are computed from its own runs).")
    if not isinstance(recordings, (list, tuple)) or len(recordings) != len(paths):
        count = len(recordings) if isinstance(recordings, (list, tuple)) else recordings
        raise ValueError(f"'recordings' must name the recording of each of the {len(paths)} "
                         f"paths. {count!r} was provided.")
    series = [None] * len(paths)
    for label in dict.fromkeys(recordings):
        index = [i for i, other in enumerate(recordings) if other == label]
        for i, values in zip(index, network_time_series(networks, [paths[i] for i in index])):
            series[i] = values
    return series
