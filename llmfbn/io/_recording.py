"""The recording folder (BIDS-derivatives style): paths, runs and their sibling files."""

from pathlib import Path

__all__ = ["run_sibling"]


def run_sibling(bold, suffix):
    """Path of a run's other file: ``..._bold.nii[.gz]`` -> ``..._<suffix>``.

    ``suffix`` is e.g. ``"bold.json"`` (sidecar) or ``"events.tsv"``.
    """
    bold = Path(bold)
    return bold.with_name(bold.name[: bold.name.index("_bold.nii")] + "_" + suffix)
