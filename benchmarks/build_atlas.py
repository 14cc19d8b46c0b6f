"""Build the atlas shipped as ``llmfbn.datasets.load_atlas("smollm2-135m")``.

Reproducible from the repository and ``../shared/data`` alone, through the
command line a user has:

1. ``llmfbn record`` of the default model (SmolLM2-135M-Instruct, ``mlp``
   neurons) on WikiText-2 raw test paragraphs (``--sample`` paragraphs drawn
   with ``--seed``, at most ``--max-tokens`` tokens each, ``--texts-per-run``
   paragraphs per run);
2. ``llmfbn networks`` (CanICA, ``--n-components``) once per ICA seed
   ``0 .. --n-fits - 1``;
3. ICASSO (:func:`llmfbn.networks.stability`) over the fits' maps: a network
   enters the atlas when its cluster holds exactly one component of every
   fit and its quality index Iq is at least ``--min-quality``. Its map is
   the cluster's sign-aligned mean, z-scored, with ``|z| < --map-threshold``
   set to 0 (the atlas ships in the package: sparse maps compress ~10x);
   its label and top tokens are those of the cluster's centrotype;
4. the atlas folder written by :func:`llmfbn.io.write_atlas` (all or nothing).

Each stage reuses its output when present: ``llmfbn record`` verifies and
resumes the recording, and a networks folder is reused only when its
settings are the ones asked for. Usage::

    .venv/bin/python benchmarks/build_atlas.py --data ../shared/data \\
        --work results/atlas-build --out llmfbn/datasets/data/atlas/smollm2-135m
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from llmfbn.io import write_atlas
from llmfbn.networks import FunctionalNetworks, stability, zscore_maps

MODEL = "smollm2-135m"


def run(command):
    print("$ " + " ".join(str(c) for c in command), flush=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-m", "llmfbn", *map(str, command)], check=True, env=env)


def record(args, texts):
    run(["record", "--model", MODEL, "--input", texts, "--input-format", "wikitext",
         "--sample", args.sample, "--seed", args.seed, "--max-tokens", args.max_tokens,
         "--texts-per-run", args.texts_per_run, "--task", "wikitext2",
         "--out", args.work / "recording", "-q"])
    return args.work / "recording"


def fit(args, recording, seed):
    """The networks folder of one ICA seed (reused when its settings are the ones asked)."""
    out = args.work / f"networks-seed{seed}"
    if out.exists():
        networks = FunctionalNetworks.load(out)
        params = networks.params
        if (params.get("n_components") == args.n_components
                and params.get("random_state") == seed and params.get("method") == "canica"):
            print(f"reusing {out}", flush=True)
            return networks
        sys.exit(f"{out} holds networks of other settings ({params}); delete it or choose "
                 f"another --work folder.")
    run(["networks", recording, "--out", out, "--n-components", args.n_components,
         "--random-state", seed, "-q"])
    return FunctionalNetworks.load(out)


def label(number, tokens):
    """``"N01 · the, of, and"``: the network's number and first distinct top tokens."""
    seen = []
    for token in tokens:
        text = " ".join(token.split()) or repr(token)
        if text not in seen:
            seen.append(text)
        if len(seen) == 3:
            break
    return f"N{number:02d} · " + ", ".join(seen)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("results/atlas-build"))
    parser.add_argument("--out", type=Path,
                        default=Path("llmfbn/datasets/data/atlas") / MODEL)
    parser.add_argument("--sample", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--texts-per-run", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--n-fits", type=int, default=5)
    parser.add_argument("--min-quality", type=float, default=0.8)
    parser.add_argument("--map-threshold", type=float, default=2.0)
    args = parser.parse_args(argv)
    texts = args.data / "wikitext-2-raw" / "wiki.test.raw"
    if not texts.is_file():
        sys.exit(f"--data: {texts} does not exist.")
    if args.out.exists():
        sys.exit(f"--out: {args.out} already exists; an atlas is never replaced.")
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    recording = record(args, texts)
    fits = [fit(args, recording, seed) for seed in range(args.n_fits)]
    grid = fits[0].grid
    result = stability([f.maps for f in fits])
    keep = [c for c in range(len(result.quality))
            if result.sizes[c] == args.n_fits and result.n_fits[c] == args.n_fits
            and result.quality[c] >= args.min_quality]
    print(f"ICASSO over {args.n_fits} fits of {args.n_components} components: Iq "
          + ", ".join(f"{q:.2f}" for q in result.quality) + f"; {len(keep)} stable", flush=True)
    if not keep:
        sys.exit("no network is stable across the fits; nothing written.")
    maps = zscore_maps(result.representative_maps[keep])
    maps[abs(maps) < args.map_threshold] = 0
    top_tokens = []
    for c in keep:
        fit_index, component = result.centrotypes[c]
        entries = fits[fit_index].top_tokens[component] if fits[fit_index].top_tokens else []
        top_tokens.append([entry["token"] for entry in entries])
    labels = [label(n, tokens) for n, tokens in enumerate(top_tokens, start=1)]
    quality = [round(float(result.quality[c]), 4) for c in keep]
    build = {
        "script": "benchmarks/build_atlas.py",
        "texts": "WikiText-2 raw test (wiki.test.raw), paragraphs",
        "sample": args.sample, "seed": args.seed, "max_tokens": args.max_tokens,
        "texts_per_run": args.texts_per_run, "n_components": args.n_components,
        "n_fits": args.n_fits, "ica_seeds": list(range(args.n_fits)),
        "min_quality": args.min_quality, "map_threshold": args.map_threshold,
        "method": "canica",
    }
    description = (
        f"Functional networks of {grid.model} (mlp neurons, {grid.n_layers} layers x "
        f"{grid.width}), built by benchmarks/build_atlas.py: llmfbn record of {args.sample} "
        f"WikiText-2 raw test paragraphs (seed {args.seed}, at most {args.max_tokens} tokens "
        f"each), llmfbn networks (CanICA, {args.n_components} components) with ICA seeds "
        f"0-{args.n_fits - 1}, and ICASSO: the {len(keep)} networks whose cluster holds one "
        f"component of every fit with quality Iq >= {args.min_quality}. Maps: each cluster's "
        f"sign-aligned mean, z-scored over neurons, |z| < {args.map_threshold} set to 0. "
        f"Labels: the network's number and its centrotype's first distinct top tokens.")
    manifest = {"name": MODEL, "labels": labels, "top_tokens": top_tokens, "quality": quality,
                "description": description, "build": build}
    write_atlas(args.out, maps, grid, manifest)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out}: {len(keep)} networks, {size / 1e6:.2f} MB, "
          f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
    for text, q in zip(labels, quality):
        print(f"  {text}  (Iq {q:.2f})")


if __name__ == "__main__":
    main()
