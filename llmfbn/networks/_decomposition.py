"""Decompose recordings into functional networks with nilearn's own estimators.

:class:`NetworkDecomposition` composes nilearn's ``CanICA`` (default) or
``DictLearning`` with the settings a neuron grid needs, then z-scores and
thresholds the components into :class:`FunctionalNetworks`. It also offers
the reference paper's orientation, temporal FastICA on the token x neuron
matrix with the mixing columns as maps.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.io import find_runs, write_networks_folder
from llmfbn.networks._networks import DEFAULT_THRESHOLD, FunctionalNetworks, zscore_maps

__all__ = ["NetworkDecomposition", "find_recording_images", "split_half_reproducibility"]

METHODS = ("canica", "dictlearning", "temporal_ica")


def find_recording_images(source, task=None):
    """Resolve a recording folder (or a list of images) to ``(paths, grid)``.

    Every run is checked cheaply first; see :func:`llmfbn.io.find_runs`.

    Parameters
    ----------
    source : str, Path, or list of str/Path
        A recording folder written by :func:`llmfbn.record`, or ``_bold``
        image paths inside recording folders.
    task : str, optional
        Only the runs of this task (folders only).

    Returns
    -------
    paths : list of Path, in (task, run) order
    grid : NeuronGrid
    """
    return find_runs(source, task=task)


class NetworkDecomposition(TransformerMixin, BaseEstimator):
    """Find functional networks of neurons in recorded images.

    Composes nilearn's ``CanICA`` or ``DictLearning`` with grid-correct
    settings: the grid's explicit mask (no intensity masking), no spatial
    smoothing (``smoothing_fwhm=None``: neighbouring voxels are unrelated
    neurons), each neuron's time series standardised, no detrending and no
    thresholding inside nilearn. Each component then becomes a z-map over
    neurons (peak positive) and a network: the neurons with ``z >= threshold``.

    Parameters
    ----------
    method : {"canica", "dictlearning", "temporal_ica"}, default "canica"
        ``"temporal_ica"`` is the reference paper's orientation: FastICA on
        the (tokens x neurons) matrix after a PCA to ``n_components``, with the
        mixing columns as maps. It holds all tokens in memory.
    n_components : int, default 20
    threshold : float, default 3.6
        z threshold of a network (see :func:`threshold_maps`).
    threshold_mode : {"positive", "two_sided"}, default "positive"
    top_k : int, optional
        Keep the ``top_k`` strongest neurons per network instead of thresholding.
    alpha : float, default 10
        Sparsity of ``DictLearning`` (ignored otherwise).
    n_init : int, default 10
        ICA restarts of ``CanICA``.
    task : str, optional
        When fitting a folder, only runs of this task.
    random_state : int or None, default None
    memory : str or joblib.Memory, optional
        Cache of nilearn's intermediate steps.
    n_jobs : int, default 1
    verbose : int, default 0

    Attributes
    ----------
    grid_ : NeuronGrid
    mask_img_ : Nifti1Image
    estimator_ : nilearn CanICA or DictLearning (fitted), or sklearn FastICA
    components_ : array (n_components, n_layers, n_units)
        Raw component maps.
    components_img_ : Nifti1Image
        4-D z-maps on the grid.
    networks_ : FunctionalNetworks
    n_timepoints_ : int
        Tokens seen by the fit.
    """

    def __init__(self, method="canica", n_components=20, threshold=DEFAULT_THRESHOLD,
                 threshold_mode="positive", top_k=None, alpha=10, n_init=10, task=None,
                 random_state=None, memory=None, n_jobs=1, verbose=0):
        self.method = method
        self.n_components = n_components
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.top_k = top_k
        self.alpha = alpha
        self.n_init = n_init
        self.task = task
        self.random_state = random_state
        self.memory = memory
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _nilearn_kwargs(self):
        return dict(mask=self.mask_img_, n_components=self.n_components,
                    smoothing_fwhm=None, standardize="zscore_sample", detrend=False,
                    random_state=self.random_state, memory=self.memory,
                    n_jobs=self.n_jobs, verbose=max(self.verbose - 1, 0))

    def make_nilearn_estimator(self):
        """The nilearn estimator this object wraps, configured for the grid (unfitted)."""
        from nilearn.decomposition import CanICA, DictLearning

        if self.method == "canica":
            return CanICA(threshold=None, n_init=self.n_init, do_cca=True,
                          **self._nilearn_kwargs())
        return DictLearning(alpha=self.alpha, **self._nilearn_kwargs())

    def fit(self, imgs, y=None):
        """Fit on a recording folder or a list of ``_bold`` images.

        Parameters
        ----------
        imgs : str, Path or list
            See :func:`find_recording_images`.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        check_choice(self.method, METHODS, "method")
        check_positive_int(self.n_components, "n_components")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise TypeError(f"'threshold' must be a number. {self.threshold!r} was provided.")
        if not np.isfinite(self.threshold):
            raise ValueError(f"'threshold' must be a finite number. {self.threshold!r} was "
                             f"provided.")
        paths, self.grid_ = find_recording_images(imgs, task=self.task)
        self.mask_img_ = self.grid_.mask_img()
        self.n_timepoints_ = self._count_timepoints(paths)
        if self.n_timepoints_ < 2 * self.n_components:
            raise ValueError(
                f"Too few time points for {self.n_components} components: the "
                f"{len(paths)} runs hold {self.n_timepoints_} tokens; record more text "
                f"or lower 'n_components' (need at least {2 * self.n_components}).")
        log(f"Fitting {self.method} ({self.n_components} components) on {len(paths)} runs, "
            f"{self.n_timepoints_} tokens", self.verbose)
        if self.method == "temporal_ica":
            components = self._fit_temporal_ica(paths)
        else:
            short = [p for p, n in zip(paths, self._run_lengths) if n < self.n_components]
            if self.method == "canica" and short:
                warnings.warn(
                    f"{len(short)} of {len(paths)} runs have fewer tokens than "
                    f"n_components={self.n_components}; CanICA reduces each run to at "
                    f"most its token count. Consider --texts-per-run.", stacklevel=2)
            self.estimator_ = self.make_nilearn_estimator()
            self.estimator_.fit([str(p) for p in paths])
            components = self.estimator_.components_.reshape(len(self.estimator_.components_), -1)
            components = self.grid_.masked_to_neurons(components)
        self.components_ = components.astype(np.float32)
        maps = zscore_maps(self.components_)
        self.components_img_ = self.grid_.to_img(maps)
        params = {"method": self.method, "n_components": self.n_components,
                  "random_state": self.random_state, "alpha": self.alpha,
                  "n_runs": len(paths), "n_timepoints": self.n_timepoints_,
                  "model": self.grid_.model, "signal": self.grid_.signal}
        self.networks_ = FunctionalNetworks.from_maps(
            maps, self.grid_, threshold=self.threshold, mode=self.threshold_mode,
            top_k=self.top_k, params=params)
        empty = np.flatnonzero(self.networks_.sizes == 0)
        if len(empty):
            warnings.warn(f"Threshold {self.threshold} selects no neuron in networks "
                          f"{empty.tolist()}; they are kept empty.", stacklevel=2)
        self.run_paths_ = paths
        return self

    def _count_timepoints(self, paths):
        import nibabel as nib

        self._run_lengths = []
        for p in paths:
            img = nib.load(p)
            self.grid_.check_img(img)
            data = np.asanyarray(img.dataobj)
            if not np.isfinite(data).all():
                raise ValueError(f"{p.name} holds {int(np.sum(~np.isfinite(data)))} "
                                 f"non-finite values (NaN or inf); re-record it.")
            self._run_lengths.append(img.shape[3] if len(img.shape) == 4 else 1)
        return int(sum(self._run_lengths))

    def _fit_temporal_ica(self, paths):
        from sklearn.decomposition import FastICA
        from sklearn.utils.extmath import randomized_svd

        data = np.concatenate([_standardized(self.grid_, p) for p in paths])
        _, _, vt = randomized_svd(data, self.n_components, random_state=self.random_state)
        reduced = data @ vt.T  # (tokens, k)
        self.estimator_ = FastICA(n_components=self.n_components, whiten="unit-variance",
                                  random_state=self.random_state, max_iter=1000)
        self.estimator_.fit(reduced)
        maps = (vt.T @ self.estimator_.mixing_).T  # (k, neurons)
        return maps.reshape((self.n_components,) + (self.grid_.n_layers, self.grid_.width))

    def transform(self, imgs):
        """Network time series of each run: a list of (n_tokens, n_components) arrays.

        For CanICA / DictLearning this is nilearn's own ``transform`` (least
        squares of each token on the component maps).
        """
        check_is_fitted(self, "networks_")
        paths, grid = find_recording_images(imgs)
        if not grid.same_layout(self.grid_):
            raise ValueError(f"The images are on {grid!r}; the fit was on {self.grid_!r}.")
        if self.method == "temporal_ica":
            pinv = np.linalg.pinv(self.components_.reshape(len(self.components_), -1))
            return [_standardized(self.grid_, p) @ pinv for p in paths]
        return self.estimator_.transform([str(p) for p in paths])

    def save(self, out_dir, overwrite=False):
        """Write the networks folder, the estimator's parameters and its runs included.

        Everything (``params.json`` too) is built in one staging folder and
        swapped in at once (see :func:`llmfbn.io.write_networks_folder`).

        Parameters
        ----------
        out_dir : str or Path
        overwrite : bool, default False
            Replace an existing networks folder (never a folder of another kind).

        Returns
        -------
        Path
        """
        check_is_fitted(self, "networks_")
        params = self.get_params()
        params["memory"] = None if params["memory"] is None else str(params["memory"])
        nets = self.networks_
        return write_networks_folder(out_dir, nets.maps, nets.masks, nets.grid, nets.params,
                                     nets.top_tokens, estimator=type(self).__name__,
                                     estimator_params=params, runs=self.run_paths_,
                                     overwrite=overwrite)


def _standardized(grid, path):
    """(n_tokens, n_neurons) of one run, each neuron z-scored over tokens."""
    data = grid.from_img(path).reshape(-1, grid.n_neurons).astype(np.float64)
    std = data.std(axis=0)
    std[std == 0] = 1
    return (data - data.mean(axis=0)) / std


def split_half_reproducibility(recording, n_splits=1, n_draws=100, random_state=None,
                               **estimator_params):
    """Split-half reproducibility of a whole recording folder.

    The runs are split at random into two disjoint halves; a
    :class:`NetworkDecomposition` (``estimator_params``) is fitted on each and
    the networks are matched by IoU and spatial correlation against
    size-matched nulls (see :func:`llmfbn.networks.split_half`).

    Returns
    -------
    list of SplitHalf, one per split
    """
    from llmfbn.networks._consistency import split_half

    paths, _ = find_recording_images(recording, task=estimator_params.pop("task", None))

    def fit(runs):
        est = NetworkDecomposition(random_state=random_state, **estimator_params).fit(list(runs))
        return est.networks_.masks, est.networks_.maps

    return split_half(fit, paths, n_splits=n_splits, n_draws=n_draws, random_state=random_state)
