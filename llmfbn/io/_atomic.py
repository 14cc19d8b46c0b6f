"""Atomic writes: a file or a folder is either its old complete self or its new one.

A file is written to a temporary name beside it and renamed over it. A folder
is built beside its target (``.llmfbn-tmp-<token>-<name>``) and swapped in: the
old folder is first renamed to ``.llmfbn-old-<token>-<name>``, then the new one
to the target, then the old one is deleted. A writer killed at any point
leaves, after :func:`recover_interrupted` (run by the next writer), either the
old or the new complete output.
"""

import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "recover_interrupted",
    "remove_stale_temporaries",
    "staging_name",
    "write_atomic",
    "write_json",
]

TMP_PREFIX = ".llmfbn-tmp-"
OLD_PREFIX = ".llmfbn-old-"
_TOKEN_BYTES = 6  # 12 hex digits

_UMASK = os.umask(0)
os.umask(_UMASK)


def staging_name(name, prefix=TMP_PREFIX):
    """A fresh hidden name beside ``name``: ``.llmfbn-tmp-<12 hex>-<name>``."""
    return f"{prefix}{secrets.token_hex(_TOKEN_BYTES)}-{name}"


def _leftover_pattern(name):
    hex_digits = 2 * _TOKEN_BYTES
    return re.compile(rf"^\.llmfbn-(tmp|old)-[0-9a-f]{{{hex_digits}}}-{re.escape(name)}$")


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any error the temporary file is removed, so ``path`` is either absent,
    its old content, or complete: never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(staging_name(path.name))
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, document, indent=1):
    """Write ``document`` as JSON to ``path`` atomically (non-finite floats refused)."""
    write_atomic(path, json.dumps(document, indent=indent, allow_nan=False) + "\n")


def remove_stale_temporaries(folder):
    """Delete what interrupted writers left anywhere below ``folder``; return the count."""
    removed = 0
    for tmp in sorted(Path(folder).rglob(TMP_PREFIX + "*"), reverse=True):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def recover_interrupted(path):
    """Finish or undo what a killed writer of ``path`` left beside it.

    Staging copies (``.llmfbn-tmp-*-<name>``) are deleted. A set-aside old
    version (``.llmfbn-old-*-<name>``) is put back when ``path`` itself is
    missing (the writer died between its two renames), and deleted otherwise.

    Returns
    -------
    list of str
        What was done, one sentence each (empty when nothing was left).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = _leftover_pattern(path.name)
    done = []
    leftovers = sorted((p for p in parent.iterdir() if pattern.match(p.name)),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    for item in leftovers:
        if item.name.startswith(OLD_PREFIX) and not path.exists():
            os.rename(item, path)
            done.append(f"restored {path} from an interrupted replacement")
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
        done.append(f"removed {item.name}, left by an interrupted writer")
    return done


def swap_in(staging, path):
    """Replace ``path`` (a folder, or absent) by the complete folder ``staging``."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        old = path.with_name(staging_name(path.name, OLD_PREFIX))
        os.rename(path, old)
        os.rename(staging, path)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.rename(staging, path)
