"""Perplexity of a causal LM on a text, by strided sliding or disjoint windows."""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.evaluation._forward import pad_id, position_limit, target_logprobs

MODES = ("sliding", "disjoint")


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity and what it was computed from.

    Attributes
    ----------
    perplexity : float
        ``exp(nll_sum / n_scored_tokens)``.
    nll_sum : float
        Summed negative log-likelihood (nats) of the scored tokens.
    n_scored_tokens : int
        Tokens whose log-likelihood entered ``nll_sum``.
    n_windows : int
        Forward passes (windows) that scored at least one token.
    mode : {"sliding", "disjoint"}
    max_length : int
        Window length in tokens.
    stride : int
        Step between window starts (``max_length`` in ``"disjoint"`` mode).
    n_tokens : int
        Length of the tokenised text after ``max_tokens``.
    window_nll : float array of shape (n_windows,)
        Summed negative log-likelihood of each window's scored tokens.
    window_tokens : int array of shape (n_windows,)
        Scored tokens of each window.
    """

    perplexity: float
    nll_sum: float
    n_scored_tokens: int
    n_windows: int
    mode: str
    max_length: int
    stride: int
    n_tokens: int = 0
    window_nll: object = None
    window_tokens: object = None

    @property
    def mean_nll(self):
        """Average negative log-likelihood per scored token (nats)."""
        return self.nll_sum / self.n_scored_tokens


def read_text_rows(path):
    """The rows of a one-paragraph-per-line text file, as Hugging Face ``wikitext`` gives them.

    Each line keeps its line end, and a whitespace-only line becomes ``""``:
    for ``wiki.test.raw`` this is exactly the ``text`` column of the Hugging
    Face ``wikitext-2-raw-v1`` test split.
    """
    text = Path(path).read_text(encoding="utf-8")
    return [line if line.strip() else "" for line in text.splitlines(keepends=True)]


def _texts(source):
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"'source' must be a text file or a list of strings. "
                f"{str(source)!r} is not a file."
            )
        return read_text_rows(path)
    if isinstance(source, (list, tuple)) and all(isinstance(t, str) for t in source):
        return list(source)
    raise TypeError(
        f"'source' must be a path to a text file or a list of str. "
        f"{type(source).__name__} was provided."
    )


def make_windows(n_tokens, max_length, stride, mode):
    """Windows over ``n_tokens`` tokens, as ``(begin, end, first_scored)`` triples.

    A window feeds tokens ``begin:end`` to the model and scores tokens
    ``first_scored:end``, each given the window's tokens before it. Windows
    that would score nothing are left out.
    """
    windows = []
    if mode == "sliding":
        prev_end = 0
        for begin in range(0, n_tokens, stride):
            end = min(begin + max_length, n_tokens)
            # HF recipe: trg_len = end - prev_end new tokens at the window's end;
            # the window's own first token has no context and cannot be scored.
            first = max(prev_end, begin + 1)
            if first < end:
                windows.append((begin, end, first))
            prev_end = end
            if end == n_tokens:
                break
    else:
        for begin in range(0, n_tokens, max_length):
            end = min(begin + max_length, n_tokens)
            if begin + 1 < end:
                windows.append((begin, end, begin + 1))
    return windows


def perplexity(model, tokenizer, source, max_length=1024, stride=512, mode="sliding",
               max_tokens=None, batch_size=1, verbose=0):
    """Perplexity of a causal LM on a text, as in the Hugging Face recipe.

    The convention follows "Perplexity of fixed-length models" in the
    transformers docs: the texts are joined with ``"\\n\\n"`` and tokenised
    once, with the tokenizer's default special tokens (SmolLM2 adds none;
    Llama-2 style tokenizers add one BOS at the very start).

    - ``mode="sliding"``: windows of ``max_length`` tokens start every
      ``stride`` tokens. Each window scores only the tokens that no earlier
      window scored (the recipe's last ``trg_len = end - prev_end`` tokens);
      the tokens before them are context (labels -100 in the recipe). The
      first window scores all its tokens but its first. So every token except
      token 0 of the whole sequence is scored exactly once:
      ``n_scored_tokens = n_tokens - 1``, each with at least
      ``max_length - stride`` tokens of context once past the first window.
      With ``stride == max_length`` each window's first token has no context
      and is not scored, as in ``"disjoint"``.
    - ``mode="disjoint"``: non-overlapping windows of ``max_length`` tokens, no
      shared context; each window's first token is not scored
      (``n_scored_tokens = n_tokens - n_windows``). ``stride`` is ignored.

    Token 0 of the sequence is never scored: nothing precedes it. Counting
    differs slightly from the recipe's code, which weights each window's mean
    loss by ``trg_len - 1`` ("subtract batch_size due to internal label
    shift"): that is right for the first window only; later windows score all
    ``trg_len`` tokens (their first label is context), and here every token
    counts with weight 1.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM in eval mode. Forward hooks on it (interventions) apply.
    tokenizer : transformers.PreTrainedTokenizerBase
    source : str, path or list of str
        A text file with one paragraph per line (e.g. WikiText-2
        ``wiki.test.raw``), read as Hugging Face ``datasets`` rows: each line
        keeps its ``"\\n"`` and a blank line becomes ``""``, so
        ``wiki.test.raw`` reproduces the recipe's ``"\\n\\n".join(test["text"])``.
        Or a list of strings, used as they are.
    max_length : int, default 1024
        Window length in tokens; at most the model's position limit.
    stride : int, default 512
        Step between windows in ``"sliding"`` mode; ``1 <= stride <= max_length``.
    mode : {"sliding", "disjoint"}, default "sliding"
    max_tokens : int or None, default None
        Keep only the first ``max_tokens`` tokens of the tokenised text.
    batch_size : int, default 1
        Windows per forward pass (right-padded; gives the same sums as 1 up to
        float rounding).
    verbose : int, default 0
        Progress bar over windows when ``>= 1``.

    Returns
    -------
    PerplexityResult
    """
    mode = check_choice(mode, MODES, "mode")
    check_positive_int(max_length, "max_length", minimum=2)
    check_positive_int(stride, "stride")
    check_positive_int(max_tokens, "max_tokens", minimum=2, allow_none=True)
    check_positive_int(batch_size, "batch_size")
    if mode == "disjoint":
        stride = max_length
    elif stride > max_length:
        raise ValueError(
            f"'stride' must be <= 'max_length' ({max_length}). {stride} was provided."
        )
    limit = position_limit(model)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"'max_length' must be <= the model's position limit ({limit}). "
            f"{max_length} was provided."
        )
    texts = _texts(source)
    ids = _tokenize("\n\n".join(texts), tokenizer)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise ValueError(
            f"'source' must hold at least 2 tokens to score one. "
            f"{len(texts)} text(s) giving {len(ids)} token(s) were provided."
        )

    windows = make_windows(len(ids), max_length, stride, mode)
    log(f"perplexity: {len(ids)} tokens, {len(windows)} {mode} windows", verbose)
    window_nll, window_tokens = [], []
    pad = pad_id(tokenizer)
    with tqdm(total=len(windows), unit="win", desc=f"perplexity ({mode})",
              disable=verbose < 1) as progress:
        for k in range(0, len(windows), batch_size):
            batch = windows[k:k + batch_size]
            logps = target_logprobs(model, [ids[b:e] for b, e, _ in batch],
                                    [f - b for b, _, f in batch], pad)
            for logp in logps:
                window_nll.append(-float(logp.sum()))
                window_tokens.append(len(logp))
            progress.update(len(batch))
    nll_sum, n_scored = float(np.sum(window_nll)), int(np.sum(window_tokens))
    return PerplexityResult(
        perplexity=math.exp(nll_sum / n_scored), nll_sum=nll_sum,
        n_scored_tokens=n_scored, n_windows=len(windows), mode=mode,
        max_length=max_length, stride=stride, n_tokens=len(ids),
        window_nll=np.asarray(window_nll), window_tokens=np.asarray(window_tokens),
    )


def _tokenize(text, tokenizer):
    from llmfbn.models._loading import quiet_transformers

    with quiet_transformers():  # silence "sequence length is longer than ..." warnings
        return list(tokenizer(text)["input_ids"])
