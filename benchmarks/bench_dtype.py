"""Recording in bfloat16 against float32: throughput and activation differences.

Records the same WikiText-2 paragraphs with SmolLM2-135M (default) loaded in
float32 and in bfloat16 and prints, for the in-memory capture
(``ActivationRecorder.record``: forward passes up to the last recorded layer
with hooks, images in float32 whatever the model dtype, on the CPU):

1. **Throughput**: real (non-pad) tokens/s of each dtype over identical
   batches (paragraphs truncated to ``--max-tokens``, sorted by length,
   ``--batch-size`` per batch), best and median of ``--repeats`` timed passes
   after one warm-up batch (passes alternate between the dtypes), and the
   ratio bfloat16 / float32 (target >= 1.5x).
2. **Differences** between the two recordings, streamed batch by batch (no
   recording is held in memory): the largest absolute difference; that
   difference over the largest float32 magnitude, overall and in the worst
   layer; the root-mean-square difference over the float32 signal's
   root-mean-square; the largest elementwise relative difference where
   ``|float32| >= --rel-floor`` times its layer's largest magnitude in the
   batch; and
   Pearson's correlation, overall and in the worst layer.

Run from the repository root::

    .venv/bin/python benchmarks/bench_dtype.py             # 20,000 tokens, 3 repeats
    .venv/bin/python benchmarks/bench_dtype.py --quick     # 2,000 tokens, 1 repeat

``--device cuda`` runs the same comparison on a GPU (the copy to the host
then goes through pinned memory). The texts are ``wiki.test.raw`` from
``../shared/data/wikitext-2-raw`` (relative to the repository), headings left
out, in file order.
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llmfbn.datasets._wikitext import parse_wikitext  # noqa: E402
from llmfbn.models import load_model, resolve_device  # noqa: E402
from llmfbn.recording import ActivationRecorder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
TARGET_RATIO = 1.5


def paragraphs(path):
    """WikiText paragraphs in file order (headings and blank lines are boundaries)."""
    articles, _ = parse_wikitext(Path(path).read_text(encoding="utf-8").splitlines())
    return [text for article in articles for _, text in article.paragraphs]


def token_batches(tokenizer, texts, n_tokens, max_tokens, batch_size):
    """Batches of token-id lists, about ``n_tokens`` real tokens in all.

    Returns
    -------
    list of list of list of int
        Texts sorted by length, ``batch_size`` per batch.
    """
    pieces, total = [], 0
    for text in texts:
        ids = tokenizer(text)["input_ids"][:max_tokens]
        if not ids:
            continue
        pieces.append(ids)
        total += len(ids)
        if total >= n_tokens:
            break
    pieces.sort(key=len)
    return [pieces[i:i + batch_size] for i in range(0, len(pieces), batch_size)]


def pad_id(tokenizer):
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return candidate
    return 0


def time_recording(models, batches, pad, repeats, signal):
    """Seconds of each timed pass over ``batches``, per model.

    Passes alternate between the models (after one warm-up batch each), so a
    machine whose load drifts slows them alike.

    Returns
    -------
    list of list of float
        ``seconds[m][r]``: model ``m``'s pass ``r``.
    """
    seconds = [[] for _ in models]
    recorders = [ActivationRecorder(model, signal=signal) for model in models]
    with recorders[0], recorders[1]:
        for recorder in recorders:
            recorder.record(batches[0], pad)
        for _ in range(repeats):
            for recorder, times in zip(recorders, seconds):
                start = time.perf_counter()
                for batch in batches:
                    recorder.record(batch, pad)
                times.append(time.perf_counter() - start)
    return seconds


class Differences:
    """Streamed statistics of ``b - a`` over many (n_tokens, n_layers, width) arrays."""

    def __init__(self, n_layers, rel_floor):
        self.rel_floor = rel_floor
        zeros = np.zeros(n_layers)
        self.max_abs = zeros.copy()      # max |b - a| per layer
        self.max_ref = zeros.copy()      # max |a| per layer
        self.max_rel = zeros.copy()      # max |b - a| / |a| per layer, above the floor
        self.sums = {k: zeros.copy() for k in ("n", "a", "b", "aa", "bb", "ab", "dd")}

    def add(self, a, b):
        a, b = a.astype(np.float64), b.astype(np.float64)
        d = np.abs(b - a)
        ref = np.abs(a)
        layer_max = ref.max(axis=(0, 2))
        self.max_abs = np.maximum(self.max_abs, d.max(axis=(0, 2)))
        self.max_ref = np.maximum(self.max_ref, layer_max)
        big = ref >= self.rel_floor * layer_max[None, :, None]
        rel = np.where(big, d / np.where(big, ref, 1.0), 0.0)
        self.max_rel = np.maximum(self.max_rel, rel.max(axis=(0, 2)))
        s = self.sums
        s["n"] += a.shape[0] * a.shape[2]
        for key, value in (("a", a), ("b", b), ("aa", a * a), ("bb", b * b), ("ab", a * b),
                           ("dd", d * d)):
            s[key] += value.sum(axis=(0, 2))

    def finish(self):
        s = self.sums

        def corr(n, a, b, aa, bb, ab):
            return (ab - a * b / n) / np.sqrt((aa - a * a / n) * (bb - b * b / n))

        keys = ("n", "a", "b", "aa", "bb", "ab")
        layer_corr = corr(*(s[k] for k in keys))
        total = {k: v.sum() for k, v in s.items()}
        layer_scaled = self.max_abs / self.max_ref
        return {
            "max_abs": float(self.max_abs.max()),
            "max_abs_over_max_ref": float(self.max_abs.max() / self.max_ref.max()),
            "worst_layer_max_abs_over_max_ref": float(layer_scaled.max()),
            "worst_layer": int(np.argmax(layer_scaled)),
            "rms_diff_over_rms": float(np.sqrt(total["dd"] / total["aa"])),
            "max_rel_above_floor": float(self.max_rel.max()),
            "corr": float(corr(*(total[k] for k in keys))),
            "worst_layer_corr": float(layer_corr.min()),
            "worst_corr_layer": int(np.argmin(layer_corr)),
        }


def compare(models, batches, pad, signal, rel_floor):
    """Differences between the recordings of ``models[1]`` and ``models[0]``."""
    stats = None
    with ActivationRecorder(models[0], signal=signal) as first, \
            ActivationRecorder(models[1], signal=signal) as second:
        for batch in batches:
            for a, b in zip(first.record(batch, pad), second.record(batch, pad)):
                assert a.dtype == b.dtype == torch.float32
                if stats is None:
                    stats = Differences(a.shape[1], rel_floor)
                stats.add(a.numpy(), b.numpy())
    return stats.finish()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--wikitext", type=Path, default=WIKITEXT)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"),
                        help="the reduced precision compared with float32 (default bfloat16)")
    parser.add_argument("--signal", default="mlp", choices=("mlp", "mlp_out", "residual"))
    parser.add_argument("--n-tokens", type=int, default=20000,
                        help="real tokens recorded per pass (default 20000)")
    parser.add_argument("--max-tokens", type=int, default=128,
                        help="tokens kept per paragraph (default 128)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--rel-floor", type=float, default=0.01,
                        help="relative differences only where |float32| >= this fraction of "
                             "its layer's largest magnitude in the batch (default 0.01)")
    parser.add_argument("--quick", action="store_true", help="2,000 tokens, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_tokens, args.repeats = 2000, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtypes = ("float32", args.dtype)
    loaded = [load_model(args.model, dtype=d, device=device, verbose=0) for d in dtypes]
    tokenizer = loaded[0].tokenizer
    pad = pad_id(tokenizer)
    batches = token_batches(tokenizer, paragraphs(args.wikitext), args.n_tokens,
                            args.max_tokens, args.batch_size)
    n_real = sum(len(ids) for batch in batches for ids in batch)
    n_padded = sum(len(batch) * max(len(ids) for ids in batch) for batch in batches)
    print(f"model {args.model} on {device}, {torch.get_num_threads()} threads, signal "
          f"{args.signal}; {n_real} tokens in {sum(len(b) for b in batches)} paragraphs "
          f"(<= {args.max_tokens} tokens), {len(batches)} batches of {args.batch_size} "
          f"({n_padded - n_real} pad tokens); {args.repeats} timed passes")
    rates = {}
    timings = time_recording([lm.model for lm in loaded], batches, pad, args.repeats,
                             args.signal)
    for dtype, seconds in zip(dtypes, timings):
        rates[dtype] = (n_real / min(seconds), n_real / statistics.median(seconds))
        print(f"  {dtype:>9}: {rates[dtype][0]:8.0f} tokens/s best, "
              f"{rates[dtype][1]:8.0f} median")
    ratio = rates[args.dtype][0] / rates["float32"][0]
    print(f"  ratio {args.dtype} / float32 (best): {ratio:.2f}x "
          f"(target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    diff = compare([lm.model for lm in loaded], batches, pad, args.signal, args.rel_floor)
    print(f"differences, {args.dtype} - float32 recording (both stored as float32):")
    print(f"  largest absolute difference            {diff['max_abs']:.4g}")
    print(f"  ... over the largest |float32| value    {diff['max_abs_over_max_ref']:.3g}"
          f" (worst layer {diff['worst_layer']}: "
          f"{diff['worst_layer_max_abs_over_max_ref']:.3g})")
    print(f"  rms difference / rms float32           {diff['rms_diff_over_rms']:.3g}")
    print(f"  largest relative difference            {diff['max_rel_above_floor']:.3g} "
          f"(where |float32| >= {args.rel_floor:g} x its layer's max in the batch)")
    print(f"  correlation                            {diff['corr']:.6f} (worst layer "
          f"{diff['worst_corr_layer']}: {diff['worst_layer_corr']:.6f})")


if __name__ == "__main__":
    main()
