"""Which group networks each model expresses: dual regression of the group maps.

After one group decomposition over several models' recordings
(:func:`llmfbn.networks.find_group_runs`), each network is read back in each
model the way fMRI reads a group ICA back in each subject (dual regression,
Beckmann et al. 2009; Nickerson et al. 2017):

- stage 1: the group maps regressed on every token of each run (a least
  squares fit of each token's activity on all maps at once, nilearn's
  ``NiftiMapsMasker``), on the run's neurons z-scored over its tokens as the
  decomposition saw them: one time course per network;
- stage 2: the model's activity regressed on those time courses, over all its
  runs: the model's own map of each network.

Plain dual regression returns the group map from pure noise (stage 1's time
courses are projections of that same data, so regressing the data back on
them reproduces the projection's weights), so stage 2 is cross-fitted here:
the neurons are split in two halves (alternate neurons of each layer), and
each half's map comes from the time courses of the other half's maps. A
model whose neurons do not co-activate along a network then gets a map
unrelated to the group's (``spatial_r`` near 0), and a model that expresses
it gets the group map back on neurons stage 1 never saw.
"""

from dataclasses import dataclass

import numpy as np

from llmfbn._utils import log
from llmfbn.io import run_reduction

__all__ = ["EXPRESSED_MIN_R", "ModelExpression", "model_expression"]

#: ``expressed`` when the cross-fitted spatial correlation reaches this value.
EXPRESSED_MIN_R = 0.5

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class ModelExpression:
    """Which networks each model of a group decomposition expresses.

    Attributes
    ----------
    recordings : list of GroupRecording
        The models' recordings, in fitting order.
    amplitude : float array of shape (n_recordings, n_networks)
        RMS over tokens of each network's stage-1 time course, averaged over
        the recording's runs. The data are z-scored per neuron and the maps
        are z-maps, so amplitudes of one network compare across models;
        a model whose neurons do not co-activate along the map gets about
        the norm of the map's pseudo-inverse column, not 0.
    spatial_r : float array of shape (n_recordings, n_networks)
        Correlation over the grid's neurons between the model's cross-fitted
        stage-2 map and the group map (the mean of the two halves'
        correlations, each half's map computed from the other half's time
        courses). About 0 for a model whose neurons do not co-activate along
        the network, whatever the group map.
    expressed : bool array of shape (n_recordings, n_networks)
        ``spatial_r >= min_r``.
    maps : float32 array of shape (n_recordings, n_networks, n_layers, n_units)
        Each model's own map of each network (cross-fitted stage 2; 0 on
        neurons absent from a pruned grid).
    min_r : float
        The criterion of ``expressed``.
    """

    recordings: list
    amplitude: np.ndarray
    spatial_r: np.ndarray
    expressed: np.ndarray
    maps: np.ndarray
    min_r: float = EXPRESSED_MIN_R

    @property
    def models(self):
        """Each recording's model name ("" when its grid has none)."""
        return [r.model if r.model is not None else "" for r in self.recordings]

    def to_frame(self):
        """One row per recording and network: the ``models.csv`` table.

        Returns
        -------
        pandas.DataFrame
            Columns ``model, recording, network, amplitude, spatial_r,
            expressed`` (:data:`llmfbn.io._networks.MODELS_COLUMNS`).
        """
        import pandas as pd

        rows = [{"model": model, "recording": str(rec.path), "network": k,
                 "amplitude": float(self.amplitude[i, k]),
                 "spatial_r": float(self.spatial_r[i, k]),
                 "expressed": bool(self.expressed[i, k])}
                for i, (model, rec) in enumerate(zip(self.models, self.recordings))
                for k in range(self.amplitude.shape[1])]
        return pd.DataFrame(rows, columns=["model", "recording", "network", "amplitude",
                                           "spatial_r", "expressed"])


def model_expression(networks, recordings, task=None, min_r=EXPRESSED_MIN_R, verbose=0):
    """Which networks each model expresses, by cross-fitted dual regression.

    Parameters
    ----------
    networks : FunctionalNetworks
        Group networks (their z-maps are regressed), on the recordings' grid.
    recordings : list of str or Path, or list of GroupRecording
        The models' recording folders (checked as by
        :func:`~llmfbn.networks.find_group_runs`; token or reduced runs).
    task : str, optional
        Only the runs of this task (folders only).
    min_r : float, default 0.5
        The ``expressed`` criterion: a model expresses a network when the
        cross-fitted correlation of its own map with the group map,
        ``spatial_r``, is at least ``min_r``. Why 0.5: on neurons its time
        courses never saw, the model's map then shares at least a quarter of
        its variance with the group map (r² >= 0.25). A model whose neurons do
        not co-activate along the network gets ``spatial_r`` about 0 (within
        a few ``1 / sqrt(n_neurons)``; cross-fitting removes plain dual
        regression's pull toward the group map), so 0.5 is many standard
        errors above that null on any grid of more than a few dozen neurons,
        while a network co-activating in the model comes back near 1. A
        network of one or two neurons cannot be confirmed this way (a half
        holds none of them) and reads as not expressed.

    Returns
    -------
    ModelExpression

    Notes
    -----
    Token runs are read one at a time, each neuron z-scored over the run's
    tokens (``ddof=1``, as nilearn's ``standardize="zscore_sample"``). A
    reduced run (``llmfbn record --reduce K``) holds ``S Vt`` of that
    z-scored matrix ``Z = U S Vt``, whose Gram matrix approximates ``Z^T Z``;
    dual regression needs only such products, so it runs on the K rows,
    with the amplitude divided by the run's token count.
    """
    from llmfbn.networks._group import GroupRecording, find_group_runs

    if isinstance(min_r, bool) or not isinstance(min_r, (int, float)) \
            or not -1 <= min_r <= 1:
        raise ValueError(f"'min_r' must be a number in [-1, 1]. {min_r!r} was provided.")
    if isinstance(recordings, (list, tuple)) and recordings \
            and all(isinstance(r, GroupRecording) for r in recordings):
        group, grid = list(recordings), None
    else:
        _, grid, group = find_group_runs(recordings, task=task)
    if grid is not None and not grid.same_layout(networks.grid):
        raise ValueError(f"The recordings are on {grid!r}; the networks are on "
                         f"{networks.grid!r}: dual regression needs one grid.")
    return _expression(networks, group, float(min_r), verbose)


def _halves(n_neurons):
    """Alternate neurons (in layer-major order, so each layer splits evenly)."""
    index = np.arange(n_neurons)
    return index[0::2], index[1::2]


def _expression(networks, group, min_r, verbose):
    grid = networks.grid
    n_neurons = grid.n_neurons
    if n_neurons < 4:
        raise ValueError(f"Dual regression needs at least 4 neurons on the grid (two halves "
                         f"of 2). The grid has {n_neurons}.")
    maps = grid.take_present(networks.maps).reshape(len(networks), n_neurons)
    maps = maps.astype(np.float64)
    n_networks = len(maps)
    halves = _halves(n_neurons)
    whole = np.linalg.pinv(maps).astype(np.float32)  # (n_neurons, n_networks)
    parts = [np.linalg.pinv(maps[:, idx]).astype(np.float32) for idx in halves]
    amplitude = np.zeros((len(group), n_networks))
    spatial_r = np.zeros((len(group), n_networks))
    own = np.zeros((len(group), n_networks, grid.n_layers, grid.width), dtype=np.float32)
    for i, recording in enumerate(group):
        log(f"Dual regression: {recording.path} ({len(recording.runs)} runs)", verbose)
        gram = [np.zeros((n_networks, n_networks)) for _ in halves]
        cross = [np.zeros((n_networks, len(halves[1 - h]))) for h in range(2)]
        for path in recording.runs:
            rows, n_tokens = _run_rows(grid, path)
            series = (rows @ whole).astype(np.float64)
            amplitude[i] += np.sqrt((series ** 2).sum(axis=0) / n_tokens)
            for h, (idx, part) in enumerate(zip(halves, parts)):
                courses = rows[:, idx] @ part
                gram[h] += courses.T.astype(np.float64) @ courses
                cross[h] += (courses.T @ rows[:, halves[1 - h]]).astype(np.float64)
        amplitude[i] /= len(recording.runs)
        flat = np.zeros((n_networks, n_neurons))
        for h in range(2):  # half 1-h's map from half h's time courses
            flat[:, halves[1 - h]] = np.linalg.pinv(gram[h]) @ cross[h]
        spatial_r[i] = np.mean([_row_correlation(flat[:, idx], maps[:, idx])
                                for idx in halves], axis=0)
        own[i] = grid.put_present(flat.reshape((n_networks,) + (n_neurons,)))
    return ModelExpression(recordings=list(group), amplitude=amplitude, spatial_r=spatial_r,
                           expressed=spatial_r >= min_r, maps=own, min_r=min_r)


def _row_correlation(a, b):
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (0 if constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a ** 2).sum(axis=1) * (b ** 2).sum(axis=1))
    out = np.zeros(len(a))
    ok = denominator > 0
    out[ok] = (a[ok] * b[ok]).sum(axis=1) / denominator[ok]
    return np.clip(out, -1.0, 1.0)


def _run_rows(grid, path):
    """A run as float32 rows over the grid's neurons, and the tokens they stand for.

    A token run: (n_tokens, n_neurons), each neuron z-scored over the run
    (``ddof=1``; a standard deviation under float64's eps taken as 1, as
    nilearn does). A reduced run: its K rows as recorded (already z-scored
    before the reduction), with the token count of its sidecar.
    """
    data = grid.take_present(grid.from_img(path)).reshape(-1, grid.n_neurons)
    data = np.asarray(data, dtype=np.float32)
    reduction = run_reduction(path)
    if reduction is not None:
        return data, int(reduction["n_tokens"])
    n_tokens = len(data)
    mean = data.mean(axis=0, dtype=np.float64)
    std = data.std(axis=0, ddof=1, dtype=np.float64) if n_tokens > 1 else np.ones(len(mean))
    std[std < _EPS] = 1.0
    data = data - mean.astype(np.float32)
    data /= std.astype(np.float32)
    return data, n_tokens
