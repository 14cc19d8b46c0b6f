"""Small shared helpers: parameter checks, logging, atomic writes."""

import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("llmfbn")

TMP_PREFIX = ".llmfbn-tmp-"

_UMASK = os.umask(0)
os.umask(_UMASK)


def log(message, verbose=0, level=1):
    """Report progress through the ``llmfbn`` logger when ``verbose >= level``."""
    if verbose >= level:
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("[llmfbn] %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        logger.info(message)


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


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any error the temporary file is removed, so ``path`` is either absent,
    its old content, or complete: never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=TMP_PREFIX, suffix="-" + path.name, dir=path.parent
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; keep the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path, text):
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_stale_temporaries(folder):
    """Delete temp files an interrupted run left below ``folder``; return their count."""
    removed = 0
    for tmp in Path(folder).rglob(TMP_PREFIX + "*"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def run_sibling(bold, suffix):
    """Path of a run's other file: ``..._bold.nii[.gz]`` -> ``..._<suffix>``.

    ``suffix`` is e.g. ``"bold.json"`` (sidecar) or ``"events.tsv"``.
    """
    bold = Path(bold)
    return bold.with_name(bold.name[: bold.name.index("_bold.nii")] + "_" + suffix)
