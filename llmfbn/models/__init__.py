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
    LoadedModel,
    cache_dir,
    describe_builtins,
    load_model,
)

__all__ = [
    "ARCHITECTURES",
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "SIGNALS",
    "LoadedModel",
    "NeuronLocation",
    "cache_dir",
    "describe_builtins",
    "load_model",
    "locate_neurons",
]
