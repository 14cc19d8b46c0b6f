"""Record an LLM's neurons over texts into Nifti images (model -> images)."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from llmfbn import __version__
from llmfbn._utils import check_choice, check_positive_int, log
from llmfbn.grid import NeuronGrid
from llmfbn.io import RecordingLayout, bids_label, check_recording_output, open_folder
from llmfbn.io._recording import check_label
from llmfbn.models import SIGNALS, LoadedModel, load_model
from llmfbn.recording._capture import ActivationRecorder
from llmfbn.recording._plan import LONG_TEXT_MODES, plan_runs
from llmfbn.recording._texts import (
    TextSet,
    check_label_names,
    check_selection,
    check_text_source,
    read_texts,
    select_texts,
)

__all__ = ["Recording", "check_record_params", "record", "record_activations"]

DTYPES = ("float32", "float64")

# Pieces sorted by length within a window of this many batches, to cut padding.
_SORT_WINDOW_BATCHES = 4


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


def _as_loaded(model, verbose):
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, verbose=verbose)
    raise TypeError(
        f"'model' must be a model name, a path or a LoadedModel. "
        f"{type(model).__name__} was provided."
    )


def _pad_id(tokenizer):
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return candidate
    return 0


def iter_piece_activations(recorder, pieces, batch_size, pad_id, on_batch=None):
    """Yield ``(index, activations)`` for each piece, batching by similar length.

    ``activations`` is a float32 array of shape (n_tokens, n_layers, width).
    Pieces are sorted by length within windows of a few batches, so memory is
    bounded by the window, not by the number of pieces.
    """
    window = batch_size * _SORT_WINDOW_BATCHES
    for start in range(0, len(pieces), window):
        order = sorted(range(start, min(start + window, len(pieces))),
                       key=lambda i: len(pieces[i].token_ids))
        for b in range(0, len(order), batch_size):
            batch = order[b:b + batch_size]
            acts = recorder.record([pieces[i].token_ids for i in batch], pad_id)
            for i, act in zip(batch, acts):
                yield i, act.numpy()
            if on_batch is not None:
                on_batch(sum(len(pieces[i].token_ids) for i in batch))


def record_activations(model, texts, signal="mlp", layers=None, max_tokens=256,
                       batch_size=8, verbose=0):
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

    Returns
    -------
    list of float32 arrays of shape (n_tokens_i, n_layers, width)
    """
    loaded = _as_loaded(model, verbose)
    textset = read_texts(list(texts))
    if textset.n_skipped_empty:
        raise ValueError("'texts' must all be non-empty for record_activations.")
    runs, _ = plan_runs(loaded.tokenizer, textset, max_tokens=max_tokens)
    pieces = [run.pieces[0] for run in runs]
    out = [None] * len(pieces)
    with ActivationRecorder(loaded.model, signal=signal, layers=layers) as recorder:
        for i, act in iter_piece_activations(recorder, pieces, batch_size,
                                             _pad_id(loaded.tokenizer)):
            out[i] = act
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
           seed=None, verbose=1):
    """Record every MLP neuron at every token into a folder of Nifti images.

    One model is one subject, the input is one task, and each text (or
    ``texts_per_run`` texts concatenated in time) is one run: a 4-D image of
    shape ``(nx, ny, n_layers, n_tokens)`` on the model's :class:`NeuronGrid`.
    Runs are written as they finish (memory is bounded by the batch, not by
    the corpus); calling again with the same arguments resumes, skipping
    finished runs after checking them (a damaged run is recorded again, with a
    warning). See :mod:`llmfbn.io._recording` for the folder layout.

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
        When ``out_dir`` holds a recording of another model, weights, signal
        or layers, or a run of this task recorded from other input.
    """
    check_record_params(texts, out_dir, task=task, subject=subject, signal=signal,
                        max_tokens=max_tokens, batch_size=batch_size,
                        texts_per_run=texts_per_run, long_texts=long_texts, limit=limit,
                        dtype=dtype, label_names=label_names, input_format=input_format,
                        sample=sample, stratify_by=stratify_by, seed=seed)
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
    selection = textset.selection or {}
    loaded = _as_loaded(model, verbose)
    if task is None:
        task = bids_label(Path(textset.source).stem) if textset.source != "<list>" else "texts"
    subject = bids_label(loaded.name) if subject is None else subject
    layout = RecordingLayout(out_dir, subject, task, compress=compress)

    runs, stats = plan_runs(loaded.tokenizer, textset, max_tokens=max_tokens,
                            texts_per_run=texts_per_run, long_texts=long_texts)
    recorder = ActivationRecorder(loaded.model, signal=signal, layers=layers)
    grid = NeuronGrid(len(recorder.layers), recorder.width, layers=recorder.layers,
                      model=loaded.name, signal=signal, weights_hash=loaded.weights_hash,
                      model_layers=recorder.location.n_layers)
    identity = {"model": loaded.name, "weights_hash": loaded.weights_hash,
                "signal": signal, "architecture": recorder.location.model_type}
    # The folder's lock is held until the summary is written: a second writer fails at once.
    with open_folder(out_dir, "recording") as removed, recorder:
        if removed:
            log(f"Removed {removed} temporary files left by an interrupted run.", verbose)
        layout.prepare(grid, identity)
        todo = [run for run in runs if not layout.is_done(run.number, run.input_hash, grid)]
        n_skipped = len(runs) - len(todo)
        if n_skipped:
            log(f"Resuming: {n_skipped} of {len(runs)} runs already recorded.", verbose)

        entries = [(run, k) for run in todo for k in range(len(run.pieces))]
        pieces = [run.pieces[k] for run, k in entries]
        pending = {run.number: [None] * len(run.pieces) for run in todo}
        sidecar_common = {
            "TaskName": task, "RepetitionTime": 1.0, "Model": loaded.name,
            "ModelSource": loaded.source, "WeightsHash": loaded.weights_hash,
            "Architecture": recorder.location.model_type, "Signal": signal,
            "SignalDescription": SIGNALS[signal], "Layers": recorder.layers,
            "Units": recorder.width, "MaxTokens": max_tokens,
            "TextsPerRun": texts_per_run, "LongTexts": long_texts,
            "DataType": dtype, "InputFormat": textset.input_format,
            "TextColumn": text_column, "LabelNames": textset.label_names,
            "Sample": {k: selection.get(k) for k in ("sample", "stratify_by", "seed")}
            if "sample" in selection else None,
            "InputFile": textset.source if textset.source == "<list>"
            else str(Path(textset.source).resolve()),
            "GeneratedBy": f"llmfbn {__version__}",
        }
        n_tokens_written = 0
        progress = tqdm(total=sum(run.n_tokens for run in todo), unit="tok",
                        desc=f"record {task}", disable=verbose < 1 or not todo)
        with progress:
            for i, act in iter_piece_activations(recorder, pieces, batch_size,
                                                 _pad_id(loaded.tokenizer),
                                                 on_batch=progress.update):
                run, k = entries[i]
                parts = pending[run.number]
                parts[k] = act
                if any(part is None for part in parts):
                    continue
                data = np.concatenate(parts, axis=0)
                del pending[run.number]
                _check_finite(data, run)
                sidecar = dict(sidecar_common)
                sidecar.update(_run_fields(run))
                layout.write_run(run.number, grid.to_img(data, dtype=np.dtype(dtype)),
                                 _events(loaded.tokenizer, run.pieces), sidecar)
                n_tokens_written += run.n_tokens

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
        }
        layout.write_summary(summary)
        bold_files = layout.bold_files()
    recording = Recording(
        out_dir=Path(out_dir), grid=grid, bold_files=bold_files,
        mask_file=layout.mask_file, n_runs_written=len(todo),
        n_runs_skipped=n_skipped, n_tokens_written=n_tokens_written, summary=summary,
    )
    log(f"Recorded {len(todo)} runs ({n_tokens_written} tokens) into {layout.func_dir}; "
        f"{n_skipped} already there. Grid {grid.shape}, signal {signal!r}.", verbose)
    return recording


def check_record_params(texts, out_dir, task=None, subject=None, signal="mlp",
                        max_tokens=256, batch_size=8, texts_per_run=1,
                        long_texts="truncate", limit=None, dtype="float32", label_names=None,
                        input_format="auto", sample=None, stratify_by=None, seed=None):
    """The cheap checks of :func:`record`, run before any model is loaded.

    Checks the arguments' values, that the input exists, and that ``out_dir``
    may hold this recording (new, empty, or a recording folder nobody is
    writing now; never a file or a folder of another kind).
    """
    check_choice(signal, SIGNALS, "signal")
    if dtype == "float16":
        raise ValueError(
            "'dtype' must be one of ('float32', 'float64'). 'float16' was provided: "
            "NIfTI-1/2 define no 16-bit float type, so nibabel and nilearn cannot "
            "store or read one. Use float32 (and --compress to save disk)."
        )
    check_choice(dtype, DTYPES, "dtype")
    check_choice(long_texts, LONG_TEXT_MODES, "long_texts")
    check_positive_int(max_tokens, "max_tokens")
    check_positive_int(batch_size, "batch_size")
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


def _check_finite(data, run):
    if not np.isfinite(data).all():
        raise ValueError(
            f"Run {run.number} has non-finite activations (texts "
            f"{[p.text_index for p in run.pieces]}); nothing was written for it."
        )
