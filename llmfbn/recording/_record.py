"""Record an LLM's neurons over texts into Nifti images (model -> images)."""

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from llmfbn import __version__
from llmfbn._utils import check_choice, check_positive_int, log, parse_memory_size
from llmfbn.cluster import check_scheduler
from llmfbn.grid import NeuronGrid
from llmfbn.io import RecordingLayout, bids_label, check_recording_output, open_folder
from llmfbn.io._recording import check_label
from llmfbn.models import SIGNALS, LoadedModel, load_model
from llmfbn.recording._capture import ActivationRecorder
from llmfbn.recording._plan import LONG_TEXT_MODES, plan_runs
from llmfbn.recording._reduce import METHOD, STANDARDIZE, RunReducer, default_sketch_rows
from llmfbn.recording._texts import (
    TextSet,
    check_label_names,
    check_selection,
    check_text_source,
    read_texts,
    select_texts,
)
from llmfbn.recording._windows import (
    SORT_WINDOW_BATCHES,
    plan_batches,
    plan_windows,
    record_windows,
)

__all__ = ["InProcess", "Recording", "RunsSpec", "check_record_params", "model_info", "record",
           "record_activations"]

DTYPES = ("float32", "float64")
MODEL_DTYPES = ("float32", "bfloat16", "float16")

#: Default bytes of a batch's float32 activation buffer (``batch_memory``).
BATCH_MEMORY = "1GiB"


@dataclass
class Recording:
    """What :func:`record` wrote.

    Attributes
    ----------
    out_dir : Path
    grid : NeuronGrid
    bold_files : list of Path
        Every finished run of this task, in run order.
    mask_file : Path
    n_runs_written, n_runs_skipped : int
        Runs recorded now, and runs found finished from an earlier call.
    n_tokens_written : int
    summary : dict
        Counts for the whole task (also in ``*_summary.json``).
    """

    out_dir: Path
    grid: NeuronGrid
    bold_files: list
    mask_file: Path
    n_runs_written: int = 0
    n_runs_skipped: int = 0
    n_tokens_written: int = 0
    summary: dict = field(default_factory=dict)


def _as_loaded(model, verbose, model_dtype=None, device=None, trust_remote_code=False):
    if isinstance(model, LoadedModel):
        given = [name for name, value in (("model_dtype", model_dtype), ("device", device))
                 if value is not None]
        if given:
            raise ValueError(f"{' and '.join(repr(g) for g in given)} apply when 'model' is a "
                             f"name or a path; a LoadedModel keeps its own dtype and device. "
                             f"Leave them at None or pass the model's name.")
        return model
    if isinstance(model, (str, Path)):
        options = {} if device is None else {"device": device}
        if trust_remote_code:
            options["trust_remote_code"] = True
        return load_model(model, dtype=model_dtype or "float32", verbose=verbose, **options)
    raise TypeError(
        f"'model' must be a model name, a path or a LoadedModel. "
        f"{type(model).__name__} was provided."
    )


def _pad_id(tokenizer):
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return candidate
    return 0


def windowed_order(pieces, batch_size):
    """Piece indices sorted by length within windows of a few batches.

    Memory stays bounded by the window, not by the number of pieces.
    """
    window = batch_size * SORT_WINDOW_BATCHES
    order = []
    for start in range(0, len(pieces), window):
        order.extend(sorted(range(start, min(start + window, len(pieces))),
                            key=lambda i: len(pieces[i].token_ids)))
    return order


def batch_token_limit(batch_memory, n_values_per_token):
    """Most (padded) tokens a batch may hold so its float32 buffer fits ``batch_memory`` bytes.

    ``n_values_per_token`` is the recorded layers x width; at least 1 token.
    """
    return max(int(batch_memory) // (4 * n_values_per_token), 1)


def iter_piece_activations(recorder, pieces, batch_size, pad_id, on_batch=None, order=None,
                           keep_on_device=False, max_batch_tokens=None):
    """Yield ``(index, activations)`` for each piece, batching by similar length.

    Parameters
    ----------
    order : list of int, optional
        The order the pieces are run in, ``batch_size`` at a time. Default:
        :func:`windowed_order`.
    keep_on_device : bool, default False
        Yield float32 tensors on the model's device (views of the batch's
        buffer: use each before asking for the next batch) instead of
        float32 arrays.
    max_batch_tokens : int, optional
        Most padded tokens per batch (see :func:`plan_batches`); the batch's
        buffer is this many tokens x layers x width float32 values.

    Yields
    ------
    index : int
    activations : array or tensor of shape (n_tokens, n_layers, width)
    """
    order = windowed_order(pieces, batch_size) if order is None else order
    for batch in plan_batches(pieces, order, batch_size, max_batch_tokens):
        acts = recorder.record([pieces[i].token_ids for i in batch], pad_id,
                               keep_on_device=keep_on_device)
        for i, act in zip(batch, acts):
            yield i, act if keep_on_device else act.numpy()
        acts = act = None  # the batch's buffer is freed before the next one is allocated
        if on_batch is not None:
            on_batch(sum(len(pieces[i].token_ids) for i in batch))


def record_activations(model, texts, signal="mlp", layers=None, max_tokens=256,
                       batch_size=8, batch_memory=BATCH_MEMORY, verbose=0):
    """Record activations in memory, one array per text.

    Parameters
    ----------
    model : LoadedModel or str
    texts : list of str
        Non-empty texts; each is truncated to ``max_tokens`` tokens.
    signal : {"mlp", "mlp_out", "residual"}, default "mlp"
    layers : sequence of int, optional
        Default: every layer.
    max_tokens : int, default 256
    batch_size : int, default 8
    batch_memory : int or str, default "1GiB"
        Most bytes of a batch's activation buffer (see :func:`record`).

    Returns
    -------
    list of float32 arrays of shape (n_tokens_i, n_layers, width)
    """
    batch_bytes = parse_memory_size(batch_memory, "batch_memory")
    loaded = _as_loaded(model, verbose)
    textset = read_texts(list(texts))
    if textset.n_skipped_empty:
        raise ValueError("'texts' must all be non-empty for record_activations.")
    runs, _ = plan_runs(loaded.tokenizer, textset, max_tokens=max_tokens)
    pieces = [run.pieces[0] for run in runs]
    out = [None] * len(pieces)
    with ActivationRecorder(loaded.model, signal=signal, layers=layers) as recorder:
        limit = batch_token_limit(batch_bytes, len(recorder.layers) * recorder.width)
        for i, act in iter_piece_activations(recorder, pieces, batch_size,
                                             _pad_id(loaded.tokenizer), max_batch_tokens=limit):
            out[i] = act.copy()  # not a view that keeps its whole batch's buffer alive
    return out


def _events(tokenizer, pieces):
    rows = []
    onset = 0
    for piece in pieces:
        strings = tokenizer.batch_decode([[t] for t in piece.token_ids])
        for position, (token_id, string) in enumerate(zip(piece.token_ids, strings)):
            rows.append({
                "onset": onset, "duration": 1,
                "trial_type": "token" if piece.label is None else piece.label,
                "token": string, "token_id": token_id,
                "text_index": piece.text_index, "position": position,
            })
            onset += 1
    return rows


def record(model, texts, out_dir, task=None, subject=None, signal="mlp",
           layers=None, max_tokens=256, batch_size=8, texts_per_run=1,
           long_texts="truncate", limit=None, text_column=None,
           label_column=None, dtype="float32", compress=False, labels=None,
           label_names=None, input_format="auto", sample=None, stratify_by=None,
           seed=None, reduce=None, sketch_rows=None, model_dtype=None, device=None,
           batch_memory=BATCH_MEMORY, trust_remote_code=False, scheduler=None, verbose=1):
    """Record every MLP neuron at every token into a folder of Nifti images.

    One model is one subject, the input is one task, and each text (or
    ``texts_per_run`` texts concatenated in time) is one run: a 4-D image of
    shape ``(nx, ny, n_layers, n_tokens)`` on the model's :class:`NeuronGrid`.
    Runs are written as they finish (memory is bounded by the batch, not by
    the corpus); calling again with the same arguments resumes, skipping
    finished runs after checking them (a damaged run is recorded again, with a
    warning). See :mod:`llmfbn.io._recording` for the folder layout.

    With ``reduce=K`` each run is kept only as the K-volume summary that
    nilearn's CanICA and DictLearning compute from it anyway: its top-K
    spatial principal components, each neuron z-scored over the run's tokens,
    times their singular values. It is computed streaming on the model's
    device (:class:`~llmfbn.recording._reduce.RunReducer`), so memory and
    disk per run do not grow with the run's length; it is exact for runs of
    at most ``2 * sketch_rows`` tokens and approximated beyond (see
    :mod:`llmfbn.recording._reduce`). A reduced run has no events file and
    every command that needs tokens refuses it.

    The runs are recorded in windows of whole runs, each cut into batches of
    similar lengths (:mod:`llmfbn.recording._windows`). The windows depend
    only on the texts and ``batch_size``/``batch_memory``, so a resumed call
    and a ``scheduler`` (the windows shared among the cluster's workers) pad
    the same texts into the same batches as one uninterrupted process: the
    files are byte for byte the same (given kernels whose results do not
    depend on the thread count; see ``scheduler``). A resumed call runs a
    batch again whole when it holds a piece of an unfinished run.

    Parameters
    ----------
    model : LoadedModel or str
        A loaded model, or a name for :func:`llmfbn.load_model`.
    texts : str, Path, list of str or TextSet
        A ``.txt``/``.raw``/``.tokens`` (plain text, see ``input_format``),
        ``.jsonl``, ``.csv`` or ``.tsv`` file, or the texts themselves. Empty
        texts are skipped with a warning and counted. A :class:`TextSet` from
        :func:`read_texts` (and :func:`select_texts`) is recorded as it is:
        then leave the reading and selection arguments at their defaults.
    out_dir : str or Path
    task : str, optional
        BIDS task label. Default: the input file's stem, or ``"texts"``.
    subject : str, optional
        BIDS subject label. Default: derived from the model name
        (``smollm2-135m`` -> ``smollm2135m``).
    signal : {"mlp", "mlp_out", "residual"}, default "mlp"
        ``"mlp"`` is the input of each MLP down projection (the neurons);
        ``"mlp_out"`` the MLP output; ``"residual"`` the layer output.
    layers : sequence of int, optional
        Layers to record. Default: all. The forward pass stops after the last.
    max_tokens : int, default 256
        Most tokens per text (per forward pass).
    batch_size : int, default 8
        Most texts (pieces) per forward pass.
    batch_memory : int or str, default "1GiB"
        Most bytes of a batch's float32 activation buffer, ``padded tokens x
        recorded layers x width x 4``: a batch holds fewer than
        ``batch_size`` texts when they would not fit (and one text however
        long). It bounds the recording's memory on wide grids: one 512-token
        text on a 7B-class grid (352,256 neurons) is 0.72 GB. A number of
        bytes or a size such as ``"4GB"`` or ``"512MiB"``.
    texts_per_run : int, default 1
    long_texts : {"truncate", "split"}, default "truncate"
        What to do with texts over ``max_tokens``: keep the first part (the
        cut is counted in the sidecar), or split into consecutive pieces.
    limit : int, optional
        Record only the first ``limit`` non-empty texts.
    text_column : str or list of str, optional
        Column(s) of a .jsonl/.csv/.tsv input holding the text, default
        ``"text"``; several columns are joined in order with a newline.
    label_column : str, optional
        Column of a .jsonl/.csv/.tsv input holding a label per text; labels
        become the events' ``trial_type`` (GLM conditions).
    dtype : {"float32", "float64"}, default "float32"
        Image data type. NIfTI has no 16-bit float type, so ``"float16"`` is
        refused with an explanation; use ``compress=True`` to save disk.
    compress : bool, default False
        Write ``.nii.gz``. Off by default: float32 activations barely compress
        (about 6 % smaller on SmolLM2), gzip makes recording about 4x slower
        and loading about 20x slower, and uncompressed ``.nii`` files
        memory-map (``benchmarks/bench_record.py``).
    labels : list, optional
        One label per text when ``texts`` is a list.
    label_names : dict, optional
        ``{label: name}`` for every label (``{"0": "negative", "1":
        "positive"}``): the events' ``trial_type`` gets the names.
    input_format : {"auto", "lines", "wikitext", "wikitext-articles"}, default "auto"
        Reader of a plain-text file (see :func:`read_texts`): WikiText's files
        (``wiki.test.raw``, ...) are read as paragraphs with headings as
        boundaries unless ``"lines"`` is given.
    sample : int, optional
        Record a random sample of ``sample`` non-empty texts, drawn without
        replacement (see :func:`select_texts`), kept in input order.
    stratify_by : {"label"}, optional
        Draw the sample equally from every label (a label with too few texts
        gives all it has and the others share the rest).
    seed : int, optional
        Seed of the sample, default 0. The sample is in the summary and in
        every run's sidecar; a run recorded from another sample is refused on
        resume (its ``InputHash`` differs).
    reduce : int, optional
        Keep each run as its top ``reduce`` spatial principal components
        (a ``(nx, ny, n_layers, reduce)`` image) instead of every token. Every
        run needs at least ``reduce`` tokens (and 2), checked before anything
        is recorded. A folder holds token runs or runs reduced with one
        setting, never both.
    sketch_rows : int, optional
        Rows of the streaming sketch of each reduced run, at least
        ``reduce``; default ``max(10 * reduce, 100)``. Runs of up to
        ``2 * sketch_rows`` tokens are reduced exactly; device memory per run
        is ``2 * sketch_rows * n_neurons`` float32 values.
    model_dtype : {"float32", "bfloat16", "float16"}, optional
        Weight dtype when ``model`` is a name (default float32); recorded as
        the sidecars' ``ModelDtype``. Activations are stored in float32.
    device : str, optional
        Device to load ``model`` on when it is a name (default: the
        loader's). A :class:`LoadedModel` keeps its own dtype and device.
    trust_remote_code : bool, default False
        Let :func:`llmfbn.load_model` run a model folder's own code (when
        ``model`` is a name or path).
    scheduler : str, optional
        Record on a Dask cluster (:func:`llmfbn.cluster.connect`):
        ``"local:N"`` (N worker processes on this machine, the cores shared
        among them) or a running scheduler's address (``"tcp://host:8786"``)
        or scheduler file (``.json``). ``model`` must then be a name or path:
        each worker loads it once (its weights hash checked against the
        first worker's) and this process loads only its tokenizer, from a
        worker. This process holds the folder's lock and plans the windows;
        each window is one task, whose runs the worker writes through the
        same atomic writer. A worker that dies is replaced and its window
        retried: runs it finished are verified and kept, the rest recorded
        again, so no run is lost or written twice, and temporary files it
        left are deleted at the end. The workers must see this filesystem.
        The files equal one process's byte for byte when the CPU kernels do
        not depend on the thread count (a ``local:N`` worker has
        ``cores // N`` threads). Measured with torch 2.13 on AVX-512: MKL's
        float32 matrix product does for 5-7 and 9-11 rows (a batch of
        that many padded tokens), and flash attention for heads of fewer
        than 16 values; the last bits may then differ (1e-8).
    verbose : int, default 1
        0 is silent; 1 shows a progress bar and a summary.

    Returns
    -------
    Recording

    Raises
    ------
    OutputLockedError
        When another process is writing into ``out_dir``; the folder is locked
        for the whole call, so two recordings never interleave.
    FolderKindError
        When ``out_dir`` is a file or a folder of another kind.
    ResumeMismatchError
        When ``out_dir`` holds a recording of another model, weights, signal,
        layers, model dtype or reduction, or a run of this task recorded from
        other input.
    ValueError
        When ``reduce`` exceeds a run's tokens (naming the run), before
        anything is written.
    llmfbn.cluster.TaskFailedError
        With ``scheduler``, when a window failed on its worker (its message
        names the window's runs and the worker's error); runs finished before
        are kept and a new call resumes.
    """
    check_record_params(texts, out_dir, task=task, subject=subject, signal=signal,
                        max_tokens=max_tokens, batch_size=batch_size,
                        texts_per_run=texts_per_run, long_texts=long_texts, limit=limit,
                        dtype=dtype, label_names=label_names, input_format=input_format,
                        sample=sample, stratify_by=stratify_by, seed=seed, reduce=reduce,
                        sketch_rows=sketch_rows, model_dtype=model_dtype,
                        batch_memory=batch_memory, scheduler=scheduler)
    if isinstance(texts, TextSet):
        given = {k: v for k, v in (("text_column", text_column), ("label_column", label_column),
                                   ("labels", labels), ("label_names", label_names),
                                   ("limit", limit), ("sample", sample),
                                   ("stratify_by", stratify_by), ("seed", seed))
                 if v is not None}
        if given or input_format != "auto":
            raise ValueError(f"'texts' is a TextSet, already read and selected: leave "
                             f"{sorted(given) or ['input_format']} at their defaults.")
        textset = texts
    else:
        textset = select_texts(
            read_texts(texts, text_column=text_column, label_column=label_column,
                       labels=labels, label_names=label_names, input_format=input_format),
            limit=limit, sample=sample, stratify_by=stratify_by, seed=seed)
    if scheduler is None:
        engine = nullcontext(InProcess(
            _as_loaded(model, verbose, model_dtype=model_dtype, device=device,
                       trust_remote_code=trust_remote_code), signal, layers))
    else:
        if not isinstance(model, (str, Path)):
            raise TypeError(f"'model' must be a model name or path with 'scheduler': every "
                            f"worker loads its own copy. {type(model).__name__} was provided.")
        from llmfbn.recording._distributed import on_cluster

        engine = on_cluster(scheduler, str(model), model_dtype=model_dtype, device=device,
                            trust_remote_code=trust_remote_code, signal=signal, layers=layers,
                            verbose=verbose)
    with engine as engine:
        return _record(engine, textset, out_dir, task=task, subject=subject, signal=signal,
                       max_tokens=max_tokens, batch_size=batch_size,
                       texts_per_run=texts_per_run, long_texts=long_texts,
                       text_column=text_column, dtype=dtype, compress=compress, reduce=reduce,
                       sketch_rows=sketch_rows, batch_memory=batch_memory, verbose=verbose)


def model_info(loaded, recorder):
    """What planning a recording needs from a loaded model (picklable; no weights).

    Returns
    -------
    dict
        ``name``, ``source``, ``weights_hash``, ``architecture``, ``layers``
        (recorded), ``width``, ``model_layers`` (all of the model's),
        ``weights_dtype`` and ``units`` (signal ``"mlp"`` of a pruned model:
        per recorded layer, the source units of its neurons; else None).
    """
    units = None if recorder.units is None else [u.tolist() for u in recorder.units]
    return {"name": loaded.name, "source": loaded.source, "weights_hash": loaded.weights_hash,
            "architecture": recorder.location.model_type, "layers": list(recorder.layers),
            "width": recorder.width, "model_layers": recorder.location.n_layers,
            "weights_dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
            "units": units}


class InProcess:
    """Records in this process, with ``loaded`` (what :func:`record` does without a scheduler).

    Attributes
    ----------
    info : dict
        :func:`model_info`.
    tokenizer : transformers tokenizer
    """

    def __init__(self, loaded, signal, layers):
        self.loaded = loaded
        self.recorder = ActivationRecorder(loaded.model, signal=signal, layers=layers)
        self.info = model_info(loaded, self.recorder)
        self.tokenizer = loaded.tokenizer

    def record(self, spec, windows, done, desc, verbose):
        """Record the unfinished runs of ``windows`` (:func:`record_windows`), with a bar."""
        total = sum(w.batch_tokens(b) for w in windows for b in w.todo_batches(done))
        progress = tqdm(total=total, unit="tok", desc=desc, disable=verbose < 1 or not total)
        with progress, self.recorder:
            record_windows(self.recorder, windows, done, spec.writer(self.tokenizer),
                           spec.pad_id, keep_on_device=spec.keep_on_device,
                           on_batch=progress.update)


@dataclass
class RunsSpec:
    """How to record and write runs, without the model: what a cluster worker is sent.

    Attributes
    ----------
    layout : RecordingLayout
    grid : NeuronGrid
    dtype : str
        Image data type.
    sidecar : dict
        The sidecar fields every run shares.
    reduction : dict or None
        The reduced recording's settings (None: every token).
    signal : str
    layers : list of int
    pad_id : int
    """

    layout: RecordingLayout
    grid: NeuronGrid
    dtype: str
    sidecar: dict
    reduction: object
    signal: str
    layers: list
    pad_id: int

    @property
    def keep_on_device(self):
        """A reduced run is sketched on the model's device."""
        return self.reduction is not None

    def writer(self, tokenizer):
        """A fresh writer of runs (``add``/``finish``, see :func:`record_windows`)."""
        write = _TokenRuns if self.reduction is None else _ReducedRuns
        return write(self.layout, self.grid, tokenizer, self.dtype, self.sidecar, self.reduction)


def _record(engine, textset, out_dir, task, subject, signal, max_tokens, batch_size,
            texts_per_run, long_texts, text_column, dtype, compress, reduce, sketch_rows,
            batch_memory, verbose):
    """:func:`record` once the texts are read and the model is reachable (``engine``)."""
    info, tokenizer = engine.info, engine.tokenizer
    selection = textset.selection or {}
    if task is None:
        task = bids_label(Path(textset.source).stem) if textset.source != "<list>" else "texts"
    subject = bids_label(info["name"]) if subject is None else subject
    layout = RecordingLayout(out_dir, subject, task, compress=compress)

    runs, stats = plan_runs(tokenizer, textset, max_tokens=max_tokens,
                            texts_per_run=texts_per_run, long_texts=long_texts)
    reduction = None
    if reduce is not None:
        _check_runs_reducible(runs, reduce)
        sketch_rows = default_sketch_rows(reduce) if sketch_rows is None else sketch_rows
        reduction = {"method": METHOD, "n_components": reduce, "sketch_rows": sketch_rows,
                     "block_rows": sketch_rows, "standardize": STANDARDIZE}
    layers, width = info["layers"], info["width"]
    max_batch_tokens = batch_token_limit(parse_memory_size(batch_memory, "batch_memory"),
                                         len(layers) * width)
    if max_batch_tokens < batch_size * max_tokens:
        log(f"Batches hold at most {max_batch_tokens} padded tokens (and one text however "
            f"long): batch_memory={batch_memory!r} at {len(layers)} x {width} float32 values "
            f"per token.", verbose)
    grid = NeuronGrid(len(layers), width, layers=layers, model=info["name"], signal=signal,
                      weights_hash=info["weights_hash"], model_layers=info["model_layers"],
                      units=info.get("units"))
    identity = {"model": info["name"], "weights_hash": info["weights_hash"],
                "signal": signal, "architecture": info["architecture"],
                "model_dtype": info["weights_dtype"], "reduction": reduction}
    # The folder's lock is held until the summary is written: a second writer fails at once.
    with open_folder(out_dir, "recording") as removed:
        if removed:
            log(f"Removed {removed} temporary files left by an interrupted run.", verbose)
        layout.prepare(grid, identity)
        todo = [run for run in runs
                if not layout.is_done(run.number, run.input_hash, grid, reduction=reduction)]
        n_skipped = len(runs) - len(todo)
        if n_skipped:
            log(f"Resuming: {n_skipped} of {len(runs)} runs already recorded.", verbose)
        sidecar_common = {
            "TaskName": task, "RepetitionTime": 1.0, "Model": info["name"],
            "ModelSource": info["source"], "WeightsHash": info["weights_hash"],
            "Architecture": info["architecture"], "Signal": signal,
            "SignalDescription": SIGNALS[signal], "Layers": layers,
            "Units": width, "MaxTokens": max_tokens,
            "TextsPerRun": texts_per_run, "LongTexts": long_texts,
            "DataType": dtype, "ModelDtype": info["weights_dtype"],
            "InputFormat": textset.input_format,
            "TextColumn": text_column, "LabelNames": textset.label_names,
            "Sample": {k: selection.get(k) for k in ("sample", "stratify_by", "seed")}
            if "sample" in selection else None,
            "InputFile": textset.source if textset.source == "<list>"
            else str(Path(textset.source).resolve()),
            "GeneratedBy": f"llmfbn {__version__}",
        }
        if reduction is not None:
            # A reduced run's volumes are components, not tokens one second apart.
            del sidecar_common["RepetitionTime"]
        spec = RunsSpec(layout, grid, dtype, sidecar_common, reduction, signal, layers,
                        _pad_id(tokenizer))
        # The windows cover every run, finished or not, so the batches (and the bytes)
        # never depend on what an earlier call finished or on where a window is recorded.
        # Reduced runs of several pieces are fed in run order (pieces sorted by length
        # within a run), so that one run's sketch is open at a time.
        done = {run.number for run in runs} - {run.number for run in todo}
        windows = [window for window in plan_windows(
            runs, batch_size, max_batch_tokens,
            by_run=reduction is not None and texts_per_run > 1)
            if any(run.number not in done for run in window.runs)]
        engine.record(spec, windows, done, f"record {task}", verbose)
        n_tokens_written = sum(run.n_tokens for run in todo)

        summary = {
            "task": task, "subject": subject, "input": textset.source,
            "input_format": textset.input_format,
            "n_texts_in_input": textset.n_in_input, "n_headings": textset.n_headings,
            "n_skipped_empty": textset.n_skipped_empty, **stats,
            "limit": selection.get("limit"), "sample": selection.get("sample"),
            "stratify_by": selection.get("stratify_by"), "seed": selection.get("seed"),
            "n_per_label": None if textset.labels is None
            else dict(sorted(Counter(textset.labels).items())),
            "label_names": textset.label_names,
            "n_runs": len(runs), "n_tokens": sum(run.n_tokens for run in runs),
            "reduce": reduce, "sketch_rows": None if reduction is None else sketch_rows,
        }
        layout.write_summary(summary)
        bold_files = layout.bold_files()
    recording = Recording(
        out_dir=Path(out_dir), grid=grid, bold_files=bold_files,
        mask_file=layout.mask_file, n_runs_written=len(todo),
        n_runs_skipped=n_skipped, n_tokens_written=n_tokens_written, summary=summary,
    )
    reduced = "" if reduce is None else f", each reduced to {reduce} components"
    log(f"Recorded {len(todo)} runs ({n_tokens_written} tokens{reduced}) into "
        f"{layout.func_dir}; {n_skipped} already there. Grid {grid.shape}, signal {signal!r}.",
        verbose)
    return recording


class _TokenRuns:
    """Writes each run with every token: the pieces' arrays are kept until the run is whole."""

    def __init__(self, layout, grid, tokenizer, dtype, sidecar, reduction):
        self.layout, self.grid, self.tokenizer = layout, grid, tokenizer
        self.dtype, self.sidecar = np.dtype(dtype), sidecar

    def add(self, run, act):
        return act

    def finish(self, run, parts):
        data = np.concatenate(parts, axis=0)
        _check_finite(data, run)
        sidecar = dict(self.sidecar)
        sidecar.update(_run_fields(run))
        self.layout.write_run(run.number, self.grid.to_img(data, dtype=self.dtype),
                              _events(self.tokenizer, run.pieces), sidecar)


class _ReducedRuns(_TokenRuns):
    """Feeds each piece into its run's :class:`RunReducer` at once; writes K volumes.

    Only the grid's neurons enter the reduction (a pruned model's removed
    neurons are outside the mask, as nilearn's masker leaves them out); they
    are 0 in the written components.
    """

    def __init__(self, layout, grid, tokenizer, dtype, sidecar, reduction):
        super().__init__(layout, grid, tokenizer, dtype, sidecar, reduction)
        self.reduction = reduction
        self.reducers = {}
        self._present = {}  # device -> bool tensor (n_layers, width), pruned grids only

    def _neurons(self, act):
        """(n_tokens, n_neurons): the tokens' values of the grid's (present) neurons."""
        if self.grid.units is None:
            return act.reshape(len(act), -1)
        present = self._present.get(act.device)
        if present is None:
            present = self._present[act.device] = torch.as_tensor(
                self.grid.present(), device=act.device)
        return act[:, present]

    def add(self, run, act):
        _check_finite(act, run)
        reducer = self.reducers.get(run.number)
        if reducer is None:
            reducer = self.reducers[run.number] = RunReducer(
                self.grid.n_neurons, self.reduction["n_components"],
                sketch_rows=self.reduction["sketch_rows"],
                block_rows=self.reduction["block_rows"], device=act.device)
        reducer.update(self._neurons(act))
        return True  # the piece is in the sketch; its tokens are not kept

    def finish(self, run, parts):
        components, info = self.reducers.pop(run.number).finalize()
        data = self.grid.put_present(components)
        sidecar = dict(self.sidecar)
        sidecar.update(_run_fields(run))
        sidecar["Reduction"] = {
            **self.reduction, "n_tokens": run.n_tokens, "exact": info["exact"],
            "n_shrinks": info["n_shrinks"], "shrinkage": info["shrinkage"],
            "description": f"volume k is the run's k-th spatial principal component (each "
                           f"neuron z-scored over its {run.n_tokens} tokens, ddof=1) times "
                           f"its singular value, as nilearn's CanICA/DictLearning reduce a "
                           f"run; not tokens, not to be standardised again",
        }
        self.layout.write_run(run.number, self.grid.to_img(data, dtype=self.dtype), None,
                              sidecar)


def _check_runs_reducible(runs, reduce):
    """Every run needs ``reduce`` tokens (and 2, to be standardised)."""
    need = max(reduce, 2)
    short = [run for run in runs if run.n_tokens < need]
    if short:
        worst = min(short, key=lambda run: run.n_tokens)
        two = " (and a run needs 2 tokens to be standardised)" if reduce < 2 else ""
        raise ValueError(
            f"'reduce' must be at most the tokens of every run{two}: reduce={reduce} was "
            f"provided, but run {worst.number} (texts {[p.text_index for p in worst.pieces]}) "
            f"has {worst.n_tokens} tokens and {len(short)} of {len(runs)} runs have fewer "
            f"than {need}. Lower 'reduce' or put more texts in a run ('texts_per_run').")


def check_record_params(texts, out_dir, task=None, subject=None, signal="mlp",
                        max_tokens=256, batch_size=8, texts_per_run=1,
                        long_texts="truncate", limit=None, dtype="float32", label_names=None,
                        input_format="auto", sample=None, stratify_by=None, seed=None,
                        reduce=None, sketch_rows=None, model_dtype=None,
                        batch_memory=BATCH_MEMORY, scheduler=None):
    """The cheap checks of :func:`record`, run before any model is loaded.

    Checks the arguments' values, that the input exists, and that ``out_dir``
    may hold this recording (new, empty, or a recording folder nobody is
    writing now; never a file or a folder of another kind), and the form of
    ``scheduler`` (without connecting).
    """
    if scheduler is not None:
        check_scheduler(scheduler)
    check_choice(signal, SIGNALS, "signal")
    if dtype == "float16":
        raise ValueError(
            "'dtype' must be one of ('float32', 'float64'). 'float16' was provided: "
            "NIfTI-1/2 define no 16-bit float type, so nibabel and nilearn cannot "
            "store or read one. Use float32 (and --compress to save disk)."
        )
    check_choice(dtype, DTYPES, "dtype")
    if model_dtype is not None:
        check_choice(model_dtype, MODEL_DTYPES, "model_dtype")
    check_positive_int(reduce, "reduce", allow_none=True)
    check_positive_int(sketch_rows, "sketch_rows", allow_none=True)
    if sketch_rows is not None and reduce is None:
        raise ValueError(f"'sketch_rows' applies only with 'reduce'. sketch_rows={sketch_rows} "
                         f"was provided without it.")
    if sketch_rows is not None and sketch_rows < reduce:
        raise ValueError(f"'sketch_rows' must be >= 'reduce' ({reduce}). {sketch_rows} was "
                         f"provided.")
    check_choice(long_texts, LONG_TEXT_MODES, "long_texts")
    check_positive_int(max_tokens, "max_tokens")
    check_positive_int(batch_size, "batch_size")
    parse_memory_size(batch_memory, "batch_memory")
    check_positive_int(texts_per_run, "texts_per_run")
    check_selection(limit, sample, stratify_by, seed)
    check_label_names(label_names)
    for value, what in ((task, "task"), (subject, "subject")):
        if value is not None:
            check_label(value, what)
    if not isinstance(texts, TextSet):
        check_text_source(texts, input_format)
    check_recording_output(out_dir)


def _run_fields(run):
    labels = [p.label for p in run.pieces]
    return {
        "NumberOfTokens": run.n_tokens,
        "TextIndices": [p.text_index for p in run.pieces],
        "TextParts": [p.part for p in run.pieces],
        "Labels": labels if any(x is not None for x in labels) else None,
        "TruncatedTexts": sum(p.n_dropped > 0 for p in run.pieces),
        "TokensDropped": sum(p.n_dropped for p in run.pieces),
        "InputHash": run.input_hash,
    }


def _check_finite(values, run):
    """Refuse a run whose activations (an array, or a tensor on any device) hold NaN or inf."""
    finite = (bool(torch.isfinite(values).all()) if isinstance(values, torch.Tensor)
              else bool(np.isfinite(values).all()))
    if not finite:
        raise ValueError(f"Run {run.number} has non-finite activations (texts "
                         f"{[p.text_index for p in run.pieces]}); nothing was written for it.")
