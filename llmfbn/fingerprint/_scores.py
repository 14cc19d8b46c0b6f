"""Scores of a candidate against a reference: matched network time courses (fbn), linear
CKA (cka), and their permutation nulls that keep the texts apart."""

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["centred_gram", "circular_shifts", "cka_null", "fbn_null", "fbn_score",
           "linear_cka", "p_value", "within_text_permutation"]


def _matched(correlations):
    """Mean of the Hungarian matching of largest total ``correlations`` (rows to columns)."""
    rows, cols = linear_sum_assignment(correlations, maximize=True)
    return float(np.clip(correlations[rows, cols].mean(), 0.0, 1.0))


def fbn_score(reference, candidate):
    """Mean |Pearson r| of the reference's time courses matched one to one to the candidate's.

    Parameters
    ----------
    reference, candidate : arrays of shape (n_words, n_components)
        z-scored columns (ddof 0), as :func:`~llmfbn.fingerprint.time_courses`
        returns them.

    Returns
    -------
    float in [0, 1]
        1 when every time course has an identical (or sign-flipped) partner.
    """
    n_words = len(reference)
    return _matched(np.abs(reference.T @ candidate) / n_words)


def circular_shifts(lengths, n_columns, rng):
    """Row indices that shift each column circularly within each text by a random offset.

    Parameters
    ----------
    lengths : int array of shape (n_texts,)
        Rows (words) of each text, one text after another.
    n_columns : int
    rng : numpy.random.Generator

    Returns
    -------
    int64 array of shape (n_rows, n_columns)
        ``data[index, arange(n_columns)]`` is the shifted data.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    text = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    position = np.arange(int(lengths.sum())) - starts[text]
    offsets = rng.integers(0, np.maximum(lengths, 1)[:, None], size=(len(lengths), n_columns))
    return starts[text][:, None] + (position[:, None] + offsets[text]) % lengths[text][:, None]


def fbn_null(reference, candidate, lengths, n_permutations, rng):
    """:func:`fbn_score` with each candidate time course shifted circularly within each text.

    A shift keeps each text's words together and each time course's values,
    so the texts' own structure stays; only the alignment of the two models'
    words is broken.

    Returns
    -------
    float64 array of shape (n_permutations,)
    """
    columns = np.arange(candidate.shape[1])
    null = np.empty(n_permutations)
    for n in range(n_permutations):
        shifted = candidate[circular_shifts(lengths, candidate.shape[1], rng), columns]
        null[n] = fbn_score(reference, shifted)
    return null


def centred_gram(activations, block=4096):
    """``Xc Xc^T`` of the columns-centred ``activations`` (float64), built in blocks of columns.

    Parameters
    ----------
    activations : array of shape (n_words, n_neurons)

    Returns
    -------
    float64 array of shape (n_words, n_words)
    """
    activations = np.asarray(activations)
    gram = np.zeros((len(activations),) * 2)
    for begin in range(0, activations.shape[1], block):
        part = np.asarray(activations[:, begin:begin + block], dtype=np.float64)
        part = part - part.mean(axis=0)
        gram += part @ part.T
    return gram


def linear_cka(gram_a, gram_b):
    """Linear CKA (Kornblith et al., 2019) of two centred Gram matrices over the same words.

    ``<Ka, Kb> / sqrt(<Ka, Ka> <Kb, Kb>)``; the two models' widths may differ
    and a permutation of either's neurons leaves it unchanged.

    Returns
    -------
    float in [0, 1]
        0 when either model's activations are constant over the words.
    """
    norm = np.sqrt(np.sum(gram_a * gram_a) * np.sum(gram_b * gram_b))
    if norm == 0:
        return 0.0
    return float(np.clip(np.sum(gram_a * gram_b) / norm, 0.0, 1.0))


def within_text_permutation(lengths, rng):
    """A permutation of the rows that moves each word only within its text.

    Returns
    -------
    int64 array of shape (n_words,)
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.concatenate([start + rng.permutation(n) for start, n in zip(starts, lengths)]
                          or [np.empty(0, np.int64)]).astype(np.int64)


def cka_null(gram_a, gram_b, lengths, n_permutations, rng):
    """:func:`linear_cka` with the candidate's words permuted within each text.

    Returns
    -------
    float64 array of shape (n_permutations,)
    """
    null = np.empty(n_permutations)
    for n in range(n_permutations):
        order = within_text_permutation(lengths, rng)
        null[n] = linear_cka(gram_a, gram_b[np.ix_(order, order)])
    return null


def p_value(score, null):
    """``(1 + #(null >= score)) / (1 + len(null))``: the permutation p-value."""
    null = np.asarray(null)
    return float((1 + np.count_nonzero(null >= score)) / (1 + len(null)))
