"""Neuron grid: the exact, invertible map between LLM neurons and Nifti voxels.

Layer ``l`` is the axial slice ``z = l``; its ``width`` units fill an
``nx × ny`` slice of near-square shape. Unit ``u`` of a layer sits at
``x = u % nx, y = u // nx`` (x varies fastest, as in Nifti memory order).
When ``width`` has no factor pair close to square, the slice is padded; the
padding voxels lie outside the mask.

A pruned model (``llmfbn prune``) sits on its source model's grid: each
neuron it kept at its original unit, the removed ones outside the mask like
padding (``units``), so its maps align voxel for voxel with the dense model's.

This module needs numpy and nibabel only (no torch).
"""

import math
from pathlib import Path

import nibabel as nib
import numpy as np

from llmfbn._utils import check_array_shape

__all__ = ["NeuronGrid", "slice_shape"]

#: Version 2 added ``weights_hash`` and ``model_layers``; version 3 ``units`` (the
#: neurons present on the grid of a pruned model). A grid with every neuron present
#: is still written as version 2, so that older llmfbn versions read it; one with
#: ``units`` is version 3, which they refuse rather than take removed neurons as present.
GRID_FORMAT_VERSION = 3
_DENSE_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2, 3)

# A slice keeps an exact factor pair when its long side is at most this many
# times its short side; otherwise it becomes a padded near-square.
_MAX_ASPECT = 2.0


def slice_shape(width):
    """Choose the ``(nx, ny)`` shape of a layer slice holding ``width`` units.

    Parameters
    ----------
    width : int
        Number of units per layer.

    Returns
    -------
    (nx, ny) : tuple of int
        ``nx >= ny`` and ``nx * ny >= width``. The exact factor pair closest
        to square when its aspect ratio is at most 2 (1536 -> 48 x 32),
        otherwise the smallest near-square padded shape (1531 -> 40 x 39).
    """
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool):
        raise TypeError(f"'width' must be an int. {width!r} was provided.")
    if width < 1:
        raise ValueError(f"'width' must be >= 1. {width} was provided.")
    ny = math.isqrt(width)
    while width % ny:
        ny -= 1
    nx = width // ny
    if nx / ny <= _MAX_ASPECT:
        return int(nx), int(ny)
    nx = math.isqrt(width - 1) + 1 if width > 1 else 1
    ny = -(-width // nx)
    return int(max(nx, ny)), int(min(nx, ny))


class NeuronGrid:
    """Place the neurons of an LLM on a pseudo-volumetric Nifti grid.

    Parameters
    ----------
    n_layers : int
        Number of recorded layers, one axial slice each.
    width : int
        Number of units (neurons) per layer.
    layers : sequence of int, optional
        Model layer index of each slice. Default ``range(n_layers)``.
    model : str, optional
        Name of the model the neurons belong to (stored in the sidecar).
    signal : str, optional
        Which activation the voxels hold (``"mlp"``, ``"mlp_out"``,
        ``"residual"``); stored in the sidecar.
    affine : array of shape (4, 4), optional
        Voxel-to-world affine. Default identity: 1 mm voxels, no MNI space.
    weights_hash : str, optional
        Hash of the model's weights: two grids are of the same model when
        their hashes agree (names can differ, e.g. a path and a built-in name).
    model_layers : int, optional
        How many layers the whole model has (``layers`` may be a subset).
    units : sequence of sequences of int, optional
        A pruned model's neurons: per slice, the sorted, unique units (in
        ``[0, width)``, the source model's unit indices) that are present;
        the others lie outside the mask like padding. Default None: every
        unit is present (a grid where every slice lists every unit is the
        same and keeps None).

    Attributes
    ----------
    shape : tuple (nx, ny, n_layers)
        Spatial shape of every image on this grid.
    units : tuple of int64 arrays, or None
        Per slice, the units present (None: all).
    """

    def __init__(
        self, n_layers, width, layers=None, model=None, signal=None, affine=None,
        weights_hash=None, model_layers=None, units=None,
    ):
        if int(n_layers) < 1:
            raise ValueError(f"'n_layers' must be >= 1. {n_layers} was provided.")
        self.n_layers = int(n_layers)
        self.width = int(width)
        self.nx, self.ny = slice_shape(self.width)
        layers = list(range(self.n_layers)) if layers is None else list(layers)
        if len(layers) != self.n_layers:
            raise ValueError(
                f"'layers' must list {self.n_layers} layer indices. "
                f"{len(layers)} were provided."
            )
        self.layers = [int(layer) for layer in layers]
        self.model = model
        self.signal = signal
        self.weights_hash = weights_hash
        self.model_layers = None if model_layers is None else int(model_layers)
        if self.model_layers is not None and max(self.layers) >= self.model_layers:
            raise ValueError(
                f"'layers' must lie in [0, {self.model_layers}) for a model of "
                f"{self.model_layers} layers. {self.layers} was provided."
            )
        self.affine = np.eye(4) if affine is None else np.asarray(affine, float)
        if self.affine.shape != (4, 4):
            raise ValueError(
                f"'affine' must have shape (4, 4). {self.affine.shape} was provided."
            )
        self.units = _check_units(units, self.n_layers, self.width)

    # -- geometry ---------------------------------------------------------

    @property
    def shape(self):
        return (self.nx, self.ny, self.n_layers)

    @property
    def n_neurons(self):
        """Neurons on the grid (inside the mask): all units of every slice, or those present."""
        if self.units is None:
            return self.n_layers * self.width
        return int(sum(len(u) for u in self.units))

    @property
    def pruned(self):
        """Whether some units are absent (the grid of a pruned model)."""
        return self.units is not None

    def present(self):
        """Boolean array of shape ``(n_layers, width)``: True on the units present."""
        if self.units is None:
            return np.ones((self.n_layers, self.width), dtype=bool)
        present = np.zeros((self.n_layers, self.width), dtype=bool)
        for slot, units in enumerate(self.units):
            present[slot, units] = True
        return present

    def take_present(self, data):
        """Neuron array ``(..., n_layers, width)`` -> ``(..., n_neurons)``, present neurons only.

        In neuron order (slice by slice, unit by unit): a reshape (no copy)
        when every unit is present. Inverse: :meth:`put_present`.
        """
        data = np.asarray(data)
        check_array_shape(data, (self.n_layers, self.width), "data", trailing=True)
        if self.units is None:
            return data.reshape(data.shape[:-2] + (self.n_neurons,))
        return data[..., self.present()]

    def put_present(self, values):
        """``(..., n_neurons)`` in neuron order -> ``(..., n_layers, width)``; absent units 0."""
        values = np.asarray(values)
        check_array_shape(values, (self.n_neurons,), "values", trailing=True)
        if self.units is None:
            return values.reshape(values.shape[:-1] + (self.n_layers, self.width))
        out = np.zeros(values.shape[:-1] + (self.n_layers, self.width), dtype=values.dtype)
        out[..., self.present()] = values
        return out

    @property
    def n_padding(self):
        """Padding voxels per slice (outside the mask)."""
        return self.nx * self.ny - self.width

    def voxel_of(self, layer_slot, unit):
        """Voxel ``(i, j, k)`` of neuron ``unit`` in slice ``layer_slot``.

        Accepts scalars or integer arrays of the same shape.
        """
        unit = np.asarray(unit)
        layer_slot = np.asarray(layer_slot)
        if np.any((unit < 0) | (unit >= self.width)):
            raise ValueError(f"'unit' must lie in [0, {self.width}).")
        if np.any((layer_slot < 0) | (layer_slot >= self.n_layers)):
            raise ValueError(f"'layer_slot' must lie in [0, {self.n_layers}).")
        if self.units is not None:
            slots, units = np.broadcast_arrays(layer_slot, unit)
            absent = ~self.present()[slots, units]
            if absent.any():
                pairs = list(zip(slots[absent].tolist(), units[absent].tolist()))
                raise ValueError(
                    f"'unit' must be present on this grid of a pruned model. (slot, unit) "
                    f"{pairs[:4]}{' ...' if len(pairs) > 4 else ''} ({len(pairs)} in all) "
                    f"were removed.")
        return unit % self.nx, unit // self.nx, layer_slot

    def neuron_of(self, i, j, k):
        """Inverse of :meth:`voxel_of`: ``(layer_slot, unit)`` of a voxel."""
        i, j, k = np.asarray(i), np.asarray(j), np.asarray(k)
        unit = j * self.nx + i
        if np.any((i < 0) | (i >= self.nx) | (j < 0) | (j >= self.ny)):
            raise ValueError(f"voxel outside the {self.shape} grid.")
        if np.any(unit >= self.width):
            raise ValueError("voxel lies in the padding, outside the mask.")
        if self.units is not None:
            if np.any((k < 0) | (k >= self.n_layers)):
                raise ValueError(f"voxel outside the {self.shape} grid.")
            if not self.present()[tuple(np.broadcast_arrays(k, unit))].all():
                raise ValueError("voxel of a removed neuron (pruned model), outside the mask.")
        return k, unit

    def mask(self):
        """Boolean array of shape ``(nx, ny, n_layers)``: True on neurons (present ones)."""
        if self.units is None:
            in_slice = np.zeros(self.nx * self.ny, dtype=bool)
            in_slice[: self.width] = True
            in_slice = in_slice.reshape(self.ny, self.nx).T
            return np.repeat(in_slice[:, :, None], self.n_layers, axis=2)
        return self.to_volume(self.present()).astype(bool)

    def mask_img(self):
        """The grid's mask as a uint8 ``Nifti1Image``."""
        img = nib.Nifti1Image(self.mask().astype(np.uint8), self.affine)
        img.header.set_xyzt_units("mm")
        return img

    # -- data <-> images --------------------------------------------------

    def to_volume(self, activations):
        """Neuron array ``(..., n_layers, width)`` -> volume ``(nx, ny, n_layers, ...)``.

        Leading axes (e.g. time) move to the end, as Nifti expects.
        Padding voxels are 0, and so are the voxels of absent units (a
        pruned model's removed neurons), whatever ``activations`` holds there.
        """
        activations = np.asarray(activations)
        check_array_shape(
            activations, (self.n_layers, self.width), "activations", trailing=True
        )
        lead = activations.shape[:-2]
        padded = np.zeros(lead + (self.n_layers, self.ny * self.nx), activations.dtype)
        padded[..., : self.width] = activations
        if self.units is not None:
            padded[..., : self.width][..., ~self.present()] = 0
        # (..., L, ny, nx) -> (nx, ny, L, ...)
        padded = padded.reshape(lead + (self.n_layers, self.ny, self.nx))
        n_lead = len(lead)
        order = (n_lead + 2, n_lead + 1, n_lead) + tuple(range(n_lead))
        return padded.transpose(order)

    def from_volume(self, volume):
        """Inverse of :meth:`to_volume`.

        ``(nx, ny, n_layers, ...)`` -> ``(..., n_layers, width)``.
        """
        volume = np.asarray(volume)
        if volume.shape[:3] != self.shape:
            raise ValueError(
                f"Grid has shape {self.shape} but the volume has shape "
                f"{volume.shape[:3]}."
            )
        n_lead = volume.ndim - 3
        order = tuple(range(3, 3 + n_lead)) + (2, 1, 0)
        data = volume.transpose(order).reshape(
            volume.shape[3:] + (self.n_layers, self.nx * self.ny)
        )
        return data[..., : self.width]

    def to_img(self, activations, dtype=np.float32):
        """Write activations as a Nifti image on this grid.

        Parameters
        ----------
        activations : array of shape (n_timepoints, n_layers, width) or (n_layers, width)
            A 3-D input gives a 4-D image with time (tokens) last; a 2-D input
            gives a 3-D map.
        dtype : numpy dtype, default float32

        Returns
        -------
        img : nibabel.Nifti1Image
        """
        volume = self.to_volume(np.asarray(activations, dtype=dtype))
        img = nib.Nifti1Image(volume, self.affine)
        img.header.set_data_dtype(dtype)
        img.header.set_xyzt_units("mm", "sec")
        if volume.ndim == 4:
            img.header.set_zooms(img.header.get_zooms()[:3] + (1.0,))
        return img

    def from_img(self, img):
        """Read an image on this grid back to ``(n_timepoints, n_layers, width)``.

        A 3-D image gives ``(n_layers, width)``. Accepts a path or an image.
        """
        if isinstance(img, (str, Path)):
            img = nib.load(img)
        self.check_img(img)
        return self.from_volume(np.asanyarray(img.dataobj))

    def check_img(self, img):
        """Raise ValueError if ``img`` is not on this grid (shape and affine)."""
        if img.shape[:3] != self.shape:
            raise ValueError(
                f"Grid has shape {self.shape} ({self.n_layers} layers of "
                f"{self.width} units) but the image has shape {img.shape[:3]}."
            )
        if not np.allclose(img.affine, self.affine):
            raise ValueError("The image's affine differs from the grid's affine.")

    def masked_to_neurons(self, masked):
        """Reorder masker output to neuron order.

        nilearn maskers return voxels in C order of ``(x, y, z)``. This maps an
        array ``(n_samples, n_neurons)`` from ``NiftiMasker(mask_img=grid.mask_img())``
        to ``(n_samples, n_layers, width)``.
        """
        masked = np.asarray(masked)
        check_array_shape(masked, (self.n_neurons,), "masked", trailing=True)
        out = np.zeros(masked.shape[:-1] + self.shape, dtype=masked.dtype)
        out[..., self.mask()] = masked
        out = np.moveaxis(out, (-3, -2, -1), (-1, -2, -3))
        return out.reshape(masked.shape[:-1] + (self.n_layers, -1))[..., : self.width]

    # -- sidecar (written and read by llmfbn.io) ----------------------------

    def to_dict(self):
        """The ``grid.json`` document (see :func:`llmfbn.io.write_grid`).

        Version 2 when every unit is present; version 3, with ``units``,
        for the grid of a pruned model.
        """
        document = {
            "format_version": _DENSE_FORMAT_VERSION if self.units is None
            else GRID_FORMAT_VERSION,
            "model": self.model,
            "weights_hash": self.weights_hash,
            "model_layers": self.model_layers,
            "signal": self.signal,
            "layers": self.layers,
            "width": self.width,
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
            "layout": "layer l -> slice z=l; unit u -> x = u % nx, y = u // nx",
        }
        if self.units is not None:
            document["units"] = [units.tolist() for units in self.units]
        return document

    @classmethod
    def from_dict(cls, spec):
        """Inverse of :meth:`to_dict`; checks the version and the shape."""
        version = spec.get("format_version")
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"format_version {version!r} is not one this llmfbn reads "
                f"{_READABLE_VERSIONS}"
                + ("; upgrade llmfbn." if isinstance(version, int)
                   and version > GRID_FORMAT_VERSION else ".")
            )
        grid = cls(
            n_layers=len(spec["layers"]),
            width=spec["width"],
            layers=spec["layers"],
            model=spec.get("model"),
            signal=spec.get("signal"),
            affine=spec.get("affine"),
            weights_hash=spec.get("weights_hash"),
            model_layers=spec.get("model_layers"),
            units=spec["units"] if version == 3 else None,
        )
        if version == 3 and grid.units is None:
            raise ValueError("its 'units' list every unit of every layer, but a version 3 "
                             "grid is the grid of a pruned model (some units absent).")
        if list(grid.shape) != list(spec["shape"]):
            raise ValueError(
                f"it gives shape {spec['shape']} but width {spec['width']} "
                f"maps to {list(grid.shape)}."
            )
        return grid

    def same_layout(self, other):
        """True when both grids place the same neurons on the same voxels."""
        return (
            self.layers == other.layers
            and self.width == other.width
            and np.allclose(self.affine, other.affine)
            and _same_units(self.units, other.units)
        )

    def same_model(self, other):
        """True when both grids are of one model: same weights hash when both
        know it, otherwise the same model name."""
        if self.weights_hash is not None and other.weights_hash is not None:
            return self.weights_hash == other.weights_hash
        return self.model == other.model

    def check_compatible(self, other, allow_other_model=False, subset=False,
                         names=("these neurons", "the target")):
        """Raise ValueError unless neurons on this grid mean the same on ``other``.

        The one compatibility check of llmfbn (networks vs model, networks vs
        networks, recording vs recording).

        Parameters
        ----------
        other : NeuronGrid
        allow_other_model : bool, default False
            Accept another model whose grid is identical (a fine-tuned or
            otherwise derived model). Different layers, widths or signals are
            refused regardless.
        subset : bool, default False
            Accept this grid's layers being a subset of ``other``'s (networks
            from a recording of some layers, applied to the whole model).
        names : (str, str)
            What ``self`` and ``other`` are, for the message.
        """
        mine, theirs = names
        problems = []
        if self.signal is not None and other.signal is not None and self.signal != other.signal:
            problems.append(f"signal {self.signal!r} vs {other.signal!r}")
        if self.width != other.width:
            problems.append(f"{self.width} vs {other.width} units per layer")
        if (self.model_layers is not None and other.model_layers is not None
                and self.model_layers != other.model_layers):
            problems.append(f"a model of {self.model_layers} vs {other.model_layers} layers")
        if subset:
            extra = sorted(set(self.layers) - set(other.layers))
            if extra:
                problems.append(f"layers {extra} that {theirs} lacks")
        elif self.layers != other.layers:
            problems.append(f"layers {_span(self.layers)} vs {_span(other.layers)}")
        if self.width == other.width and not self._same_units_on_shared_layers(other):
            problems.append("different neurons present (pruned model: "
                            f"{self._pruning_note() or 'none removed'} vs "
                            f"{other._pruning_note() or 'none removed'})")
        if not np.allclose(self.affine, other.affine):
            problems.append("different affines")
        if problems:
            raise ValueError(
                f"{mine} ({self._describe()}) do not fit {theirs} ({other._describe()}): "
                + "; ".join(problems) + ".")
        if not self.same_model(other) and not allow_other_model:
            raise ValueError(
                f"{mine} come from model {self.model!r} but {theirs} is "
                f"{other.model!r} (same grid, other weights). If that model is derived "
                f"from the other (e.g. fine-tuned), allow it explicitly "
                f"(allow_other_model=True).")

    def _same_units_on_shared_layers(self, other):
        """Whether each layer both grids hold has the same units present."""
        if self.units is None and other.units is None:
            return True
        mine, theirs = self.present(), other.present()
        slots = {layer: slot for slot, layer in enumerate(other.layers)}
        return all(np.array_equal(mine[slot], theirs[slots[layer]])
                   for slot, layer in enumerate(self.layers) if layer in slots)

    def _pruning_note(self):
        """``""``, or how many neurons of the grid a pruned model lacks."""
        if self.units is None:
            return ""
        removed = self.n_layers * self.width - self.n_neurons
        return f"{removed} of {self.n_layers * self.width} neurons removed"

    def _describe(self):
        pruned = f" ({self._pruning_note()}, pruned model)" if self.units is not None else ""
        return (f"{self.model}, {self.n_layers} layers x {self.width} units{pruned}, "
                f"signal {self.signal}")

    def __eq__(self, other):
        return (
            isinstance(other, NeuronGrid)
            and self.same_layout(other)
            and self.same_model(other)
            and self.model == other.model
            and self.signal == other.signal
        )

    def __repr__(self):
        return (
            f"NeuronGrid(model={self.model!r}, signal={self.signal!r}, "
            f"layers={self.n_layers}, width={self.width}, shape={self.shape}"
            + (f", pruned: {self.n_neurons} neurons present" if self.units is not None else "")
            + ")"
        )


def _check_units(units, n_layers, width):
    """``units`` as a tuple of int64 arrays (None when every unit is present), or ValueError."""
    if units is None:
        return None
    if isinstance(units, (str, bytes)) or not hasattr(units, "__len__"):
        raise TypeError(f"'units' must be None or one sequence of units per slice. "
                        f"{type(units).__name__} was provided.")
    if len(units) != n_layers:
        raise ValueError(f"'units' must list the units present in each of the {n_layers} "
                         f"slices. {len(units)} lists were provided.")
    out = []
    for slot, present in enumerate(units):
        array = np.asarray(present)
        if array.size == 0:
            array = array.astype(np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"'units' of slice {slot} must be a 1-D sequence of ints. An "
                             f"array of dtype {array.dtype} and shape {array.shape} was "
                             f"provided.")
        array = array.astype(np.int64)
        if len(array) and (array[0] < 0 or array[-1] >= width
                           or np.any(np.diff(array) <= 0)):
            raise ValueError(f"'units' of slice {slot} must be sorted, unique and in "
                             f"[0, {width}). {_short(array)} was provided.")
        array.flags.writeable = False
        out.append(array)
    if all(len(array) == width for array in out):
        return None
    return tuple(out)


def _same_units(a, b):
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _short(array, limit=8):
    shown = ", ".join(map(str, array[:limit].tolist()))
    return f"[{shown}{', ...' if len(array) > limit else ''}]"


def _span(layers):
    if layers and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return str(layers)
