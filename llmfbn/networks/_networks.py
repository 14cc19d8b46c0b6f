"""Functional networks as neuron masks: thresholding, back-projection, save/load.

A network is a set of neurons: the voxels of one component's z-map above a
threshold. :class:`FunctionalNetworks` holds all of them as boolean masks of
shape ``(n_networks, n_layers, n_units)`` on a :class:`~llmfbn.grid.NeuronGrid`,
and saves them as Nifti images plus JSON (no pickle).
"""

import numpy as np

from llmfbn._utils import check_choice, check_positive_int
from llmfbn.io import read_networks_folder, write_networks_folder

__all__ = ["FunctionalNetworks", "threshold_maps", "zscore_maps"]

#: Default z threshold (positive side), as in Liu et al. (2025).
DEFAULT_THRESHOLD = 3.6
THRESHOLD_MODES = ("positive", "two_sided")


def zscore_maps(components, present=None):
    """Z-score each component over neurons and flip its sign so the peak is positive.

    Parameters
    ----------
    components : array of shape (n_components, n_layers, n_units)
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid (:meth:`NeuronGrid.present`, a pruned
        model's); the others are left out of the z-score and set to 0.
        Default: all.

    Returns
    -------
    maps : float32 array of shape (n_components, n_layers, n_units)
    """
    components = np.asarray(components, dtype=np.float64)
    if present is not None:
        present = _check_present(present, components.shape[1:])
        z = np.zeros(components.shape)
        z[:, present] = zscore_maps(components[:, present][:, None, :])[:, 0]
        return z.astype(np.float32)
    flat = components.reshape(len(components), -1)
    std = flat.std(axis=1, keepdims=True)
    std[std == 0] = 1.0
    z = (flat - flat.mean(axis=1, keepdims=True)) / std
    peak = np.take_along_axis(z, np.abs(z).argmax(axis=1)[:, None], axis=1)
    z *= np.where(peak < 0, -1.0, 1.0)
    return z.reshape(components.shape).astype(np.float32)


def _check_present(present, shape):
    present = np.asarray(present)
    if present.dtype != bool or present.shape != tuple(shape):
        raise ValueError(f"'present' must be a boolean array of shape {tuple(shape)}. An array "
                         f"of dtype {present.dtype} and shape {present.shape} was provided.")
    return present


def threshold_maps(maps, threshold=DEFAULT_THRESHOLD, mode="positive", top_k=None,
                   present=None):
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
    present : bool array of shape (n_layers, n_units), optional
        The neurons on the grid (a pruned model's); the others never join a
        network. Default: all.

    Returns
    -------
    masks : bool array of shape (n_networks, n_layers, n_units)
    """
    check_choice(mode, THRESHOLD_MODES, "mode")
    maps = np.asarray(maps)
    if present is not None:
        present = _check_present(present, maps.shape[1:])
        masks = np.zeros(maps.shape, dtype=bool)
        masks[:, present] = threshold_maps(maps[:, present][:, None, :], threshold=threshold,
                                           mode=mode, top_k=top_k)[:, 0]
        return masks
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
        if grid.units is not None and (masks & ~grid.present()).any():
            absent = int((masks & ~grid.present()).any(axis=0).sum())
            raise ValueError(f"'masks' must select only neurons present on the grid of this "
                             f"pruned model; {absent} neurons selected were removed.")
        self.maps = maps
        self.masks = masks
        self.grid = grid
        self.params = dict(params or {})
        self.top_tokens = top_tokens

    @classmethod
    def from_maps(cls, maps, grid, threshold=DEFAULT_THRESHOLD, mode="positive",
                  top_k=None, params=None):
        """Threshold z-maps into networks (see :func:`threshold_maps`)."""
        masks = threshold_maps(maps, threshold=threshold, mode=mode, top_k=top_k,
                               present=None if grid.units is None else grid.present())
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

    def save(self, out_dir, overwrite=False):
        """Write a networks folder (see :func:`llmfbn.io.write_networks_folder`).

        ``components.nii.gz``, ``networks.nii.gz``, ``networks.json``,
        ``grid.json`` and ``params.json``, all swapped in at once.

        Parameters
        ----------
        out_dir : str or Path
            A new or empty folder, or a networks folder when ``overwrite``.
        overwrite : bool, default False
            Replace an existing networks folder (never a folder of another kind).

        Returns
        -------
        Path
        """
        return write_networks_folder(out_dir, self.maps, self.masks, self.grid, self.params,
                                     self.top_tokens, overwrite=overwrite)

    @classmethod
    def load(cls, net_dir):
        """Read the networks of a networks or GLM folder (checked: see
        :func:`llmfbn.io.read_networks_folder`)."""
        folder = read_networks_folder(net_dir)
        return cls(folder.maps, folder.masks, folder.grid, folder.params, folder.top_tokens)
