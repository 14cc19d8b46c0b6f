"""Reduce a run, streaming, to the top-K spatial principal components nilearn computes from it.

nilearn's ``CanICA`` and ``DictLearning`` start by reducing each run
(``nilearn.decomposition._base._mask_and_reduce_single``): the run's
(n_tokens x n_neurons) matrix ``Z``, each neuron z-scored over the run's
tokens (``standardize="zscore_sample"``: mean removed, divided by the
``ddof=1`` standard deviation, a standard deviation under float64's eps
taken as 1), is cut to its top ``K`` right singular vectors scaled by their
singular values, ``S[:K, None] * Vt[:K]`` of ``Z = U S Vt``: an array of
shape (K, n_neurons). :class:`RunReducer` computes the same array without
keeping the run's tokens.

How, and where it approximates
------------------------------
Tokens arrive in blocks. Each neuron's sum and sum of squares are kept in
float64, shifted and scaled by the first buffer's mean and standard
deviation (so they do not cancel), and the shifted, scaled rows ``Y`` go
into a Frequent-Directions sketch ``B`` of ``sketch_rows`` M rows (Liberty
2013; Ghashami et al. 2016), in its parameterized form (Desai, Ghashami &
Phillips 2016): a buffer of ``M + block_rows`` rows; when it is full, the
eigen-decomposition of its small Gram matrix gives its singular directions,
the M strongest are kept, and only the weakest ``SHRINK_FRACTION`` of those
have their squared singular value lowered by the (M+1)-th one, the
``shrink``. The kept rows are orthogonal, so the next Gram matrix needs only
the new rows' products (float32 per column chunk, summed in float64): each
token costs about ``4 M`` multiply-adds per neuron in all. At the end,
centring and scaling are exact given the sketch:
``Z^T Z = R (Y^T Y - T d d^T) R`` with ``d`` the mean of ``Y`` and ``R`` the
ratio of the first buffer's scale to the run's standard deviation, so the
top-K eigenpairs of ``R (B^T B - T d d^T) R``, which lie in the row span of
``[B; d^T] R``, come from an eigenproblem of size ``M + block_rows + 1``.

- A run of at most ``M + block_rows`` tokens never shrinks: the result is
  nilearn's, up to floating point (float64 work on float32 activations) and
  the sign, which follows nilearn's ``svd_flip`` (each component's
  largest-magnitude neuron positive).
- A longer run is approximated: ``0 <= Y^T Y - B^T B <= sum of shrinks`` (in
  the spectral norm), and the sum of shrinks is at most
  ``||Y - Y_k||_F^2 / (SHRINK_FRACTION * M - k)`` for ``k < SHRINK_FRACTION * M``.
  Components whose variance is well above that sum are kept closely, those
  near it lose part of their variance and direction; the result depends on
  the order of the tokens. Each reduced run records ``shrinkage``, the sum of
  shrinks over the K-th eigenvalue (in the sketch's units): near 0 is close
  to exact. Plain Frequent Directions (every kept direction lowered) is
  much worse on LLM neurons, whose spectrum has a long flat tail: on SmolLM2
  over 2,500 WikiText tokens with K=20 and M=200 its components' median |r|
  with the exact ones is 0.50, against 0.999 here.

Memory is ``(M + block_rows) x n_features`` float32 values plus a few float64
vectors of ``n_features``, whatever the run's length; the float64 work runs
on column chunks of at most ~64 MiB.
"""

import math

import numpy as np
import torch

from llmfbn._utils import check_positive_int

__all__ = ["METHOD", "STANDARDIZE", "RunReducer", "default_sketch_rows"]

#: Name of the reduction in a reduced run's sidecar.
METHOD = "frequent_directions_pca"
#: How each neuron is standardised before the reduction (nilearn's term).
STANDARDIZE = "zscore_sample"

#: Fraction of the sketch's rows lowered at a shrink (alpha of Desai et al. 2016).
SHRINK_FRACTION = 0.2

_EPS = float(np.finfo(np.float64).eps)
_CHUNK_BYTES = 64 * 2 ** 20


def default_sketch_rows(n_components):
    """Default sketch size M for K components: ``max(10 K, 100)``.

    The error bound falls like ``1 / (0.2 M - K)`` of the spectrum's tail
    past K, and LLM neurons have a long flat tail, so M is several times K.
    On SmolLM2 over 5,000 WikiText tokens in one run, K=20: the components'
    median |r| with the exact ones is 0.88 at M=64, 0.982 at M=100 and 0.999
    at M=200. Memory is ``2 M x n_features`` float32 values: 0.56 GB for a
    32 x 11,008 grid at M=200.
    """
    check_positive_int(n_components, "n_components")
    return max(10 * n_components, 100)


class RunReducer:
    """Stream one run's tokens in; get nilearn's reduced run out.

    Parameters
    ----------
    n_features : int
        Neurons per token (``n_layers * width``).
    n_components : int
        K, the components kept.
    sketch_rows : int, optional
        M, the rows the sketch keeps after a shrink; at least K. Default:
        :func:`default_sketch_rows`.
    block_rows : int, optional
        Rows taken in between shrinks; default M (the buffer holds 2 M rows).
    device : str or torch.device, default "cpu"
        Where the buffer lives and the work is done (the model's device).

    Attributes
    ----------
    n_tokens : int
        Tokens seen so far.
    n_shrinks : int
        Shrinks done so far; 0 means the result is exact.
    """

    def __init__(self, n_features, n_components, sketch_rows=None, block_rows=None,
                 device="cpu"):
        check_positive_int(n_features, "n_features")
        check_positive_int(n_components, "n_components")
        if sketch_rows is None:
            sketch_rows = default_sketch_rows(n_components)
        check_positive_int(sketch_rows, "sketch_rows")
        if sketch_rows < n_components:
            raise ValueError(f"'sketch_rows' must be >= n_components ({n_components}). "
                             f"{sketch_rows} was provided.")
        block_rows = sketch_rows if block_rows is None else block_rows
        check_positive_int(block_rows, "block_rows")
        self.n_features = n_features
        self.n_components = n_components
        self.sketch_rows = sketch_rows
        self.block_rows = block_rows
        self.device = torch.device(device)
        self.n_tokens = 0
        self.n_shrinks = 0
        self._capacity = sketch_rows + block_rows
        # Parameterized FD: the top (1 - SHRINK_FRACTION) M directions are never lowered.
        self._first_shrunk = sketch_rows - max(1, math.ceil(SHRINK_FRACTION * sketch_rows))
        self._buffer = None  # (capacity, n_features) float32, allocated on the first rows
        self._filled = 0
        self._shift = None  # float32 (n_features,): rows are stored as (x - shift) / scale
        self._scale = None
        self._sum = None  # float64 sums of the stored (shifted, scaled) rows
        self._squares = None
        self._shrinkage = 0.0  # sum of the shrinks, in the sketch's units
        self._sketch_norms = None  # float64 (M,) squared norms of the sketch rows after a shrink

    @property
    def capacity(self):
        """Rows of the buffer: ``sketch_rows + block_rows``."""
        return self._capacity

    @property
    def buffer_bytes(self):
        """Bytes the reducer holds on its device (0 before any row)."""
        if self._buffer is None:
            return 0
        vectors = [v for v in (self._shift, self._scale, self._sum, self._squares)
                   if v is not None]
        return (self._buffer.numel() * self._buffer.element_size()
                + sum(v.numel() * v.element_size() for v in vectors))

    # -- streaming -----------------------------------------------------------

    @torch.inference_mode()
    def update(self, rows):
        """Add tokens.

        Parameters
        ----------
        rows : tensor or array of shape (n_tokens, n_features) or (n_tokens, ...)
            Activations of consecutive or any tokens of the run (the order
            matters only once the sketch shrinks); trailing axes are flattened.
        """
        rows = torch.as_tensor(rows)
        if rows.ndim < 2 or math.prod(rows.shape[1:]) != self.n_features:
            raise ValueError(f"'rows' must have {self.n_features} values per token. An array "
                             f"of shape {tuple(rows.shape)} was provided.")
        rows = rows.reshape(len(rows), self.n_features)
        if self._buffer is None and len(rows):
            self._buffer = torch.empty((self._capacity, self.n_features), dtype=torch.float32,
                                       device=self.device)
        start = 0
        while start < len(rows):
            if self._filled == self._capacity:
                self._shrink()
            take = min(len(rows) - start, self._capacity - self._filled)
            block = rows[start:start + take].to(self.device, torch.float32)
            target = self._buffer[self._filled:self._filled + take]
            target.copy_(block)
            if self._shift is not None:
                target.sub_(self._shift).div_(self._scale)
                self._accumulate(target)
            self._filled += take
            start += take
        self.n_tokens += len(rows)

    def _accumulate(self, rows):
        self._sum += rows.sum(dim=0).double()
        self._squares += (rows * rows).sum(dim=0).double()

    def _fix_standardisation(self):
        """Shift and scale the buffered raw rows by their own mean and standard deviation.

        Any shift and positive scale give the same result; these keep the
        float64 sums away from cancellation and the sketch's units close to
        the run's z-scores.
        """
        raw = self._buffer[:self._filled]
        self._shift = raw.mean(dim=0)
        scale = raw.std(dim=0, correction=1) if self._filled > 1 else torch.ones_like(
            self._shift)
        scale = torch.nan_to_num(scale, nan=1.0)
        scale[~(scale > _EPS)] = 1.0
        self._scale = scale
        raw.sub_(self._shift).div_(self._scale)
        self._sum = torch.zeros(self.n_features, dtype=torch.float64, device=self.device)
        self._squares = torch.zeros_like(self._sum)
        self._accumulate(raw)

    def _chunks(self, n_rows):
        step = max(1, _CHUNK_BYTES // (8 * max(n_rows, 1)))
        for start in range(0, self.n_features, step):
            yield slice(start, min(start + step, self.n_features))

    def _gram(self):
        """Gram matrix of the full buffer, float64 (float32 products per column chunk).

        After a shrink the sketch's M rows are orthogonal with known squared
        norms, so only the rows taken since (and their products with the
        sketch) are computed: ``(M + b) x b`` products per column, not
        ``(M + b)^2``.
        """
        buffer, capacity = self._buffer, self._capacity
        gram = torch.zeros((capacity, capacity), dtype=torch.float64, device=self.device)
        first = 0 if self._sketch_norms is None else self.sketch_rows
        for cols in self._chunks(capacity):
            part = buffer[:, cols]
            gram[first:] += (part[first:] @ part.T).double()
        if first:
            gram[:first, first:] = gram[first:, :first].T
            gram[:first, :first] = torch.diag(self._sketch_norms)
        return gram

    def _shrink(self):
        if self._shift is None:
            self._fix_standardisation()
        buffer = self._buffer
        values, vectors = torch.linalg.eigh(self._gram())
        values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
        m = self.sketch_rows
        shrink = values[m]
        lowered = torch.zeros(m, dtype=torch.float64, device=self.device)
        lowered[self._first_shrunk:] = shrink
        keep = values[:m] > 0
        norms = torch.zeros(m, dtype=torch.float64, device=self.device)
        norms[keep] = (values[:m] - lowered)[keep].clamp_min(0)
        factors = torch.zeros(m, dtype=torch.float64, device=self.device)
        factors[keep] = torch.sqrt(norms[keep] / values[:m][keep])
        coefficients = (vectors[:, :m] * factors).T.to(torch.float32)  # (m, capacity)
        for cols in self._chunks(self._capacity):
            buffer[:m, cols] = coefficients @ buffer[:, cols]
        self._sketch_norms = norms  # the new rows are orthogonal, with these squared norms
        self._filled = m
        self._shrinkage += float(shrink)
        self.n_shrinks += 1

    # -- result --------------------------------------------------------------

    @torch.inference_mode()
    def finalize(self):
        """The reduced run, as nilearn's ``_mask_and_reduce_single`` gives it.

        Returns
        -------
        components : float32 array of shape (n_components, n_features)
            Row k is the k-th spatial principal component of the standardised
            run (unit norm) times its singular value; largest first, each one's
            largest-magnitude neuron positive.
        info : dict
            ``n_tokens``, ``n_shrinks``, ``exact`` (no shrink happened) and
            ``shrinkage`` (sum of shrinks over the K-th eigenvalue, in the
            sketch's units; 0 when exact, None when the K-th is 0).

        Raises
        ------
        ValueError
            When the run has fewer than ``max(n_components, 2)`` tokens.
        """
        n, k = self.n_tokens, self.n_components
        if n < max(k, 2):
            raise ValueError(f"A run reduced to n_components={k} needs at least {max(k, 2)} "
                             f"tokens. {n} were given.")
        if self._shift is None:
            self._fix_standardisation()
        mean = self._sum / n
        variance = ((self._squares - self._sum * mean) / (n - 1)).clamp_min(0)
        std = self._scale.double() * torch.sqrt(variance)
        std[~(std >= _EPS)] = 1.0
        ratio = self._scale.double() / std  # (n_features,)
        rows = self._filled + 1  # the sketch, then the mean row
        sign = torch.ones(rows, dtype=torch.float64, device=self.device)
        sign[-1] = -float(n)

        def block(cols):
            part = torch.cat([self._buffer[:self._filled, cols].double(), mean[None, cols]])
            return part * ratio[cols]

        gram = torch.zeros((rows, rows), dtype=torch.float64, device=self.device)
        for cols in self._chunks(rows):
            part = block(cols)
            gram += part @ part.T
        values, vectors = torch.linalg.eigh(gram)
        kept = values > values.max().clamp_min(0) * rows * _EPS
        values, vectors = values[kept], vectors[:, kept]
        root = torch.sqrt(values)
        # W^T J W = Q H Q^T with Q = W^T E diag(1/root), H = diag(root) E^T J E diag(root).
        small = root[:, None] * (vectors.T @ (vectors * sign[:, None])) * root[None, :]
        theta, f = torch.linalg.eigh((small + small.T) / 2)
        theta, f = theta.flip(0)[:k], f.flip(1)[:, :k]
        coefficients = vectors @ (f / root[:, None])  # (rows, <=k)
        maps = torch.zeros((k, self.n_features), dtype=torch.float64, device=self.device)
        for cols in self._chunks(rows):
            maps[:len(theta), cols] = coefficients.T @ block(cols)
        singular = torch.sqrt(theta.clamp_min(0))
        peak = maps.abs().argmax(dim=1, keepdim=True)
        flips = torch.sign(maps.gather(1, peak)).squeeze(1)
        flips[flips == 0] = 1.0
        maps[:len(theta)] *= (singular * flips[:len(theta)])[:, None]
        kth = float(theta[-1]) if len(theta) == k else 0.0
        info = {
            "n_tokens": n, "n_shrinks": self.n_shrinks, "exact": self.n_shrinks == 0,
            "shrinkage": 0.0 if self.n_shrinks == 0
            else (self._shrinkage / kth if kth > 0 else None),
        }
        return maps.to(torch.float32).cpu().numpy(), info
