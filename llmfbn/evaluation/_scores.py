"""One metric of one evaluation, with the per-unit values paired statistics need."""

from dataclasses import dataclass

import numpy as np

__all__ = ["SCALES", "MetricScore"]

#: How a metric is built from its units: ``"perplexity"`` is
#: ``exp(sum(units) / sum(weights))`` (units: summed NLL per window or item,
#: weights: scored tokens); ``"proportion"`` is ``mean(units)`` (units: 0/1 per item).
SCALES = ("perplexity", "proportion")


@dataclass
class MetricScore:
    """A metric's value and the units it is made of.

    Attributes
    ----------
    value : float
        The metric (a perplexity, an accuracy).
    scale : {"perplexity", "proportion"}
        How ``value`` follows from ``units`` (see :data:`SCALES`).
    units : float array of shape (n_units,)
        Per window or item: summed negative log-likelihood (perplexity) or
        0/1 outcome (proportion). The same units, in the same order, for the
        unmodified model, a network and its controls: paired statistics.
    weights : float array of shape (n_units,) or None
        Scored tokens per unit (perplexity); None for equal weights.
    """

    value: float
    scale: str
    units: np.ndarray = None
    weights: np.ndarray = None

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"'scale' must be one of {SCALES}. {self.scale!r} was provided.")
        self.value = float(self.value)
        if self.units is not None:
            self.units = np.asarray(self.units, dtype=float)
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=float)

    def __float__(self):
        return self.value

    @classmethod
    def perplexity(cls, nll, tokens):
        """From summed NLL (nats) and scored tokens per unit."""
        nll, tokens = np.asarray(nll, float), np.asarray(tokens, float)
        return cls(float(np.exp(nll.sum() / tokens.sum())), "perplexity", nll, tokens)

    @classmethod
    def proportion(cls, outcomes):
        """From 0/1 outcomes per item."""
        outcomes = np.asarray(outcomes, float)
        return cls(float(outcomes.mean()), "proportion", outcomes)
