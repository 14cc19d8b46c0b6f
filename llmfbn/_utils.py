"""Small shared helpers: parameter checks and logging (files: see ``llmfbn.io``)."""

import logging
import math
import re
import sys

logger = logging.getLogger("llmfbn")


def log(message, verbose=0, level=1):
    """Report progress when ``verbose >= level``; the library configures no logging.

    The message goes to the ``llmfbn`` logger (level INFO) when the
    application has configured a handler for it or for any of its ancestors
    (``logger.hasHandlers()``); otherwise it is printed to stderr as
    ``[llmfbn] message``, so ``verbose=1`` shows progress in a bare script.
    """
    if verbose >= level:
        if logger.hasHandlers():
            logger.info(message)
        else:
            print(f"[llmfbn] {message}", file=sys.stderr, flush=True)


def check_choice(value, allowed, name):
    """Raise ValueError naming the parameter, the allowed values and the given one."""
    if value not in allowed:
        raise ValueError(
            f"'{name}' must be one of {tuple(allowed)}. {value!r} was provided."
        )
    return value


def check_positive_int(value, name, minimum=1, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int. {value!r} was provided.")
    if value < minimum:
        raise ValueError(f"'{name}' must be >= {minimum}. {value} was provided.")
    return value


def check_array_shape(array, expected, name, trailing=False):
    """Check ``array.shape`` (or its trailing axes) against ``expected``."""
    shape = array.shape[-len(expected):] if trailing else array.shape
    if array.ndim < len(expected) or tuple(shape) != tuple(expected):
        what = "trailing axes" if trailing else "shape"
        raise ValueError(
            f"'{name}' must have {what} {tuple(expected)}. "
            f"An array of shape {array.shape} was provided."
        )


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory_size(value, name="memory_budget"):
    """Bytes of a memory size: an int, or a string such as ``"8GB"``, ``"500MB"``, ``"2GiB"``.

    ``KB/MB/GB/TB`` are powers of 1000, ``KiB/MiB/GiB/TiB`` (and ``K/M/G/T``)
    powers of 1024; a bare number is bytes.

    Returns
    -------
    int, > 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"'{name}' must be a size such as '8GB' or a number of bytes. "
                        f"{value!r} was provided.")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        unit = match and match.group(2).lower()
        if not match or unit not in _UNITS:
            raise ValueError(f"'{name}' must be a size such as '8GB', '500MB' or '2GiB'. "
                             f"{value!r} was provided.")
        size = float(match.group(1)) * _UNITS[unit]
    else:
        size = float(value)
    if not math.isfinite(size) or size < 1:
        raise ValueError(f"'{name}' must be a positive size. {value!r} was provided.")
    return int(size)
