"""One writer per output: ``<output>.lock``, created with ``O_CREAT | O_EXCL``.

The lock file holds who took it (process id, host, command, time), so a second
writer fails at once and names the holder. A lock whose process is gone (same
host, dead pid) is stale and taken over.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path

from llmfbn.io._errors import OutputLockedError

__all__ = ["OutputLock", "lock_path"]

#: An unreadable lock file older than this (seconds) is stale: its writer died
#: between creating it and writing who it is.
_UNREADABLE_GRACE = 30.0


def lock_path(target):
    """``<target>.lock``, beside the target."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


def _holder(lock):
    try:
        return json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True
    return True


def _is_stale(lock, holder):
    if holder is None:
        try:
            return time.time() - lock.stat().st_mtime > _UNREADABLE_GRACE
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid"))


def _describe(holder):
    if holder is None:
        return "another process"
    command = holder.get("command") or "?"
    return (f"process {holder.get('pid')} on {holder.get('host')} since "
            f"{holder.get('since')} ({command})")


class OutputLock:
    """Exclusive lock on one output (a file or a folder), as a context manager.

    Parameters
    ----------
    target : str or Path
        The output. The lock is ``<target>.lock`` beside it.

    Raises
    ------
    OutputLockedError
        On entry, when a live process holds the lock; the message names it.
    """

    def __init__(self, target):
        self.target = Path(target)
        self.path = lock_path(self.target)
        self._held = False

    def acquire(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else "",
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if attempt == 0 and _is_stale(self.path, holder):
                    self.path.unlink(missing_ok=True)
                    continue
                raise OutputLockedError(
                    f"{self.target} is being written by {_describe(holder)}; nothing was "
                    f"changed. Wait for it to finish (or delete {self.path} if that process "
                    f"is gone).") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            self._held = True
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def release(self):
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
