"""Cheap argument checks the commands run before any heavy work (messages name the flag)."""

import math

from llmfbn.io import check_folder

__all__ = ["check_finite", "check_int_at_least", "check_recording_folder"]


def check_finite(value, flag, low=None, high=None, open_interval=False):
    """Raise ValueError unless ``value`` is a finite number (within ``[low, high]``).

    With ``open_interval`` the bounds themselves are refused: ``(low, high)``.
    """
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValueError(f"'{flag}' must be a finite number. {value!r} was provided.")
    below = low is not None and (value <= low if open_interval else value < low)
    above = high is not None and (value >= high if open_interval else value > high)
    if below or above:
        left, right = ("(", ")") if open_interval else ("[", "]")
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"'{flag}' must lie in {span}. {value!r} was provided.")
    return value


def check_int_at_least(value, flag, minimum=1):
    """Raise ValueError unless the integer ``value`` (or None) is at least ``minimum``."""
    if value is not None and value < minimum:
        raise ValueError(f"'{flag}' must be >= {minimum}. {value} was provided.")
    return value


def check_recording_folder(path, flag="in_dir"):
    """Raise unless ``path`` is a recording folder (before any model or image is read)."""
    try:
        return check_folder(path, "recording")
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"'{flag}': {err}") from None
