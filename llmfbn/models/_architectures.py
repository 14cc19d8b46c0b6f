"""Where each architecture family keeps its MLP neurons.

One table, keyed by ``config.model_type``. Each entry names the ModuleList of
transformer layers (dotted path from the top model) and, inside one layer, the
MLP's *down projection*: the linear map whose input is the neuron vector
``act(gate(x)) * up(x)`` (gated MLPs) or ``act(fc_in(x))`` (plain MLPs).
Zeroing a unit of that input removes exactly that neuron's contribution.
Each entry also names the *input projections* whose output rows are those
neurons (gate and up, or fc_in), so that a neuron can be removed physically
(:mod:`llmfbn.pruning`). A pruned model may keep a different number of neurons
in each layer: :attr:`NeuronLocation.layer_widths`.

Modules alone do not say which of the source model's neurons a pruned model
kept, so whatever makes one (:func:`llmfbn.load_model` of a pruned folder,
:func:`llmfbn.pruning.remove_neurons`) marks the model with
:func:`mark_pruned`; :func:`locate_neurons` then places each neuron at its
original unit (:attr:`NeuronLocation.units`) on the source model's grid
(:attr:`NeuronLocation.source_width`). The mark is an attribute of the
Python object, never saved in ``config.json``: ``pruning.json`` is the one
file that says what was kept.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["ARCHITECTURES", "PRUNED_ATTRIBUTE", "SIGNALS", "NeuronLocation", "locate_neurons",
           "mark_pruned"]

#: Attribute of a pruned model (the torch module) holding ``{"kept": [[unit, ...], ...],
#: "source_layer_widths": [...]}``: per layer, the source model's units it kept.
PRUNED_ATTRIBUTE = "llmfbn_pruned_units"

#: Recordable signals and what they are.
SIGNALS = {
    "mlp": "input of each layer's MLP down projection (one value per MLP neuron)",
    "mlp_out": "output of each layer's MLP block (hidden size)",
    "residual": "output of each transformer layer, the residual stream (hidden size)",
}


@dataclass(frozen=True)
class Family:
    layers: tuple  # candidate dotted paths of the layer ModuleList
    down_proj: str  # dotted path of the down projection inside one layer
    gated: bool
    in_projs: tuple = ()  # dotted paths (in one layer) of the projections making the neurons
    in_blocks: int = 1  # neuron blocks stacked in each input projection (Phi-3: gate | up)


_LLAMA_LIKE = Family(("model.layers",), "mlp.down_proj", gated=True,
                     in_projs=("mlp.gate_proj", "mlp.up_proj"))

#: model_type -> Family
ARCHITECTURES = {
    # gated MLPs: down_proj(act(gate_proj(x)) * up_proj(x))
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "phi3": Family(("model.layers",), "mlp.down_proj", gated=True,
                   in_projs=("mlp.gate_up_proj",), in_blocks=2),
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    # plain MLPs: fc_out(act(fc_in(x)))
    "gpt2": Family(("transformer.h",), "mlp.c_proj", gated=False, in_projs=("mlp.c_fc",)),
    "gptj": Family(("transformer.h",), "mlp.fc_out", gated=False, in_projs=("mlp.fc_in",)),
    "gpt_neox": Family(("gpt_neox.layers",), "mlp.dense_4h_to_h", gated=False,
                       in_projs=("mlp.dense_h_to_4h",)),
    "opt": Family(("model.decoder.layers",), "fc2", gated=False, in_projs=("fc1",)),
    "falcon": Family(("transformer.h",), "mlp.dense_4h_to_h", gated=False,
                     in_projs=("mlp.dense_h_to_4h",)),
    "bloom": Family(("transformer.h",), "mlp.dense_4h_to_h", gated=False,
                    in_projs=("mlp.dense_h_to_4h",)),
    "phi": Family(("model.layers",), "mlp.fc2", gated=False, in_projs=("mlp.fc1",)),
    # encoders
    "bert": Family(("bert.encoder.layer",), "output.dense", gated=False,
                   in_projs=("intermediate.dense",)),
    "roberta": Family(("roberta.encoder.layer",), "output.dense", gated=False,
                      in_projs=("intermediate.dense",)),
}


@dataclass(frozen=True)
class NeuronLocation:
    """Resolved hook points of one model.

    Attributes
    ----------
    model_type : str
    layers_path : str
        Dotted path of the layer ModuleList.
    layer_paths : list of str
        Dotted path of each transformer layer.
    down_proj_paths : list of str
        Dotted path of each layer's MLP down projection.
    in_proj_paths : list of tuple of str
        Per layer, the dotted paths of the projections whose output rows are
        the neurons (gate and up, or fc_in).
    in_blocks : int
        Neuron blocks stacked in each input projection (2 for Phi-3's fused
        ``gate_up_proj``, else 1).
    layer_widths : tuple of int
        MLP neurons of each layer (input width of its down projection); equal
        unless the model was pruned.
    hidden_size : int
        Output width of the down projection (= residual width).
    gated : bool
    units : tuple of int64 arrays, or None
        A pruned model's neurons: per layer, the source model's unit index of
        each column of the down projection (sorted; ``len(units[l]) ==
        layer_widths[l]``). None for a model that was not pruned.
    source_layer_widths : tuple of int, or None
        A pruned model's source model's MLP neurons per layer.
    """

    model_type: str
    layers_path: str
    layer_paths: list
    down_proj_paths: list
    in_proj_paths: list
    in_blocks: int
    layer_widths: tuple
    hidden_size: int
    gated: bool
    units: tuple = field(default=None, compare=False)
    source_layer_widths: tuple = None

    @property
    def n_layers(self):
        return len(self.layer_paths)

    @property
    def uniform(self):
        """Whether every layer has the same number of MLP neurons."""
        return len(set(self.layer_widths)) <= 1

    @property
    def pruned(self):
        """Whether the model was pruned (marked by :func:`mark_pruned`)."""
        return self.units is not None

    @property
    def n_units(self):
        """MLP neurons per layer of a model that was not pruned.

        Raises
        ------
        ValueError
            For a pruned model (its neurons sit on its source model's grid:
            :attr:`source_width`, :attr:`units`), or one whose layers have
            unequal widths without a record of the neurons they kept.
        """
        if self.pruned:
            raise ValueError(
                f"This {self.model_type} model is pruned ({_widths(self.layer_widths)} MLP "
                f"neurons per layer, kept from its source model's "
                f"{_widths(self.source_layer_widths)}): it has no one width of its own; its "
                f"neurons sit at their original units on the source model's grid "
                f"({self.source_width} units per layer).")
        if not self.uniform:
            raise ValueError(
                f"This {self.model_type} model's MLP layers have unequal widths "
                f"({_widths(self.layer_widths)} neurons per layer) and no record of which "
                f"neurons of a source model they kept; a neuron grid needs one width for "
                f"every layer: load a pruned model with llmfbn.load_model(folder) or make it "
                f"with llmfbn.pruning.remove_neurons.")
        return self.layer_widths[0]

    @property
    def source_width(self):
        """Units per layer of the model's neuron grid: its source model's width if pruned."""
        if self.pruned:
            return int(max(self.source_layer_widths))
        return self.n_units

    def hook_path(self, signal, layer):
        """Module whose hook yields ``signal`` at ``layer``; and hook kind."""
        if signal == "mlp":
            return self.down_proj_paths[layer], "input"
        if signal == "mlp_out":
            return self.down_proj_paths[layer], "output"
        if signal == "residual":
            return self.layer_paths[layer], "output"
        raise ValueError(
            f"'signal' must be one of {tuple(SIGNALS)}. {signal!r} was provided."
        )

    def signal_width(self, signal):
        """Values per layer of ``signal`` on the grid (``source_width`` for ``"mlp"``)."""
        return self.source_width if signal == "mlp" else self.hidden_size


def _widths(widths, limit=8):
    widths = list(widths)
    return ", ".join(map(str, widths[:limit])) + (", ..." if len(widths) > limit else "")


def mark_pruned(model, kept, source_layer_widths):
    """Record on ``model`` which of its source model's MLP neurons each layer kept.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A model whose MLPs were narrowed (:func:`llmfbn.models._shrink.shrink_mlp`);
        the record is the attribute :data:`PRUNED_ATTRIBUTE`, checked against
        its widths by :func:`locate_neurons`.
    kept : sequence of sequences of int
        Per model layer, the sorted source unit indices kept.
    source_layer_widths : sequence of int
        The source model's MLP neurons per layer.

    Returns
    -------
    model
    """
    record = {"kept": [[int(u) for u in units] for units in kept],
              "source_layer_widths": [int(w) for w in source_layer_widths]}
    setattr(model, PRUNED_ATTRIBUTE, record)
    return model


def _pruned_units(model, model_type, widths):
    """``(units, source_layer_widths)`` from the model's :func:`mark_pruned` record, or Nones."""
    record = getattr(model, PRUNED_ATTRIBUTE, None)
    if record is None:
        return None, None
    kept, source = record["kept"], record["source_layer_widths"]
    if len(kept) != len(widths) or len(source) != len(widths):
        raise ValueError(
            f"This {model_type} model is marked pruned for {len(kept)} layers but has "
            f"{len(widths)}; its record of kept neurons ({PRUNED_ATTRIBUTE}) does not fit it.")
    units = []
    for layer, (indices, width, full) in enumerate(zip(kept, widths, source)):
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        ok = (len(indices) == width and (width == 0 or (indices[0] >= 0 and indices[-1] < full))
              and bool(np.all(np.diff(indices) > 0)))
        if not ok:
            raise ValueError(
                f"Layer {layer} of this {model_type} model has {width} MLP neurons but its "
                f"record of kept neurons ({PRUNED_ATTRIBUTE}) lists {len(indices)} (they must "
                f"be sorted, unique and in [0, {full})): the model was narrowed after it was "
                f"marked pruned.")
        indices.flags.writeable = False
        units.append(indices)
    return tuple(units), tuple(int(w) for w in source)


def _linear_dims(module):
    """(in_features, out_features) of an nn.Linear or a GPT-2 style Conv1D."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if hasattr(module, "nx") and hasattr(module, "nf"):  # transformers Conv1D
        return module.nx, module.nf
    weight = getattr(module, "weight", None)
    if weight is not None and weight.ndim == 2:
        return weight.shape[1], weight.shape[0]
    raise TypeError(f"Cannot read the width of {type(module).__name__}.")


def _mlp_like_modules(model, limit=12):
    names = [
        name
        for name, _ in model.named_modules()
        if any(key in name.rsplit(".", 1)[-1].lower() for key in ("mlp", "fc", "proj", "dense"))
    ]
    return names[:limit]


def _find_layers(model, family):
    for path in family.layers:
        for candidate in (path, path.split(".", 1)[-1]):
            try:
                module = model.get_submodule(candidate)
            except AttributeError:
                continue
            if isinstance(module, torch.nn.ModuleList):
                return candidate, module
    return None, None


def locate_neurons(model):
    """Find the MLP neuron hook points of a transformers model.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM, its base model, or a BERT-style encoder.

    Returns
    -------
    NeuronLocation

    Raises
    ------
    ValueError
        When the architecture is not in the table, or the expected modules are
        missing; the message lists what the model does have.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    family = ARCHITECTURES.get(model_type)
    if family is None:
        raise ValueError(
            f"Architecture {model_type!r} ({type(model).__name__}) is not in "
            f"llmfbn's table of neuron locations. Supported: "
            f"{sorted(ARCHITECTURES)}. MLP-like modules this model has: "
            f"{_mlp_like_modules(model)}."
        )
    layers_path, layers = _find_layers(model, family)
    if layers is None:
        top = [name for name, _ in model.named_children()]
        raise ValueError(
            f"No layer list at {list(family.layers)} in this {model_type} model "
            f"({type(model).__name__}); its top-level modules are {top}."
        )
    layer_paths = [f"{layers_path}.{i}" for i in range(len(layers))]
    down_paths = [f"{p}.{family.down_proj}" for p in layer_paths]
    in_paths, widths = [], []
    for path, layer in zip(layer_paths, layers):
        for name in (family.down_proj, *family.in_projs):
            try:
                layer.get_submodule(name)
            except AttributeError as err:
                raise ValueError(
                    f"Layer {path} of this {model_type} model has no '{name}'; its modules "
                    f"are {[n for n, _ in layer.named_modules() if n]}."
                ) from err
        n_units, hidden = _linear_dims(layer.get_submodule(family.down_proj))
        widths.append(int(n_units))
        in_paths.append(tuple(f"{path}.{name}" for name in family.in_projs))
    units, source_widths = _pruned_units(model, model_type, widths)
    return NeuronLocation(
        model_type=model_type,
        layers_path=layers_path,
        layer_paths=layer_paths,
        down_proj_paths=down_paths,
        in_proj_paths=in_paths,
        in_blocks=family.in_blocks,
        layer_widths=tuple(widths),
        hidden_size=int(hidden),
        gated=family.gated,
        units=units,
        source_layer_widths=source_widths,
    )
