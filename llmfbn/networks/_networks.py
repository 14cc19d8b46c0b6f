"""Functional networks as neuron masks: thresholding, back-projection, save/load.

A network is a set of neurons: the voxels of one component's z-map above a
threshold. :class:`FunctionalNetworks` holds all of them as boolean masks of
shape ``(n_networks, n_layers, n_units)`` on a :class:`~llmfbn.grid.NeuronGrid`,
and saves them as Nifti images plus JSON (no pickle).
"""

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from llmfbn._utils import check_choice, check_positive_int
from llmfbn.io import atomic_path, read_grid, write_atomic, write_grid
from llmfbn.grid import NeuronGrid

__all__ = ["FunctionalNetworks", "threshold_maps", "zscore_maps"]

#: Default z threshold (positive side), as in Liu et al. (2025).
DEFAULT_THRESHOLD = 3.6
THRESHOLD_MODES = ("positive", "two_sided")


def zscore_maps(components):
    """Z-score each component over neurons and flip its sign so the peak is positive.

    Parameters
    ----------
    components : array of shape (n_components, n_layers, n_units)

    Returns
    -------
    maps : float32 array of shape (n_components, n_layers, n_units)
    """
    components = np.asarray(components, dtype=np.float64)
    flat = components.reshape(len(components), -1)
    std = flat.std(axis=1, keepdims=True)
    std[std == 0] = 1.0
    z = (flat - flat.mean(axis=1, keepdims=True)) / std
    peak = np.take_along_axis(z, np.abs(z).argmax(axis=1)[:, None], axis=1)
    z *= np.where(peak < 0, -1.0, 1.0)
    return z.reshape(components.shape).astype(np.float32)


def threshold_maps(maps, threshold=DEFAULT_THRESHOLD, mode="positive", top_k=None):
    """Turn z-maps into boolean network masks.

    Parameters
    ----------
    maps : array of shape (n_networks, n_layers, n_units)
        Z-scored maps (see :func:`zscore_maps`).
    threshold : float, default 3.6
        Neurons with ``z >= threshold`` (``mode="positive"``) or
        ``|z| >= threshold`` (``mode="two_sided"``) join the network. 3.6 is
        the value used by the reference papers; under a Gaussian null it
        keeps about 0.016 % of neurons per map, so the selected neurons are
        the heavy tail ICA finds, not noise.
    mode : {"positive", "two_sided"}, default "positive"
    top_k : int, optional
        Instead of a threshold, keep the ``top_k`` neurons with the largest
        ``z`` (or ``|z|``) per network.

    Returns
    -------
    masks : bool array of shape (n_networks, n_layers, n_units)
    """
    check_choice(mode, THRESHOLD_MODES, "mode")
    maps = np.asarray(maps)
    score = np.abs(maps) if mode == "two_sided" else maps
    if top_k is not None:
        check_positive_int(top_k, "top_k")
        flat = score.reshape(len(score), -1)
        if top_k > flat.shape[1]:
            raise ValueError(f"'top_k' must be <= {flat.shape[1]} neurons. {top_k} was provided.")
        keep = np.argpartition(-flat, top_k - 1, axis=1)[:, :top_k]
        masks = np.zeros(flat.shape, dtype=bool)
        np.put_along_axis(masks, keep, True, axis=1)
        return masks.reshape(maps.shape)
    return score >= float(threshold)


class FunctionalNetworks:
    """All networks of one decomposition, as maps and neuron masks.

    Parameters
    ----------
    maps : array of shape (n_networks, n_layers, n_units)
        Z-scored component maps.
    masks : bool array of shape (n_networks, n_layers, n_units)
    grid : NeuronGrid
    params : dict, optional
        How the networks were made (method, threshold, ...), saved with them.
    top_tokens : list of list of dict, optional
        Per network, the tokens where it is most active (see
        :func:`llmfbn.networks.top_tokens`).
    """

    def __init__(self, maps, masks, grid, params=None, top_tokens=None):
        maps = np.asarray(maps, dtype=np.float32)
        masks = np.asarray(masks)
        expected = (grid.n_layers, grid.width)
        if maps.ndim != 3 or maps.shape[1:] != expected:
            raise ValueError(f"'maps' must have shape (n_networks, {expected[0]}, "
                             f"{expected[1]}). {maps.shape} was provided.")
        if masks.shape != maps.shape:
            raise ValueError(f"'masks' must match 'maps' {maps.shape}. {masks.shape} was provided.")
        if masks.dtype != bool:
            raise TypeError(f"'masks' must be boolean. {masks.dtype} was provided.")
        self.maps = maps
        self.masks = masks
        self.grid = grid
        self.params = dict(params or {})
        self.top_tokens = top_tokens

    @classmethod
    def from_maps(cls, maps, grid, threshold=DEFAULT_THRESHOLD, mode="positive",
                  top_k=None, params=None):
        """Threshold z-maps into networks (see :func:`threshold_maps`)."""
        masks = threshold_maps(maps, threshold=threshold, mode=mode, top_k=top_k)
        params = dict(params or {}, threshold=threshold, threshold_mode=mode, top_k=top_k)
        return cls(maps, masks, grid, params)

    def __len__(self):
        return len(self.masks)

    @property
    def sizes(self):
        """Neurons per network, shape (n_networks,)."""
        return self.masks.reshape(len(self), -1).sum(axis=1)

    def layer_counts(self):
        """Neurons per network and layer, shape (n_networks, n_layers)."""
        return self.masks.sum(axis=2)

    def indices(self, network):
        """``(layer, unit)`` pairs of one network, shape (n_neurons, 2), model layer indices."""
        slot, unit = np.nonzero(self.masks[self._check_index(network)])
        return np.stack([np.asarray(self.grid.layers)[slot], unit], axis=1)

    def _check_index(self, network):
        if not isinstance(network, (int, np.integer)) or not 0 <= network < len(self):
            raise ValueError(
                f"'network' must be an int in [0, {len(self)}). {network!r} was provided.")
        return int(network)

    def subset(self, networks):
        """A new object with only the given network indices, in that order."""
        idx = [self._check_index(k) for k in networks]
        tokens = [self.top_tokens[k] for k in idx] if self.top_tokens else None
        return FunctionalNetworks(self.maps[idx], self.masks[idx], self.grid,
                                  self.params, tokens)

    def union_mask(self, networks=None):
        """Neurons in any of the given networks (default all), shape (n_layers, n_units)."""
        idx = range(len(self)) if networks is None else [self._check_index(k) for k in networks]
        return self.masks[list(idx)].any(axis=0)

    def to_torch(self, networks=None):
        """Masks as a bool torch tensor ``{layer: (n_units,)}`` for the hook points."""
        import torch

        union = self.union_mask(networks)
        return {layer: torch.from_numpy(union[slot].copy())
                for slot, layer in enumerate(self.grid.layers)}

    def maps_img(self):
        """4-D float32 image of the z-maps (one volume per network)."""
        return self.grid.to_img(self.maps)

    def masks_img(self):
        """4-D uint8 image of the masks (one volume per network)."""
        return self.grid.to_img(self.masks.astype(np.uint8), dtype=np.uint8)

    # -- save / load --------------------------------------------------------

    def save(self, out_dir):
        """Write ``components.nii.gz``, ``networks.nii.gz``, ``networks.json`` and ``grid.json``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, img in (("components.nii.gz", self.maps_img()),
                          ("networks.nii.gz", self.masks_img())):
            with atomic_path(out_dir / name) as tmp:
                nib.save(img, tmp)
        write_grid(out_dir / "grid.json", self.grid)
        counts = self.layer_counts()
        networks = []
        for k in range(len(self)):
            entry = {
                "index": k,
                "size": int(self.sizes[k]),
                "layer_counts": {str(layer): int(c) for layer, c in
                                 zip(self.grid.layers, counts[k]) if c},
                "neurons": self.indices(k).tolist(),
                "peak_z": float(self.maps[k].max()),
            }
            if self.top_tokens:
                entry["top_tokens"] = self.top_tokens[k]
            networks.append(entry)
        document = {"params": self.params, "n_networks": len(self), "networks": networks}
        write_atomic(out_dir / "networks.json", json.dumps(document, indent=1) + "\n")

    @classmethod
    def load(cls, net_dir):
        """Read networks written by :meth:`save`."""
        net_dir = Path(net_dir)
        for name in ("grid.json", "components.nii.gz", "networks.nii.gz", "networks.json"):
            if not (net_dir / name).exists():
                raise FileNotFoundError(
                    f"{net_dir} is not a networks folder: {name} is missing "
                    f"(make one with `llmfbn networks`).")
        grid = read_grid(net_dir / "grid.json")
        maps = _volumes(grid, net_dir / "components.nii.gz").astype(np.float32)
        masks = _volumes(grid, net_dir / "networks.nii.gz") > 0
        document = json.loads((net_dir / "networks.json").read_text())
        tokens = [n.get("top_tokens") for n in document["networks"]]
        return cls(maps, masks, grid, document.get("params"),
                   tokens if any(t is not None for t in tokens) else None)


def _volumes(grid, path):
    data = grid.from_img(nib.load(path))
    return data[None] if data.ndim == 2 else data
