"""Network atlases shipped with llmfbn: fixed functional networks of a model, as nilearn atlases."""

from pathlib import Path

from sklearn.utils import Bunch

from llmfbn.datasets._probe import PACKAGE_DATA_DIR

__all__ = ["ATLASES", "atlas_path", "load_atlas"]

#: The atlases shipped in the package (``llmfbn/datasets/data/atlas/<name>``).
ATLASES = ("smollm2-135m",)


def atlas_path(atlas):
    """The folder of a shipped atlas (by name) or of an atlas folder (by path).

    Parameters
    ----------
    atlas : str or Path
        A name in :data:`ATLASES` or an atlas folder.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        ``atlas`` is neither a shipped atlas's name nor an existing folder.
    FileNotFoundError
        A shipped atlas is missing from this installation.
    """
    if isinstance(atlas, str) and atlas in ATLASES:
        path = PACKAGE_DATA_DIR / "atlas" / atlas
        if not path.is_dir():
            raise FileNotFoundError(
                f"The built-in atlas {path} does not exist: this llmfbn installation is "
                f"incomplete (the atlas is package data of llmfbn.datasets); reinstall llmfbn.")
        return path
    if not isinstance(atlas, (str, Path)):
        raise TypeError(f"'atlas' must be a name {list(ATLASES)} or an atlas folder. "
                        f"{type(atlas).__name__} was provided.")
    path = Path(atlas)
    if not path.is_dir():
        raise ValueError(f"'atlas' must be a built-in atlas {list(ATLASES)} or an atlas "
                         f"folder. {str(atlas)!r} is neither.")
    return path


def load_atlas(atlas="smollm2-135m"):
    """Load a network atlas: one model's functional networks as fixed maps.

    The shipped ``"smollm2-135m"`` atlas holds the networks of the default
    model (SmolLM2-135M-Instruct, ``mlp`` neurons) that CanICA finds again
    across ICA seeds on WikiText-2 (ICASSO-stable); it is built
    reproducibly by ``benchmarks/build_atlas.py`` (how, from which texts and
    with which settings: ``description`` and ``build``). Its maps work with
    nilearn as any probabilistic atlas (e.g. ``NiftiMapsMasker(maps)`` on a
    recording of the same model), and :func:`llmfbn.fingerprint.fingerprint`
    takes the atlas as the reference's networks.

    Parameters
    ----------
    atlas : str or Path, default "smollm2-135m"
        A built-in atlas (:data:`ATLASES`) or an atlas folder written by
        :func:`llmfbn.io.write_atlas`.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``maps`` : nibabel.Nifti1Image of shape (nx, ny, n_layers,
          n_networks), one z-map per network on the model's neuron grid.
        - ``labels`` : list of str, length n_networks, e.g.
          ``"N01 · the, of, and"`` (number and top tokens).
        - ``description`` : str, what the atlas is and how it was built.
        - ``neuron_maps`` : float32 array of shape (n_networks, n_layers,
          width), the maps in neuron order (0 on padding).
        - ``top_tokens`` : list of list of str, the tokens that drive each
          network most in the build's recording.
        - ``quality`` : float array of shape (n_networks,), each network's
          ICASSO quality index Iq across the build's ICA seeds.
        - ``grid`` : :class:`llmfbn.NeuronGrid`, the model's grid (model
          name and weights hash: which model the atlas belongs to).
        - ``model`` : str, the model's name.
        - ``build`` : dict, the build's settings and inputs.
        - ``path`` : pathlib.Path of the atlas folder.

    Raises
    ------
    ValueError
        ``atlas`` is neither a built-in name nor a folder.
    FileNotFoundError, llmfbn.io.FormatError
        A missing or damaged atlas; the message names the file.
    """
    import numpy as np

    from llmfbn.io import read_atlas

    path = atlas_path(atlas)
    document, grid, maps = read_atlas(path)
    return Bunch(
        maps=grid.to_img(maps), labels=list(document["labels"]),
        description=document["description"], neuron_maps=maps,
        top_tokens=[list(t) for t in document["top_tokens"]],
        quality=np.asarray(document["quality"], dtype=np.float64), grid=grid,
        model=grid.model, build=dict(document["build"]), path=path)
