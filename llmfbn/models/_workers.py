"""A model loaded once per cluster worker (see :mod:`llmfbn.cluster`)."""

import functools

import torch

from llmfbn.models._loading import load_model

__all__ = ["model_factory", "model_key"]


def _load_on_worker(name, dtype, device, trust_remote_code, n_threads):
    if n_threads:
        torch.set_num_threads(int(n_threads))
    return load_model(name, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def model_factory(name, dtype="float32", device="cpu", trust_remote_code=False, n_threads=None):
    """A picklable no-argument callable that loads ``name`` on a worker.

    Register it with :func:`llmfbn.cluster.register_resource` under
    :func:`model_key`; tasks get the :class:`LoadedModel` with
    ``llmfbn.cluster.use_resource(key)`` and should check its
    ``weights_hash`` against the client's (the workers read the model from
    their own filesystem).

    Parameters
    ----------
    name, dtype, device, trust_remote_code
        As for :func:`load_model`; ``device`` is resolved on the worker.
    n_threads : int, optional
        ``torch.set_num_threads`` on the worker before loading (the cores of
        a ``local:N`` cluster are shared among its workers).
    """
    return functools.partial(_load_on_worker, str(name), dtype, device, trust_remote_code,
                             n_threads)


def model_key(name, dtype="float32", device="cpu"):
    """The resource key of a model on the workers: one per (name, dtype, device)."""
    return f"model:{name}:{dtype}:{device}"
