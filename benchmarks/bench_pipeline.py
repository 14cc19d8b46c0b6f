"""The paper's whole pipeline on SmolLM2, from the command line: wall time and peak memory.

1. prepare: WikiText-2 paragraphs (``wiki.test.raw``, headings left out) in
   file order until ``--tokens`` SmolLM2 tokens go to ``record.txt``; the
   last paragraphs of the file, never recorded, to ``heldout.txt`` (at least
   ``--eval-tokens`` tokens).
2. record: ``llmfbn record`` (mlp signal, ``--long-texts split``).
3. networks: ``llmfbn networks`` (CanICA, ``--networks`` components,
   ``--n-jobs``).
4. intervene: ``llmfbn intervene`` inhibiting every network against
   ``--controls`` matched controls, perplexity on the first
   ``--eval-tokens`` held-out tokens, in ``--model-dtype``.

Each command runs as its own process, so its peak resident memory is its
own (``os.wait4``). Run::

    .venv/bin/python benchmarks/bench_pipeline.py --out results/bench-pipeline \\
        --tokens 100000 --networks 20 --controls 5 --eval-tokens 8192

and a quick check of the script itself::

    .venv/bin/python benchmarks/bench_pipeline.py --out /tmp/bench-pipeline \\
        --tokens 2000 --networks 2 --controls 1 --eval-tokens 600
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / \
    "wiki.test.raw"


def paragraphs(path):
    """WikiText paragraphs in file order (headings and blank lines are boundaries)."""
    from llmfbn.datasets._wikitext import parse_wikitext

    articles, _ = parse_wikitext(Path(path).read_text(encoding="utf-8").splitlines())
    return [text for article in articles for _, text in article.paragraphs]


def split_texts(path, tokenizer, n_record, n_eval):
    """Paragraphs for recording (from the start) and held out (from the end), disjoint."""
    texts = paragraphs(path)
    counts = [len(tokenizer(t)["input_ids"]) for t in texts]
    record, total = [], 0
    for text, n in zip(texts, counts):
        if total >= n_record:
            break
        record.append(text)
        total += n
    heldout, held = [], 0
    for text, n in zip(reversed(texts[len(record):]), reversed(counts[len(record):])):
        if held >= n_eval + 64:  # the joined text has a few tokens more or less
            break
        heldout.insert(0, text)
        held += n
    if total < n_record or held < n_eval:
        raise SystemExit(f"{path} holds too few tokens for --tokens {n_record} and "
                         f"--eval-tokens {n_eval}.")
    return record, total, heldout, held


def run_stage(name, args, results):
    """Run ``python -m llmfbn ARGS``; record its wall time and peak RSS."""
    command = [sys.executable, "-m", "llmfbn", *args]
    print(f"$ llmfbn {' '.join(args)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"stage {name} failed (exit {process.returncode})")
    results.append((name, seconds, usage.ru_maxrss / 1024))  # ru_maxrss: KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (replaced)")
    parser.add_argument("--text", type=Path, default=WIKITEXT)
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens recorded")
    parser.add_argument("--networks", type=int, default=20, help="CanICA components")
    parser.add_argument("--controls", type=int, default=5)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--model-dtype", default="bfloat16", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llmfbn.models import load_model

    print(f"command: {' '.join(sys.argv)}; {os.cpu_count()} CPUs", flush=True)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    results = []
    start = time.perf_counter()
    tokenizer = load_model("smollm2-135m").tokenizer
    record, n_record, heldout, n_held = split_texts(args.text, tokenizer, args.tokens,
                                                    args.eval_tokens)
    (args.out / "record.txt").write_text("\n".join(record) + "\n", encoding="utf-8")
    (args.out / "heldout.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    results.append(("prepare", time.perf_counter() - start, None))
    print(f"{len(record)} paragraphs ({n_record} tokens) to record, {len(heldout)} held out "
          f"({n_held} tokens)", flush=True)

    rec, net, csv = args.out / "recording", args.out / "networks", args.out / "results.csv"
    run_stage("record", ["record", "--input", str(args.out / "record.txt"),
                         "--input-format", "lines", "--out", str(rec), "--max-tokens", "256",
                         "--long-texts", "split", "-q"], results)
    run_stage("networks", ["networks", str(rec), "--out", str(net), "--method", "canica",
                           "--n-components", str(args.networks), "--n-jobs", str(args.n_jobs),
                           "--random-state", "0", "-q"], results)
    run_stage("intervene", ["intervene", "--networks", str(net),
                            "--eval", f"wikitext2={args.out / 'heldout.txt'}",
                            "--max-tokens", str(args.eval_tokens),
                            "--controls", str(args.controls),
                            "--model-dtype", args.model_dtype, "--out", str(csv), "-q"],
                results)
    total = sum(seconds for _, seconds, _ in results)
    print(f"\n{n_record} tokens recorded, {args.networks} CanICA networks, "
          f"{args.networks} x (1 + {args.controls}) inhibition sweep on {args.eval_tokens} "
          f"held-out tokens ({args.model_dtype})\n")
    print("| stage | wall time | peak memory |")
    print("|---|---|---|")
    for name, seconds, peak in results:
        memory = "" if peak is None else f"{peak:.0f} MiB"
        print(f"| {name} | {seconds / 60:.1f} min ({seconds:.0f} s) | {memory} |")
    print(f"| **total** | **{total / 60:.1f} min** | |")


if __name__ == "__main__":
    main()
