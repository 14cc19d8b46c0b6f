"""The recording folder (BIDS-derivatives style): one model is one subject.

::

    OUT/
      llmfbn.json                    {"kind": "recording", ...}
      dataset_description.json       BIDS; its "llmfbn" block says what was recorded
      grid.json                      neuron <-> voxel map (NeuronGrid)
      mask.nii.gz                    neurons in, padding out
      sub-<model>/func/
        sub-<model>_task-<task>_run-<n>_bold.nii[.gz]   4-D, float, time = tokens
        sub-<model>_task-<task>_run-<n>_bold.json       sidecar: model, weights, signal, tokens
        sub-<model>_task-<task>_run-<n>_events.tsv      one row per token (llmfbn.io._events)
        sub-<model>_task-<task>_summary.json            counts for the whole task

A *reduced* recording (``llmfbn record --reduce K``) has the same files
except the events: each run's image holds K volumes, the run's top-K spatial
principal components times their singular values (what nilearn's CanICA
and DictLearning reduce a run to), not tokens; its sidecar's ``Reduction``
block says so (:func:`run_reduction`). It has no ``_events.tsv``: there is
no token axis for onsets to index, and nilearn's GLM would take the K
volumes for K tokens without complaint. A folder is either reduced, with
one setting, or not (the description's ``reduction``); :func:`find_runs`
never mixes the two and refuses reduced runs to callers that need tokens.

Every file is written atomically and a run's sidecar last, so a run is
finished exactly when its sidecar exists. The sidecar's ``LlmfbnFormatVersion``
versions the run's files (image, events, sidecar); the summary and the
``llmfbn`` block of ``dataset_description.json`` carry their own
``format_version``. This module is the only one that knows these names.
"""

import os
import re
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.imageglobals import LoggingOutputSuppressor

from llmfbn import __version__
from llmfbn.io._atomic import atomic_path, write_json
from llmfbn.io._errors import FormatError, ResumeMismatchError
from llmfbn.io._folders import check_folder, check_output_folder
from llmfbn.io._grid import GRID_FILE, read_grid, write_grid
from llmfbn.io._json import check_format_version, read_json, require_keys
from llmfbn.io._lock import OutputLock, lock_path

__all__ = [
    "is_run_image",
    "RecordingLayout",
    "bids_label",
    "check_recording_output",
    "check_run",
    "check_token_runs",
    "find_runs",
    "read_description",
    "read_sidecar",
    "read_summaries",
    "run_name",
    "run_reduction",
    "run_sibling",
]

BIDS_VERSION = "1.9.0"
RUN_DIGITS = 5
DESCRIPTION_FILE = "dataset_description.json"
MASK_FILE = "mask.nii.gz"
IMAGE_EXTENSIONS = (".nii", ".nii.gz")

#: Format version of a run's files, in its sidecar under :data:`SIDECAR_VERSION_KEY`.
SIDECAR_FORMAT_VERSION = 1
SIDECAR_VERSION_KEY = "LlmfbnFormatVersion"
SUMMARY_FORMAT_VERSION = 1
DESCRIPTION_FORMAT_VERSION = 1

REPAIR_HINT = "re-run `llmfbn record` with the same arguments to record it again"

#: A reduced run's sidecar key, and the keys its block must hold.
REDUCTION_KEY = "Reduction"
REDUCTION_KEYS = ("method", "n_components", "n_tokens", "sketch_rows")
#: ``model_dtype`` of a recording whose description predates it (llmfbn loaded float32).
DEFAULT_MODEL_DTYPE = "float32"


# -- names ---------------------------------------------------------------------------


def bids_label(name):
    """Make a BIDS label (letters and digits only) from a model or task name.

    ``"smollm2-135m"`` -> ``"smollm2135m"``; a path keeps its last part.
    """
    name = str(name).rstrip("/\\")
    name = re.split(r"[/\\]", name)[-1]
    if name.endswith(".gguf"):
        name = name[: -len(".gguf")]
    label = re.sub(r"[^A-Za-z0-9]", "", name)
    if not label:
        raise ValueError(f"Cannot derive a BIDS label (letters and digits) from {name!r}.")
    return label


def check_label(value, what):
    """Raise ValueError unless ``value`` is a BIDS label (letters and digits)."""
    if not re.fullmatch(r"[A-Za-z0-9]+", str(value)):
        raise ValueError(f"'{what}' must be letters and digits only (a BIDS label). "
                         f"{value!r} was provided.")


_BOLD = "_bold.nii"


def is_run_image(path):
    """Whether ``path`` is named as a run image (``*_bold.nii`` or ``*_bold.nii.gz``)."""
    return _BOLD in Path(path).name


def run_sibling(bold, suffix):
    """Path of a run's other file: ``..._bold.nii[.gz]`` -> ``..._<suffix>``.

    ``suffix`` is e.g. ``"bold.json"`` (sidecar) or ``"events.tsv"``.
    """
    bold = Path(bold)
    if not is_run_image(bold):
        raise ValueError(f"{bold} is not a run image (a *_bold.nii or *_bold.nii.gz file).")
    return bold.with_name(bold.name[: bold.name.index(_BOLD)] + "_" + suffix)


def run_name(bold):
    """A run's name without suffix.

    ``sub-m_task-t_run-00001_bold.nii`` -> ``sub-m_task-t_run-00001``.
    """
    return run_sibling(bold, "").name.rstrip("_")


def _sidecar_of(path):
    path = Path(path)
    return path if path.name.endswith("_bold.json") else run_sibling(path, "bold.json")


def _images_of(sidecar):
    stem = sidecar.name[: -len(".json")]
    return [sidecar.with_name(stem + ext) for ext in IMAGE_EXTENSIONS]


def _one_line(err):
    return " ".join(str(err).split())


# -- sidecar, summary, dataset description ------------------------------------------


def write_sidecar(path, document):
    """Write a run's sidecar (``_bold.json``) atomically, with its format version."""
    write_json(_sidecar_of(path), {**document, SIDECAR_VERSION_KEY: SIDECAR_FORMAT_VERSION},
               indent=2)


def read_sidecar(bold):
    """Read a run's sidecar (``_bold.json``), its format version checked.

    Parameters
    ----------
    bold : str or Path
        The run's ``_bold`` image, or its sidecar.

    Returns
    -------
    dict
        With at least ``NumberOfTokens`` (int >= 1); a reduced run's also
        has a valid ``Reduction`` block (see :func:`run_reduction`).
    """
    path = _sidecar_of(bold)
    document = read_json(path, what="run sidecar")
    check_format_version(document, path, SIDECAR_FORMAT_VERSION, what="run sidecar",
                         key=SIDECAR_VERSION_KEY)
    require_keys(document, ["NumberOfTokens"], path, what="run sidecar")
    n_tokens = document["NumberOfTokens"]
    if not _is_count(n_tokens):
        raise FormatError(f"{path} is not a valid run sidecar: NumberOfTokens must be an "
                          f"int >= 1. {n_tokens!r} was found.")
    reduction = document.get(REDUCTION_KEY)
    if reduction is not None:
        _check_reduction(reduction, n_tokens, path)
    return document


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_reduction(reduction, n_tokens, path):
    where = f"{path} is not a valid run sidecar: its {REDUCTION_KEY}"
    if not isinstance(reduction, dict):
        raise FormatError(f"{where} must be an object. {reduction!r} was found.")
    missing = [k for k in REDUCTION_KEYS if k not in reduction]
    if missing:
        raise FormatError(f"{where} lacks {missing}.")
    for key in ("n_components", "n_tokens", "sketch_rows"):
        if not _is_count(reduction[key]):
            raise FormatError(f"{where} {key} must be an int >= 1. {reduction[key]!r} was "
                              f"found.")
    if reduction["n_tokens"] != n_tokens:
        raise FormatError(f"{where} n_tokens ({reduction['n_tokens']}) differs from "
                          f"NumberOfTokens ({n_tokens}).")
    if reduction["n_components"] > n_tokens:
        raise FormatError(f"{where} n_components ({reduction['n_components']}) exceeds "
                          f"NumberOfTokens ({n_tokens}).")


def run_reduction(bold):
    """How a run was reduced, or None when it holds every token.

    Parameters
    ----------
    bold : str or Path
        The run's ``_bold`` image, or its sidecar.

    Returns
    -------
    dict or None
        None for a token recording (one volume per token). For a reduced run
        (``llmfbn record --reduce K``), its sidecar's ``Reduction`` block:
        ``n_components`` (K, the image's volumes), ``n_tokens`` (tokens the
        run was reduced from), ``method`` (``"frequent_directions_pca"``),
        ``sketch_rows``, and ``block_rows``, ``standardize``, ``exact``,
        ``n_shrinks``, ``shrinkage``, ``description`` (see
        :mod:`llmfbn.recording._reduce`). Volume k is the run's k-th spatial
        principal component (each neuron z-scored over the run's tokens)
        times its singular value: nilearn's ``_mask_and_reduce_single``
        output, already standardised, so it must not be standardised again.
    """
    reduction = read_sidecar(bold).get(REDUCTION_KEY)
    return None if reduction is None else dict(reduction)


def check_token_runs(paths, what):
    """Raise ValueError when any of ``paths`` is a reduced run; ``what`` needs every token.

    Parameters
    ----------
    paths : list of str or Path
        Run images. An image without a run sidecar beside it (not written
        by ``llmfbn record``) is taken as a token image.
    what : str
        What needs the tokens (``"time series"``), for the message.
    """
    for path in paths:
        path = Path(path)
        if not is_run_image(path) or not _sidecar_of(path).is_file():
            continue
        reduction = run_reduction(path)
        if reduction is not None:
            raise ValueError(f"{path} is a reduced run (--reduce {reduction['n_components']}): "
                             f"{what} needs every token; record without --reduce.")


def _n_volumes(sidecar):
    """Volumes a run's image holds: its tokens, or K when reduced."""
    reduction = sidecar.get(REDUCTION_KEY)
    return sidecar["NumberOfTokens"] if reduction is None else reduction["n_components"]


#: What the counts of a task summary mean; the same for every input format.
SUMMARY_DEFINITIONS = {
    "n_texts_in_input": "texts the reader offered, empty ones included, before any selection: "
                        "lines of a plain-text file, records of a .jsonl file, data rows of a "
                        ".csv/.tsv file, items of a list; for WikiText (input_format "
                        "'wikitext' or 'wikitext-articles') paragraphs or articles, headings "
                        "and blank lines being boundaries, not texts",
    "n_headings": "WikiText heading lines read as boundaries (0 for other formats)",
    "n_skipped_empty": "texts of n_texts_in_input that were empty or whitespace, skipped",
    "n_texts": "texts recorded: n_texts_in_input - n_skipped_empty, then the first 'limit' "
               "or a 'sample' of them",
    "n_empty_after_tokenization": "texts of n_texts that gave no token, skipped",
    "n_truncated": "texts over max_tokens cut to their first max_tokens tokens",
    "n_tokens_dropped": "tokens cut off by truncation",
    "n_split": "texts over max_tokens split into several forward passes",
    "n_per_label": "recorded texts per label (after limit or sample)",
    "n_runs": "runs (4-D images) of the task",
    "n_tokens": "tokens in all runs of the task (the volumes, unless the runs are reduced)",
    "reduce": "components each run was reduced to (llmfbn record --reduce): each run's image "
              "holds that many volumes, its top spatial principal components; null when every "
              "token is a volume",
    "sketch_rows": "rows of the streaming sketch each reduced run was computed with (see "
                   "llmfbn.recording._reduce); null when the runs are not reduced",
}


def write_summary(path, summary):
    """Write a task's ``_summary.json`` atomically, with its format version.

    The counts present in ``summary`` are explained under ``"definitions"``
    (:data:`SUMMARY_DEFINITIONS`).
    """
    definitions = {k: v for k, v in SUMMARY_DEFINITIONS.items() if k in summary}
    write_json(path, {"format_version": SUMMARY_FORMAT_VERSION, **summary,
                      "definitions": definitions}, indent=2)


def read_summaries(folder):
    """Every task summary of a recording folder, in file-name order.

    Returns
    -------
    list of dict
        One per ``sub-*/func/*_summary.json`` (task, input, n_runs, n_tokens, ...).
    """
    check_folder(folder, "recording")
    out = []
    for path in sorted(Path(folder).glob("sub-*/func/*_summary.json")):
        document = read_json(path, what="task summary")
        check_format_version(document, path, SUMMARY_FORMAT_VERSION, what="task summary")
        out.append(document)
    return out


def write_description(root, identity):
    """Write ``dataset_description.json`` (BIDS) with an ``llmfbn`` block ``identity``."""
    write_json(Path(root) / DESCRIPTION_FILE, {
        "Name": f"llmfbn recording of {identity.get('model')}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "llmfbn", "Version": __version__}],
        "llmfbn": {"format_version": DESCRIPTION_FORMAT_VERSION, **identity},
    }, indent=2)


def read_description(root):
    """The ``llmfbn`` block of a recording's ``dataset_description.json``.

    Returns
    -------
    dict
        ``model``, ``weights_hash``, ``signal``, ``architecture``, ``format_version``;
        ``reduction`` (None, or ``method``, ``n_components``, ``sketch_rows``,
        ``block_rows`` of a reduced recording) and ``model_dtype`` when written
        by a version that records them.
    """
    path = Path(root) / DESCRIPTION_FILE
    document = read_json(path, what=DESCRIPTION_FILE)
    block = document.get("llmfbn")
    if not isinstance(block, dict):
        raise FormatError(f"{path} is not a valid {DESCRIPTION_FILE} of an llmfbn recording: "
                          f"it has no 'llmfbn' object.")
    check_format_version(block, path, DESCRIPTION_FORMAT_VERSION,
                         what=f"{DESCRIPTION_FILE} llmfbn block")
    return block


# -- checking runs -------------------------------------------------------------------


def _image_problem(bold, grid, n_volumes):
    """What is wrong with a run image, read cheaply (header and size); None if nothing."""
    if not bold.is_file():
        return f"{bold} is missing"
    try:
        # nibabel logs its header repairs ("sizeof_hdr should be 348"); the
        # problem is reported in our one line instead.
        with LoggingOutputSuppressor():
            img = nib.load(str(bold))
        header = img.header
        shape = tuple(int(n) for n in img.shape)
        itemsize = np.dtype(header.get_data_dtype()).itemsize
        offset = int(img.dataobj.offset)  # the header copy nibabel gives has vox_offset 0
        affine = img.affine
    except Exception as err:  # nibabel raises many kinds on a damaged header
        return f"{bold} is damaged: its header cannot be read ({type(err).__name__}: " \
               f"{_one_line(err)})"
    expected_shape = tuple(grid.shape) + (n_volumes,)
    if shape != expected_shape:
        return (f"{bold} has shape {shape}, but the recording's grid and the run's sidecar "
                f"give {expected_shape}")
    if not np.allclose(affine, grid.affine):
        return f"{bold} has another affine than the recording's grid"
    expected = offset + int(np.prod(shape)) * itemsize
    if bold.name.endswith(".gz"):
        # The gzip trailer ends with the uncompressed size modulo 2**32 (RFC 1952).
        with open(bold, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 18:
                return f"{bold} is truncated (not a complete gzip file)"
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]
        if isize != expected % 2 ** 32:
            return f"{bold} is truncated or damaged (its gzip trailer does not match its header)"
    else:
        size = bold.stat().st_size
        if size != expected:
            return (f"{bold} is truncated or damaged: {size} bytes, but its header needs "
                    f"{expected}")
    return None


def check_run(bold, grid, require_events=False):
    """Check cheaply that a finished run is complete (no data is read).

    The sidecar must be readable; the image header readable, its shape
    ``grid.shape + (NumberOfTokens,)`` (``grid.shape + (K,)`` for a run
    reduced to K components), its affine the grid's, and its size what the
    header says (``.nii``: ``vox_offset + n_voxels * itemsize``; ``.nii.gz``:
    the gzip trailer's size). With ``require_events``, a token run's
    ``_events.tsv`` must exist (a reduced run has none).

    Parameters
    ----------
    bold : str or Path
        The run's ``_bold`` image.
    grid : NeuronGrid
        The recording's grid.
    require_events : bool, default False

    Returns
    -------
    dict
        The run's sidecar.

    Raises
    ------
    FormatError
        Naming the damaged file and how to repair it.
    """
    bold = Path(bold)
    try:
        sidecar = read_sidecar(bold)
    except FileNotFoundError:
        raise FormatError(f"{bold} is not a finished run: its sidecar "
                          f"{_sidecar_of(bold).name} is missing; {REPAIR_HINT}.") from None
    except FormatError as err:
        raise FormatError(f"{err} To repair the run, {REPAIR_HINT}.") from None
    problem = _run_problem(bold, grid, sidecar, require_events)
    if problem:
        raise FormatError(f"{problem}; {REPAIR_HINT}.")
    return sidecar


def _run_problem(bold, grid, sidecar, require_events):
    problem = _image_problem(bold, grid, _n_volumes(sidecar))
    if problem is None and require_events and sidecar.get(REDUCTION_KEY) is None:
        events = run_sibling(bold, "events.tsv")
        if not events.is_file():
            problem = f"{events} is missing"
    return problem


def _run_root(bold):
    bold = Path(bold)
    if (not any(bold.name.endswith("_bold" + ext) for ext in IMAGE_EXTENSIONS)
            or bold.parent.name != "func" or not bold.parent.parent.name.startswith("sub-")):
        raise ValueError(f"{bold} is not a run of a recording folder (expected "
                         f"OUT/sub-*/func/*_bold.nii or *_bold.nii.gz).")
    return bold.parent.parent.parent


def find_runs(source, task=None, need_tokens=None):
    """Resolve a recording folder (or a list of run images) to ``(paths, grid)``.

    Every run is checked cheaply (:func:`check_run`): a damaged or truncated
    image raises FormatError naming it, before any data is read. The runs
    are all token runs or all reduced with one setting (see
    :func:`run_reduction`), never a mix.

    Parameters
    ----------
    source : str, Path, or list of str/Path
        A recording folder written by ``llmfbn record``, or ``_bold`` image
        paths inside recording folders (all on one grid of one model).
    task : str, optional
        Only the runs of this task (folders only).
    need_tokens : str, optional
        What the caller computes, when it needs every token (``"the GLM"``,
        ``"time series"``): reduced runs are then refused, naming it.

    Returns
    -------
    paths : list of Path, in (task, run) order
    grid : NeuronGrid

    Raises
    ------
    ValueError
        When the runs mix token and reduced runs (or reductions to different
        K), or are reduced and ``need_tokens`` is given.
    """
    if isinstance(source, (str, Path)):
        root = Path(source)
        check_folder(root, "recording")
        if task is not None:
            check_label(task, "task")
        grid = read_grid(root / GRID_FILE)
        pattern = f"*_task-{task}_run-*_bold.json" if task else "*_run-*_bold.json"
        paths = []
        for sidecar in sorted(root.glob(f"sub-*/func/{pattern}")):
            found = [p for p in _images_of(sidecar) if p.exists()]
            if len(found) > 1:
                raise FormatError(f"{sidecar} has two images ({found[0].name} and "
                                  f"{found[1].name}); delete the one that is not this run's.")
            paths.append(found[0] if found else _images_of(sidecar)[0])
        if not paths:
            raise ValueError(f"{root} holds no finished runs"
                             + (f" of task {task!r}." if task else "."))
    elif isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
        if not paths:
            raise ValueError("'imgs' must name at least one image. [] was provided.")
        grids = {}
        for p in paths:
            root = _run_root(p)
            if root not in grids:
                check_folder(root, "recording")
                grids[root] = read_grid(root / GRID_FILE)
        (first_root, grid), *others = grids.items()
        for root, other in others:
            try:
                other.check_compatible(grid, names=(f"the runs in {root}",
                                                    f"the runs in {first_root}"))
            except ValueError as err:
                raise ValueError(f"Images come from different grids or models: {err}") from None
    else:
        raise TypeError(f"'imgs' must be a recording folder or a list of run images. "
                        f"{type(source).__name__} was provided.")
    if need_tokens is not None and not isinstance(need_tokens, str):
        raise TypeError(f"'need_tokens' must be a str naming what needs the tokens, or None. "
                        f"{need_tokens!r} was provided.")
    settings = {}
    for p in paths:
        reduction = check_run(p, grid).get(REDUCTION_KEY)
        key = None if reduction is None else reduction["n_components"]
        settings.setdefault(key, p)
    name = str(source) if isinstance(source, (str, Path)) else f"The runs ({paths[0]}, ...)"
    if len(settings) > 1:
        described = "; ".join(("every token" if k is None else f"--reduce {k}") + f" ({p})"
                              for k, p in settings.items())
        raise ValueError(f"{name}: runs of different kinds are never mixed: {described}. Use "
                         f"runs recorded with one --reduce setting (or none).")
    (reduced_to,) = settings
    if reduced_to is not None and need_tokens is not None:
        raise ValueError(f"{name} is a reduced recording (--reduce {reduced_to}): "
                         f"{need_tokens} needs every token; record without --reduce.")
    return paths, grid


# -- writing a recording ------------------------------------------------------------


def check_recording_output(path):
    """Check, before loading a model, that a recording may be written at ``path``.

    A new or empty folder, or a recording folder (resumed); not a file or a
    folder of another kind; not one another process is writing now.
    """
    check_output_folder(path, "recording", resume=True)
    if lock_path(path).exists():
        with OutputLock(path):  # fails at once, naming the holder, if a writer is busy
            pass


def _describe_reduction(reduction):
    if reduction is None:
        return "keeps every token (no reduce)"
    named = {"n_components": "reduce", "sketch_rows": "sketch_rows"}
    shown = ", ".join(f"{named.get(k, k)}={v!r}" for k, v in reduction.items()
                      if k in named or k == "method")
    return f"reduces each run ({shown})"


def _check_same_reduction(where, found, wanted):
    """Raise ResumeMismatchError unless ``found`` and ``wanted`` reductions agree."""
    if (found is None) != (wanted is None) or (
            wanted is not None and any(found.get(k) != v for k, v in wanted.items())):
        raise ResumeMismatchError(
            f"{where} holds a recording that {_describe_reduction(found)}; this one "
            f"{_describe_reduction(wanted)}. Token and reduced recordings, or reductions with "
            f"other settings, are never mixed: use the same 'reduce' and 'sketch_rows', or "
            f"another output folder.")


class RecordingLayout:
    """Paths and safe writes of one task of one recording folder.

    Use it inside ``llmfbn.io.open_folder(out_dir, "recording")``, which
    holds the folder's lock.

    Parameters
    ----------
    out_dir : str or Path
    subject : str
        BIDS subject label (letters and digits).
    task : str
        BIDS task label (letters and digits).
    compress : bool
        Write ``.nii.gz`` rather than ``.nii``.
    """

    def __init__(self, out_dir, subject, task, compress=False):
        self.root = Path(out_dir)
        check_label(subject, "subject")
        check_label(task, "task")
        self.subject = subject
        self.task = task
        self.extension = ".nii.gz" if compress else ".nii"
        self.func_dir = self.root / f"sub-{subject}" / "func"

    # -- paths ------------------------------------------------------------

    def stem(self, run):
        return f"sub-{self.subject}_task-{self.task}_run-{run:0{RUN_DIGITS}d}"

    def bold_path(self, run):
        return self.func_dir / (self.stem(run) + "_bold" + self.extension)

    def sidecar_path(self, run):
        return self.func_dir / (self.stem(run) + "_bold.json")

    def events_path(self, run):
        return self.func_dir / (self.stem(run) + "_events.tsv")

    @property
    def summary_path(self):
        return self.func_dir / f"sub-{self.subject}_task-{self.task}_summary.json"

    @property
    def mask_file(self):
        return self.root / MASK_FILE

    # -- folder-level checks ----------------------------------------------

    def prepare(self, grid, identity):
        """Write the folder's grid, mask and description, or check they match.

        Parameters
        ----------
        grid : NeuronGrid
        identity : dict
            ``model``, ``weights_hash``, ``signal``, ``architecture``, and
            optionally ``model_dtype`` and ``reduction`` (None for a token
            recording): what this recording is of (the description's
            ``llmfbn`` block).

        Raises
        ------
        ResumeMismatchError
            If the folder holds a recording of another model, weights, signal,
            grid (:meth:`NeuronGrid.check_compatible`), model dtype or
            reduction (a token and a reduced recording, or two values of K).
            Recordings are never mixed.
        """
        grid_file = self.root / GRID_FILE
        if grid_file.exists():
            existing = read_grid(grid_file)
            try:
                grid.check_compatible(existing, names=("this recording",
                                                       f"the one in {self.root}"))
            except ValueError as err:
                message = str(err).split(" If that model is derived")[0]
                raise ResumeMismatchError(
                    f"{message} Recordings of different models, weights, signals or layers "
                    f"are never mixed: choose another output folder.") from None
        if (self.root / DESCRIPTION_FILE).exists():
            previous = read_description(self.root)
            for key in ("weights_hash", "signal", "architecture"):
                if key in identity and previous.get(key) != identity[key]:
                    raise ResumeMismatchError(
                        f"{self.root} holds a recording with {key}={previous.get(key)!r}; "
                        f"this one has {key}={identity[key]!r}. Recordings of different "
                        f"models, weights, signals or layers are never mixed: choose another "
                        f"output folder.")
            if "model_dtype" in identity:
                before = previous.get("model_dtype", DEFAULT_MODEL_DTYPE)
                if before != identity["model_dtype"]:
                    raise ResumeMismatchError(
                        f"{self.root} holds a recording of the model in {before}; this one "
                        f"loads it in model_dtype={identity['model_dtype']!r}. Recordings in "
                        f"different model dtypes are never mixed: use model_dtype={before!r} "
                        f"or another output folder.")
            if "reduction" in identity:
                _check_same_reduction(self.root, previous.get("reduction"),
                                      identity["reduction"])
        else:
            write_description(self.root, identity)
        if not grid_file.exists():
            write_grid(grid_file, grid)
        if not self.mask_file.exists():
            with atomic_path(self.mask_file) as tmp:
                nib.save(grid.mask_img(), tmp)

    def is_done(self, run, input_hash, grid, reduction=None):
        """True when run ``run`` is finished and verified.

        A run whose files are damaged (unreadable sidecar, truncated image,
        missing events of a token run) is not done: a warning names the
        file, its sidecar is removed, and the run is recorded again.

        Parameters
        ----------
        run : int
        input_hash : str
        grid : NeuronGrid
        reduction : dict, optional
            ``method``, ``n_components``, ``sketch_rows`` (and any other key
            to match) of a reduced recording; None for a token recording.

        Raises
        ------
        ResumeMismatchError
            When the run was recorded from other input (``InputHash``), with
            the other ``compress`` setting, or another reduction.
        """
        sidecar = self.sidecar_path(run)
        if not sidecar.exists():
            return False
        try:
            document = read_json(sidecar, what="run sidecar")
        except FormatError as err:
            return self._redo(run, _one_line(err))
        # A sidecar of another format version is refused, never overwritten.
        check_format_version(document, sidecar, SIDECAR_FORMAT_VERSION, what="run sidecar",
                             key=SIDECAR_VERSION_KEY)
        try:
            document = read_sidecar(sidecar)
        except FormatError as err:
            return self._redo(run, _one_line(err))
        if document.get("InputHash") != input_hash:
            raise ResumeMismatchError(
                f"{sidecar} was recorded from other texts (or another tokenizer, max_tokens "
                f"or texts_per_run) than run {run} of this input; runs of different inputs "
                f"are never mixed: use another task or output folder.")
        found = document.get(REDUCTION_KEY)
        _check_same_reduction(sidecar, None if found is None
                              else {k: found.get(k) for k in reduction or {}}, reduction)
        bold = self.bold_path(run)
        other = [p for p in _images_of(sidecar) if p != bold and p.exists()]
        if other and not bold.exists():
            raise ResumeMismatchError(
                f"{other[0]} was recorded with compress={self.extension == '.nii'}; resume "
                f"with the same setting.")
        problem = _run_problem(bold, grid, document, require_events=True)
        if problem:
            return self._redo(run, problem)
        return True

    def _redo(self, run, problem):
        warnings.warn(f"Run {run} of task {self.task!r} is damaged ({problem}); recording it "
                      f"again.", stacklevel=3)
        self.sidecar_path(run).unlink(missing_ok=True)
        return False

    # -- writing ----------------------------------------------------------

    def write_run(self, run, img, events, sidecar):
        """Write a run's image, events and sidecar atomically, sidecar last.

        Parameters
        ----------
        run : int
        img : nibabel.Nifti1Image
        events : list of dict or None
            Rows with keys :data:`llmfbn.io._events.EVENT_COLUMNS`; None
            writes no events file (a reduced run has none).
        sidecar : dict
        """
        from llmfbn.io._events import write_events

        self.func_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.bold_path(run)) as tmp:
            nib.save(img, tmp)
        if events is not None:
            write_events(self.events_path(run), events)
        write_sidecar(self.sidecar_path(run), sidecar)

    def write_summary(self, summary):
        write_summary(self.summary_path, summary)

    def bold_files(self):
        """Finished runs' images of this task, in run order."""
        out = []
        pattern = f"sub-{self.subject}_task-{self.task}_run-*_bold.json"
        for sidecar in sorted(self.func_dir.glob(pattern)):
            images = _images_of(sidecar)
            preferred = images[IMAGE_EXTENSIONS.index(self.extension)]
            out.append(preferred if preferred.exists()
                       else next((p for p in images if p.exists()), preferred))
        return out
