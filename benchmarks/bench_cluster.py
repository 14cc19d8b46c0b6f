"""A Dask cluster against one process: same results, and what the cluster costs.

Each command runs as ``python -m llmfbn ...`` in its own process, once in one
process (torch uses every core) and once with ``--scheduler local:N`` (N
worker processes sharing the same cores), on SmolLM2 over WikiText-2
paragraphs:

1. ``record`` over ``--tokens`` tokens: time, and whether every file of the
   two folders is byte-identical;
2. ``networks`` on that recording: time, and whether the component maps are
   identical;
3. ``intervene`` (``--networks`` networks x ``--controls`` controls, perplexity
   of ``--eval-tokens`` WikiText-2 tokens): time, and whether the CSVs are
   byte-identical.

Overhead is ``time with the cluster / time in one process - 1`` (cluster start,
one model load per worker, pickling, and the cores split among processes).
``--scaling N`` also records with ``local:1`` and ``local:N`` (``N`` workers of
``cores / N`` threads each) and prints the speed-up, for a machine with many
cores.

Run::

    .venv/bin/python benchmarks/bench_cluster.py --work results/bench-cluster

and a quick check of the script itself::

    .venv/bin/python benchmarks/bench_cluster.py --work /tmp/bench-cluster --tokens 1500 \\
        --eval-tokens 600 --networks 1 --controls 1 --n-components 4
"""

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / \
    "wiki.test.raw"


def run_llmfbn(args):
    """``python -m llmfbn ARGS`` -> seconds; stops the benchmark on failure."""
    print(f"$ llmfbn {' '.join(args)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "llmfbn", *args], stdout=subprocess.DEVNULL)
    if done.returncode:
        raise SystemExit(f"llmfbn {args[0]} failed (exit {done.returncode})")
    return time.perf_counter() - start


def same_files(a, b):
    """Relative paths of the files that differ (or exist on one side only)."""
    files_a = {p.relative_to(a) for p in Path(a).rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in Path(b).rglob("*") if p.is_file()}
    differ = sorted(str(p) for p in files_a ^ files_b)
    differ += sorted(str(p) for p in files_a & files_b
                     if not filecmp.cmp(Path(a) / p, Path(b) / p, shallow=False))
    return differ


def write_texts(path, n_tokens, skip=0):
    """WikiText-2 paragraphs from ``skip`` until ``n_tokens`` SmolLM2 tokens; their count."""
    from llmfbn.datasets._wikitext import parse_wikitext
    from llmfbn.models import load_model

    tokenizer = load_model("smollm2-135m").tokenizer
    articles, _ = parse_wikitext(WIKITEXT.read_text(encoding="utf-8").splitlines())
    texts = [text for article in articles for _, text in article.paragraphs][skip:]
    chosen, total = [], 0
    for text in texts:
        if total >= n_tokens:
            break
        chosen.append(text.replace("\n", " "))
        total += len(tokenizer(text)["input_ids"])
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return total


def compare(name, single, cluster, differ):
    overhead = 100 * (cluster / single - 1)
    same = "identical" if not differ else f"DIFFER: {differ[:5]}"
    print(f"| {name} | {single:.1f} s | {cluster:.1f} s | {overhead:+.1f} % | {same} |",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="work folder (kept)")
    parser.add_argument("--workers", type=int, default=2, help="N of local:N (default 2)")
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--networks", type=int, default=2)
    parser.add_argument("--controls", type=int, default=3)
    parser.add_argument("--eval-tokens", type=int, default=4_000)
    parser.add_argument("--scaling", type=int, metavar="N",
                        help="also record with local:1 and local:N and print the speed-up")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"command: {' '.join(sys.argv)}\n{os.cpu_count()} CPUs; --scheduler "
          f"local:{args.workers}", flush=True)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n_tokens = write_texts(work / "texts.txt", args.tokens)
    n_eval = write_texts(work / "eval.txt", args.eval_tokens, skip=1000)
    print(f"record: {n_tokens:,} WikiText-2 tokens; intervene: {n_eval:,} tokens", flush=True)
    scheduler = ["--scheduler", f"local:{args.workers}"]
    rows = []

    record = ["record", "--input", str(work / "texts.txt"), "--input-format", "lines",
              "--texts-per-run", "4", "-q"]
    t1 = run_llmfbn([*record, "--out", str(work / "rec-1")])
    tn = run_llmfbn([*record, "--out", str(work / "rec-n"), *scheduler])
    rows.append(("record", t1, tn, same_files(work / "rec-1", work / "rec-n")))

    networks = ["networks", "--n-components", str(args.n_components), "--random-state", "0",
                "-q"]
    t1 = run_llmfbn([*networks, str(work / "rec-1"), "--out", str(work / "net-1")])
    tn = run_llmfbn([*networks, str(work / "rec-1"), "--out", str(work / "net-n"), *scheduler])
    maps = [p.name for p in (work / "net-1").glob("*.nii*")]
    rows.append(("networks", t1, tn,
                 [m for m in maps if not filecmp.cmp(work / "net-1" / m, work / "net-n" / m,
                                                     shallow=False)]))

    ids = ",".join(str(k) for k in range(args.networks))
    intervene = ["intervene", "--networks", str(work / "net-1"), "--network", ids,
                 "--controls", str(args.controls), "--eval", f"text={work / 'eval.txt'}", "-q"]
    t1 = run_llmfbn([*intervene, "--out", str(work / "int-1.csv")])
    tn = run_llmfbn([*intervene, "--out", str(work / "int-n.csv"), *scheduler])
    differ = [] if filecmp.cmp(work / "int-1.csv", work / "int-n.csv", shallow=False) \
        else ["int-n.csv"]
    rows.append(("intervene", t1, tn, differ))

    print(f"\n| command | one process | local:{args.workers} | overhead | results |")
    print("|---|---|---|---|---|")
    for row in rows:
        compare(*row)

    if args.scaling:
        times = {}
        for n in (1, args.scaling):
            out = work / f"rec-scaling-{n}"
            times[n] = run_llmfbn([*record, "--out", str(out), "--scheduler", f"local:{n}"])
        print(f"\nrecord {n_tokens:,} tokens: local:1 {times[1]:.1f} s, local:{args.scaling} "
              f"{times[args.scaling]:.1f} s: {times[1] / times[args.scaling]:.2f}x")


if __name__ == "__main__":
    main()
