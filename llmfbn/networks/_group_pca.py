"""Bounded-memory group PCA in front of nilearn's own ICA and dictionary learning.

nilearn's ``CanICA`` / ``DictLearning`` reduce every run to ``n_components``
rows (``(U * S).T`` of the run's SVD), stack all runs in RAM, and fit the
stack (``_raw_fit``). The stack grows with the number of runs. :class:`MIGP`
streams the same per-run rows through a running matrix that is re-reduced to
its top ``n_rows`` rows (``S V^T``) whenever it fills, as MELODIC's MIGP does
(Smith et al. 2014, NeuroImage 101), so memory stays near
``2 * n_rows * n_features`` floats whatever the number of runs. The result
then goes to nilearn's own ``CanICA._raw_fit`` (see :func:`fit_group_estimator`),
so nilearn's ICA and llmfbn's z-scoring and thresholding run unchanged.

CanICA only: its group step is a PCA, which MIGP approximates. DictLearning
learns its dictionary from the whole stack with an absolute L1 penalty
(``alpha``); on a truncated matrix, which keeps less of each neuron's energy,
most of its atoms die (matched ``|r|`` median 0 against nilearn's on planted
networks, 40 runs x 10 components), so it keeps nilearn's in-RAM stack.

Memory figures (:func:`nilearn_peak_bytes`) were measured with ``tracemalloc``
on nilearn 0.14.1: ``CanICA.fit`` peaks at 2.0x its float32 stack (the stack
plus the ``data ** 2`` temporary of ``do_cca``), ``DictLearning.fit`` at 2.1x,
plus about 3.5 float64 copies of one run per job while runs are read.
"""

import os

import numpy as np

from llmfbn._utils import parse_memory_size

__all__ = [
    "MIGP",
    "available_memory",
    "cca_normalize",
    "default_memory_budget",
    "fit_group_estimator",
    "migp_peak_bytes",
    "nilearn_peak_bytes",
    "parse_memory_size",
    "reduce_token_run",
    "reduce_token_runs",
    "reduced_run_rows",
]

#: Peak bytes of nilearn's group step per byte of its float32 stack (measured 2.0-2.1x).
NILEARN_STACK_FACTOR = 2.2
#: float64 copies of one run (tokens x neurons) alive per job while a run is
#: masked, z-scored and reduced (measured about 3.5).
RUN_COPIES = 4
#: Share of the available memory that ``memory_budget=None`` allows.
MEMORY_SHARE = 0.5
#: Rows MIGP keeps per requested component (see :class:`MIGP`).
MIGP_ROWS_PER_COMPONENT = 4

def available_memory():
    """Bytes of memory available to new allocations (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget():
    """``MEMORY_SHARE`` (half) of :func:`available_memory`, or None when that is unknown."""
    available = available_memory()
    return None if available is None else int(MEMORY_SHARE * available)


def nilearn_peak_bytes(n_rows, n_features, max_run_tokens, n_jobs=1):
    """Estimated peak bytes of nilearn's in-RAM group step.

    Parameters
    ----------
    n_rows : int
        Rows of the stack: the sum over runs of the rows each run keeps.
    n_features : int
        Neurons in the mask.
    max_run_tokens : int
        Tokens of the longest run read (0 for reduced runs, whose rows are read as is).
    n_jobs : int
        Runs read at once.
    """
    stack = NILEARN_STACK_FACTOR * n_rows * n_features * 4
    return int(stack + max(n_jobs, 1) * RUN_COPIES * max_run_tokens * n_features * 8)


def migp_peak_bytes(n_rows, max_block_rows, n_features, max_run_tokens, n_jobs=1):
    """Estimated peak bytes of the MIGP path: its running matrix while runs are read,
    then nilearn's ``_raw_fit`` on the result (arguments as :func:`nilearn_peak_bytes`)."""
    capacity = n_rows + max(n_rows, max_block_rows)
    accumulator = capacity * n_features * 8
    reading = max(n_jobs, 1) * (RUN_COPIES * max_run_tokens * n_features * 8
                                + 2 * max_block_rows * n_features * 8)
    downstream = accumulator + NILEARN_STACK_FACTOR * capacity * n_features * 4
    return int(max(accumulator + reading, downstream))


def cca_normalize(rows):
    """Each row divided by its Euclidean norm (zero rows kept), as nilearn's ``do_cca``.

    The same operations, in the input's dtype, as ``_MultiPCA._raw_fit`` applies
    to the stack, so a stack of normalised runs equals nilearn's normalised stack
    bit for bit.

    Parameters
    ----------
    rows : array (n_rows, n_features)

    Returns
    -------
    array (n_rows, n_features), a new array
    """
    rows = np.asfortranarray(rows)  # the stack's order, so the sums round alike
    norms = np.sqrt(np.sum(rows**2, axis=1))
    norms[norms == 0] = 1
    return rows / norms[:, np.newaxis]


class MIGP:
    """Running group PCA of row blocks (MIGP, Smith et al. 2014), memory independent of runs.

    Blocks (one run's reduced rows each) are appended to a running matrix of
    ``capacity`` rows; when the next block would not fit, the matrix is
    replaced by its top ``n_rows`` rows ``S V^T`` (eigen-decomposition of the
    small Gram matrix ``W W^T``, projection done in place). Until the first
    reduction the matrix is the plain stack, so when all rows fit in
    ``capacity`` the result equals nilearn's stack exactly.

    ``n_rows`` defaults to ``4 * n_components`` (:data:`MIGP_ROWS_PER_COMPONENT`):
    like MELODIC's MIGP it keeps an internal dimension well above the final
    one, so the ``n_components`` leading directions that the group PCA keeps
    sit far from the truncated tail. ``capacity = 2 * n_rows`` minimises the
    work per row: a reduction costs ``capacity^2 * n_features`` and absorbs
    ``capacity - n_rows`` new rows, least at ``capacity = 2 * n_rows``.

    Parameters
    ----------
    n_features : int
        Columns (neurons).
    n_rows : int
        Rows kept by each reduction.
    capacity : int, optional
        Rows held before a reduction; default ``2 * n_rows``. A block larger
        than ``capacity - n_rows`` grows it.
    do_cca : bool, default True
        Divide each row by its norm before it enters (:func:`cca_normalize`),
        as nilearn's ``CanICA(do_cca=True)`` does to its stack.

    Attributes
    ----------
    n_rows_seen_ : int
        Rows added so far.
    n_reductions_ : int
    capacity_ : int
        Rows the running matrix can hold (its memory is ``capacity_ * n_features``
        float64 values, whatever the number of blocks).
    """

    #: Columns projected at a time during a reduction (bounds its temporary).
    CHUNK = 1 << 15

    def __init__(self, n_features, n_rows, capacity=None, do_cca=True):
        self.n_features = int(n_features)
        self.n_rows = int(n_rows)
        self.capacity_ = int(capacity or 2 * self.n_rows)
        if self.capacity_ < self.n_rows:
            raise ValueError(f"'capacity' must be >= n_rows={self.n_rows}. {capacity} was "
                             f"provided.")
        self.do_cca = do_cca
        self.n_rows_seen_ = 0
        self.n_reductions_ = 0
        self._held = 0
        self._matrix = np.empty((self.capacity_, self.n_features), dtype=np.float64)

    @property
    def n_rows_held_(self):
        """Rows of the running matrix now."""
        return self._held

    def add(self, rows):
        """Append one block of rows, reducing first when it would not fit.

        Parameters
        ----------
        rows : array (n_block_rows, n_features)

        Returns
        -------
        self
        """
        if self._matrix is None:
            raise ValueError("This MIGP was released by result(release=True).")
        rows = np.atleast_2d(rows)
        if rows.shape[1] != self.n_features:
            raise ValueError(f"A block has {rows.shape[1]} columns; the group PCA has "
                             f"{self.n_features} neurons.")
        if self.do_cca:
            rows = cca_normalize(rows)
        if self._held + len(rows) > self.capacity_:
            self._reduce()
        if self._held + len(rows) > self.capacity_:
            grown = np.empty((self._held + len(rows), self.n_features), dtype=np.float64)
            grown[:self._held] = self._matrix[:self._held]
            self._matrix, self.capacity_ = grown, len(grown)
        self._matrix[self._held:self._held + len(rows)] = rows
        self._held += len(rows)
        self.n_rows_seen_ += len(rows)
        return self

    def _reduce(self):
        if self._held <= self.n_rows:
            return
        held = self._matrix[:self._held]
        _, vecs = np.linalg.eigh(held @ held.T)
        top = np.ascontiguousarray(vecs[:, ::-1][:, :self.n_rows].T)  # (n_rows, held)
        for start in range(0, self.n_features, self.CHUNK):
            cols = slice(start, start + self.CHUNK)
            self._matrix[:self.n_rows, cols] = top @ held[:, cols]
        self._held = self.n_rows
        self.n_reductions_ += 1

    def result(self, dtype=np.float32, release=False):
        """The running matrix, (n_rows_held_, n_features), as a new ``dtype`` array.

        float32 by default and Fortran-ordered, as nilearn's stack of float32 runs.
        ``release=True`` frees the running matrix (no further :meth:`add`).
        """
        if self._matrix is None:
            raise ValueError("This MIGP was released by result(release=True).")
        out = self._matrix[:self._held].astype(dtype, order="F")
        if release:
            self._matrix = None
        return out


def reduce_token_run(masker, n_components, random_state, img):
    """One token run reduced exactly as nilearn's decomposition does.

    nilearn's own per-run step (``_mask_and_reduce_single``): mask, clean
    with ``masker``'s settings, keep ``(U * S).T`` of the run's top
    ``min(n_components, n_tokens)`` singular vectors. Picklable with its
    first arguments bound (``functools.partial``), for a cluster worker.

    Parameters
    ----------
    masker : nilearn MultiNiftiMasker, fitted
    n_components : int
    random_state : int or None
    img : str
        The run's ``_bold`` image.

    Returns
    -------
    array (min(n_components, n_tokens), n_features)
    """
    from nilearn.decomposition._base import _mask_and_reduce_single

    return _mask_and_reduce_single(masker, img, None, n_samples=n_components,
                                   random_state=random_state)


def reduce_token_runs(masker, imgs, n_components, random_state=None, n_jobs=1):
    """Each token run reduced by :func:`reduce_token_run`, ``n_jobs`` runs at once.

    Yields in run order, so that at most a few runs per job are in memory.

    Yields
    ------
    array (min(n_components, n_tokens), n_features)
    """
    from joblib import Parallel, delayed

    jobs = (delayed(reduce_token_run)(masker, n_components, random_state, img) for img in imgs)
    yield from Parallel(n_jobs=n_jobs, return_as="generator")(jobs)


def reduced_run_rows(masker, n_components, img):
    """A reduced run's first ``n_components`` rows, (rows, n_features) float32.

    A reduced run's volumes (``llmfbn record --reduce K``) are nilearn's
    per-run rows already (its top principal components times their singular
    values, in order); nilearn keeps ``n_components`` of them per run.

    Parameters
    ----------
    masker : nilearn NiftiMasker, fitted, no cleaning
    n_components : int
    img : str
        The run's ``_bold`` image.
    """
    return masker.transform(img)[:n_components].astype(np.float32)


def fit_group_estimator(estimator, data, mask_img):
    """Fit an unfitted nilearn ``CanICA`` / ``DictLearning`` on group data already reduced.

    Does what nilearn's ``_BaseDecomposition.fit`` does around its group step
    (nilearn 0.14.1): a fitted masker (``masker_``, ``mask_img_``), then
    ``estimator._raw_fit(data)`` (nilearn's documented entry for data "already
    unmasked"), then the maps masker that ``transform`` uses (``maps_masker_``).
    The masker does no cleaning (``standardize=None``): the rows come from
    runs already z-scored; it only maps rows to images.

    For ``CanICA`` configure ``do_cca`` for ``data``: ``do_cca=False`` when
    ``data`` holds :func:`cca_normalize`-d rows (:class:`MIGP`), since nilearn's
    ``do_cca`` only divides the rows of its stack by their norms.

    Parameters
    ----------
    estimator : nilearn.decomposition.CanICA or DictLearning, unfitted
    data : array (n_rows, n_features)
    mask_img : Nifti1Image

    Returns
    -------
    estimator, fitted
    """
    from nilearn.maskers import MultiNiftiMasker, NiftiMapsMasker

    masker = MultiNiftiMasker(mask_img=mask_img, standardize=None, detrend=False,
                              memory=estimator.memory, memory_level=estimator.memory_level)
    estimator.masker_ = masker.fit()
    estimator.mask_img_ = masker.mask_img_
    estimator._raw_fit(data)
    estimator.maps_masker_ = NiftiMapsMasker(
        estimator.components_img_, masker.mask_img_, resampling_target="maps",
        standardize=None, dtype=estimator.dtype, memory=estimator.memory,
        memory_level=estimator.memory_level)
    try:
        estimator.maps_masker_.fit()
    except ValueError as err:
        if "maps_img contains no map" in str(err):
            raise ValueError("No component found in data.") from err
        raise
    return estimator
