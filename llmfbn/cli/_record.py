"""``llmfbn record``: texts -> a BIDS-style folder of Nifti images."""

import argparse
from pathlib import Path


def add_record_parser(subparsers):
    p = subparsers.add_parser(
        "record", help="record a model's neurons over texts into Nifti images",
        description="Record every neuron at every token into a BIDS-style folder "
                    "of 4-D Nifti images (one run per text). Re-running resumes.")
    p.add_argument("--model", default="smollm2-135m",
                   help="built-in name, local model folder, .gguf file or cached hub id "
                        "(default: smollm2-135m)")
    p.add_argument("--input", required=True, type=Path,
                   help=".txt/.raw/.tokens (plain text, see --input-format), .jsonl, .csv "
                        "or .tsv")
    p.add_argument("--input-format", default="auto",
                   choices=("auto", "lines", "wikitext", "wikitext-articles"),
                   help="reader of a plain-text file: lines (one text per line), wikitext "
                        "(one text per paragraph; '= Title =' headings and blank lines are "
                        "boundaries, not texts), wikitext-articles (one text per article); "
                        "auto (default): wikitext for wiki.*.raw/wiki.*.tokens, else lines")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--task", help="BIDS task label (default: the input file's stem)")
    p.add_argument("--subject", help="BIDS subject label (default: from the model name)")
    p.add_argument("--signal", default="mlp", choices=("mlp", "mlp_out", "residual"),
                   help="mlp: MLP neurons (down-projection input, default); "
                        "mlp_out: MLP output; residual: layer output")
    p.add_argument("--layers", type=_parse_layers,
                   help="layers to record, e.g. '0-9,20' (default: all)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per text (default 256)")
    p.add_argument("--long-texts", default="truncate", choices=("truncate", "split"),
                   help="texts over --max-tokens: truncate (counted) or split into runs")
    p.add_argument("--batch-size", type=int, default=8, help="texts per forward pass (default 8)")
    p.add_argument("--batch-memory", default="1GiB", metavar="SIZE",
                   help="most memory of a batch's float32 activations, padded tokens x "
                        "layers x width x 4 bytes, e.g. 4GB or 512MiB (default 1GiB): a batch "
                        "holds fewer than --batch-size texts when they would not fit (one text "
                        "at least)")
    p.add_argument("--texts-per-run", type=int, default=1,
                   help="texts concatenated into one run (default 1)")
    p.add_argument("--limit", type=int, help="record only the first N non-empty texts")
    p.add_argument("--sample", type=int,
                   help="record N non-empty texts drawn at random without replacement "
                        "(kept in input order; see --stratify-by, --seed)")
    p.add_argument("--stratify-by", choices=("label",),
                   help="with --sample: the same number of texts per label (a label with too "
                        "few gives all it has, the others share the rest)")
    p.add_argument("--seed", type=int, help="seed of --sample (default 0)")
    p.add_argument("--text-column",
                   help="text field(s) of .jsonl/.csv/.tsv input (default 'text'); several "
                        "comma-separated fields ('title,description') are joined in order "
                        "with a newline")
    p.add_argument("--label-column", help="label field, written as the events' trial_type")
    p.add_argument("--label-names",
                   help="a name for every label, e.g. '0=negative,1=positive': the events' "
                        "trial_type gets the names (GLM contrast 'positive-negative')")
    p.add_argument("--dtype", default="float32",
                   help="image data type: float32 (default) or float64; NIfTI has no float16")
    p.add_argument("--compress", action="store_true",
                   help="write .nii.gz instead of .nii (~4x slower to record, ~6%% smaller)")
    p.add_argument("--reduce", type=int, metavar="K",
                   help="keep each run as its top K spatial principal components (each neuron "
                        "z-scored over the run's tokens), the summary nilearn's CanICA and "
                        "DictLearning compute: K volumes per run whatever its length, "
                        "computed streaming on the model's device; `llmfbn networks` reads "
                        "it, commands that need tokens refuse it")
    p.add_argument("--sketch-rows", type=int, metavar="M",
                   help="with --reduce: rows of each run's streaming sketch (default "
                        "max(10 K, 100)); runs up to 2 M tokens are reduced exactly, device "
                        "memory per run is 2 M x neurons floats")
    p.add_argument("--model-dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="weight dtype of the model (default float32); activations are stored "
                        "in float32 and the sidecars record it")
    p.add_argument("--device", help="device to load the model on, e.g. cuda or cuda:1 "
                                    "(default: the loader's)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model folder's own Python code (off by default)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster: local:N (N worker processes on this machine) or "
                        "a running scheduler's address (tcp://host:8786) or scheduler file "
                        "(.json); workers must see this filesystem (default: this process)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_record)


def _parse_layers(text):
    layers = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers.extend(range(lo, hi + 1))
            else:
                layers.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'--layers' takes integers and ranges like '0-9,20'. {text!r} was provided."
            ) from None
    return sorted(set(layers))


#: Library parameter names in error messages -> the flags of `llmfbn record`.
_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "sample", "stratify_by", "seed", "limit", "label_names", "label_column", "text_column",
    "input_format", "max_tokens", "batch_size", "batch_memory", "texts_per_run", "reduce",
    "sketch_rows",
    "model_dtype", "device")}


def _in_flags(err):
    """The same error, naming the flags instead of the library's parameters."""
    message = str(err)
    for name, flag in _FLAGS.items():
        message = message.replace(f"'{name}'", flag).replace(f"{name}=", f"{flag} ")
    try:
        return type(err)(message)
    except Exception:  # an error type that takes other arguments (JSONDecodeError)
        return ValueError(message) if isinstance(err, ValueError) else TypeError(message)


def _cmd_record(args):
    from llmfbn.models import load_model
    from llmfbn.recording import check_record_params, read_texts, record, select_texts
    from llmfbn.recording._texts import parse_label_names

    verbose = 0 if args.quiet else 1
    text_column = args.text_column
    if text_column is not None and "," in text_column:
        text_column = [c.strip() for c in text_column.split(",")]
    try:
        label_names = None if args.label_names is None else parse_label_names(args.label_names)
        check_record_params(args.input, args.out, task=args.task, subject=args.subject,
                            signal=args.signal, max_tokens=args.max_tokens,
                            batch_size=args.batch_size, texts_per_run=args.texts_per_run,
                            long_texts=args.long_texts, limit=args.limit, dtype=args.dtype,
                            label_names=label_names, input_format=args.input_format,
                            sample=args.sample, stratify_by=args.stratify_by, seed=args.seed,
                            reduce=args.reduce, sketch_rows=args.sketch_rows,
                            model_dtype=args.model_dtype, batch_memory=args.batch_memory,
                            scheduler=args.scheduler)
        # The texts are read and sampled before the model loads: their errors come first.
        textset = select_texts(
            read_texts(args.input, text_column=text_column, label_column=args.label_column,
                       label_names=label_names, input_format=args.input_format),
            limit=args.limit, sample=args.sample, stratify_by=args.stratify_by, seed=args.seed)
    except (ValueError, TypeError) as err:
        raise _in_flags(err) from err
    device = {} if args.device is None else {"device": args.device}
    try:
        if args.scheduler is None:
            model = load_model(args.model, dtype=args.model_dtype,
                               trust_remote_code=args.trust_remote_code, verbose=verbose,
                               **device)
            options = {}
        else:  # the workers load it; this process reads only its tokenizer, from one of them
            model = args.model
            options = {"scheduler": args.scheduler, "model_dtype": args.model_dtype,
                       "trust_remote_code": args.trust_remote_code, **device}
        recording = record(
            model, textset, args.out, task=args.task, subject=args.subject,
            signal=args.signal, layers=args.layers, max_tokens=args.max_tokens,
            batch_size=args.batch_size, texts_per_run=args.texts_per_run,
            long_texts=args.long_texts, dtype=args.dtype, compress=args.compress,
            reduce=args.reduce, sketch_rows=args.sketch_rows,
            batch_memory=args.batch_memory, verbose=verbose, **options,
        )
    except (ValueError, TypeError) as err:
        raise _in_flags(err) from err
    print_recording(recording)


def print_recording(recording):
    s = recording.summary
    grid = recording.grid
    print(f"Recording in {recording.out_dir.resolve()}")
    print(f"  model {grid.model!r}, signal {grid.signal!r}: {grid.n_layers} layers x "
          f"{grid.width} units on a {grid.shape} grid (mask: {recording.mask_file.name})")
    print(f"  task {s['task']!r}: {s['n_runs']} runs, {s['n_tokens']} tokens "
          f"({recording.n_runs_written} runs written now, {recording.n_runs_skipped} resumed)")
    if s.get("reduce") is not None:
        print(f"  reduced: each run is {s['reduce']} volumes, its top principal components "
              f"(sketch of {s['sketch_rows']} rows; no events files)")
    headings = f" ({s['n_headings']} WikiText headings read as boundaries)" if s.get(
        "n_headings") else ""
    print(f"  input {s.get('input_format')!r}: {s.get('n_texts_in_input')} texts{headings}, "
          f"{s.get('n_texts')} recorded")
    if s.get("sample") is not None:
        print(f"  sample of {s['sample']} (seed {s['seed']}"
              + (f", stratified by {s['stratify_by']}" if s.get("stratify_by") else "") + ")"
              + (f": {s['n_per_label']}" if s.get("n_per_label") else ""))
    print(f"  skipped empty texts: {s['n_skipped_empty']}, truncated: {s['n_truncated']} "
          f"({s['n_tokens_dropped']} tokens dropped), split: {s['n_split']}")
    if recording.bold_files:
        print(f"  first image: {recording.bold_files[0]}")
