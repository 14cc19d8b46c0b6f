"""Turn texts into runs: tokenise, truncate or split long texts, group texts into runs."""

import hashlib
import json
from dataclasses import dataclass, field

from llmfbn._utils import check_choice, check_positive_int

__all__ = ["Piece", "RunPlan", "plan_runs"]

LONG_TEXT_MODES = ("truncate", "split")


@dataclass
class Piece:
    """One forward pass: the tokens of a text (or of one part of a long text)."""

    token_ids: list
    text_index: int  # position of the text in the input file
    label: object = None
    part: int = 0  # part number when a long text was split
    n_dropped: int = 0  # tokens cut off by truncation


@dataclass
class RunPlan:
    """The pieces whose token time series, concatenated, make one run."""

    number: int  # 1-based, BIDS run index
    pieces: list = field(default_factory=list)

    @property
    def n_tokens(self):
        return sum(len(p.token_ids) for p in self.pieces)

    @property
    def input_hash(self):
        """SHA-256 of the run's text indices, token ids and labels (detects changed input).

        A piece's label enters only when it has one, so unlabelled runs keep
        the hash they had before labels were hashed.
        """
        payload = [[p.text_index, p.part, p.token_ids] + ([p.label] if p.label is not None
                                                          else []) for p in self.pieces]
        return "sha256:" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _tokenize(tokenizer, texts, chunk=2048):
    ids = []
    for start in range(0, len(texts), chunk):
        batch = texts[start:start + chunk]
        ids.extend(tokenizer(batch, add_special_tokens=True, truncation=False,
                             verbose=False)["input_ids"])
    return ids


def plan_runs(tokenizer, textset, max_tokens=256, texts_per_run=1,
              long_texts="truncate"):
    """Tokenise ``textset`` and group it into runs.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    textset : TextSet
    max_tokens : int, default 256
        Most tokens per forward pass.
    texts_per_run : int, default 1
        Texts (pieces) concatenated in time to make one run.
    long_texts : {"truncate", "split"}, default "truncate"
        ``"truncate"`` keeps the first ``max_tokens`` tokens (the cut is
        counted); ``"split"`` cuts a long text into consecutive pieces of at
        most ``max_tokens`` tokens, each its own forward pass (context resets).

    Returns
    -------
    runs : list of RunPlan
    stats : dict
        ``n_texts``, ``n_truncated``, ``n_tokens_dropped``, ``n_split``,
        ``n_empty_after_tokenization``.
    """
    check_positive_int(max_tokens, "max_tokens")
    check_positive_int(texts_per_run, "texts_per_run")
    check_choice(long_texts, LONG_TEXT_MODES, "long_texts")
    labels = textset.labels or [None] * len(textset)
    pieces = []
    stats = {"n_texts": len(textset), "n_truncated": 0, "n_tokens_dropped": 0,
             "n_split": 0, "n_empty_after_tokenization": 0}
    for ids, index, label in zip(_tokenize(tokenizer, textset.texts),
                                 textset.indices, labels):
        if not ids:
            stats["n_empty_after_tokenization"] += 1
            continue
        if len(ids) <= max_tokens:
            pieces.append(Piece(list(ids), index, label))
        elif long_texts == "truncate":
            dropped = len(ids) - max_tokens
            stats["n_truncated"] += 1
            stats["n_tokens_dropped"] += dropped
            pieces.append(Piece(list(ids[:max_tokens]), index, label, n_dropped=dropped))
        else:
            stats["n_split"] += 1
            for part, start in enumerate(range(0, len(ids), max_tokens)):
                pieces.append(Piece(list(ids[start:start + max_tokens]), index, label, part))
    runs = [
        RunPlan(number=n + 1, pieces=pieces[start:start + texts_per_run])
        for n, start in enumerate(range(0, len(pieces), texts_per_run))
    ]
    return runs, stats
