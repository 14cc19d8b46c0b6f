"""Real-model acceptance of pruning on SmolLM2 (the README's table and figure).

SmolLM2-135M-Instruct loses ``--ratios`` (10, 20, 30 %) of its 46,080 MLP
neurons by each method of :func:`llmfbn.pruning.prune` (``random`` with seeds
``--seeds``, 0 1 2), outside the default protected layers (the first 3 and
the last 2). Every pruned folder, and the dense model saved the same way
(float32 safetensors), is evaluated in a fresh process, so that its peak RSS
is its own:

* WikiText-2 perplexity on held-out text: the paragraphs of the odd-numbered
  test articles, first ``--max-tokens`` tokens, sliding windows 1024/512
  (``make_evaluation("wikitext2", ...)``: one evaluator for every model);
* zero-shot accuracy (``acc``, summed log-likelihood) on the first
  ``--limit`` items of SST-2 (dev), PIQA, ARC-Easy, WinoGrande and BoolQ;
* parameters, safetensors size, tokens/s of a forward pass (256 held-out
  tokens, the fastest of 5 passes, after the evaluation has warmed the
  model) and the process's peak RSS (Linux ``VmHWM``, loading included).

The texts never meet the evaluation articles. ``fbn``'s networks (CanICA,
``--n-components``, seed 0) are fitted on a recording (signal ``mlp``) of
the first ``--net-paragraphs`` paragraphs of the even-numbered articles, at
most 128 tokens each; ``wanda`` and ``flap`` calibrate on the first
``--calibration-tokens`` tokens of that same file, so every data-driven
method sees the same text. ``fbn`` runs without bias compensation (its
default), so no method depends twice on one text and pruning's leakage
warning does not arise.

Everything under ``--work`` is reused only when it matches this run: the
texts (compared byte for byte), the recording (checked by
:func:`llmfbn.recording.record`), the networks (estimator settings, source
text and model compared), each pruned folder (its ``pruning.json``) and each
row of ``results.csv`` (its settings columns). Anything else stops the run
before any work, naming what differs. Run (about 30 minutes on 2 lightly
loaded cores: recording 4, networks 6, the 22 evaluations 18; 92 minutes
under a load average of 5)::

    nice -n 5 .venv/bin/python benchmarks/pruning_acceptance.py --data ../shared/data

It prints the markdown table of the README and writes ``results.csv`` and
``perplexity_vs_ratio.png`` under ``--work``.
"""

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from networks_acceptance import wikitext_halves

#: Zero-shot tasks of the table: ``make_evaluation`` name -> column title.
TASKS = {"sst2": "SST-2", "piqa": "PIQA", "arc_easy": "ARC-E", "winogrande": "WinoG",
         "boolq": "BoolQ"}
METHODS = ("fbn", "random", "magnitude", "wanda", "flap")
#: Most tokens per paragraph in the networks' recording.
NET_MAX_TOKENS = 128
#: Batch of the tokens/s measurement (sequences, tokens each), and how many timed passes
#: (the fastest counts: other jobs on the machine only ever slow a pass down).
SPEED_SHAPE = (1, 256)
SPEED_PASSES = 5
#: Columns that say what made a row; a resumed row must match on all of them.
SETTINGS = ("source_weights", "eval_text", "max_tokens", "tasks", "limit", "inputs")
METRICS = ("perplexity", *TASKS, *(f"{t}_norm" for t in TASKS), "parameters", "file_mb",
           "tokens_per_s", "peak_rss_mb", "eval_seconds")
COLUMNS = ("method", "ratio", "seed", "folder", "weights_hash", *SETTINGS, *METRICS)


def text_sha256(text):
    """``sha256:<hex>`` of a text's UTF-8 bytes (what ``file_sha256`` gives for its file)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_name(method, ratio, seed):
    return "dense" if method == "dense" else f"{method}-r{round(100 * ratio):02d}-s{seed}"


def plan(args):
    """``[(method, ratio, seed)]`` of every model, the dense one first."""
    rows = [("dense", 0.0, 0)]
    for ratio in args.ratios:
        for method in args.methods:
            for seed in args.seeds if method == "random" else [0]:
                rows.append((method, float(ratio), int(seed)))
    return rows


# -- the evaluation of one model, in its own process ------------------------------

def peak_rss_mb():
    """This process's peak RSS in MB: Linux ``VmHWM``, else ``ru_maxrss``.

    ``ru_maxrss`` is no use in a child on Linux: it starts from the parent's
    peak (kept over fork and exec), so every child would report the parent's
    loaded model. ``VmHWM`` belongs to the process's own memory map.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def evaluate_folder(folder, odd_text, data, max_tokens, limit):
    """Every metric of one model folder (run in a fresh process: see ``--evaluate-one``)."""
    import torch

    from llmfbn.intervention import make_evaluation
    from llmfbn.models import load_model

    start = time.perf_counter()
    loaded = load_model(str(folder))
    model, tokenizer = loaded.model, loaded.tokenizer
    out = {"weights_hash": loaded.weights_hash,
           "parameters": int(sum(p.numel() for p in model.parameters())),
           "file_mb": sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) / 1e6}
    loaded_s = time.perf_counter() - start
    result = make_evaluation("wikitext2", odd_text, max_tokens=max_tokens).run(model, tokenizer)
    out["perplexity"] = result["perplexity"].value
    perplexity_s = time.perf_counter() - start - loaded_s
    for task in TASKS:
        scores = make_evaluation(task, Path(data) / task, limit=limit).run(model, tokenizer)
        out[task] = scores["accuracy"].value
        out[f"{task}_norm"] = scores["accuracy_norm"].value
    tasks_s = time.perf_counter() - start - loaded_s - perplexity_s
    n_seq, n_tok = SPEED_SHAPE  # the model is warm: every kernel has run
    ids = tokenizer(Path(odd_text).read_text(encoding="utf-8")[:20000],
                    return_tensors="pt").input_ids[0]
    batch = ids[: n_seq * n_tok].reshape(n_seq, n_tok)
    times = []
    with torch.inference_mode():
        for _ in range(SPEED_PASSES):
            tick = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - tick)
    out["tokens_per_s"] = n_seq * n_tok / min(times)
    print(f"{folder}: load {loaded_s:.0f} s, perplexity {perplexity_s:.0f} s, tasks "
          f"{tasks_s:.0f} s, speed {sum(times):.0f} s", file=sys.stderr, flush=True)
    out["peak_rss_mb"] = peak_rss_mb()
    out["eval_seconds"] = time.perf_counter() - start
    return out


def evaluate_in_subprocess(folder, odd_text, args):
    """:func:`evaluate_folder` in a fresh interpreter; its last stdout line is the JSON."""
    command = [sys.executable, str(Path(__file__).resolve()), "--evaluate-one", str(folder),
               "--odd-text", str(odd_text), "--data", str(args.data),
               "--max-tokens", str(args.max_tokens), "--limit", str(args.limit)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Evaluating {folder} failed (exit code {done.returncode}); its "
                           f"errors are above.")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- what is reused -----------------------------------------------------------------

def check_text(path, content, downstream):
    """Refuse a text under --work that differs from this run's while its products exist."""
    if path.is_file() and path.read_text(encoding="utf-8") != content:
        made = [str(p) for p in downstream if p.exists()]
        if made:
            raise ValueError(f"{path} differs from the text this run asks for (another "
                             f"--net-paragraphs or --data?) and {made} were made from it: use "
                             f"another --work, or delete them.")


def networks_problems(net_dir, even_file, loaded, args):
    """Why the networks folder does not fit this run (empty when it does)."""
    from llmfbn.io import read_networks_folder
    from llmfbn.networks import source_files

    folder = read_networks_folder(net_dir)
    params = folder.estimator_params or {}
    wanted = {"method": "canica", "n_components": args.n_components,
              "threshold": args.threshold, "random_state": 0}
    problems = [f"{key}={params.get(key)!r} (this run: {value!r})"
                for key, value in wanted.items() if params.get(key) != value]
    sources = source_files(net_dir)
    if sources != [Path(even_file).resolve()]:
        problems.append(f"fitted on {[str(s) for s in sources]} (this run: {even_file})")
    if (folder.grid.model, folder.grid.weights_hash) != (loaded.name, loaded.weights_hash):
        problems.append(f"model {folder.grid.model} {folder.grid.weights_hash} (this run: "
                        f"{loaded.name} {loaded.weights_hash})")
    return problems


def pruned_problems(folder, method, ratio, seed, inputs, loaded):
    """Why a pruned folder does not fit this run (empty when it does)."""
    from llmfbn.io import read_pruning
    from llmfbn.pruning import default_protected_layers

    m = read_pruning(folder)
    calibration = m["calibration"] or {}
    networks = m["details"].get("scores", {}).get("networks") or [{}]
    found = {"method": m["method"], "ratio": m["ratio"], "random_state": m["random_state"],
             "protect_layers": m["protect_layers"],
             "source weights": m["source_model"]["weights_hash"],
             "bias compensated": bool(m["bias_compensated_layers"]),
             "inputs": (networks[0].get("sha256") if method == "fbn" else
                        f"{calibration.get('sha256')}:{calibration.get('n_tokens')}"
                        if method in ("wanda", "flap") else "none")}
    wanted = {"method": method, "ratio": ratio, "random_state": seed,
              "protect_layers": default_protected_layers(len(m["layer_widths"])),
              "source weights": loaded.weights_hash, "bias compensated": method == "flap",
              "inputs": inputs}
    return [f"{key}={found[key]!r} (this run: {value!r})" for key, value in wanted.items()
            if found[key] != value]


def read_results(path):
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"{path} is not a results file of this benchmark (missing columns "
                         f"{missing}): use another --work, or delete it.")
    return table


def find_row(table, method, ratio, seed):
    hit = table[(table.method == method) & np.isclose(table.ratio.astype(float), ratio)
                & (table.seed.astype(int) == seed)]
    return None if hit.empty else hit.iloc[0]


def row_problems(row, settings):
    """Settings of a stored row that differ from this run's."""
    return [f"{key}: {row[key]} in the file, {settings[key]} now" for key in SETTINGS
            if str(row[key]) != str(settings[key])]


def write_results(path, table):
    from llmfbn.io import write_atomic

    write_atomic(path, table.loc[:, list(COLUMNS)].to_csv(index=False))


# -- the networks, the calibration, the pruned folders ---------------------------------

def fit_networks(loaded, even_file, rec_dir, net_dir, args):
    from llmfbn.networks import NetworkDecomposition
    from llmfbn.recording import record

    start = time.perf_counter()
    rec = record(loaded, even_file, rec_dir, max_tokens=NET_MAX_TOKENS, verbose=1)
    print(f"recorded {rec.summary['n_runs']} runs, {rec.summary['n_tokens']} tokens "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    start = time.perf_counter()
    NetworkDecomposition(n_components=args.n_components, threshold=args.threshold,
                         random_state=0, verbose=1).fit(rec_dir).save(net_dir)
    print(f"fitted {args.n_components} networks ({time.perf_counter() - start:.0f} s)",
          flush=True)


def dense_folder(loaded, folder):
    """The dense model saved as pruned folders are (float32 safetensors), checked on reuse."""
    import torch
    from safetensors.torch import load_file

    if folder.exists():
        state = {}
        for file in sorted(folder.glob("*.safetensors")):
            state.update(load_file(file))
        own = loaded.model.state_dict()
        if not state or any(key not in own or not torch.equal(value, own[key])
                            for key, value in state.items()):
            raise ValueError(f"{folder} does not hold the weights of {loaded.name}: use "
                             f"another --work, or delete it.")
        return
    staging = folder.with_name(f".staging-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    loaded.model.save_pretrained(staging)
    loaded.tokenizer.save_pretrained(staging)
    os.rename(staging, folder)


# -- the table and the figure ---------------------------------------------------------

def summarise(table, keys):
    """One line per (method, ratio): mean, sd and count of each metric over seeds."""
    rows = []
    for (method, ratio), group in table.groupby(["method", "ratio"], sort=False):
        line = {"method": method, "ratio": ratio, "n": len(group)}
        for metric in METRICS:
            values = group[metric].astype(float)
            line[metric] = values.mean()
            line[f"{metric}_sd"] = values.std(ddof=1) if len(group) > 1 else math.nan
        line["mean_acc"] = group[list(TASKS)].astype(float).mean(axis=1).mean()
        line["mean_acc_sd"] = (group[list(TASKS)].astype(float).mean(axis=1).std(ddof=1)
                               if len(group) > 1 else math.nan)
        rows.append(line)
    order = {key: i for i, key in enumerate(dict.fromkeys((m, r) for m, r, _ in keys))}
    return sorted(rows, key=lambda line: order.get((line["method"], line["ratio"]), 1e9))


def _cell(line, metric, fmt):
    value, sd = line[metric], line[f"{metric}_sd"]
    return f"{value:{fmt}}" + ("" if math.isnan(sd) else f" ± {sd:{fmt}}")


def markdown(lines):
    head = ("| method | removed | parameters (M) | file (MB) | WikiText-2 ppl | "
            + " | ".join(TASKS.values()) + " | mean acc | tokens/s | peak RSS (MB) |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for line in lines:
        label = line["method"] + (f" (seeds × {line['n']})" if line["n"] > 1 else "")
        out.append(" | ".join([
            f"| {label}", f"{100 * line['ratio']:.0f} %",
            f"{line['parameters'] / 1e6:.1f}", f"{line['file_mb']:.0f}",
            _cell(line, "perplexity", ".2f"),
            *(_cell(line, task, ".2f") for task in TASKS),
            _cell(line, "mean_acc", ".3f"), f"{line['tokens_per_s']:.0f}",
            f"{line['peak_rss_mb']:.0f} |"]))
    return "\n".join(out)


def figure(lines, table, path):
    """Perplexity vs ratio, one line per method (random: the seeds' mean, each seed a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = [line["perplexity"] for line in lines if line["method"] == "dense"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        mine = [line for line in lines if line["method"] == method]
        if not mine:
            continue
        n = max(line["n"] for line in mine)
        ratios = [0.0] * bool(dense) + [100 * line["ratio"] for line in mine]
        drawn = ax.plot(ratios, dense + [line["perplexity"] for line in mine], marker="o",
                        label=method + (f" (mean of {n} seeds; dots: each seed)" if n > 1
                                        else ""))
        if n > 1:
            seeds = table[table.method == method]
            ax.scatter(100 * seeds.ratio.astype(float), seeds.perplexity.astype(float), s=12,
                       color=drawn[0].get_color(), alpha=0.6)
    if dense:
        ax.axhline(dense[0], color="grey", linestyle="--", label="dense")
    ax.set_yscale("log")
    ax.set_xlabel("MLP neurons removed (%)")
    ax.set_ylabel("WikiText-2 perplexity (held-out articles)")
    ax.set_title("SmolLM2-135M: perplexity vs pruning ratio")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the run ------------------------------------------------------------------------

def check_args(args):
    for ratio in args.ratios:
        if not 0 < ratio < 1:
            raise ValueError(f"'--ratios' must lie in (0, 1). {ratio} was provided.")
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        raise ValueError(f"'--methods' must be among {METHODS}. {bad} was provided.")
    for name in ("max_tokens", "limit", "net_paragraphs", "calibration_tokens", "n_components"):
        if getattr(args, name) < 1:
            raise ValueError(f"'--{name.replace('_', '-')}' must be >= 1. "
                             f"{getattr(args, name)} was provided.")
    for task in ("wikitext-2-raw", *TASKS):
        if not (args.data / task).is_dir():
            raise FileNotFoundError(f"'--data' must hold {task}/. {args.data / task} does "
                                    f"not exist.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("results/pruning"))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of method random")
    parser.add_argument("--max-tokens", type=int, default=2048,
                        help="held-out WikiText tokens of the perplexity")
    parser.add_argument("--limit", type=int, default=20, help="items of each zero-shot task")
    parser.add_argument("--net-paragraphs", type=int, default=180,
                        help="even-article paragraphs recorded for the networks")
    parser.add_argument("--calibration-tokens", type=int, default=4096,
                        help="wanda/flap calibration tokens (from the networks' text)")
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=3.6)
    parser.add_argument("--evaluate-one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--odd-text", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate_one is not None:
        out = evaluate_folder(args.evaluate_one, args.odd_text, args.data, args.max_tokens,
                              args.limit)
        print(json.dumps(out))
        return

    from llmfbn.io import OutputLock, folder_sha256, is_pruned_folder, write_atomic
    from llmfbn.models import load_model
    from llmfbn.pruning import calibration_stats, prune

    check_args(args)
    started = time.perf_counter()
    work = args.work
    files = {name: work / "texts" / f"{name}.txt" for name in ("wiki_even", "wiki_odd")}
    rec_dir, net_dir = work / "rec-wiki-even", work / "net-wiki-even"
    even, odd = wikitext_halves(args.data / "wikitext-2-raw" / "wiki.test.raw")
    if args.net_paragraphs > len(even):
        raise ValueError(f"'--net-paragraphs' must be at most {len(even)} (the even articles' "
                         f"paragraphs). {args.net_paragraphs} was provided.")
    contents = {"wiki_even": "\n".join(even[: args.net_paragraphs]) + "\n",
                "wiki_odd": "\n".join(odd) + "\n"}
    keys = plan(args)
    csv_path = work / "results.csv"
    with OutputLock(csv_path):
        check_text(files["wiki_even"], contents["wiki_even"],
                   [rec_dir, net_dir, *(work / "models" / folder_name(*k) for k in keys)])
        check_text(files["wiki_odd"], contents["wiki_odd"], [csv_path])
        loaded = load_model("smollm2-135m")
        n_even = len(loaded.tokenizer(contents["wiki_even"]).input_ids)
        if n_even < args.calibration_tokens:
            raise ValueError(f"'--calibration-tokens' must be at most the {n_even} tokens of "
                             f"the networks' text. {args.calibration_tokens} was provided.")
        net_sha = None
        if (net_dir / "networks.json").exists():
            problems = networks_problems(net_dir, files["wiki_even"].resolve(), loaded, args)
            if problems:
                raise ValueError(f"{net_dir} was made with other settings ("
                                 + "; ".join(problems) + "): use another --work, or delete it.")
            net_sha = folder_sha256(net_dir)
        calibration_input = f"{text_sha256(contents['wiki_even'])}:{args.calibration_tokens}"
        tasks = text_sha256(json.dumps({task: folder_sha256(args.data / task)
                                        for task in TASKS}, sort_keys=True))

        def settings(method):
            inputs = {"fbn": net_sha, "wanda": calibration_input,
                      "flap": calibration_input}.get(method, "none")
            return {"source_weights": loaded.weights_hash,
                    "eval_text": text_sha256(contents["wiki_odd"]),
                    "max_tokens": args.max_tokens, "tasks": tasks, "limit": args.limit,
                    "inputs": inputs}

        table = read_results(csv_path)
        todo = []
        for key in keys:
            row = find_row(table, *key)
            if row is not None and key[0] == "fbn" and net_sha is None:
                raise ValueError(f"{csv_path} holds fbn rows but their networks ({net_dir}) "
                                 f"are gone: use another --work, or delete the file.")
            problems = [] if row is None else row_problems(row, settings(key[0]))
            if problems:
                raise ValueError(f"{csv_path}: the row {key} was made with other settings ("
                                 + "; ".join(problems) + "): use another --work, or delete "
                                 "the file.")
            folder = work / "models" / folder_name(*key)
            if row is None and key[0] == "dense" and folder.exists():
                dense_folder(loaded, folder)  # refuses other weights
            if row is None and key[0] != "dense" and is_pruned_folder(folder):
                if key[0] == "fbn" and net_sha is None:
                    raise ValueError(f"{folder} was pruned with networks that are gone: "
                                     f"delete it.")
                problems = pruned_problems(folder, *key, settings(key[0])["inputs"], loaded)
                if problems:
                    raise ValueError(f"{folder} was pruned with other settings ("
                                     + "; ".join(problems) + "): use another --work, or "
                                     "delete it.")
            if row is None:
                todo.append(key)
        print(f"{len(keys) - len(todo)} of {len(keys)} models already in {csv_path}",
              flush=True)

        for name, path in files.items():
            if not path.is_file() or path.read_text(encoding="utf-8") != contents[name]:
                write_atomic(path, contents[name])
        if any(k[0] == "fbn" for k in todo) and net_sha is None:
            fit_networks(loaded, files["wiki_even"], rec_dir, net_dir, args)
            net_sha = folder_sha256(net_dir)
        stats = None
        for key in todo:
            method, ratio, seed = key
            folder = work / "models" / folder_name(*key)
            start = time.perf_counter()
            if method == "dense":
                dense_folder(loaded, folder)
            elif not is_pruned_folder(folder):
                if method in ("wanda", "flap") and stats is None:
                    stats = calibration_stats(loaded, files["wiki_even"],
                                              max_tokens=args.calibration_tokens)
                prune(loaded, method, ratio, folder,
                      networks=net_dir if method == "fbn" else None,
                      calibration=stats if method in ("wanda", "flap") else None,
                      random_state=seed, verbose=0)
            made = time.perf_counter() - start
            out = evaluate_in_subprocess(folder, files["wiki_odd"], args)
            row = pd.DataFrame([{"method": method, "ratio": ratio, "seed": seed,
                                 "folder": str(folder), **settings(method), **out}])
            table = row if table.empty else pd.concat([table, row], ignore_index=True)
            write_results(csv_path, table)
            print(f"{folder.name}: perplexity {out['perplexity']:.2f}, mean accuracy "
                  f"{np.mean([out[t] for t in TASKS]):.3f} (pruned in {made:.0f} s, evaluated "
                  f"in {out['eval_seconds']:.0f} s)", flush=True)

        wanted = pd.concat([table[(table.method == m) & np.isclose(table.ratio, r)
                                  & (table.seed == s)] for m, r, s in keys])
        lines = summarise(wanted, keys)
        figure(lines, wanted, work / "perplexity_vs_ratio.png")
    print(f"\n{markdown(lines)}\n")
    print(f"limit {args.limit}: standard error of one accuracy <= "
          f"{0.5 / math.sqrt(args.limit):.3f}; of the mean over {len(TASKS)} tasks <= "
          f"{0.5 / math.sqrt(args.limit * len(TASKS)):.3f}")
    print(f"figure: {work / 'perplexity_vs_ratio.png'}; total "
          f"{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
