"""Loading models offline and locating their MLP neurons."""

from llmfbn.models._architectures import (
    ARCHITECTURES,
    SIGNALS,
    NeuronLocation,
    locate_neurons,
)
from llmfbn.models._loading import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    DEVICES,
    DTYPES,
    LoadedModel,
    available_devices,
    cache_dir,
    check_dtype,
    describe_builtins,
    load_model,
    resolve_device,
)
from llmfbn.models._workers import model_factory, model_key

__all__ = [
    "ARCHITECTURES",
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "DEVICES",
    "DTYPES",
    "SIGNALS",
    "LoadedModel",
    "NeuronLocation",
    "available_devices",
    "cache_dir",
    "check_dtype",
    "describe_builtins",
    "load_model",
    "locate_neurons",
    "model_factory",
    "model_key",
    "resolve_device",
]
