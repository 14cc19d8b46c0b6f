"""``prune``: score, select, optionally compensate, remove and save, all or nothing.

Every bad input is refused before any forward pass or file write: the
cheap checks (method, ratio, output folder, files, flags that do not go
together) before the model loads; those that need the model (its layers for
``protect_layers`` and the ratio's capacity, the networks' grid and model)
right after. The folder is written whole (:func:`llmfbn.io.replace_pruned_folder`).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.io import (
    check_folder,
    check_pruned_output,
    jsonable,
    replace_pruned_folder,
    write_pruning,
)
from llmfbn.models import LoadedModel, load_model, locate_neurons
from llmfbn.models._loading import _weights_hash, quiet_transformers
from llmfbn.networks import LeakageWarning, source_files
from llmfbn.pruning._calibration import CalibrationStats, calibration_stats
from llmfbn.pruning._calibration import bias_compensation as compensation_shifts
from llmfbn.pruning._remove import remove_neurons
from llmfbn.pruning._scores import (
    CALIBRATED,
    METHODS,
    _load_networks,
    check_unpruned,
    score_neurons,
)
from llmfbn.pruning._select import check_protect_layers, check_ratio, select_neurons

__all__ = ["BIAS_COMPENSATION", "PrunedModel", "prune"]

#: Methods that may add the removed neurons' mean contribution to the bias, and
#: whether they do by default (FLAP's compensation is part of the method).
BIAS_COMPENSATION = {"fbn": False, "flap": True}


@dataclass
class PrunedModel:
    """What :func:`prune` made.

    Attributes
    ----------
    path : Path
        The pruned folder (loads with :func:`llmfbn.load_model`).
    loaded : LoadedModel
        The pruned model in memory, with the identity ``load_model(path)``
        gives it (name = the folder, weights hash of its safetensors).
    keep : bool array of shape (n_layers, width)
        True for the neurons kept (width of the source model).
    scores : NeuronScores
    manifest : dict
        The ``pruning.json`` document.
    """

    path: Path
    loaded: LoadedModel
    keep: np.ndarray
    scores: object
    manifest: dict

    def summary(self):
        """A few lines: neurons removed per layer, parameters before and after, file size."""
        m = self.manifest
        removed = [(layer, full - width) for layer, (full, width) in
                   enumerate(zip(m["source_model"]["layer_widths"], m["layer_widths"]))]
        per_layer = " ".join(f"{layer}:{n}" for layer, n in removed if n)
        before, after = m["parameters_before"], m["parameters_after"]
        size = sum(f.stat().st_size for f in self.path.glob("*.safetensors"))
        protected = m["protect_layers"]
        return "\n".join([
            f"Pruned {m['source_model']['name']} with {m['method']}: removed "
            f"{m['n_neurons_removed']:,} of {m['n_neurons_before']:,} MLP neurons (ratio "
            f"{m['ratio']:g}); protected layers: {protected if protected else 'none'}"
            + (f"; bias compensated in {len(m['bias_compensated_layers'])} layers"
               if m["bias_compensated_layers"] else ""),
            f"  neurons removed per layer (layer:count): {per_layer}",
            f"  parameters: {before:,} -> {after:,} ({100 * (after - before) / before:+.1f}%)",
            f"  wrote {self.path} (weights {size / 1e6:.1f} MB)",
        ])


def _n_parameters(model):
    return int(sum(p.numel() for p in model.parameters()))


def _check_inputs(method, ratio, out_dir, networks, calibration, bias, max_tokens,
                  random_state):
    """The checks that need no model; returns the resolved bias-compensation flag."""
    check_choice(method, METHODS, "method")
    check_ratio(ratio)
    check_pruned_output(out_dir)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) \
            or random_state < 0:
        raise ValueError(f"'random_state' must be an int >= 0. {random_state!r} was provided.")
    check_positive_int(max_tokens, "max_tokens", allow_none=True)
    if bias is None:
        bias = BIAS_COMPENSATION.get(method, False)
    if bias and method not in BIAS_COMPENSATION:
        raise ValueError(f"'bias_compensation' is supported by methods "
                         f"{tuple(BIAS_COMPENSATION)} only. method={method!r} was provided.")
    if method == "fbn" and networks is None:
        raise ValueError("method 'fbn' needs 'networks' (a networks folder of this model).")
    if method != "fbn" and networks is not None:
        raise ValueError(f"'networks' are used by method 'fbn' only. method={method!r} was "
                         f"provided.")
    if (method in CALIBRATED or bias) and calibration is None:
        needs = f"method {method!r}" + (" with bias_compensation" if bias else "")
        raise ValueError(f"{needs} needs 'calibration' (a text file, never the evaluation "
                         f"text).")
    if calibration is not None and not (method in CALIBRATED or bias):
        raise ValueError(f"'calibration' is used by methods {CALIBRATED} and by bias "
                         f"compensation only; method {method!r} without bias_compensation "
                         f"was provided.")
    for folder in [] if networks is None else (
            networks if isinstance(networks, (list, tuple)) else [networks]):
        if isinstance(folder, (str, Path)):
            try:
                check_folder(folder, "networks")
            except (FileNotFoundError, ValueError) as err:
                raise type(err)(f"'networks': {err}") from None
    if isinstance(calibration, (str, Path)) and not Path(calibration).is_file():
        raise FileNotFoundError(f"'calibration' must be a text file. {str(calibration)!r} "
                                f"does not exist or is not a file.")
    return bool(bias)


def _warn_calibration_leak(networks, calibration):
    """Warn when the calibration text is the text the networks were estimated on."""
    if networks is None or not isinstance(calibration, (str, Path)):
        return
    folders = networks if isinstance(networks, (list, tuple)) else [networks]
    target = Path(calibration).resolve()
    for folder in folders:
        if isinstance(folder, (str, Path)) and target in set(source_files(folder)):
            warnings.warn(
                f"The calibration text {calibration} is also the text the networks in "
                f"{folder} were estimated on: the pruned model then depends twice on the same "
                f"texts; calibrate and evaluate on texts disjoint from the networks' "
                f"(e.g. WikiText train for calibration, WikiText test for evaluation).",
                LeakageWarning, stacklevel=3)


def prune(model, method, ratio, out_dir, networks=None, calibration=None, random_state=0,
          protect_layers=None, bias_compensation=None, max_tokens=None, batch_size=8,
          verbose=1):
    """Remove a fraction of a model's MLP neurons and save the smaller model.

    Parameters
    ----------
    model : str or LoadedModel
        A name :func:`llmfbn.load_model` accepts (loaded in float32 on the
        CPU), or a loaded model (left unchanged).
    method : {"fbn", "random", "magnitude", "wanda", "flap"}
        How neurons are scored (:func:`~llmfbn.pruning.score_neurons`).
    ratio : float in (0, 1)
        Fraction of *all* the model's MLP neurons removed (protected layers
        count in the total but lose none).
    out_dir : str or Path
        The pruned folder to write: new or empty, never replaced.
    networks : str, Path or list, optional
        ``fbn`` only: networks folder(s) of this model.
    calibration : str or Path, optional
        Calibration text for ``wanda``, ``flap`` and bias compensation. Never
        the evaluation text.
    random_state : int, default 0
        Seed of ``random``.
    protect_layers : sequence of int, optional
        Layers never pruned. Default: the first 3 and the last 2. ``[]``:
        none.
    bias_compensation : bool, optional
        Add the removed neurons' mean contribution (over the calibration
        tokens) to each down projection's bias. Methods ``fbn`` (default
        off) and ``flap`` (default on) only.
    max_tokens : int, optional
        Most calibration tokens.
    batch_size : int, default 8
        Calibration windows per forward pass.
    verbose : int, default 1

    Returns
    -------
    PrunedModel

    Raises
    ------
    ValueError, TypeError, FileNotFoundError, OutputExistsError, FolderKindError
        For bad input, before any forward pass; nothing is written.
    """
    bias = _check_inputs(method, ratio, out_dir, networks, calibration, bias_compensation,
                         max_tokens, random_state)
    check_positive_int(batch_size, "batch_size")
    out_dir = Path(out_dir)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, verbose=verbose)
    location = locate_neurons(loaded.model)
    check_unpruned(location, loaded)
    n_layers, width = location.n_layers, location.n_units
    protected = check_protect_layers(protect_layers, n_layers)
    select_neurons(np.zeros((n_layers, width)), ratio, protected)  # the ratio fits the layers
    if networks is not None:
        _load_networks(networks, loaded)  # same grid and model, before any forward pass
    _warn_calibration_leak(networks, calibration)

    stats = None
    if calibration is not None:
        stats = (calibration if isinstance(calibration, CalibrationStats) else
                 calibration_stats(loaded, calibration, max_tokens=max_tokens,
                                   batch_size=batch_size, verbose=verbose))
    scores = score_neurons(loaded, method, networks=networks,
                           calibration=stats if method in CALIBRATED else None,
                           batch_size=batch_size, random_state=random_state, verbose=verbose)
    keep = select_neurons(scores, ratio, protected)
    shifts = compensation_shifts(loaded, stats, keep) if bias else None
    pruned = remove_neurons(loaded, keep, bias=shifts)

    manifest = {
        "method": method, "ratio": float(ratio), "random_state": int(random_state),
        "protect_layers": protected,
        "source_model": {"name": loaded.name, "weights_hash": loaded.weights_hash,
                         "model_type": location.model_type,
                         "layer_widths": list(location.layer_widths)},
        "layer_widths": [int(k.sum()) for k in keep],
        "kept": [np.flatnonzero(k).tolist() for k in keep],
        "n_neurons_before": int(keep.size), "n_neurons_removed": int((~keep).sum()),
        "calibration": None if stats is None else stats.record(),
        "bias_compensated_layers": sorted(int(k) for k in (shifts or {})),
        "parameters_before": _n_parameters(loaded.model),
        "parameters_after": _n_parameters(pruned.model),
        "details": {"scores": jsonable(scores.details), "max_tokens": max_tokens},
    }
    with replace_pruned_folder(out_dir) as staging, quiet_transformers(verbose):
        pruned.model.save_pretrained(staging)
        pruned.tokenizer.save_pretrained(staging)
        write_pruning(staging, manifest)
    pruned.name, pruned.source = str(out_dir), str(out_dir.resolve())
    pruned.weights_hash = _weights_hash(out_dir)
    pruned.extra = {"pruning": {key: manifest[key] for key in
                                ("method", "ratio", "source_model", "layer_widths")}}
    result = PrunedModel(out_dir, pruned, keep, scores, manifest)
    log(f"Pruned {loaded.name} with {method} (ratio {ratio:g}); wrote {out_dir}", verbose)
    return result
