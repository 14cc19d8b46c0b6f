"""One time axis for models with different tokenizers: the whitespace words of the texts.

Each token belongs to the word holding its first non-whitespace character
(the fast tokenizer's offset mapping says which characters a token covers; a
token that starts with a space, as GPT-2's ``" cat"``, belongs to the word
after the space). Tokens that cover only whitespace, and special tokens
(``<s>``, ``[BOS]``: no characters of the text), belong to no word and are
dropped. A model reads at most ``max_tokens`` tokens of each text; a word
is *covered* by a model when every one of its tokens was read. The shared
axis keeps, in each text, the words before the first word that some model
did not cover (so every model read the same words, in the same order) and
that got at least one token from every model.
"""

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["TokenWords", "WordAxis", "check_fast_tokenizer", "shared_words", "token_words",
           "word_spans"]

_WORD = re.compile(r"\S+")


def word_spans(text):
    """``[(start, end), ...]``: the character spans of the whitespace words of ``text``."""
    return [match.span() for match in _WORD.finditer(text)]


def check_fast_tokenizer(tokenizer, name):
    """Raise ValueError unless ``tokenizer`` is a fast (Rust) tokenizer with offset mappings.

    A slow (Python) tokenizer silently ignores ``return_offsets_mapping``, so
    its tokens could not be placed in their words.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"The tokenizer of {name!r} ({type(tokenizer).__name__}) is a slow (Python) "
            f"tokenizer; fingerprint needs a fast one, whose offset mappings place each "
            f"token in its word. Save the model with its fast tokenizer "
            f"(AutoTokenizer.from_pretrained(..., use_fast=True)).")


@dataclass
class TokenWords:
    """One model's tokens of the texts, each with its word.

    Attributes
    ----------
    token_ids : list of list of int
        Per text, the token ids the model reads (its first ``max_tokens``,
        special tokens included).
    words : list of int64 arrays
        Per text, the word (index among the text's :func:`word_spans`) of
        each token read, -1 for a token of no word. Same lengths as
        ``token_ids``.
    coverage : list of int
        Per text, the number of leading words whose tokens were all read.
    token_counts : list of int64 arrays
        Per text, how many tokens read each word holds (0: none).
    max_tokens : int
        Tokens read per text, at most.
    """

    token_ids: list
    words: list
    coverage: list
    token_counts: list
    max_tokens: int

    @property
    def n_tokens(self):
        """Tokens read, over all texts."""
        return int(sum(len(ids) for ids in self.token_ids))


def _token_word(text, offsets, special):
    """The word of each token (its first non-whitespace character's), -1 for none."""
    n_chars = len(text)
    char_word = np.full(n_chars + 1, -1, dtype=np.int64)  # a sentinel at n_chars
    for index, (start, end) in enumerate(word_spans(text)):
        char_word[start:end] = index
    # next non-whitespace character at or after each position (n_chars: none)
    positions = np.where(char_word >= 0, np.arange(n_chars + 1), n_chars)
    following = np.minimum.accumulate(positions[::-1])[::-1]
    if not len(offsets):
        return np.empty(0, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts = np.clip(offsets[:, 0], 0, n_chars)
    first = following[starts]
    words = char_word[first]
    words[(first >= offsets[:, 1]) | (np.asarray(special, dtype=bool))] = -1
    return words


def token_words(tokenizer, texts, max_tokens, chunk=1024):
    """Tokenise ``texts`` and place each token read in its word.

    Parameters
    ----------
    tokenizer : transformers fast tokenizer
        Checked with :func:`check_fast_tokenizer` first.
    texts : list of str
    max_tokens : int
        Tokens read per text (the first ones, special tokens included).
    chunk : int, default 1024
        Texts per tokenizer call.

    Returns
    -------
    TokenWords
    """
    ids_all, words_all, coverage, counts = [], [], [], []
    for begin in range(0, len(texts), chunk):
        batch = list(texts[begin:begin + chunk])
        encoded = tokenizer(batch, add_special_tokens=True, return_offsets_mapping=True,
                            return_special_tokens_mask=True, truncation=False, verbose=False)
        for text, ids, offsets, special in zip(batch, encoded["input_ids"],
                                               encoded["offset_mapping"],
                                               encoded["special_tokens_mask"]):
            words = _token_word(text, offsets, special)
            n_words = len(word_spans(text))
            dropped = words[max_tokens:]
            dropped = dropped[dropped >= 0]
            coverage.append(int(dropped.min()) if len(dropped) else n_words)
            read = words[:max_tokens]
            counts.append(np.bincount(read[read >= 0], minlength=n_words).astype(np.int64))
            ids_all.append([int(i) for i in ids[:max_tokens]])
            words_all.append(read)
    return TokenWords(ids_all, words_all, coverage, counts, int(max_tokens))


@dataclass
class WordAxis:
    """The words every model read: the time axis the models are compared on.

    Attributes
    ----------
    keep : list of bool arrays
        Per text, which of its words are on the axis.
    lengths : int64 array of shape (n_texts,)
        Words on the axis per text, in text order (the axis is the texts'
        words one text after another).
    limited_by : list of int or None
        Per text, the position (in the list given to :func:`shared_words`)
        of a model whose ``max_tokens`` cut the text shortest, None when
        every model read the whole text.
    """

    keep: list
    lengths: np.ndarray
    limited_by: list

    @property
    def n_words(self):
        return int(self.lengths.sum())

    @property
    def starts(self):
        """Position of each text's first word on the axis, shape (n_texts,)."""
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def axis_words(self, token_words, text):
        """Per token read of ``text``, its word's position on the axis (-1: not on it).

        Positions count from the text's first word on the axis
        (``starts[text]`` on the whole axis).
        """
        position = np.cumsum(self.keep[text]) - 1
        words = token_words.words[text]
        out = np.full(len(words), -1, dtype=np.int64)
        mine = words >= 0
        out[mine] = np.where(self.keep[text][words[mine]], position[words[mine]], -1)
        return out


def shared_words(texts, models):
    """The words every one of ``models`` read, text by text.

    Parameters
    ----------
    texts : list of str
    models : list of TokenWords
        Each model's :func:`token_words` of ``texts``.

    Returns
    -------
    WordAxis
    """
    keep, limited_by = [], []
    for text_index, text in enumerate(texts):
        n_words = len(word_spans(text))
        kept = np.ones(n_words, dtype=bool)
        shortest, limiter = n_words, None
        for position, model in enumerate(models):
            covered = model.coverage[text_index]
            if covered < shortest:
                shortest, limiter = covered, position
            kept &= model.token_counts[text_index] > 0
        kept[shortest:] = False
        keep.append(kept)
        limited_by.append(limiter)
    lengths = np.array([int(k.sum()) for k in keep], dtype=np.int64)
    return WordAxis(keep, lengths, limited_by)
