"""A model's MLP neurons on the word axis: each word's mean over its tokens."""

import numpy as np
import torch
from tqdm.auto import tqdm

from llmfbn.evaluation._forward import pad_id
from llmfbn.grid import NeuronGrid
from llmfbn.recording import ActivationRecorder

__all__ = ["BATCH_BYTES", "model_grid", "word_activations"]

#: Most bytes of a batch's float32 activation buffer (padded tokens x layers x width x 4),
#: as ``llmfbn record``'s default ``--batch-memory``.
BATCH_BYTES = 1 << 30


def _batches(lengths, batch_size, max_batch_tokens):
    """Text indices by length, cut into batches of at most ``batch_size`` texts whose
    padded tokens stay within ``max_batch_tokens`` (a batch takes one text, however long)."""
    order = sorted((i for i, n in enumerate(lengths) if n), key=lambda i: (lengths[i], i))
    batches, batch = [], []
    for i in order:
        if batch and (len(batch) == batch_size
                      or (len(batch) + 1) * lengths[i] > max_batch_tokens):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def _word_means(act, words, n_words):
    """Each word's mean over its tokens, as one matrix product (deterministic on a GPU).

    Parameters
    ----------
    act : float32 tensor of shape (n_tokens, n_layers, width)
    words : int array of shape (n_tokens,)
        Each token's word, -1 for none.
    n_words : int

    Returns
    -------
    float32 array of shape (n_words, n_layers, width)
    """
    mine = np.flatnonzero(words >= 0)
    counts = np.bincount(words[mine], minlength=n_words)
    weights = np.zeros((n_words, len(words)), dtype=np.float32)
    weights[words[mine], mine] = 1.0 / counts[words[mine]]
    weights = torch.as_tensor(weights, device=act.device)
    means = weights @ act.reshape(len(words), -1)
    return means.reshape((n_words,) + tuple(act.shape[1:])).cpu().numpy()


def _grid(loaded, recorder):
    units = None if recorder.units is None else [u.tolist() for u in recorder.units]
    return NeuronGrid(len(recorder.layers), recorder.width, layers=recorder.layers,
                      model=loaded.name, signal="mlp", weights_hash=loaded.weights_hash,
                      model_layers=recorder.location.n_layers, units=units)


def model_grid(loaded):
    """The neuron grid of ``loaded``'s ``mlp`` neurons, every layer (no forward pass).

    A pruned model's grid is its source model's, with the units it kept
    present; the grid carries the model's name and weights hash.
    """
    return _grid(loaded, ActivationRecorder(loaded.model, signal="mlp"))


def word_activations(loaded, token_words, axis, batch_size=8, desc="model", verbose=0):
    """Record the ``mlp`` signal of every layer and average it over each word's tokens.

    Texts with no word on the axis are not run. The signal is float32
    whatever the model's dtype (:class:`llmfbn.recording.ActivationRecorder`);
    the word means are taken on the model's device, as one matrix product
    per text (the same sums in the same order on every run, also on a GPU).

    Parameters
    ----------
    loaded : LoadedModel
    token_words : TokenWords
        This model's tokens of the texts (:func:`~llmfbn.fingerprint.token_words`).
    axis : WordAxis
        The shared words (:func:`~llmfbn.fingerprint.shared_words`).
    batch_size : int, default 8
        Texts per forward pass.
    desc : str, default "model"
        Label of the progress bar.
    verbose : int, default 0
        A progress bar over tokens when ``>= 1``.

    Returns
    -------
    activations : float32 array of shape (n_words, n_neurons)
        Present neurons only, in the grid's neuron order (layer by layer).
    grid : NeuronGrid
        The model's grid (a pruned model's: its source model's, with the
        units it kept present).
    """
    recorder = ActivationRecorder(loaded.model, signal="mlp")
    grid = _grid(loaded, recorder)
    out = np.zeros((axis.n_words, grid.n_neurons), dtype=np.float32)
    starts = axis.starts
    lengths = [len(ids) if axis.lengths[t] else 0 for t, ids in enumerate(token_words.token_ids)]
    per_token = len(recorder.layers) * recorder.width * 4
    batches = _batches(lengths, batch_size, max(BATCH_BYTES // per_token, 1))
    pad = pad_id(loaded.tokenizer)
    with recorder, tqdm(total=sum(lengths), unit="tok", desc=desc,
                        disable=verbose < 1 or not sum(lengths)) as bar:
        for batch in batches:
            acts = recorder.record([token_words.token_ids[t] for t in batch], pad,
                                   keep_on_device=True)
            for t, act in zip(batch, acts):
                out[starts[t]:starts[t] + axis.lengths[t]] = grid.take_present(
                    _word_means(act, axis.axis_words(token_words, t), int(axis.lengths[t])))
            acts = act = None  # the batch's buffer is freed before the next one
            bar.update(sum(lengths[t] for t in batch))
    return out, grid
