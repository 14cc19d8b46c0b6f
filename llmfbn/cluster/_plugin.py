"""The worker plugin behind :func:`register_resource` (imports ``distributed``)."""

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

    idempotent = False

    def __init__(self, key, factory):
        self.key = key
        self.factory = factory
        self.name = f"llmfbn-resource-{key}"

    def setup(self, worker):
        add_slot(self.key, self.factory)

    def teardown(self, worker):
        drop_slot(self.key)


def register_resource(client, key, factory):
    """Install ``factory``'s resource under ``key`` on every worker of ``client``.

    Workers that join later (a restarted one included) get it too.
    """
    plugin = WorkerResource(key, factory)
    client.register_plugin(plugin, name=plugin.name)
