"""Scale by design: reduced recordings and the bounded-memory group step, measured.

Two parts, each command in its own process so that its peak resident memory
is its own (``os.wait4``):

``--part grid7b``
    A random-initialised Llama whose MLP grid is 7B-class (32 layers x 11,008
    neurons = 352,256, as Llama-2-7B) with a small hidden size, so a CPU runs
    it, and SmolLM2's tokenizer. ``llmfbn record --reduce K`` over WikiText-2
    paragraphs in three configurations: ``--tokens-small`` tokens in runs of
    ``--short-run`` paragraphs, the same tokens in runs of ``--long-run``
    paragraphs, and ``--tokens`` tokens in runs of ``--long-run`` paragraphs;
    then ``llmfbn networks`` on the largest. Prints time, peak RSS and disk,
    and the growth of peak RSS with tokens per run and with tokens.
``--part smollm2``
    SmolLM2 over ``--smol-tokens`` WikiText-2 tokens in runs of
    ``--smol-run`` paragraphs, recorded in full and reduced (same texts), then
    ``llmfbn networks`` on each (same seed): Hungarian-matched |r| of the
    component z-maps, disk and time of each.

The group step's growth from 100 to 1,000 runs is measured on synthetic
reduced runs by ``benchmarks/bench_group_pca.py``.

Run::

    .venv/bin/python benchmarks/bench_scale.py --part grid7b --work results/bench-scale
    .venv/bin/python benchmarks/bench_scale.py --part smollm2 --work results/bench-scale

and a quick check of the script itself::

    .venv/bin/python benchmarks/bench_scale.py --part grid7b --work /tmp/bench-scale \\
        --tokens-small 600 --tokens 1200 --short-run 2 --long-run 4 --reduce 4 --layers 4
    .venv/bin/python benchmarks/bench_scale.py --part smollm2 --work /tmp/bench-scale \\
        --smol-tokens 3000 --smol-run 4 --reduce 4 --n-components 4
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / \
    "wiki.test.raw"


def paragraphs(path):
    """WikiText paragraphs in file order (headings and blank lines are boundaries)."""
    from llmfbn.datasets._wikitext import parse_wikitext

    articles, _ = parse_wikitext(Path(path).read_text(encoding="utf-8").splitlines())
    return [text for article in articles for _, text in article.paragraphs]


def take_tokens(texts, tokenizer, n_tokens, skip=0):
    """Paragraphs ``skip:`` in order until ``n_tokens`` tokens; (texts, tokens, next index)."""
    chosen, total, index = [], 0, skip
    while total < n_tokens:
        if index >= len(texts):
            raise SystemExit(f"WikiText holds too few tokens for {n_tokens} after paragraph "
                             f"{skip}.")
        chosen.append(texts[index])
        total += len(tokenizer(texts[index])["input_ids"])
        index += 1
    return chosen, total, index


def run_llmfbn(args):
    """``python -m llmfbn ARGS``: (seconds, peak RSS in MB)."""
    print(f"$ llmfbn {' '.join(args)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "llmfbn", *args],
                               stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"llmfbn {args[0]} failed (exit {os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def disk_mb(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


def build_grid7b_model(folder, tokenizer, n_layers, width, hidden):
    """A random Llama with ``n_layers`` x ``width`` MLP neurons, saved with ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=width, num_hidden_layers=n_layers,
                         num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(folder)
    return folder


def write_texts(path, texts):
    path.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")


def record_args(model, texts_file, out, per_run, reduce, batch_size):
    args = ["record", "--model", str(model), "--input", str(texts_file), "--input-format",
            "lines", "--out", str(out), "--texts-per-run", str(per_run), "--max-tokens", "512",
            "--long-texts", "split", "--batch-size", str(batch_size), "-q"]
    return args + (["--reduce", str(reduce)] if reduce else [])


def part_grid7b(args, tokenizer, texts):
    work = args.work / "grid7b"
    work.mkdir(parents=True, exist_ok=True)
    model = build_grid7b_model(work / "model", tokenizer, args.layers, args.width, args.hidden)
    small, n_small, _ = take_tokens(texts, tokenizer, args.tokens_small)
    large, n_large, _ = take_tokens(texts, tokenizer, args.tokens)
    write_texts(work / "small.txt", small)
    write_texts(work / "large.txt", large)
    print(f"grid {args.layers} x {args.width} = {args.layers * args.width:,} neurons "
          f"(hidden {args.hidden}); --reduce {args.reduce}; {os.cpu_count()} CPUs", flush=True)
    configs = [("small", n_small, args.short_run), ("small", n_small, args.long_run),
               ("large", n_large, args.long_run)]
    rows = []
    for name, n_tokens, per_run in configs:
        out = work / f"rec-{name}-{per_run}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, peak = run_llmfbn(record_args(model, work / f"{name}.txt", out, per_run,
                                               args.reduce, args.batch_size))
        n_runs = len(list(out.rglob("*_bold.nii*")))
        rows.append((n_tokens, n_runs, per_run, seconds, peak, disk_mb(out)))
    print("\n| tokens | runs | paragraphs per run | record time | tokens/s | peak RSS | disk "
          "| disk per run |")
    print("|---|---|---|---|---|---|---|---|")
    for n_tokens, n_runs, per_run, seconds, peak, disk in rows:
        print(f"| {n_tokens:,} | {n_runs} | {per_run} | {seconds / 60:.1f} min | "
              f"{n_tokens / seconds:.0f} | {peak / 1024:.2f} GB | {disk:,.0f} MB | "
              f"{disk / n_runs:.1f} MB |")
    print(f"\npeak RSS, runs of {args.long_run} vs {args.short_run} paragraphs "
          f"({rows[1][0]:,} tokens): {100 * (rows[1][4] / rows[0][4] - 1):+.1f} %")
    print(f"peak RSS, {rows[2][0]:,} vs {rows[1][0]:,} tokens (runs of {args.long_run}): "
          f"{100 * (rows[2][4] / rows[1][4] - 1):+.1f} %")
    nets = work / "networks"
    shutil.rmtree(nets, ignore_errors=True)
    seconds, peak = run_llmfbn(["networks", str(work / f"rec-large-{args.long_run}"), "--out",
                                str(nets), "--n-components", str(args.n_components), "-q"])
    print(f"\nnetworks ({args.n_components} components) on the {rows[2][1]}-run reduced "
          f"recording: {seconds / 60:.1f} min, peak RSS {peak / 1024:.2f} GB")


def matched_abs_r(net_a, net_b):
    """Hungarian-matched |r| between the component z-maps of two networks folders."""
    from llmfbn.networks import FunctionalNetworks
    from llmfbn.networks._consistency import match_networks

    a, b = FunctionalNetworks.load(net_a), FunctionalNetworks.load(net_b)
    return match_networks(a.maps, b.maps, metric="abs_correlation").scores


def part_smollm2(args, tokenizer, texts):
    work = args.work / "smollm2"
    work.mkdir(parents=True, exist_ok=True)
    chosen, n_tokens, _ = take_tokens(texts, tokenizer, args.smol_tokens)
    write_texts(work / "texts.txt", chosen)
    print(f"SmolLM2, {n_tokens:,} WikiText tokens ({len(chosen)} paragraphs, runs of "
          f"{args.smol_run}); --reduce {args.reduce}; {args.n_components} components", flush=True)
    results = {}
    for kind, reduce in (("full", None), ("reduced", args.reduce)):
        rec, nets = work / f"rec-{kind}", work / f"net-{kind}"
        shutil.rmtree(rec, ignore_errors=True)
        shutil.rmtree(nets, ignore_errors=True)
        t_rec, m_rec = run_llmfbn(record_args("smollm2-135m", work / "texts.txt", rec,
                                              args.smol_run, reduce, args.batch_size))
        t_net, m_net = run_llmfbn(["networks", str(rec), "--out", str(nets), "--n-components",
                                   str(args.n_components), "--random-state", "0", "-q"])
        results[kind] = (t_rec, m_rec, disk_mb(rec), t_net, m_net)
    print("\n| recording | record time | peak RSS | disk | networks time | peak RSS |")
    print("|---|---|---|---|---|---|")
    for kind, (t_rec, m_rec, disk, t_net, m_net) in results.items():
        print(f"| {kind} | {t_rec / 60:.1f} min | {m_rec / 1024:.2f} GB | {disk:,.0f} MB | "
              f"{t_net / 60:.1f} min | {m_net / 1024:.2f} GB |")
    scores = matched_abs_r(work / "net-full", work / "net-reduced")
    print(f"\nreduced vs full: matched |r| of the {len(scores)} component maps: median "
          f"{np.median(scores):.3f}, min {scores.min():.3f} (target median >= 0.95); "
          f"disk {results['reduced'][2] / results['full'][2]:.3f} of full")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", required=True, choices=("grid7b", "smollm2"))
    parser.add_argument("--work", type=Path, required=True, help="work folder (kept)")
    parser.add_argument("--text", type=Path, default=WIKITEXT)
    parser.add_argument("--reduce", type=int, default=20)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--width", type=int, default=11008)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--tokens-small", type=int, default=25_000)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--short-run", type=int, default=20, help="paragraphs per short run")
    parser.add_argument("--long-run", type=int, default=80, help="paragraphs per long run")
    parser.add_argument("--smol-tokens", type=int, default=50_000)
    parser.add_argument("--smol-run", type=int, default=10, help="paragraphs per SmolLM2 run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"command: {' '.join(sys.argv)}", flush=True)

    from llmfbn.models import load_model

    tokenizer = load_model("smollm2-135m").tokenizer
    texts = paragraphs(args.text)
    if args.part == "grid7b":
        part_grid7b(args, tokenizer, texts)
    else:
        part_smollm2(args, tokenizer, texts)


if __name__ == "__main__":
    main()
