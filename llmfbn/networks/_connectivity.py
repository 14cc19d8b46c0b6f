"""Connectivity between networks: how their activities co-vary over tokens.

Each run of a recording is one "subject" for nilearn's ``ConnectivityMeasure``:
its tokens are the time points and the networks' activities
(:func:`~llmfbn.networks.network_time_series`) are the regions' signals.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmfbn._utils import check_choice

__all__ = ["CONNECTIVITY_KINDS", "Connectome", "network_connectivity"]

CONNECTIVITY_KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")
# Kinds estimated from an inverse covariance, or relative to a group mean.
_NEEDS_FULL_RANK = ("partial correlation", "tangent", "precision")


@dataclass
class Connectome:
    """Connectivity matrices between networks, one per run.

    Attributes
    ----------
    matrices : float array of shape (n_runs, n_networks, n_networks)
        One matrix per run (nilearn's ``ConnectivityMeasure.fit_transform``).
    mean : float array of shape (n_networks, n_networks)
        nilearn's group mean ``mean_``: the mean of the runs' matrices, or,
        for ``kind="tangent"``, the geometric mean of their covariances (the
        reference point of the tangent space).
    kind : str
    labels : list of str
        ``["net 0", "net 1", ...]``.
    n_runs : int
    n_tokens : list of int
        Tokens of each run.
    runs : list of str
        File name of each run.
    estimator : nilearn.connectome.ConnectivityMeasure
        The fitted nilearn object.
    """

    matrices: np.ndarray
    mean: np.ndarray
    kind: str
    labels: list
    n_runs: int
    n_tokens: list
    runs: list = field(default_factory=list)
    estimator: object = field(default=None, repr=False)

    @property
    def n_networks(self):
        return len(self.labels)


def _check_same_grid(networks, grid):
    ours = networks.grid
    same = ours.same_layout(grid)
    for attribute in ("model", "signal"):
        a, b = getattr(ours, attribute), getattr(grid, attribute)
        same = same and (a is None or b is None or a == b)
    if not same:
        raise ValueError(f"The recording is on {grid!r} but the networks are on {ours!r}: "
                         f"connectivity needs a recording of the same model, signal and grid.")


def network_connectivity(networks, recording, kind="correlation", method="mean", task=None,
                         cov_estimator="auto"):
    """Connectivity between networks over the tokens of each run.

    nilearn's ``ConnectivityMeasure``, one run = one subject.

    Parameters
    ----------
    networks : FunctionalNetworks
    recording : str, Path, or list of str/Path
        A recording folder (from ``llmfbn record``) or ``_bold`` image paths,
        on the networks' grid. Each run is one "subject".
    kind : {"correlation", "partial correlation", "tangent", "covariance", "precision"}, \
default "correlation"
        As in nilearn. ``"tangent"`` needs at least 2 runs.
    method : {"mean", "maps"}, default "mean"
        How a network's activity is read at each token (see
        :func:`~llmfbn.networks.network_time_series`).
    task : str, optional
        Only the runs of this task (folders only).
    cov_estimator : "auto", None or sklearn covariance estimator, default "auto"
        ``"auto"``: the empirical covariance for ``"correlation"`` and
        ``"covariance"`` (plain Pearson correlations, as ``np.corrcoef`` of
        the network time series), and nilearn's default, Ledoit-Wolf
        shrinkage, for the kinds that invert covariances or compare them
        with a group mean (``"partial correlation"``, ``"precision"``,
        ``"tangent"``). None: nilearn's default (Ledoit-Wolf) for every
        kind; note that shrinkage pulls correlations towards 0 (by a fifth
        for 5 networks over 80 tokens).

    Returns
    -------
    connectome : Connectome

    Raises
    ------
    ValueError
        When the recording is on another grid, a network is empty, or a run
        has too few tokens: at least 3, and more tokens than networks for
        ``"partial correlation"``, ``"precision"`` and ``"tangent"``.
    """
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    from llmfbn.io import find_runs
    from llmfbn.networks._networks import FunctionalNetworks
    from llmfbn.networks._timeseries import network_time_series

    if not isinstance(networks, FunctionalNetworks):
        raise TypeError(f"'networks' must be a FunctionalNetworks. "
                        f"{type(networks).__name__} was provided.")
    check_choice(kind, CONNECTIVITY_KINDS, "kind")
    check_choice(method, ("mean", "maps"), "method")
    if len(networks) < 2:
        raise ValueError(f"'networks' must hold at least 2 networks for a connectivity matrix. "
                         f"{len(networks)} was provided.")
    empty = [int(k) for k in np.flatnonzero(networks.sizes == 0)]
    if empty and method == "mean":
        raise ValueError(f"Networks {empty} are empty (no neuron above threshold): their "
                         f"activity is undefined. Drop them with networks.subset(...).")
    if isinstance(recording, (str, Path)) and Path(recording).is_file():
        recording = [recording]
    paths, grid = find_runs(recording, task=task, need_tokens="network connectivity")
    _check_same_grid(networks, grid)
    n_networks = len(networks)
    series = network_time_series(networks, paths, method=method)
    n_tokens = [len(s) for s in series]
    minimum = max(3, n_networks + 1) if kind in _NEEDS_FULL_RANK else 3
    short = [(Path(p).name, n) for p, n in zip(paths, n_tokens) if n < minimum]
    if short:
        name, n = short[0]
        raise ValueError(
            f"Run {name} has {n} tokens, but kind={kind!r} with {n_networks} networks needs "
            f"at least {minimum} tokens per run ({len(short)} of {len(paths)} runs are "
            f"shorter). Record longer runs (--texts-per-run) or choose other runs.")
    if kind == "tangent" and len(series) < 2:
        raise ValueError(f"kind='tangent' compares runs with their group mean: it needs at "
                         f"least 2 runs. {len(series)} was provided.")
    constant = [(Path(p).name, k) for p, s in zip(paths, series)
                for k in np.flatnonzero(np.ptp(s, axis=0) == 0)]
    if constant:
        name, k = constant[0]
        raise ValueError(f"Network {k} is constant over run {name}: its correlations are "
                         f"undefined. Drop the network or the run.")
    if isinstance(cov_estimator, str):
        check_choice(cov_estimator, ("auto",), "cov_estimator")
        cov_estimator = None if kind in _NEEDS_FULL_RANK else EmpiricalCovariance()
    measure = ConnectivityMeasure(kind=kind, cov_estimator=cov_estimator)
    matrices = measure.fit_transform([np.asarray(s, dtype=np.float64) for s in series])
    return Connectome(matrices=np.asarray(matrices), mean=np.asarray(measure.mean_),
                      kind=kind, labels=[f"net {k}" for k in range(n_networks)],
                      n_runs=len(series), n_tokens=n_tokens,
                      runs=[Path(p).name for p in paths], estimator=measure)
