"""``llmfbn fingerprint``: does each candidate model share the reference model's networks?"""

from pathlib import Path

#: Library parameter names in error messages -> the flags of ``llmfbn fingerprint``.
_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "texts", "n_components", "n_permutations", "max_tokens", "batch_size", "random_state",
    "model_dtype", "device", "scheduler", "reference_atlas")}


def add_fingerprint_parser(subparsers):
    p = subparsers.add_parser(
        "fingerprint", help="score candidate models against a reference by their networks",
        description="Fit functional networks (CanICA) of the reference and of each candidate "
                    "on the same texts, match them by their time courses over the texts' "
                    "words (so candidates of another architecture, width or tokenizer can "
                    "be scored, and permuting a layer's neurons changes nothing), and write "
                    "each candidate's score in [0, 1] (1: the reference itself) with a "
                    "p-value against circularly shifted time courses, beside linear CKA of "
                    "the activations (the REEF baseline), to a CSV.")
    p.add_argument("reference", help="the reference model (anything --model takes: built-in "
                                     "name, model folder, pruned folder, .gguf, cached hub id)")
    p.add_argument("candidates", nargs="+", metavar="CANDIDATE",
                   help="models scored against the reference (the reference itself only "
                        "when listed)")
    p.add_argument("--texts", required=True, type=Path,
                   help="text file, one text per line (.jsonl/.csv/.tsv: the 'text' column)")
    p.add_argument("--out", required=True, type=Path,
                   help="the fingerprint table (.csv; never replaced without --force)")
    p.add_argument("--n-components", type=int,
                   help="networks per model (default: the reference atlas's number of "
                        "networks, else 10); the texts must give at least 5 words per network")
    p.add_argument("--reference-atlas", default="auto", metavar="ATLAS",
                   help="where the reference's networks come from: auto (default: the "
                        "built-in atlas of the reference's model, smollm2-135m for the "
                        "default model, unless --n-components is given; else CanICA on the "
                        "texts), none (CanICA on the texts), a built-in atlas name or an "
                        "atlas folder")
    p.add_argument("--random-state", type=int, default=0,
                   help="seed of CanICA and of the nulls (default 0)")
    p.add_argument("--n-permutations", type=int, default=200,
                   help="draws of each null (default 200)")
    p.add_argument("--max-tokens", type=int, default=512,
                   help="tokens each model reads per text (default 512)")
    p.add_argument("--batch-size", type=int, default=8, help="texts per forward pass (default 8)")
    p.add_argument("--device", help="where the models run: cpu (default), cuda, cuda:N or auto")
    p.add_argument("--model-dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="weight dtype of the models (default float32); activations are "
                        "float32")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run each model as a task on a Dask cluster: local:N (N worker "
                        "processes on this machine) or a running scheduler's address "
                        "(tcp://host:8786) or scheduler file (.json); the workers load the "
                        "models and must see this filesystem; this process loads none "
                        "(default: this process)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing fingerprint table at --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print the path")
    p.set_defaults(func=_cmd_fingerprint)


def _in_flags(err):
    """The same error, naming the flags instead of the library's parameters."""
    message = str(err)
    for name, flag in _FLAGS.items():
        message = message.replace(f"'{name}'", f"'{flag}'").replace(f"{name}=", f"{flag} ")
    try:
        return type(err)(message)
    except Exception:  # an error type that takes other arguments
        return ValueError(message) if isinstance(err, ValueError) else TypeError(message)


def _cmd_fingerprint(args):
    from llmfbn.fingerprint import fingerprint
    from llmfbn.io import check_fingerprints_output, write_fingerprints

    try:
        check_fingerprints_output(args.out, overwrite=args.force)
        table = fingerprint(args.reference, args.candidates, args.texts,
                            n_components=args.n_components,
                            n_permutations=args.n_permutations, max_tokens=args.max_tokens,
                            batch_size=args.batch_size, device=args.device,
                            model_dtype=args.model_dtype, random_state=args.random_state,
                            reference_atlas=args.reference_atlas,
                            scheduler=args.scheduler, verbose=0 if args.quiet else 1)
        path = write_fingerprints(args.out, table, overwrite=args.force)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise _in_flags(err) from None
    if args.quiet:
        print(path)
        return
    first = table.iloc[0]
    print(f"Fingerprints of {table['candidate'].nunique()} candidates against "
          f"{first['reference']!r}: {first['n_components']} networks, {first['n_words']} "
          f"words, {args.n_permutations} null draws (random_state {first['random_state']}); "
          f"the reference's networks from {first['reference_networks']}")
    for row in table.itertuples():
        print(f"  {row.candidate}  {row.method}: score {row.score:.3f}, p = {row.p_value:.3g} "
              f"(null mean {row.null_mean:.3f})")
    print(f"wrote {path}")
