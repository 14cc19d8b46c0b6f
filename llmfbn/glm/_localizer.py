"""A task-GLM localizer: nilearn's first- and second-level models on a recording.

See :mod:`llmfbn.glm` for the design.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.glm._design import (
    DRIFT_MODELS,
    first_level_design,
    plan_contrast,
    read_run_events,
    run_conditions,
)
from llmfbn.grid import NeuronGrid
from llmfbn.io import contrast_file_names, find_runs, read_glm_folder, write_glm_folder
from llmfbn.networks import FunctionalNetworks

__all__ = ["Localizer", "TaskGLM", "check_threshold_params"]

NOISE_MODELS = ("ols", "ar1")
HEIGHT_CONTROLS = ("fdr", "fpr", "bonferroni", None)
OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance", "all")


def check_threshold_params(height_control="fdr", alpha=0.05, threshold=None, two_sided=False):
    """Validate the thresholding options; return the height control actually used.

    A ``threshold`` (z) overrides ``height_control`` (which becomes None).
    """
    check_choice(height_control, HEIGHT_CONTROLS, "height_control")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
        raise TypeError(f"'alpha' must be a float. {alpha!r} was provided.")
    if not 0 < alpha < 1:
        raise ValueError(f"'alpha' must lie in (0, 1). {alpha!r} was provided.")
    if threshold is None:
        if height_control is None:
            raise ValueError("'threshold' (a z value) must be given when 'height_control' "
                             "is None.")
        return height_control
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"'threshold' must be a float. {threshold!r} was provided.")
    if not np.isfinite(threshold):
        raise ValueError(f"'threshold' must be finite. {threshold!r} was provided.")
    if two_sided and threshold < 0:
        raise ValueError(f"'threshold' must be >= 0 when 'two_sided' is True. {threshold} "
                         f"was provided.")
    return None


def _as_contrast_list(contrasts):
    contrasts = [contrasts] if isinstance(contrasts, str) else list(contrasts)
    if not contrasts:
        raise ValueError("'contrasts' must name at least one contrast. [] was provided.")
    for c in contrasts:
        if not isinstance(c, str):
            raise TypeError(f"Each contrast must be a str. {c!r} was provided.")
    duplicates = sorted({c for c in contrasts if contrasts.count(c) > 1})
    if duplicates:
        raise ValueError(f"'contrasts' must be distinct. {duplicates} were given twice.")
    return contrasts


def _json_number(value):
    value = float(value)
    return value if np.isfinite(value) else None


class TaskGLM(BaseEstimator):
    """Localize neurons selective for a contrast of text labels (a task GLM).

    Per run (tokens are scans), nilearn's ``FirstLevelModel`` is fitted on
    our own design matrix: one 0/1 indicator column per condition present
    (the events' ``trial_type``), no haemodynamic response, no drift unless
    asked. Each run's effect map of each condition is kept (float32). Per
    contrast, nilearn's ``SecondLevelModel`` tests it across runs (texts are
    the random effect): between runs when every run holds one condition,
    paired within runs when every run holds all the contrast's conditions
    (see :func:`llmfbn.glm.plan_contrast`).

    Grid-correct settings throughout: the grid's explicit mask (no intensity
    masking), ``smoothing_fwhm=None`` (neighbouring voxels are unrelated
    neurons), ``signal_scaling=False`` and no standardization.

    Parameters
    ----------
    drift_model : {None, "cosine", "polynomial"}, default None
        Drift regressors over token position added to each run's design
        (nilearn's, without their constant). None: a neuron's mean per
        condition is all that is modelled.
    high_pass : float, default 0.01
        Cut-off of the cosine drift in cycles per token (``t_r = 1``).
    noise_model : {"ols", "ar1"}, default "ols"
        First-level noise model (``"ar1"`` treats neighbouring tokens as
        autocorrelated; it changes the effect estimates slightly).
    task : str, optional
        Only the runs of this task.
    n_jobs : int, default 1
    verbose : int, default 0
        1 shows a progress bar over runs and a summary.

    Attributes
    ----------
    grid_ : NeuronGrid
    run_paths_ : list of Path
    conditions_ : dict
        ``{condition: number of runs holding it}``.
    run_conditions_ : list of tuple
        Conditions of each run.
    design_matrices_ : list of DataFrame
        First-level design of each run.
    effect_maps_ : list of dict
        Per run, ``{condition: float32 array (n_layers, n_units)}``.
    masker_ : nilearn NiftiMasker
        Fitted on the grid's mask; shared by every model.

    The fitted nilearn models stay reachable: :meth:`first_level_model`
    (refitted on demand, as only the effect maps are kept) and
    :meth:`second_level_model`.
    """

    def __init__(self, drift_model=None, high_pass=0.01, noise_model="ols", task=None,
                 n_jobs=1, verbose=0):
        self.drift_model = drift_model
        self.high_pass = high_pass
        self.noise_model = noise_model
        self.task = task
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, recording_dir, contrasts=None):
        """Fit the first-level model of every run.

        Parameters
        ----------
        recording_dir : str, Path or list of paths
            A recording folder made with ``llmfbn record --label-column``, or
            its ``_bold`` images.
        contrasts : str or list of str, optional
            Contrasts to check against the runs' conditions before any image
            is read, so that a bad contrast fails fast.

        Returns
        -------
        self
        """
        from nilearn.maskers import NiftiMasker

        check_choice(self.drift_model, DRIFT_MODELS, "drift_model")
        check_choice(self.noise_model, NOISE_MODELS, "noise_model")
        if not self.high_pass > 0:
            raise ValueError(f"'high_pass' must be > 0. {self.high_pass!r} was provided.")
        paths, grid = find_runs(recording_dir, task=self.task, need_tokens="the GLM")
        events = read_run_events(paths)
        conditions = [run_conditions(ev) for ev in events]
        if contrasts is not None:
            for contrast in _as_contrast_list(contrasts):
                plan_contrast(contrast, conditions)
        designs = []
        for path, ev in zip(paths, events):
            shape = nib.load(path).shape
            if len(shape) != 4:
                raise ValueError(f"{path} is not a 4-D run image (shape {shape}).")
            designs.append(first_level_design(ev, shape[3], self.drift_model, self.high_pass))
        del events

        masker = NiftiMasker(mask_img=grid.mask_img(), standardize=False).fit()
        effect_maps = []
        progress = tqdm(zip(paths, designs, conditions), total=len(paths), unit="run",
                        desc="glm", disable=self.verbose < 1)
        for path, design, conds in progress:
            model = self._fit_run(path, design, masker)
            effects = {}
            for k, condition in enumerate(conds):  # the first columns, in this order
                vector = np.zeros(design.shape[1])
                vector[k] = 1.0
                img = model.compute_contrast(vector, output_type="effect_size")
                effects[condition] = grid.from_img(img).astype(np.float32)
            effect_maps.append(effects)
            del model

        self.grid_ = grid
        self.run_paths_ = list(paths)
        self.recording_ = (str(Path(recording_dir).resolve())
                           if isinstance(recording_dir, (str, Path)) else None)
        self.run_conditions_ = conditions
        self.conditions_ = {}
        for conds in conditions:
            for c in conds:
                self.conditions_[c] = self.conditions_.get(c, 0) + 1
        self.design_matrices_ = designs
        self.masker_ = masker
        self.effect_maps_ = effect_maps
        log(f"Fitted {len(paths)} runs of {grid!r}; runs per condition: {self.conditions_}.",
            self.verbose)
        return self

    def _fit_run(self, path, design, masker):
        from nilearn.glm.first_level import FirstLevelModel

        model = FirstLevelModel(
            t_r=1.0, hrf_model=None, drift_model=self.drift_model, high_pass=self.high_pass,
            mask_img=masker, smoothing_fwhm=None, signal_scaling=False, standardize=False,
            noise_model=self.noise_model, minimize_memory=True, n_jobs=self.n_jobs,
            reports=False)
        with warnings.catch_warnings():
            # t_r, hrf_model and drift_model are recorded on the model for
            # inspection; the explicit design matrix already holds them.
            warnings.filterwarnings("ignore", message="If design matrices are supplied")
            return model.fit(path, design_matrices=[design])

    def first_level_model(self, run):
        """Refit and return nilearn's ``FirstLevelModel`` of one run (index).

        :meth:`fit` keeps only the effect maps, not the models.
        """
        check_is_fitted(self, "effect_maps_")
        if not isinstance(run, (int, np.integer)) or not 0 <= run < len(self.run_paths_):
            raise ValueError(f"'run' must be an int in [0, {len(self.run_paths_)}). {run!r} "
                             f"was provided.")
        return self._fit_run(self.run_paths_[run], self.design_matrices_[run], self.masker_)

    # -- second level -------------------------------------------------------

    def plan(self, contrast):
        """The :class:`~llmfbn.glm.ContrastPlan` of one contrast on the fitted runs."""
        check_is_fitted(self, "effect_maps_")
        return plan_contrast(contrast, self.run_conditions_)

    def _second_level_inputs(self, plan):
        maps = []
        for run in plan.runs:
            effects = self.effect_maps_[run]
            if plan.layout == "between-run":
                maps.append(effects[self.run_conditions_[run][0]])
            else:
                maps.append(sum(w * effects[c] for c, w in plan.weights.items()))
        return [self.grid_.to_img(m) for m in maps]

    def second_level_model(self, contrast):
        """Fit and return nilearn's ``SecondLevelModel`` for one contrast.

        Its ``design_matrix_`` is the plan's design; pass ``plan(contrast).vector``
        to its ``compute_contrast``.
        """
        from nilearn.glm.second_level import SecondLevelModel

        plan = self.plan(contrast)
        model = SecondLevelModel(mask_img=self.masker_.mask_img_, smoothing_fwhm=None,
                                 minimize_memory=True, n_jobs=self.n_jobs, reports=False)
        return model.fit(self._second_level_inputs(plan), design_matrix=plan.design)

    def compute_contrast(self, contrast, output_type="z_score"):
        """Second-level map of one contrast, as a Nifti image on the grid.

        Parameters
        ----------
        contrast : str
            E.g. ``"positive-negative"``, ``"1-0"``, ``"a+b-2*c"``.
        output_type : {"z_score", "stat", "p_value", "effect_size", \
"effect_variance", "all"}, default "z_score"
            ``"stat"`` is the t statistic; ``"all"`` gives a dict of images.

        Returns
        -------
        Nifti1Image (or dict of them)
            Read back with ``glm.grid_.from_img(img)`` -> ``(n_layers, n_units)``.
        """
        check_choice(output_type, OUTPUT_TYPES, "output_type")
        plan = self.plan(contrast)
        model = self.second_level_model(contrast)
        return model.compute_contrast(plan.vector, output_type=output_type)

    def localize(self, contrasts, height_control="fdr", alpha=0.05, threshold=None,
                 two_sided=False, top_k=None):
        """Threshold the z-map of each contrast into a network of neurons.

        Parameters
        ----------
        contrasts : str or list of str
        height_control : {"fdr", "fpr", "bonferroni", None}, default "fdr"
            nilearn's ``threshold_stats_img`` correction over all neurons.
        alpha : float, default 0.05
            False discovery rate (``"fdr"``), per-neuron (``"fpr"``) or
            family-wise (``"bonferroni"``) error rate.
        threshold : float, optional
            A z threshold; overrides ``height_control``.
        two_sided : bool, default False
            False keeps the neurons MORE active in the contrast (``z`` above
            the threshold); True keeps ``|z|`` above it (alpha is split in two).
        top_k : int, optional
            Keep at most the ``top_k`` neurons of largest ``z`` (``|z|`` when
            two-sided) among those that pass the threshold: a localizer at
            FDR 0.05 can hold a sixth of all neurons, too many to lesion
            selectively. Fewer pass: all are kept. ``glm.json`` records how
            many passed (``n_passing``) and how many were kept
            (``n_selected``).

        Returns
        -------
        Localizer
        """
        from nilearn.glm import threshold_stats_img

        check_is_fitted(self, "effect_maps_")
        height_control = check_threshold_params(height_control, alpha, threshold, two_sided)
        check_positive_int(top_k, "top_k", allow_none=True)
        contrasts = _as_contrast_list(contrasts)
        plans = [self.plan(c) for c in contrasts]
        grid = self.grid_
        z_maps, t_maps, effect_maps, masks, thresholds = [], [], [], [], []
        n_passing = []
        for plan in plans:
            model = self.second_level_model(plan.contrast)
            outputs = model.compute_contrast(plan.vector, output_type="all")
            with warnings.catch_warnings():
                # nilearn warns when no neuron passes; n_selected says so.
                warnings.filterwarnings("ignore", message="The given float value must not")
                thresholded, used = threshold_stats_img(
                    outputs["z_score"], mask_img=self.masker_.mask_img_, alpha=alpha,
                    threshold=threshold, height_control=height_control,
                    two_sided=two_sided)
            z_maps.append(grid.from_img(outputs["z_score"]))
            t_maps.append(grid.from_img(outputs["stat"]))
            effect_maps.append(grid.from_img(outputs["effect_size"]))
            masks.append(grid.from_img(thresholded) != 0)
            n_passing.append(int(masks[-1].sum()))
            if top_k is not None and n_passing[-1] > top_k:
                masks[-1] = _strongest(masks[-1], z_maps[-1], top_k, two_sided)
            thresholds.append(float(used))
            log(f"{plan.contrast}: z >= {float(used):.3f}, {int(masks[-1].sum())} neurons.",
                self.verbose, level=2)
        z_maps = np.stack(z_maps).astype(np.float32)
        masks = np.stack(masks)
        designs = [{"contrast": p.contrast, "weights": p.weights, "design": p.layout,
                    "n_runs": p.n_runs, "dof": p.dof, "n_passing": n}
                   for p, n in zip(plans, n_passing)]
        params = {
            "method": "glm", "contrasts": contrasts,
            "design": [p.layout for p in plans],
            "weights": [p.weights for p in plans],
            "threshold": [_json_number(t) for t in thresholds],
            "height_control": height_control, "alpha": float(alpha),
            "two_sided": bool(two_sided), "top_k": top_k,
            "n_runs": [p.n_runs for p in plans],
            "recording": self.recording_, "task": self.task,
        }
        networks = FunctionalNetworks(z_maps, masks, grid, params)
        info = {
            "recording": self.recording_, "task": self.task,
            "model": grid.model, "signal": grid.signal,
            "n_runs": len(self.run_paths_), "conditions": dict(self.conditions_),
            "height_control": height_control, "alpha": float(alpha),
            "threshold_given": None if threshold is None else float(threshold),
            "two_sided": bool(two_sided), "top_k": top_k, "estimator": self.get_params(),
            "contrasts": designs,
        }
        return Localizer(contrasts=contrasts, z_maps=z_maps, thresholds=thresholds,
                         masks=masks, grid=grid, networks=networks, info=info,
                         t_maps=np.stack(t_maps).astype(np.float32),
                         effect_maps=np.stack(effect_maps).astype(np.float32),
                         run_paths=[str(p) for p in self.run_paths_])


def _strongest(mask, z, top_k, two_sided):
    """The ``top_k`` neurons of ``mask`` with the largest z (|z| when two-sided)."""
    score = np.where(mask, np.abs(z) if two_sided else z, -np.inf).ravel()
    keep = np.zeros(score.shape, bool)
    keep[np.argpartition(-score, top_k - 1)[:top_k]] = True
    return keep.reshape(mask.shape)


@dataclass
class Localizer:
    """Neurons selective for each contrast: z-maps, thresholds and masks.

    Attributes
    ----------
    contrasts : list of str
    z_maps : float32 array (n_contrasts, n_layers, n_units)
    thresholds : list of float
        The z threshold used per contrast (``inf`` when FDR found nothing).
    masks : bool array (n_contrasts, n_layers, n_units)
    grid : NeuronGrid
    networks : FunctionalNetworks
        One network per contrast (maps = the z-maps as they are), for
        ``llmfbn intervene --networks`` and :func:`llmfbn.intervention.inhibit`.
    info : dict
        What ``glm.json`` holds: design, runs per condition, thresholding.
    t_maps, effect_maps : float32 arrays (n_contrasts, n_layers, n_units) or None
    run_paths : list of str
    """

    contrasts: list
    z_maps: np.ndarray
    thresholds: list
    masks: np.ndarray
    grid: NeuronGrid
    networks: FunctionalNetworks
    info: dict = field(default_factory=dict)
    t_maps: np.ndarray = None
    effect_maps: np.ndarray = None
    run_paths: list = None

    @property
    def n_selected(self):
        """Neurons selected per contrast, shape (n_contrasts,)."""
        return self.masks.reshape(len(self.masks), -1).sum(axis=1)

    def _index(self, contrast):
        if isinstance(contrast, (int, np.integer)) and 0 <= contrast < len(self.contrasts):
            return int(contrast)
        if contrast in self.contrasts:
            return self.contrasts.index(contrast)
        raise ValueError(f"'contrast' must be one of {self.contrasts} or an index. "
                         f"{contrast!r} was provided.")

    def z_map_img(self, contrast=0):
        """The z-map of one contrast (name or index) as a Nifti image on the grid."""
        return self.grid.to_img(self.z_maps[self._index(contrast)])

    def peak(self, contrast=0):
        """``(model layer, unit, z)`` of the strongest neuron of one contrast."""
        z = self.z_maps[self._index(contrast)]
        score = np.abs(z) if self.info.get("two_sided") else z
        slot, unit = np.unravel_index(int(np.argmax(score)), z.shape)
        return self.grid.layers[slot], int(unit), float(z[slot, unit])

    def file_names(self):
        """``{contrast: file name stem}``, unique and file-name safe (``zmap_<stem>.nii.gz``)."""
        return contrast_file_names(self.contrasts)

    def save(self, out_dir, overwrite=False):
        """Write a GLM folder: the networks files, ``zmap_<contrast>.nii.gz`` (and t,
        effect), ``glm.json`` and ``params.json``, all swapped in at once.

        ``out_dir`` then also loads with :meth:`FunctionalNetworks.load`.

        Parameters
        ----------
        out_dir : str or Path
            A new or empty folder, or a GLM folder when ``overwrite``.
        overwrite : bool, default False
            Replace an existing GLM folder (never a folder of another kind).

        Returns
        -------
        Path
        """
        entries = []
        for k, contrast in enumerate(self.contrasts):
            layer, unit, z = self.peak(k)
            entry = dict(self.info.get("contrasts", [{}] * len(self.contrasts))[k])
            entry.update({"contrast": contrast, "threshold": _json_number(self.thresholds[k]),
                          "n_selected": int(self.n_selected[k]),
                          "peak": {"layer": layer, "unit": unit, "z": z}})
            entries.append(entry)
        maps = {"zmap": self.z_maps, "tmap": self.t_maps, "effect": self.effect_maps}
        return write_glm_folder(out_dir, self.masks, self.grid, self.networks.params,
                                dict(self.info, contrasts=entries), maps,
                                runs=self.run_paths, top_tokens=self.networks.top_tokens,
                                estimator_params=self.info.get("estimator"),
                                overwrite=overwrite)

    @classmethod
    def load(cls, glm_dir):
        """Read a GLM folder written by :meth:`save` (checked: see
        :func:`llmfbn.io.read_glm_folder`)."""
        folder = read_glm_folder(glm_dir)
        read = folder.networks
        networks = FunctionalNetworks(read.maps, read.masks, read.grid, read.params,
                                      read.top_tokens)
        entries = folder.document["contrasts"]
        info = dict(folder.document, contrasts=[
            {k: v for k, v in e.items() if k not in ("threshold", "n_selected", "peak", "files")}
            for e in entries])
        info.pop("format_version", None)
        return cls(contrasts=folder.contrasts, z_maps=folder.maps.get("zmap", read.maps),
                   masks=read.masks,
                   thresholds=[np.inf if e.get("threshold") is None else float(e["threshold"])
                               for e in entries],
                   grid=read.grid, networks=networks, info=info,
                   t_maps=folder.maps.get("tmap"), effect_maps=folder.maps.get("effect"),
                   run_paths=read.runs)
