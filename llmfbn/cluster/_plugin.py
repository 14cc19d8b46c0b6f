"""The worker plugin behind :func:`register_resource` (imports ``distributed``)."""

import hashlib

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin

from llmfbn.cluster._workers import add_slot, drop_slot

__all__ = ["WorkerResource", "register_resource"]


class WorkerResource(WorkerPlugin):
    """Builds ``factory()`` once per worker, on first use (:func:`use_resource`).

    Parameters
    ----------
    key : str
        The resource's name on the worker.
    factory : callable
        Picklable, no arguments (``functools.partial(load_model, name, ...)``).
    """

    #: Registering the same key and factory again keeps the workers' built resource.
    idempotent = True

    def __init__(self, key, factory):
        self.key = key
        self.factory = factory
        digest = hashlib.sha256(cloudpickle.dumps(factory)).hexdigest()[:16]
        self.name = f"llmfbn-resource-{key}-{digest}"

    def setup(self, worker):
        add_slot(self.key, self.factory)

    def teardown(self, worker):
        drop_slot(self.key)


def register_resource(client, key, factory):
    """Install ``factory``'s resource under ``key`` on every worker of ``client``.

    Workers that join later (a restarted one included) get it too. The same
    key and factory registered again change nothing (a model stays loaded
    across calls that share a client); another factory under the same key
    replaces the resource.
    """
    plugin = WorkerResource(key, factory)
    client.register_plugin(plugin, name=plugin.name)
