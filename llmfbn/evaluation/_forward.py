"""Batched forward passes that return the log-probabilities of given tokens.

Shared by perplexity and zero-shot scoring. Sequences of different lengths
are padded on the right: with causal attention a real token never sees the
padding after it, positions are unchanged, and an attention mask is passed
only when a batch holds padding, so a batch of equal-length sequences runs
exactly as one unpadded call would.
"""

import contextvars
import inspect
from contextlib import contextmanager

import numpy as np

#: Config attributes holding a model's position limit, in the order tried
#: (the same list as lm-evaluation-harness' ``HFLM.max_length``).
POSITION_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")


def position_limit(model):
    """The model's maximum number of positions, or None when its config gives none."""
    config = getattr(model, "config", None)
    for attr in POSITION_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_device(model):
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        import torch

        return torch.device("cpu")


def pad_id(tokenizer):
    """Any valid id works for right padding; prefer the pad, then eos, then 0."""
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


#: ``(model, engine)`` while :func:`logprob_engine` is active, else None.
_ENGINE = contextvars.ContextVar("llmfbn_logprob_engine", default=None)


@contextmanager
def logprob_engine(model, engine):
    """Inside the block, :func:`target_logprobs` on ``model`` calls ``engine`` instead.

    ``engine(sequences, starts, pad_token_id)`` must return what
    :func:`target_logprobs` would. Sweeps use it to share work between edits
    (``llmfbn.intervention``); calls on any other model are unaffected.
    """
    token = _ENGINE.set((model, engine))
    try:
        yield
    finally:
        _ENGINE.reset(token)


def _accepts(function, name):
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _accepts_logits_to_keep(model):
    return _accepts(model.forward, "logits_to_keep")


def pad_sequences(sequences, pad_token_id, device):
    """Right-pad token id lists into one batch.

    Returns
    -------
    ids : LongTensor of shape (n_sequences, max_len), on the CPU
    kwargs : dict
        ``use_cache=False`` and, when the lengths differ, the
        ``attention_mask`` (on ``device``) for the model's forward call.
    """
    import torch

    lengths = [len(s) for s in sequences]
    width = max(lengths)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    kwargs = {"use_cache": False}
    if min(lengths) < width:
        mask = torch.zeros_like(ids)
        for row, n in enumerate(lengths):
            mask[row, :n] = 1
        kwargs["attention_mask"] = mask.to(device)
    return ids, kwargs


#: Rows of logits scored at a time on a CPU: each block is converted to float32
#: and reduced while it sits in cache (about 2x faster than the whole
#: ``(positions, vocab)`` matrix at once for a 49k vocabulary in bfloat16).
CPU_SCORE_ROWS = 8


def score_positions(logits, targets, return_greedy=False):
    """Log-probabilities of ``targets`` under ``logits``, computed in float32.

    Parameters
    ----------
    logits : Tensor of shape (n_positions, vocab_size), any float dtype
        Row ``i`` predicts ``targets[i]``.
    targets : LongTensor of shape (n_positions,)
    return_greedy : bool, default False
        Also tell whether every target is its row's argmax; False skips
        the argmax (None is returned in its place).

    Returns
    -------
    logp : ndarray of shape (n_positions,), float64
        ``log_softmax(logits[i])[targets[i]]``.
    greedy : bool or None
        True for no positions.
    """
    import torch

    n = len(targets)
    if n == 0:
        return np.zeros(0), (True if return_greedy else None)
    targets = targets.to(logits.device)
    step = CPU_SCORE_ROWS if logits.device.type == "cpu" else n
    parts, greedy = [], True
    for i in range(0, n, step):
        rows = logits[i:i + step].float()
        block = targets[i:i + step]
        parts.append(rows.gather(1, block[:, None])[:, 0] - torch.logsumexp(rows, dim=-1))
        if return_greedy and greedy:
            greedy = bool((rows.argmax(dim=-1) == block).all())
    logp = torch.cat(parts).double().cpu().numpy()
    return logp, (greedy if return_greedy else None)


def target_logprobs(model, sequences, starts, pad_token_id=0, return_greedy=False):
    """Log-probabilities of ``seq[start:]`` given the tokens before, for a batch.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM, called as ``model(input_ids, attention_mask=...)``.
    sequences : list of list of int
        Token ids, one list per sequence; each is fed whole to the model.
    starts : list of int
        For sequence ``i``, tokens ``starts[i]`` to ``len(sequences[i]) - 1``
        are scored; ``1 <= starts[i] <= len(sequences[i])``.
    pad_token_id : int, default 0
    return_greedy : bool, default False
        Also say, per sequence, whether every scored token is the model's
        argmax prediction (lm-eval's ``is_greedy``). Inside
        ``logprob_engine``, an engine that takes ``return_greedy`` answers;
        one that does not is bypassed and the model itself is called.

    Returns
    -------
    list of ndarray
        ``out[i]`` has shape (len(sequences[i]) - starts[i],), float64:
        ``log p(seq[t] | seq[:t])`` for each scored ``t``.
    greedy : list of bool
        Only with ``return_greedy``.
    """
    import torch

    active = _ENGINE.get()
    if active is not None and active[0] is model:
        if not return_greedy:
            return active[1](sequences, starts, pad_token_id)
        if _accepts(active[1], "return_greedy"):
            return active[1](sequences, starts, pad_token_id, return_greedy=True)
        # An engine that cannot tell greedy tokens: the model itself answers (an engine
        # that shares work must notice this call, as it notices any other).
    lengths = [len(s) for s in sequences]
    width = max(lengths)
    ids, kwargs = pad_sequences(sequences, pad_token_id, model_device(model))
    # Logits at position t - 1 predict token t: keep only the positions needed.
    first = min(starts) - 1
    offset = 0
    if _accepts_logits_to_keep(model) and first > 0:
        kwargs["logits_to_keep"] = width - first
        offset = first
    with torch.inference_mode():
        logits = model(ids.to(model_device(model)), **kwargs).logits
        out, greedy = [], []
        for row, (n, start) in enumerate(zip(lengths, starts)):
            logp, all_greedy = score_positions(logits[row, start - 1 - offset:n - 1 - offset],
                                               ids[row, start:n], return_greedy)
            out.append(logp)
            greedy.append(all_greedy)
    return (out, greedy) if return_greedy else out
