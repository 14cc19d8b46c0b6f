"""Calibration: per-neuron statistics over a text file, and FLAP's bias compensation.

The statistics are those of the ``mlp`` signal (the input of each layer's
down projection, one value per neuron: see :mod:`llmfbn.models`), streamed
over the calibration tokens in float64: memory holds one batch, never the
corpus.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from llmfbn._utils import check_positive_int, log
from llmfbn.evaluation import position_limit
from llmfbn.io import file_sha256
from llmfbn.models import LoadedModel, locate_neurons
from llmfbn.pruning._weights import down_columns
from llmfbn.recording import ActivationRecorder, plan_runs, read_texts

__all__ = ["CalibrationStats", "bias_compensation", "calibration_stats"]

#: Most tokens per forward pass: longer texts are cut into consecutive windows.
WINDOW = 256


@dataclass
class CalibrationStats:
    """Per-neuron statistics of the ``mlp`` signal over calibration tokens.

    Attributes
    ----------
    mean : float64 array of shape (n_layers, n_units)
        Mean activation over tokens (FLAP's baseline).
    variance : float64 array of shape (n_layers, n_units)
        Sample variance over tokens, ``ddof=1`` (FLAP's fluctuation).
    sq_norm : float64 array of shape (n_layers, n_units)
        Sum over tokens of the squared activation, ``||x_j||_2 ** 2`` (Wanda).
    n_tokens : int
        Tokens the statistics are over.
    path : str
        The calibration file.
    sha256 : str
        ``sha256:<hex>`` of the file's bytes.
    max_tokens : int or None
        The cap asked for (None: the whole file).
    weights_hash : str or None
        The model's weights hash (:attr:`LoadedModel.weights_hash`).
    """

    mean: np.ndarray
    variance: np.ndarray
    sq_norm: np.ndarray
    n_tokens: int
    path: str
    sha256: str
    max_tokens: object = None
    weights_hash: object = None

    def record(self):
        """``{"path", "sha256", "n_tokens"}``: what a pruning folder records."""
        return {"path": self.path, "sha256": self.sha256, "n_tokens": int(self.n_tokens)}


def _pieces(loaded, path, max_tokens):
    """Token windows of the file, in order, at most ``max_tokens`` tokens in all."""
    limit = position_limit(loaded.model)
    window = WINDOW if limit is None else min(WINDOW, limit)
    runs, _ = plan_runs(loaded.tokenizer, read_texts(path), max_tokens=window,
                        long_texts="split")
    pieces, total = [], 0
    for run in runs:
        for piece in run.pieces:
            ids = piece.token_ids
            if max_tokens is not None:
                ids = ids[:max_tokens - total]
            if ids:
                pieces.append(ids)
                total += len(ids)
    return pieces, total


def _pad_id(tokenizer):
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if isinstance(value, int):
            return value
    return 0


class _Moments:
    """Running count, mean, sum of squared deviations and sum of squares (float64).

    Parallel merge of Chan, Golub and LeVeque (1979): exact up to rounding
    whatever the batch sizes.
    """

    def __init__(self, shape, device):
        self.n = 0
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.m2 = torch.zeros_like(self.mean)
        self.sq = torch.zeros_like(self.mean)

    def add(self, x):
        """Merge ``x`` of shape (n_tokens, *shape)."""
        x = x.to(torch.float64)
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        self.sq += (x * x).sum(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / n)
        self.m2 += m2_b + delta * delta * (self.n * n_b / n)
        self.n = n


def calibration_stats(loaded, path, max_tokens=None, batch_size=8, verbose=1):
    """Mean, variance and squared norm of every MLP neuron over a calibration text.

    The file is read by :func:`llmfbn.recording.read_texts` (one text per
    line, WikiText paragraphs for ``wiki.*.raw``, ``text`` column of a
    .jsonl/.csv/.tsv); each text is cut into consecutive windows of at most
    :data:`WINDOW` tokens (or the model's position limit), one forward pass
    each, and the windows are taken in file order until ``max_tokens``
    tokens (the last window is cut). The forward pass stops after the last
    down projection.

    Parameters
    ----------
    loaded : LoadedModel
    path : str or Path
        Calibration text file. Never the evaluation text (see
        :func:`llmfbn.networks.check_leakage`).
    max_tokens : int, optional
        Most calibration tokens, in all. Default: the whole file.
    batch_size : int, default 8
        Windows per forward pass.
    verbose : int, default 1
        Progress bar over tokens when ``>= 1``.

    Returns
    -------
    CalibrationStats
        Arrays of shape (n_layers, n_units), float64.

    Raises
    ------
    ValueError
        When the file yields fewer than 2 tokens (no variance).
    """
    if not isinstance(loaded, LoadedModel):
        raise TypeError(f"'loaded' must be a LoadedModel. {type(loaded).__name__} was provided.")
    check_positive_int(max_tokens, "max_tokens", minimum=2, allow_none=True)
    check_positive_int(batch_size, "batch_size")
    path = Path(path)
    pieces, total = _pieces(loaded, path, max_tokens)  # checks the file first
    sha = file_sha256(path)
    if total < 2:
        raise ValueError(f"'calibration' must give at least 2 tokens. {path} gives {total}.")
    location = locate_neurons(loaded.model)
    device = next(loaded.model.parameters()).device
    moments = _Moments((location.n_layers, location.n_units), device)
    log(f"calibration: {total} tokens of {path} in {len(pieces)} windows", verbose)
    pad = _pad_id(loaded.tokenizer)
    with ActivationRecorder(loaded.model, signal="mlp") as recorder, \
            tqdm(total=total, unit="tok", desc="calibration", disable=verbose < 1) as bar:
        for start in range(0, len(pieces), batch_size):
            batch = pieces[start:start + batch_size]
            for act in recorder.record(batch, pad, keep_on_device=True):
                moments.add(act)  # (n_tokens, n_layers, n_units)
            bar.update(sum(len(ids) for ids in batch))
    return CalibrationStats(
        mean=moments.mean.cpu().numpy(),
        variance=(moments.m2 / (moments.n - 1)).cpu().numpy(),
        sq_norm=moments.sq.cpu().numpy(),
        n_tokens=int(moments.n),
        path=str(path),
        sha256=sha,
        max_tokens=max_tokens,
        weights_hash=loaded.weights_hash,
    )


def check_stats_fit(loaded, stats):
    """Raise ValueError unless ``stats`` were computed on this model's neurons."""
    location = locate_neurons(loaded.model)
    expected = (location.n_layers, location.n_units)
    if not isinstance(stats, CalibrationStats):
        raise TypeError(f"'calibration_stats' must be CalibrationStats. "
                        f"{type(stats).__name__} was provided.")
    if stats.mean.shape != expected:
        raise ValueError(f"'calibration_stats' are of {stats.mean.shape[0]} layers x "
                         f"{stats.mean.shape[1]} neurons but the model has {expected[0]} x "
                         f"{expected[1]}.")
    if (stats.weights_hash is not None and loaded.weights_hash is not None
            and stats.weights_hash != loaded.weights_hash):
        raise ValueError(f"'calibration_stats' were computed on weights {stats.weights_hash} "
                         f"but the model's are {loaded.weights_hash}.")


def check_keep(keep, shape):
    """``keep`` as a bool array of ``shape`` (n_layers, n_units), or ValueError."""
    keep = np.asarray(keep)
    if keep.dtype != bool or keep.shape != tuple(shape):
        raise ValueError(f"'keep' must be a bool array of shape {tuple(shape)}. An array of "
                         f"{keep.dtype} and shape {keep.shape} was provided.")
    return keep


@torch.no_grad()
def bias_compensation(loaded, calibration_stats, keep):
    """FLAP's baseline bias: the mean contribution of the removed neurons.

    Removing neuron ``j`` from ``down(x) = W x + b`` loses ``W[:, j] x_j``;
    adding ``W[:, removed] @ mean[removed]`` to the bias restores it on
    average over the calibration tokens (An et al., 2024, "Fluctuation-based
    adaptive structured pruning for large language models", AAAI; the
    ``compress`` step of its reference code).

    Parameters
    ----------
    loaded : LoadedModel
        The unpruned model.
    calibration_stats : CalibrationStats
        Of this model (:func:`calibration_stats`).
    keep : bool array of shape (n_layers, n_units)
        True for the neurons kept.

    Returns
    -------
    dict of int -> tensor of shape (hidden_size,)
        For each layer that loses at least one neuron, the vector to add to
        its down projection's bias (created as zeros when absent), computed
        in float64 and returned in the weight's dtype, on its device.
    """
    check_stats_fit(loaded, calibration_stats)
    location = locate_neurons(loaded.model)
    keep = check_keep(keep, (location.n_layers, location.n_units))
    out = {}
    for layer in range(location.n_layers):
        removed = np.flatnonzero(~keep[layer])
        if not len(removed):
            continue
        columns = down_columns(loaded.model, location, layer)
        index = torch.as_tensor(removed, device=columns.device)
        mean = torch.as_tensor(calibration_stats.mean[layer, removed], dtype=torch.float64,
                               device=columns.device)
        shift = columns[:, index].to(torch.float64) @ mean
        out[layer] = shift.to(columns.dtype)
    return out
