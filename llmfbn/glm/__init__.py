"""Task-GLM localizer: neurons selective for a contrast of text labels.

Like a language localizer in fMRI. A recording made with
``llmfbn record --label-column COLUMN`` carries each text's label as the
events' ``trial_type``; tokens are scans (``t_r = 1``) and texts are runs.

Design
------
First level, per run, nilearn's ``FirstLevelModel`` on an explicit design
matrix (passed as ``design_matrices=``, so nilearn's own design settings are
unused: ``t_r=1``, ``hrf_model=None`` and the drift model are only recorded
on the model):

- one 0/1 indicator column per condition present in the run; no constant
  (the indicators span it); no haemodynamic response (a neuron responds at
  its token);
- drift regressors over token position only when asked
  (``drift_model="cosine"`` or ``"polynomial"``, nilearn's regressors without
  their constant);
- ``noise_model="ols"`` by default, ``signal_scaling=False``,
  ``smoothing_fwhm=None`` (neighbouring voxels are unrelated neurons), and the
  grid's mask as an explicit, fitted ``NiftiMasker``.

Each run's effect map (beta) of each condition is kept as a float32
``(n_layers, n_units)`` array; the fitted first-level models are dropped.

Contrasts are written ``"positive-negative"``, ``"positive"``,
``"a+b-2*c"`` or ``"0.5*a - 0.5*b"`` (terms ``[sign][coef*]name``), parsed
here rather than by nilearn because labels may be numbers: ``"1-0"`` is
condition ``"1"`` minus condition ``"0"``.

Second level, per contrast, nilearn's ``SecondLevelModel`` (texts are the
random effect) in one of two layouts:

- **between-run**, when every run holds exactly one condition (the default
  ``texts_per_run=1``): the inputs are each run's effect map of its condition,
  only runs of conditions named in the contrast; the design has one indicator
  column per named condition and the contrast vector holds the weights
  (``"a-b"`` is a two-sample t-test, ``"a"`` a one-sample test against 0);
- **within-run** (paired), when every run holds all the contrast's
  conditions: the first-level contrast of each run (the weighted sum of its
  condition effect maps, which equals ``FirstLevelModel.compute_contrast``'s
  effect size) is tested with a one-sample t-test (intercept).

Any other layout is refused, as are conditions with fewer than 2 runs and a
second level without residual degrees of freedom.

Thresholding: nilearn's ``threshold_stats_img`` on the z-map within the grid's
mask, ``height_control`` in ``{"fdr", "fpr", "bonferroni", None}`` (default
FDR at ``alpha=0.05``), one-sided by default (neurons MORE active in the
contrast), or a given z ``threshold``. Each contrast becomes one network of a
:class:`~llmfbn.networks.FunctionalNetworks` whose maps are the z-maps as they
are (not re-z-scored), so ``llmfbn intervene --networks GLM_DIR`` and
:func:`llmfbn.intervention.inhibit` take the result unchanged.

Needs numpy, nibabel, pandas and nilearn; no torch.
"""

from llmfbn.glm._design import (
    ContrastPlan,
    first_level_design,
    parse_contrast,
    plan_contrast,
    read_events,
)
from llmfbn.glm._localizer import Localizer, TaskGLM, check_threshold_params

__all__ = [
    "ContrastPlan",
    "Localizer",
    "TaskGLM",
    "check_threshold_params",
    "first_level_design",
    "parse_contrast",
    "plan_contrast",
    "read_events",
]
