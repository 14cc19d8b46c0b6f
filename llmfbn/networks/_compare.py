"""Compare several sets of networks: every pair matched against size-matched nulls.

What ``llmfbn consistency`` computes, as one function with a result object.
"""

from dataclasses import dataclass

import numpy as np

from llmfbn._utils import check_positive_int
from llmfbn.io import jsonable
from llmfbn.networks._consistency import (
    MatchReport,
    Recurrence,
    describe_match,
    null_matched_correlation,
    null_matched_iou,
    recurrence,
)

__all__ = ["NetworkComparison", "PairComparison", "compare_networks"]


@dataclass
class PairComparison:
    """Two sets of networks matched one-to-one by IoU and by spatial correlation."""

    a: str
    b: str
    iou: MatchReport
    correlation: MatchReport

    def summary(self):
        """One line: each matching against its null (:func:`describe_match`).

        IoU as "x chance" (:func:`times_chance`), correlation as a median
        z-score against its null (its null is near 0, so a ratio would be
        meaningless).
        """
        return (f"{self.a} vs {self.b}: {describe_match(self.iou.summary())}; "
                f"{describe_match(self.correlation.summary())}")


@dataclass
class NetworkComparison:
    """Every pair of network sets compared, and how often each network recurs.

    Attributes
    ----------
    names : list of str
        One name per set (e.g. its folder).
    pairs : list of PairComparison
        Sets ``(i, j)`` with ``i < j``, in order.
    recurrence : Recurrence
        Recurrence of the first set's networks in the others (IoU).
    n_draws : int
    recurrence_threshold : float
    """

    names: list
    pairs: list
    recurrence: Recurrence
    n_draws: int
    recurrence_threshold: float

    def to_dict(self):
        """The consistency document (plain JSON types; see :func:`llmfbn.io.write_consistency`)."""
        return {"folders": list(self.names),
                "pairs": [{"a": p.a, "b": p.b, "iou": p.iou.to_dict(),
                           "correlation": p.correlation.to_dict()} for p in self.pairs],
                "recurrence": jsonable(self.recurrence), "n_draws": self.n_draws,
                "recurrence_threshold": self.recurrence_threshold}


def compare_networks(networks_list, names=None, n_draws=200, recurrence_threshold=0.2,
                     random_state=0):
    """Match every pair of network sets against size-matched nulls.

    Each pair is matched one-to-one (Hungarian assignment) by IoU
    (:func:`null_matched_iou`: random networks with the same count per
    layer) and by spatial correlation of the maps
    (:func:`null_matched_correlation`); recurrence counts how many sets hold
    a match of each network of the first set.

    On the grids of a pruned model (:attr:`NeuronGrid.pruned`), the random
    networks and permutations of the nulls stay among the present neurons of
    each layer and correlations are over those neurons only
    (``present=grid.present()``), as for the model's own, dense arrays.

    Parameters
    ----------
    networks_list : list of FunctionalNetworks
        At least 2, all on compatible grids of one model
        (:meth:`NeuronGrid.check_compatible`).
    names : list of str, optional
        One per set, for the result and messages. Default ``"set 0"``, ...
    n_draws : int, default 200
        Null draws per pair.
    recurrence_threshold : float, default 0.2
        Matched IoU that counts as a recurrence, in [0, 1].
    random_state : int or None, default 0

    Returns
    -------
    NetworkComparison
    """
    networks_list = list(networks_list)
    if len(networks_list) < 2:
        raise ValueError(f"'networks_list' must hold at least 2 sets of networks. "
                         f"{len(networks_list)} was provided.")
    names = [f"set {k}" for k in range(len(networks_list))] if names is None else list(names)
    if len(names) != len(networks_list):
        raise ValueError(f"'names' must hold one name per set ({len(networks_list)}). "
                         f"{len(names)} were provided.")
    check_positive_int(n_draws, "n_draws")
    if (isinstance(recurrence_threshold, bool)
            or not isinstance(recurrence_threshold, (int, float, np.floating))
            or not 0 <= recurrence_threshold <= 1):
        raise ValueError(f"'recurrence_threshold' must be a number in [0, 1]. "
                         f"{recurrence_threshold!r} was provided.")
    first = networks_list[0]
    for name, nets in zip(names[1:], networks_list[1:]):
        nets.grid.check_compatible(first.grid, names=(f"the networks of {name}",
                                                      f"those of {names[0]}"))
    # compatible grids have the same neurons present (check_compatible)
    present = first.grid.present() if first.grid.pruned else None
    pairs = []
    for i in range(len(networks_list)):
        for j in range(i + 1, len(networks_list)):
            a, b = networks_list[i], networks_list[j]
            pairs.append(PairComparison(
                names[i], names[j],
                null_matched_iou(a.masks, b.masks, n_draws=n_draws, random_state=random_state,
                                 present=present),
                null_matched_correlation(a.maps, b.maps, n_draws=n_draws,
                                         random_state=random_state, present=present)))
    rec = recurrence([n.masks for n in networks_list], threshold=recurrence_threshold,
                     present=present)
    return NetworkComparison(names, pairs, rec, n_draws, float(recurrence_threshold))
