"""llmfbn: scan a large language model the way you scan a brain.

Record every MLP neuron of a causal LM at every token, place the neurons on a
pseudo-volumetric grid (one layer per slice) and write real Nifti images that
nilearn's decompositions, maskers and plotting accept unchanged.

``llmfbn.grid`` needs no torch; the names that do are imported on first use.
"""

__version__ = "0.3.0"

_LAZY = {
    "NeuronGrid": "llmfbn.grid",
    "load_model": "llmfbn.models",
    "locate_neurons": "llmfbn.models",
    "record": "llmfbn.recording",
    "record_activations": "llmfbn.recording",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmfbn' has no attribute {name!r}")
