"""Decompose recordings into functional networks with nilearn's own estimators.

:class:`NetworkDecomposition` composes nilearn's ``CanICA`` (default) or
``DictLearning`` with the settings a neuron grid needs, then z-scores and
thresholds the components into :class:`FunctionalNetworks`. It also offers
the reference paper's orientation, temporal FastICA on the token x neuron
matrix with the mixing columns as maps.
"""

import functools
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.cluster import check_scheduler, connect, require_distributed
from llmfbn.io import check_token_runs, find_runs, run_reduction, write_networks_folder
from llmfbn.networks._expression import EXPRESSED_MIN_R, model_expression
from llmfbn.networks._group import GroupRecording, find_group_runs, is_recording_list
from llmfbn.networks._group_pca import (
    MIGP,
    MIGP_ROWS_PER_COMPONENT,
    default_memory_budget,
    fit_group_estimator,
    nilearn_peak_bytes,
    parse_memory_size,
    reduce_token_run,
    reduce_token_runs,
    reduced_run_rows,
)
from llmfbn.networks._networks import DEFAULT_THRESHOLD, FunctionalNetworks, zscore_maps
from llmfbn.networks._ordered import map_in_order

__all__ = ["NetworkDecomposition", "find_recording_images", "split_half_reproducibility"]

METHODS = ("canica", "dictlearning", "temporal_ica")
GROUP_PCA = ("auto", "nilearn", "migp")


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
    group_pca : {"auto", "nilearn", "migp"}, default "auto"
        How CanICA's group PCA holds the runs. ``"nilearn"``: nilearn's own
        ``fit``, every run reduced to ``n_components`` rows and all stacked in
        RAM (memory grows with the runs). ``"migp"``: the same per-run rows
        streamed through a running group PCA of ``migp_rows`` rows (MELODIC's
        MIGP, see :class:`~llmfbn.networks._group_pca.MIGP`), then nilearn's
        own ICA; memory independent of the number of runs, equal to
        ``"nilearn"`` while all rows fit in ``2 * migp_rows``. ``"auto"``:
        ``"migp"`` when the estimated peak of nilearn's stack exceeds
        ``memory_budget``. CanICA only; DictLearning always stacks (it warns
        when that is estimated over budget); temporal_ica has no group PCA.
    memory_budget : int or str, optional
        Bytes (or ``"8GB"``, ``"500MB"``) that ``"auto"`` allows nilearn's
        stack; default half the memory available when fitting.
    migp_rows : int, optional
        Rows of the MIGP running matrix after each reduction; default
        ``4 * n_components``.
    scheduler : str, optional
        Fit on a Dask cluster (see :func:`llmfbn.cluster.connect`):
        ``"local:N"`` (N worker processes on this machine), a running
        scheduler's address (``"tcp://host:8786"``) or a scheduler file
        (``.json``); workers must see the runs' filesystem (they get paths,
        never the runs' data). nilearn's parallel steps (each run's
        reduction, CanICA's ICA restarts, DictLearning's sparse coding) run
        there through joblib's ``"dask"`` backend, on every worker thread
        (``n_jobs`` is not used); with ``group_pca="migp"`` each run's
        reduction is a task and the running matrix merges the results in
        run order on this process, a bounded number of runs in flight. The
        components equal a fit without ``scheduler`` at the same
        ``random_state``. Default: this process. CanICA and DictLearning
        only (temporal_ica is one FastICA in this process).
    random_state : int or None, default None
    memory : str or joblib.Memory, optional
        Cache of nilearn's intermediate steps.
    n_jobs : int, default 1
        Processes for nilearn's parallel steps (without ``scheduler``).
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
    group_pca_ : str or None
        The group PCA used: ``"nilearn"`` or ``"migp"`` (None for temporal_ica).
    group_pca_bytes_ : int or None
        Estimated peak bytes of nilearn's in-RAM group step for this fit.
    reduced_ : bool
        True when the runs are reduced recordings (``llmfbn record --reduce K``):
        their K volumes are nilearn's per-run rows already, so the per-run SVD is
        skipped and each run's first ``n_components`` rows go to the group step
        (K must be at least ``min(n_components, n_tokens)``; temporal_ica,
        ``transform`` and top tokens need every token and refuse them);
        ``n_timepoints_`` counts the tokens the runs were reduced from.
    migp_ : MIGP or None
        The running matrix's bookkeeping (``capacity_``, ``n_reductions_``,
        ``n_rows_seen_``) when ``group_pca_ == "migp"``; its matrix is released.
    recordings_ : list of GroupRecording
        The recording folders fitted (path, model, weights hash, runs): the
        folders given, or those the given runs lie in.
    expression_ : ModelExpression or None
        Fitted on several recording folders (models as subjects): which
        networks each model expresses (see :func:`model_expression`),
        written to the networks folder as ``models.csv``. None otherwise.
    run_paths_ : list of Path
        Every run fitted, in order.
    """

    def __init__(self, method="canica", n_components=20, threshold=DEFAULT_THRESHOLD,
                 threshold_mode="positive", top_k=None, alpha=10, n_init=10, task=None,
                 group_pca="auto", memory_budget=None, migp_rows=None, scheduler=None,
                 random_state=None, memory=None, n_jobs=1, verbose=0):
        self.method = method
        self.n_components = n_components
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.top_k = top_k
        self.alpha = alpha
        self.n_init = n_init
        self.task = task
        self.group_pca = group_pca
        self.memory_budget = memory_budget
        self.migp_rows = migp_rows
        self.scheduler = scheduler
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
        """Fit on a recording folder, several models' recording folders, or ``_bold`` images.

        Several recording folders are the subjects of one group decomposition:
        every run of every recording goes to the one fit, and each model's
        expression of each network is then measured by dual regression
        (``expression_``). They must share the grid, signal and kind of run
        (see :func:`find_group_runs`; checked before any image is read); the
        models may differ. The networks' grid is the first recording's.

        Parameters
        ----------
        imgs : str, Path or list
            A recording folder, a list of recording folders, or a list of
            ``_bold`` images of one model (see :func:`find_recording_images`).
            A list of one folder is that folder.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        check_choice(self.method, METHODS, "method")
        check_positive_int(self.n_components, "n_components")
        check_choice(self.group_pca, GROUP_PCA, "group_pca")
        check_positive_int(self.migp_rows, "migp_rows", allow_none=True)
        budget = (default_memory_budget() if self.memory_budget is None
                  else parse_memory_size(self.memory_budget, "memory_budget"))
        if self.group_pca == "migp" and self.method != "canica":
            raise ValueError(f"'group_pca'='migp' needs method='canica' (the group PCA it "
                             f"streams is CanICA's). method={self.method!r} was provided.")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise TypeError(f"'threshold' must be a number. {self.threshold!r} was provided.")
        if not np.isfinite(self.threshold):
            raise ValueError(f"'threshold' must be a finite number. {self.threshold!r} was "
                             f"provided.")
        if self.scheduler is not None:
            check_scheduler(self.scheduler)
            if self.method == "temporal_ica":
                raise ValueError("'scheduler' needs method='canica' or 'dictlearning' "
                                 "(temporal_ica is one FastICA in this process). "
                                 "method='temporal_ica' was provided.")
            require_distributed()
        paths, self.grid_, self.recordings_, several = _resolve_sources(imgs, self.task)
        self.mask_img_ = self.grid_.mask_img()
        self.n_timepoints_ = self._count_timepoints(paths)
        self.reduced_ = self._check_reduced(paths)
        if self.n_timepoints_ < 2 * self.n_components:
            raise ValueError(
                f"Too few time points for {self.n_components} components: the "
                f"{len(paths)} runs hold {self.n_timepoints_} tokens; record more text "
                f"or lower 'n_components' (need at least {2 * self.n_components}).")
        log(f"Fitting {self.method} ({self.n_components} components) on {len(paths)} runs, "
            f"{self.n_timepoints_} tokens", self.verbose)
        self.group_pca_ = self.group_pca_bytes_ = self.migp_ = None
        if self.method == "temporal_ica":
            components = self._fit_temporal_ica(paths)
        else:
            short = [p for p, n in zip(paths, self._run_lengths) if n < self.n_components]
            if self.method == "canica" and short:
                warnings.warn(
                    f"{len(short)} of {len(paths)} runs have fewer tokens than "
                    f"n_components={self.n_components}; CanICA reduces each run to at "
                    f"most its token count. Consider --texts-per-run.", stacklevel=2)
            self.group_pca_ = self._choose_group_pca(budget)
            self.estimator_ = self.make_nilearn_estimator()
            with self._on_cluster() as client:
                if self.group_pca_ == "migp":
                    self._fit_migp(paths, client)
                elif self.reduced_:
                    self._fit_reduced_stack(paths, client)
                else:
                    self.estimator_.fit([str(p) for p in paths])
            components = self.estimator_.components_.reshape(len(self.estimator_.components_), -1)
            components = self.grid_.masked_to_neurons(components)
        self.components_ = components.astype(np.float32)
        maps = zscore_maps(self.components_,
                           None if self.grid_.units is None else self.grid_.present())
        self.components_img_ = self.grid_.to_img(maps)
        params = {"method": self.method, "n_components": self.n_components,
                  "random_state": self.random_state, "alpha": self.alpha,
                  "n_runs": len(paths), "n_timepoints": self.n_timepoints_,
                  "model": self.grid_.model, "signal": self.grid_.signal,
                  "group_pca": self.group_pca_, "memory_budget": budget,
                  "group_pca_bytes": self.group_pca_bytes_,
                  "reduce": self._reductions[0]["n_components"] if self.reduced_ else None}
        if self.group_pca_ == "migp":
            params.update(migp_rows=self.migp_.n_rows, migp_capacity=self.migp_.capacity_,
                          migp_reductions=self.migp_.n_reductions_)
        if several:
            params.update(n_recordings=len(self.recordings_),
                          models=[r.model for r in self.recordings_],
                          expressed_min_r=EXPRESSED_MIN_R)
        self.networks_ = FunctionalNetworks.from_maps(
            maps, self.grid_, threshold=self.threshold, mode=self.threshold_mode,
            top_k=self.top_k, params=params)
        empty = np.flatnonzero(self.networks_.sizes == 0)
        if len(empty):
            warnings.warn(f"Threshold {self.threshold} selects no neuron in networks "
                          f"{empty.tolist()}; they are kept empty.", stacklevel=2)
        self.run_paths_ = paths
        self.expression_ = None
        if several:
            self.expression_ = model_expression(self.networks_, self.recordings_,
                                                verbose=self.verbose)
        return self

    def _group_rows(self):
        """Rows each run gives the group step, (n_runs,): min(n_components, n_tokens)."""
        return np.minimum(self._run_lengths, self.n_components)

    def _check_reduced(self, paths):
        """True when the runs are reduced (``record(reduce=K)``); refuse what cannot use them."""
        if self._reductions[0] is None:  # find_runs never mixes token and reduced runs
            return False
        if self.method == "temporal_ica":
            check_token_runs(paths, "method='temporal_ica'")
        for path, red, n_tokens in zip(paths, self._reductions, self._run_lengths):
            if red["n_components"] < min(self.n_components, n_tokens):
                raise ValueError(
                    f"{path.name} is reduced to {red['n_components']} components but "
                    f"n_components={self.n_components} needs "
                    f"{min(self.n_components, n_tokens)} per run (nilearn reduces each run "
                    f"to n_components); lower 'n_components' or record with a larger reduce.")
        return True

    @contextmanager
    def _on_cluster(self):
        """Yield None, or a client whose cluster runs every joblib call inside the block."""
        if self.scheduler is None:
            yield None
            return
        from joblib import parallel_config

        with connect(self.scheduler) as session, parallel_config(backend="dask"):
            log(session.describe(), self.verbose)
            yield session.client

    def _reduced_rows(self, paths):
        """Each reduced run's first ``n_components`` rows, in run order, in this process.

        See :func:`reduced_run_rows`.
        """
        return map(self._reduced_task(), [str(p) for p in paths])

    def _reduced_task(self):
        from nilearn.maskers import NiftiMasker

        masker = NiftiMasker(mask_img=self.mask_img_, standardize=None, detrend=False).fit()
        return functools.partial(reduced_run_rows, masker, self.n_components)

    def _run_blocks(self, paths, client=None):
        """Each run's group rows, in run order: (min(n_components, n_tokens), n_features).

        Token runs: nilearn's per-run reduction with the masker nilearn's fit
        would build (:func:`reduce_token_run`); reduced runs: their first
        ``n_components`` volumes (:func:`reduced_run_rows`). With ``client``,
        one task per run on the cluster, a bounded number in flight
        (:func:`map_in_order`), one progress bar; else ``n_jobs`` local
        processes (token runs) or this process (reduced runs).
        """
        from nilearn.maskers.masker_validation import check_embedded_masker

        imgs = [str(p) for p in paths]
        if self.reduced_:
            if client is None:
                return self._reduced_rows(paths)
            task = self._reduced_task()
        else:
            # the masker nilearn's CanICA.fit would build: each run cleaned the same way
            masker = check_embedded_masker(self.estimator_, masker_type="multi_nii").fit()
            if client is None:
                return reduce_token_runs(masker, imgs, self.n_components,
                                         random_state=self.random_state, n_jobs=self.n_jobs)
            task = functools.partial(reduce_token_run, masker, self.n_components,
                                     self.random_state)
        return map_in_order(client, task, imgs, describe=lambda img: f"run {Path(img).name}",
                            desc="runs", unit="run", verbose=self.verbose)

    def _fit_reduced_stack(self, paths, client=None):
        """nilearn's group step on the in-RAM stack of reduced runs."""
        rows = self._group_rows()
        data = np.empty((int(rows.sum()), self.grid_.n_neurons), order="F", dtype=np.float32)
        ends = np.cumsum(rows)
        for end, n, block in zip(ends, rows, self._run_blocks(paths, client)):
            data[end - n:end] = block
        fit_group_estimator(self.estimator_, data, self.mask_img_)

    def _choose_group_pca(self, budget):
        rows = self._group_rows()
        read_tokens = 0 if self.reduced_ else max(self._run_lengths)  # reduced: rows as is
        if self.scheduler is None:
            n_jobs = _effective_jobs(self.n_jobs)
        else:  # runs are read by the workers: local:N here, a remote cluster elsewhere
            kind, n_jobs = check_scheduler(self.scheduler)
            if kind != "local":
                read_tokens = n_jobs = 0
        self.group_pca_bytes_ = nilearn_peak_bytes(int(rows.sum()), self.grid_.n_neurons,
                                                   read_tokens, n_jobs)
        over = budget is not None and self.group_pca_bytes_ > budget
        choice = self.group_pca
        if choice == "auto":
            choice = "migp" if over and self.method == "canica" else "nilearn"
        if choice == "nilearn" and over:
            warnings.warn(
                f"nilearn's in-RAM group step is estimated at "
                f"{self.group_pca_bytes_ / 1e9:.2f} GB, over the memory budget of "
                f"{budget / 1e9:.2f} GB" + (
                    "; group_pca='migp' keeps it bounded." if self.method == "canica" else
                    f"; {self.method} has no streaming group step: fewer runs or tokens "
                    f"per run, or method='canica' with group_pca='migp', keep it bounded."),
                stacklevel=3)
        log(f"Group PCA: {choice} (nilearn's stack estimated at "
            f"{self.group_pca_bytes_ / 1e6:.0f} MB, budget "
            f"{'unknown' if budget is None else f'{budget / 1e6:.0f} MB'})", self.verbose)
        return choice

    def _fit_migp(self, paths, client=None):
        """CanICA with its group PCA streamed (MIGP), then nilearn's own ``_raw_fit``.

        The running matrix takes the runs' rows in run order (on a cluster
        too), so the result does not depend on where the runs were reduced.
        """
        n_rows = self.migp_rows or MIGP_ROWS_PER_COMPONENT * self.n_components
        acc = MIGP(self.grid_.n_neurons, n_rows, do_cca=True)
        for rows in self._run_blocks(paths, client):
            acc.add(rows)
        log(f"MIGP: {acc.n_rows_seen_} run rows in {acc.n_rows_held_} group rows "
            f"({acc.n_reductions_} reductions, at most {acc.capacity_} rows held)",
            self.verbose)
        data = acc.result(release=True)
        self.migp_ = acc
        # the rows are already divided by their norms (nilearn's do_cca, per run)
        self.estimator_.set_params(do_cca=False)
        fit_group_estimator(self.estimator_, data, self.mask_img_)

    def _count_timepoints(self, paths):
        import nibabel as nib

        self._run_lengths = []
        self._reductions = [run_reduction(p) for p in paths]
        for p, reduction in zip(paths, self._reductions):
            img = nib.load(p)
            self.grid_.check_img(img)
            data = np.asanyarray(img.dataobj)
            if not np.isfinite(data).all():
                raise ValueError(f"{p.name} holds {int(np.sum(~np.isfinite(data)))} "
                                 f"non-finite values (NaN or inf); re-record it.")
            self._run_lengths.append(reduction["n_tokens"] if reduction else
                                     img.shape[3] if len(img.shape) == 4 else 1)
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
        return self.grid_.put_present(maps)

    def transform(self, imgs):
        """Network time series of each run: a list of (n_tokens, n_components) arrays.

        For CanICA / DictLearning this is nilearn's own ``transform`` (least
        squares of each token on the component maps).
        """
        check_is_fitted(self, "networks_")
        paths, grid = find_recording_images(imgs)
        if not grid.same_layout(self.grid_):
            raise ValueError(f"The images are on {grid!r}; the fit was on {self.grid_!r}.")
        check_token_runs(paths, "transform (network time series)")
        if self.method == "temporal_ica":
            pinv = np.linalg.pinv(self.grid_.take_present(self.components_))
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
        several = self.expression_ is not None
        return write_networks_folder(
            out_dir, nets.maps, nets.masks, nets.grid, nets.params, nets.top_tokens,
            estimator=type(self).__name__, estimator_params=params, runs=self.run_paths_,
            recordings=[r.to_dict() for r in self.recordings_] if several else None,
            models=self.expression_.to_frame() if several else None, overwrite=overwrite)


def _resolve_sources(imgs, task):
    """``(paths, grid, recordings, several)`` of what :meth:`NetworkDecomposition.fit` got.

    A list of two or more recording folders (models as subjects) goes
    through :func:`find_group_runs` (``several`` True); a folder, a
    one-folder list or a list of ``_bold`` images (all of one model) through
    :func:`find_recording_images`, ``recordings`` then being the folders the
    runs lie in, one entry each.
    """
    if is_recording_list(imgs) and len(imgs) > 1:
        return (*find_group_runs(list(imgs), task=task), True)
    if is_recording_list(imgs):
        imgs = imgs[0]
    paths, grid = find_recording_images(imgs, task=task)
    if isinstance(imgs, (str, Path)):
        roots = {Path(imgs): paths}
    else:
        roots = {}
        for path in paths:
            roots.setdefault(path.parents[2], []).append(path)  # OUT/sub-*/func/*_bold
    recordings = [GroupRecording(root, grid.model, grid.weights_hash, tuple(runs))
                  for root, runs in roots.items()]
    return paths, grid, recordings, False


def _effective_jobs(n_jobs):
    """Processes that joblib's ``n_jobs`` means on this machine (-1: all, -2: all but one)."""
    from joblib import effective_n_jobs

    return effective_n_jobs(n_jobs)


def _standardized(grid, path):
    """(n_tokens, n_neurons) of one run, each neuron z-scored over tokens."""
    data = grid.take_present(grid.from_img(path)).reshape(-1, grid.n_neurons)
    data = data.astype(np.float64)
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

    paths, grid = find_recording_images(recording, task=estimator_params.pop("task", None))

    def fit(runs):
        est = NetworkDecomposition(random_state=random_state, **estimator_params).fit(list(runs))
        return est.networks_.masks, est.networks_.maps

    return split_half(fit, paths, n_splits=n_splits, n_draws=n_draws, random_state=random_state,
                      present=grid.present() if grid.pruned else None)
