"""Small shared helpers: parameter checks and logging (files: see ``llmfbn.io``)."""

import logging
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
