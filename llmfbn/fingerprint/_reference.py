"""The reference's networks from an atlas: fixed maps instead of CanICA on the texts."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmfbn.datasets import ATLASES, atlas_path, load_atlas
from llmfbn.fingerprint._networks import standardize, time_courses
from llmfbn.io import read_grid

__all__ = ["ReferenceAtlas", "atlas_time_courses", "choose_reference_atlas",
           "read_reference_atlas"]


@dataclass
class ReferenceAtlas:
    """An atlas the reference's networks are read from.

    Attributes
    ----------
    name : str
        The built-in atlas's name, or the folder as given.
    path : Path
    grid : NeuronGrid
        The grid of the atlas's model.
    maps : float32 array of shape (n_networks, n_layers, width)
    """

    name: str
    path: Path
    grid: object
    maps: np.ndarray

    @property
    def n_networks(self):
        return len(self.maps)

    @property
    def column(self):
        """What the table's ``reference_networks`` says: ``atlas:<name>``."""
        return f"atlas:{self.name}"


def _read(atlas):
    bunch = load_atlas(atlas)
    name = atlas if isinstance(atlas, str) and atlas in ATLASES else str(atlas)
    return ReferenceAtlas(name, bunch.path, bunch.grid, bunch.neuron_maps)


def read_reference_atlas(reference_atlas):
    """The atlas named by ``reference_atlas``, read before any model loads.

    Parameters
    ----------
    reference_atlas : "auto", None, str or Path
        ``"auto"`` (chosen later, see :func:`choose_reference_atlas`), ``None``
        or ``"none"`` (no atlas), a built-in atlas or an atlas folder.

    Returns
    -------
    ReferenceAtlas or None
        None for ``"auto"``, ``None`` and ``"none"``.

    Raises
    ------
    ValueError
        Neither a built-in atlas nor a folder.
    FileNotFoundError, llmfbn.io.FormatError
        A missing or damaged atlas (the file named).
    """
    if reference_atlas is None or (isinstance(reference_atlas, str)
                                   and reference_atlas in ("auto", "none")):
        return None
    try:
        return _read(reference_atlas)
    except (ValueError, TypeError):
        raise ValueError(f"'reference_atlas' must be 'auto', 'none', a built-in atlas "
                         f"{list(ATLASES)} or an atlas folder. {str(reference_atlas)!r} was "
                         f"provided.") from None


def choose_reference_atlas(reference_atlas, atlas, grid, label):
    """The atlas the reference's networks come from, or None to fit CanICA on the texts.

    Parameters
    ----------
    reference_atlas : "auto", None, str or Path
        As given to :func:`read_reference_atlas`. ``"auto"``: the built-in
        atlas of the reference's model (the same weights hash), if there is
        one.
    atlas : ReferenceAtlas or None
        What :func:`read_reference_atlas` returned.
    grid : NeuronGrid
        The reference model's grid (with its weights hash).
    label : str
        The reference's name, for messages.

    Returns
    -------
    ReferenceAtlas or None

    Raises
    ------
    ValueError
        An atlas of another grid or model than the reference (the atlas
        named).
    """
    if isinstance(reference_atlas, str) and reference_atlas == "auto":
        for name in ATLASES:
            try:
                path = atlas_path(name)
            except FileNotFoundError:  # an installation without the package data
                continue
            if grid.weights_hash is not None and read_grid(path).weights_hash == grid.weights_hash:
                atlas = _read(name)
                break
        else:
            return None
    if atlas is None:
        return None
    try:
        atlas.grid.check_compatible(grid, allow_other_model=True,
                                    names=("its networks", f"the reference {label!r}"))
    except ValueError as err:
        raise ValueError(f"The reference atlas {atlas.path} is of another grid: {err}") from None
    if not atlas.grid.same_model(grid):
        raise ValueError(f"The reference atlas {atlas.path} is of model {atlas.grid.model!r}, "
                         f"not of the reference {label!r} (same grid, other weights); give "
                         f"that model as the reference, or 'none' to fit its networks on "
                         f"the texts.")
    return atlas


def atlas_time_courses(activations, grid, atlas):
    """The atlas networks' time courses over the words (as :func:`time_courses`).

    Parameters
    ----------
    activations : array of shape (n_words, n_neurons)
        The reference's activations, present neurons in ``grid``'s order.
    grid : NeuronGrid
        The reference's grid (the atlas's layout).
    atlas : ReferenceAtlas

    Returns
    -------
    float64 array of shape (n_words, n_networks)
    """
    return time_courses(standardize(activations), grid.take_present(atlas.maps))
