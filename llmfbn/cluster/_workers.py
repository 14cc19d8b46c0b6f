"""What a worker keeps between tasks (a loaded model), and one task at a time per resource.

:func:`~llmfbn.cluster.register_resource` installs a plugin on every
worker, now and on any worker that joins later (a restarted one included).
The plugin keeps a factory; the first task that asks for the resource
(:func:`use_resource`) builds it, in that task's thread rather than the
worker's event loop, and later tasks on the same worker reuse it: a model is
loaded once per worker, not once per task. A lock per resource runs the tasks
that use it one at a time (a model's hooks are not thread-safe), whatever the
worker's ``nthreads``.
"""

import threading

__all__ = ["add_slot", "drop_slot", "use_resource"]

#: This process's resources: key -> _Slot. A worker process has its own.
_SLOTS = {}
_SLOTS_LOCK = threading.Lock()


def add_slot(key, factory):
    """Keep ``factory`` under ``key`` in this process (a plugin's ``setup``)."""
    with _SLOTS_LOCK:
        _SLOTS[key] = _Slot(factory)


def drop_slot(key):
    """Forget ``key``'s resource in this process (a plugin's ``teardown``)."""
    with _SLOTS_LOCK:
        _SLOTS.pop(key, None)


class _Slot:
    def __init__(self, factory):
        self.factory = factory
        self.value = None
        self.built = False
        self.lock = threading.Lock()


class use_resource:
    """``with use_resource(key) as value:`` the worker's resource, built on first use.

    Holds the resource's lock for the block, so tasks that share it run one at
    a time. In a process where ``key`` was never registered, raises
    RuntimeError.
    """

    def __init__(self, key):
        self.key = key
        self._slot = None

    def __enter__(self):
        with _SLOTS_LOCK:
            slot = _SLOTS.get(self.key)
        if slot is None:
            raise RuntimeError(f"No resource {self.key!r} on this worker: register it with "
                               f"llmfbn.cluster.register_resource before submitting tasks.")
        slot.lock.acquire()
        try:
            if not slot.built:
                slot.value = slot.factory()
                slot.built = True
        except BaseException:
            slot.lock.release()
            raise
        self._slot = slot
        return slot.value

    def __exit__(self, *exc):
        slot, self._slot = self._slot, None
        slot.lock.release()
        return False
