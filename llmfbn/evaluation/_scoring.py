"""Zero-shot multiple choice and cloze by log-likelihood (never by parsing generated text)."""

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from llmfbn._utils import check_positive_int, log
from llmfbn.datasets._tasks import ClozeItem, Item, load_task
from llmfbn.evaluation._forward import pad_id, position_limit, target_logprobs


def _encode(tokenizer, text):
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def leading_special_ids(tokenizer):
    """Ids the tokenizer puts before a text by default (e.g. ``[BOS]``), else ``[]``."""
    with_special = list(tokenizer("a")["input_ids"])
    plain = _encode(tokenizer, "a")
    for k in range(len(with_special) - len(plain) + 1):
        if with_special[k:k + len(plain)] == plain:
            return with_special[:k]
    return []


def encode_pair(tokenizer, context, continuation, prefix=()):
    """Token ids of a context and of the continuation to score after it.

    The convention of lm-evaluation-harness: trailing whitespace of the
    context moves to the start of the continuation; ``context +
    continuation`` is tokenised jointly and the continuation's tokens are
    those after the tokens of the context alone. Where the joint tokens do
    not start with the context's own tokens (a token merged across the
    boundary), the two parts are tokenised separately and concatenated
    instead, so the scored tokens always spell exactly the continuation;
    the caveat is that this token sequence is not the tokenizer's own
    segmentation of the joint text.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerBase
    context, continuation : str
    prefix : sequence of int
        Put before the context (the tokenizer's default leading special
        tokens, see :func:`leading_special_ids`).

    Returns
    -------
    context_ids, continuation_ids : list of int
    joint : bool
        False where the separate tokenisation was used.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    context_ids = _encode(tokenizer, context)
    whole = _encode(tokenizer, context + continuation)
    joint = whole[:len(context_ids)] == context_ids and len(whole) > len(context_ids)
    if joint:
        continuation_ids = whole[len(context_ids):]
    else:
        continuation_ids = _encode(tokenizer, continuation)
    if not continuation_ids:
        raise ValueError(f"The continuation {continuation!r} gives no tokens to score.")
    context_ids = list(prefix) + context_ids
    if not context_ids:
        # Nothing to condition on: start from the end-of-text token, as lm-eval does.
        start = getattr(tokenizer, "eos_token_id", None)
        if start is None:
            start = getattr(tokenizer, "bos_token_id", None)
        if start is None:
            raise ValueError(
                f"The context {context!r} gives no tokens and the tokenizer has no "
                f"eos or bos token to start from."
            )
        context_ids = [start]
    return context_ids, continuation_ids, joint


@dataclass(frozen=True)
class TaskResult:
    """Zero-shot accuracy on a list of items.

    Attributes
    ----------
    task : str
    n : int
        Number of items.
    accuracy : float
        Share of items whose gold option has the largest summed
        log-likelihood of its continuation tokens (lm-eval ``acc``).
    accuracy_stderr : float
        ``sqrt(p (1 - p) / (n - 1))``, the standard error of a mean of 0/1
        outcomes with the n - 1 sample variance (lm-eval's ``acc_stderr``);
        NaN for ``n == 1``.
    accuracy_norm : float
        Same, ranking by log-likelihood divided by the option text's length
        in characters, delimiter excluded (lm-eval ``acc_norm``: its code
        divides by ``len(choice)`` of the Python string, although its docs say
        "byte length"). Equal to ``accuracy`` for partial-scoring items.
    accuracy_norm_stderr : float
    per_item : pandas.DataFrame
        One row per item: ``id``, ``gold``, ``pred``, ``pred_norm``,
        ``correct``, ``correct_norm``, ``loglik`` (tuple, one per option),
        ``n_tokens`` (tuple: scored tokens per option), ``n_chars`` (tuple) and
        ``joint`` (False when an option's text was tokenised apart from its
        context, see :func:`encode_pair`).
    """

    task: str
    n: int
    accuracy: float
    accuracy_stderr: float
    accuracy_norm: float
    accuracy_norm_stderr: float
    per_item: object

    @property
    def n_split_tokenised(self):
        """Items with at least one option tokenised apart from its context."""
        return int((~self.per_item["joint"]).sum())


def _stderr(p, n):
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")


def _check_items(items):
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(
            f"'items' must be a non-empty list of Item. "
            f"{type(items).__name__} of length {len(items) if hasattr(items, '__len__') else '?'}"
            f" was provided."
        )
    for k, item in enumerate(items):
        if not isinstance(item, Item):
            raise TypeError(
                f"'items' must hold Item objects. Item {k} is a {type(item).__name__}"
                + (" (score cloze items with evaluate_cloze)." if isinstance(item, ClozeItem)
                   else ".")
            )


class Loglikelihoods(NamedTuple):
    """What :func:`score_requests` gives per ``(context, continuation)`` request.

    Attributes
    ----------
    loglik : float ndarray of shape (n_requests,)
        Summed log-likelihood (nats) of the continuation's tokens.
    n_tokens : int ndarray of shape (n_requests,)
        Continuation tokens scored.
    joint : bool ndarray of shape (n_requests,)
        False where the continuation was tokenised apart from its context
        (see :func:`encode_pair`).
    greedy : bool ndarray of shape (n_requests,)
        True where every continuation token is the model's argmax prediction
        (lm-eval's ``is_greedy``).
    """

    loglik: np.ndarray
    n_tokens: np.ndarray
    joint: np.ndarray
    greedy: np.ndarray


def score_requests(model, tokenizer, requests, batch_size=8, verbose=0, desc="score",
                   add_special_tokens=True):
    """Summed log-likelihood of each continuation given its context.

    lm-evaluation-harness' ``loglikelihood`` requests, computed here:
    :func:`encode_pair` splits each pair into tokens; contexts longer than
    the model's position limit lose tokens from the left.

    Parameters
    ----------
    model, tokenizer
        A causal LM in eval mode and its tokenizer; hooks on the model apply.
    requests : list of (str, str)
        ``(context, continuation)`` pairs.
    batch_size : int, default 8
        Sequences per forward pass; longest first, right-padded.
    verbose : int, default 0
    desc : str, default "score"
        Progress bar label.
    add_special_tokens : bool, default True
        Put the tokenizer's default leading special tokens (e.g. BOS, see
        :func:`leading_special_ids`) before each context; False as
        lm-eval's ``add_bos_token=False``.

    Returns
    -------
    Loglikelihoods
        ``(loglik, n_tokens, joint, greedy)``, each of shape (n_requests,).
    """
    prefix = leading_special_ids(tokenizer) if add_special_tokens else []
    limit = position_limit(model)
    sequences, starts, joint = [], [], []
    for context, continuation in requests:
        ctx, cont, is_joint = encode_pair(tokenizer, context, continuation, prefix)
        seq = ctx + cont
        if limit is not None and len(seq) > limit:
            if len(cont) >= limit:
                raise ValueError(
                    f"The continuation {continuation!r} has {len(cont)} tokens; the "
                    f"model's position limit is {limit}."
                )
            seq = seq[-limit:]  # drop context from the left, as lm-eval does
        sequences.append(seq)
        starts.append(len(seq) - len(cont))
        joint.append(is_joint)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    loglik = np.zeros(len(sequences))
    greedy = np.zeros(len(sequences), dtype=bool)
    pad = pad_id(tokenizer)
    with tqdm(total=len(order), unit="seq", desc=desc, disable=verbose < 1) as progress:
        for k in range(0, len(order), batch_size):
            idx = order[k:k + batch_size]
            logps, is_greedy = target_logprobs(model, [sequences[i] for i in idx],
                                               [starts[i] for i in idx], pad,
                                               return_greedy=True)
            for i, logp, flag in zip(idx, logps, is_greedy):
                loglik[i] = logp.sum()
                greedy[i] = flag
            progress.update(len(idx))
    n_tokens = np.array([len(s) - a for s, a in zip(sequences, starts)])
    return Loglikelihoods(loglik, n_tokens, np.array(joint, dtype=bool), greedy)


def evaluate_task(model, tokenizer, items, batch_size=8, verbose=0):
    """Zero-shot accuracy of a causal LM by comparing options' log-likelihoods.

    Each option's continuation is scored as the sum of its tokens'
    log-probabilities given the context (see :func:`encode_pair` for how the
    tokens are split; the tokenizer's default leading special tokens, e.g.
    BOS, go before the context unless ``items.add_special_tokens`` is
    False). Options of several items are batched together, longest first,
    with right padding; batching does not change the scores beyond float
    rounding. Contexts longer than the model's position
    limit lose tokens from the left.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM in eval mode. Forward hooks on it (interventions) apply.
    tokenizer : transformers.PreTrainedTokenizerBase
    items : list of Item
        E.g. from :func:`load_task`; its ``task`` attribute names the result
        and its ``add_special_tokens`` (default True) says whether the
        tokenizer's default leading special tokens go before each context.
    batch_size : int, default 8
        Sequences (options) per forward pass.
    verbose : int, default 0
        Progress bar when ``>= 1``.

    Returns
    -------
    TaskResult
    """
    import pandas as pd

    _check_items(items)
    check_positive_int(batch_size, "batch_size")
    task = getattr(items, "task", "custom")
    requests = [pair for item in items for pair in item.requests()]
    loglik, n_tokens, joint, _ = score_requests(
        model, tokenizer, requests, batch_size, verbose, desc=task,
        add_special_tokens=getattr(items, "add_special_tokens", True))
    rows, pos = [], 0
    for item in items:
        m = item.n_options
        ll = loglik[pos:pos + m]
        n_chars = np.array([float(len(t)) for t in item.option_texts])
        pred = int(np.argmax(ll))
        pred_norm = int(np.argmax(ll / np.maximum(n_chars, 1.0)))
        rows.append({
            "id": item.id, "gold": item.gold, "pred": pred, "pred_norm": pred_norm,
            "correct": pred == item.gold, "correct_norm": pred_norm == item.gold,
            "loglik": tuple(float(x) for x in ll),
            "n_tokens": tuple(int(x) for x in n_tokens[pos:pos + m]),
            "n_chars": tuple(int(x) for x in n_chars),
            "joint": bool(joint[pos:pos + m].all()),
        })
        pos += m
    per_item = pd.DataFrame(rows)
    n = len(per_item)
    acc = float(per_item["correct"].mean())
    acc_norm = float(per_item["correct_norm"].mean())
    log(f"{task}: acc {acc:.4f}, acc_norm {acc_norm:.4f} on {n} items", verbose)
    return TaskResult(task=task, n=n, accuracy=acc, accuracy_stderr=_stderr(acc, n),
                      accuracy_norm=acc_norm, accuracy_norm_stderr=_stderr(acc_norm, n),
                      per_item=per_item)


@dataclass(frozen=True)
class ClozeResult:
    """Greedy accuracy and perplexity of continuations (lm-eval ``loglikelihood`` tasks).

    Attributes
    ----------
    task : str
    n : int
        Number of items.
    accuracy : float
        Share of items whose every continuation token is the greedy (argmax)
        prediction (lm-eval ``acc`` of ``lambada_openai``).
    accuracy_stderr : float
        As :attr:`TaskResult.accuracy_stderr`.
    perplexity : float
        ``exp(mean over items of the continuation's summed NLL)``: lm-eval's
        ``perplexity`` aggregation (``exp(-mean(loglik))``), one unit per
        item whatever its number of tokens.
    per_item : pandas.DataFrame
        One row per item: ``id``, ``loglik``, ``n_tokens``, ``correct``
        (greedy) and ``joint`` (see :func:`encode_pair`).
    """

    task: str
    n: int
    accuracy: float
    accuracy_stderr: float
    perplexity: float
    per_item: object


def evaluate_cloze(model, tokenizer, items, batch_size=8, verbose=0):
    """Score cloze items: greedy accuracy and perplexity of each continuation.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM in eval mode. Forward hooks on it (interventions) apply.
    tokenizer : transformers.PreTrainedTokenizerBase
    items : list of ClozeItem
        E.g. ``load_task("lambada_openai")``; its ``task`` attribute names the
        result and its ``add_special_tokens`` (default True) says whether the
        tokenizer's default leading special tokens go before each context.
    batch_size : int, default 8
    verbose : int, default 0

    Returns
    -------
    ClozeResult
    """
    import pandas as pd

    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"'items' must be a non-empty list of ClozeItem. "
                         f"{type(items).__name__} was provided.")
    for k, item in enumerate(items):
        if not isinstance(item, ClozeItem):
            raise TypeError(f"'items' must hold ClozeItem objects. Item {k} is a "
                            f"{type(item).__name__}.")
    check_positive_int(batch_size, "batch_size")
    task = getattr(items, "task", "custom")
    scores = score_requests(model, tokenizer, [item.request() for item in items], batch_size,
                            verbose, desc=task,
                            add_special_tokens=getattr(items, "add_special_tokens", True))
    per_item = pd.DataFrame({"id": [item.id for item in items], "loglik": scores.loglik,
                             "n_tokens": scores.n_tokens, "correct": scores.greedy,
                             "joint": scores.joint})
    n = len(per_item)
    acc = float(scores.greedy.mean())
    ppl = float(np.exp(-scores.loglik.mean()))
    log(f"{task}: acc {acc:.4f}, perplexity {ppl:.4g} on {n} items", verbose)
    return ClozeResult(task=task, n=n, accuracy=acc, accuracy_stderr=_stderr(acc, n),
                       perplexity=ppl, per_item=per_item)


def evaluate(model, tokenizer, task_name, path=None, limit=None, batch_size=8, verbose=0):
    """:func:`load_task` then :func:`evaluate_task` (or :func:`evaluate_cloze`).

    Parameters
    ----------
    model, tokenizer
    task_name : str
        One of :data:`TASKS`, or a format of :data:`FORMATS` with ``path``
        its JSONL file.
    path : str or path, optional
        The dataset's folder; defaults to ``$LLMFBN_DATA/<task_name>``.
    limit : int or None, default None
        First ``limit`` items only.
    batch_size : int, default 8
    verbose : int, default 0

    Returns
    -------
    TaskResult or ClozeResult
        ClozeResult for cloze tasks (``lambada_openai``, ``cloze``).
    """
    items = load_task(task_name, path, limit=limit, verbose=verbose)
    score = evaluate_cloze if items.kind == "cloze" else evaluate_task
    return score(model, tokenizer, items, batch_size=batch_size, verbose=verbose)
