"""Evaluate several edits of one model, sharing the work they have in common.

A network and its matched controls have the same neuron count in every
layer, so they are first edited in the same layer ``L``: the layers before
``L`` compute the same thing for all of them. :func:`evaluate_edits` runs an
:class:`~llmfbn.intervention.Evaluation` once per edit, but every batch of
token ids the evaluation scores (through
:func:`llmfbn.evaluation._forward.target_logprobs`, as perplexity and
zero-shot scoring do) is run once up to the residual stream entering layer
``L``; layers ``L`` to the last, the final norm and the LM head then run
once for all edits together, the batch repeated once per edit and each
repeat edited with its own neurons. The first run of the evaluation computes
every edit's log-probabilities; the others replay them.

Every run also holds its own edit as ordinary hooks (:func:`edit_neurons`),
idle while the shared computation runs: an evaluation that calls the model
itself is edited as usual, and a call that the first run did not make (an
evaluation whose calls differ between runs) is computed afresh. Sharing is
exact only for decoder stacks whose layers all take the same arguments
(hidden states, position embeddings, attention mask) and chain plainly
(:data:`SHARED_PREFIX_TYPES`); any other model gets one full evaluation per
edit. The numbers never depend on the path (up to float rounding of batched
matrix products).
"""

import hashlib

import numpy as np
import torch

from llmfbn._utils import log
from llmfbn.evaluation._forward import (
    logprob_engine,
    model_device,
    pad_sequences,
    score_positions,
    target_logprobs,
)
from llmfbn.intervention._edit import edit_neurons, edit_units
from llmfbn.intervention._targets import resolve_targets
from llmfbn.models import locate_neurons

__all__ = ["SHARED_PREFIX_TYPES", "evaluate_edits", "shares_prefix"]

#: ``model_type`` of the decoder stacks whose layers are called in a plain loop
#: ``hidden = layer(hidden, attention_mask=..., position_embeddings=..., ...)``
#: with the same keyword arguments for every layer, then ``norm`` and ``lm_head``
#: (Qwen2 only when no layer uses sliding-window attention).
SHARED_PREFIX_TYPES = ("llama", "mistral", "qwen2")


def shares_prefix(model):
    """True when :func:`evaluate_edits` can run ``model`` layer by layer exactly.

    Parameters
    ----------
    model : transformers.PreTrainedModel

    Returns
    -------
    bool
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SHARED_PREFIX_TYPES:
        return False
    if set(getattr(config, "layer_types", None) or ["full_attention"]) != {"full_attention"}:
        return False
    if any(getattr(config, attr, None) for attr in ("final_logit_softcapping",
                                                     "logit_scale", "logits_scaling")):
        return False
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    return (layers is not None and len(layers) == config.num_hidden_layers
            and hasattr(decoder, "norm") and hasattr(model, "lm_head"))


def _key(sequences, starts, pad_token_id):
    digest = hashlib.sha256(repr((pad_token_id, list(starts))).encode())
    for seq in sequences:
        digest.update(np.asarray(seq, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def _repeat(value, batch, n_edits):
    """``value`` for ``n_edits`` stacked copies of a batch of ``batch`` rows."""
    if isinstance(value, torch.Tensor):
        if value.dim() and value.shape[0] == batch and n_edits > 1:
            return value.repeat((n_edits,) + (1,) * (value.dim() - 1))
        return value
    if isinstance(value, tuple):
        return tuple(_repeat(v, batch, n_edits) for v in value)
    if isinstance(value, list):
        return [_repeat(v, batch, n_edits) for v in value]
    return value


def _row_hook(blocks, fn, layer, check_finite):
    """Pre-hook editing rows ``[e * batch, (e + 1) * batch)`` with edit ``e``'s units."""
    def hook(module, args):
        hidden = args[0]
        for rows, units in blocks:
            edit_units(hidden[rows], units.to(hidden.device), fn, layer, check_finite)
        return (hidden,) + tuple(args[1:])

    return hook


class _SharedPrefix:
    """Log-probabilities of every edit per call; the first edit's returned, the rest kept."""

    def __init__(self, model, resolved, fn, check_finite, edits_per_batch):
        self.model = model
        self.resolved = resolved
        self.fn = fn
        self.check_finite = check_finite
        self.edits_per_batch = edits_per_batch
        layers = [layer for edit in resolved for layer, units in edit.items() if len(units)]
        self.first = min(layers) if layers else model.config.num_hidden_layers
        self.location = locate_neurons(model)
        self.calls = {}  # key -> [[(logps, greedy) of edit e for e in edits], ...]
        self.inside = False  # True while this engine runs the model itself

    def compute(self, sequences, starts, pad_token_id, return_greedy=False):
        """Engine of the first run: every edit computed, edit 0's returned."""
        key = _key(sequences, starts, pad_token_id)
        self.inside = True
        try:
            per_edit = self._logprobs(sequences, starts, pad_token_id, return_greedy)
        finally:
            self.inside = False
        self.calls.setdefault(key, []).append(per_edit)
        return per_edit[0] if return_greedy else per_edit[0][0]

    def replayer(self, edit):
        """Engine of edit ``edit``'s run: the kept results of the same calls, in order."""
        used = {}

        def replay(sequences, starts, pad_token_id, return_greedy=False):
            key = _key(sequences, starts, pad_token_id)
            kept = self.calls.get(key, [])
            index = used.get(key, 0)
            if index < len(kept):
                used[key] = index + 1
                logps, greedy = kept[index][edit]
                if not return_greedy:
                    return logps
                if None not in greedy:
                    return logps, greedy
            # Not made by the first run, or made without greedy tokens: the model answers.
            with logprob_engine(None, None):
                return target_logprobs(self.model, sequences, starts, pad_token_id,
                                       return_greedy=return_greedy)

        return replay

    def idle_inside(self, fn):
        """``fn`` for the ordinary hooks: the identity while the engine computes."""
        return lambda values: values if self.inside else fn(values)

    def _logprobs(self, sequences, starts, pad_token_id, return_greedy):
        model, decoder = self.model, self.model.model
        device = model_device(model)
        lengths = [len(s) for s in sequences]
        batch = len(sequences)
        ids, kwargs = pad_sequences(sequences, pad_token_id, device)
        n_layers = model.config.num_hidden_layers
        captured = {}

        def capture(module, args, layer_kwargs):
            captured["hidden"] = args[0] if args else layer_kwargs.pop("hidden_states")
            captured["args"] = tuple(args[1:])
            captured["kwargs"] = layer_kwargs
            raise _Stop

        # Layer `first` gets the residual stream the unedited layers before it made.
        target = decoder.layers[self.first] if self.first < n_layers else decoder.norm
        handle = target.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            with torch.inference_mode():
                decoder(ids.to(device), **kwargs)
        except _Stop:
            pass
        finally:
            handle.remove()
        first_scored = min(starts) - 1
        out = [None] * len(self.resolved)
        step = self.edits_per_batch or len(self.resolved)
        for chunk in range(0, len(self.resolved), step):
            edits = list(range(chunk, min(chunk + step, len(self.resolved))))
            logits = self._suffix(captured, edits, batch, n_layers, first_scored)
            for j, e in enumerate(edits):
                rows, greedy = [], []
                for row, (n, start) in enumerate(zip(lengths, starts)):
                    logp, all_greedy = score_positions(
                        logits[j * batch + row, start - 1 - first_scored:n - 1 - first_scored],
                        ids[row, start:n], return_greedy)
                    rows.append(logp)
                    greedy.append(all_greedy)
                out[e] = (rows, greedy)
        return out

    def _suffix(self, captured, edits, batch, n_layers, first_scored):
        """Logits of positions ``first_scored:`` for each edit, stacked edit-major."""
        decoder, n_edits = self.model.model, len(edits)
        hidden = _repeat(captured["hidden"], batch, n_edits)
        args = _repeat(captured["args"], batch, n_edits)
        kwargs = {name: _repeat(v, batch, n_edits) for name, v in captured["kwargs"].items()}
        handles = []
        try:
            for layer in range(self.first, n_layers):
                blocks = [(slice(j * batch, (j + 1) * batch), self.resolved[e][layer])
                          for j, e in enumerate(edits)
                          if layer in self.resolved[e] and len(self.resolved[e][layer])]
                if blocks:
                    module = self.model.get_submodule(self.location.down_proj_paths[layer])
                    handles.append(module.register_forward_pre_hook(
                        _row_hook(blocks, self.fn, layer, self.check_finite)))
            with torch.inference_mode():
                for layer in range(self.first, n_layers):
                    hidden = decoder.layers[layer](hidden, *args, **kwargs)
                    if isinstance(hidden, tuple):
                        hidden = hidden[0]
                hidden = decoder.norm(hidden)
                return self.model.lm_head(hidden[:, max(first_scored, 0):])
        finally:
            for handle in reversed(handles):
                handle.remove()


class _Stop(Exception):
    """Ends the prefix pass at the first edited layer."""


def evaluate_edits(model, tokenizer, evaluation, targets, fn, check_finite=True,
                   share=True, edits_per_batch=None, verbose=0):
    """Scores of ``evaluation`` with each of several neuron sets edited by ``fn``.

    Gives the scores that ``with edit_neurons(model, t, fn): evaluation.run(...)``
    gives for each ``t`` in ``targets`` (up to float rounding of batched matrix
    products), sharing the unedited layers when ``share`` and the model allows
    it (see the module docstring).

    Parameters
    ----------
    model : transformers.PreTrainedModel
    tokenizer : transformers.PreTrainedTokenizerBase
    evaluation : Evaluation
        ``evaluation.run(model, tokenizer) -> {metric: score}``.
    targets : list of (dict, bool array or (layer, unit) pairs)
        One neuron set per edit (see :func:`resolve_targets`), e.g. a network
        and its matched controls.
    fn : callable
        ``fn(values) -> new values``, as in :func:`edit_neurons`.
    check_finite : bool, default True
    share : bool, default True
        False always runs one full evaluation per edit.
    edits_per_batch : int or None, default None
        Edits stacked in one batch of the shared path (None: all).
    verbose : int, default 0

    Returns
    -------
    list of dict
        ``scores[i]`` is ``evaluation.run``'s result with ``targets[i]`` edited.
    """
    targets = list(targets)
    if share and len(targets) > 1 and shares_prefix(model):
        resolved = [resolve_targets(model, t) for t in targets]
        engine = _SharedPrefix(model, resolved, fn, check_finite, edits_per_batch)
        log(f"{getattr(evaluation, 'task', 'evaluation')}: {len(targets)} edits share the "
            f"{engine.first} layers before the first edited one", verbose, level=2)
        return _replayed(model, tokenizer, evaluation, engine, targets)
    return _one_by_one(model, tokenizer, evaluation, targets, fn, check_finite)


def _one_by_one(model, tokenizer, evaluation, targets, fn, check_finite):
    scores = []
    for target in targets:
        with edit_neurons(model, target, fn, check_finite=check_finite):
            scores.append(evaluation.run(model, tokenizer))
    return scores


def _replayed(model, tokenizer, evaluation, engine, targets):
    scores = []
    for edit, target in enumerate(targets):
        run = engine.compute if edit == 0 else engine.replayer(edit)
        with edit_neurons(model, target, engine.idle_inside(engine.fn),
                          check_finite=engine.check_finite), logprob_engine(model, run):
            scores.append(evaluation.run(model, tokenizer))
    return scores
