"""Benchmark llmfbn's recording against a plain forward pass of the same model.

Prints the figures for the README's performance section. On the same texts,
in one process, with the model loaded once (SmolLM2-135M by default,
float32, CPU) it measures:

1. **Plain forward**: tokens/s of ``model(input_ids, attention_mask,
   use_cache=False)`` under ``torch.inference_mode`` -- the full causal LM,
   LM head included -- over exactly the batches the recorder forms (same
   token ids, same batch size and order, right-padded). Only real (non-pad)
   tokens are counted, here and everywhere below.
2. **Recording**: tokens/s of ``llmfbn.recording.record(...)`` end to end
   (reading and tokenising the input, forward passes with hooks, writing the
   ``.nii`` images, events and sidecars into a fresh temporary folder), and of
   the in-memory capture alone (``ActivationRecorder`` +
   ``iter_piece_activations``, nothing written). Reports record / plain; the
   target is >= 0.9x. The time ``record`` spends building images, decoding
   tokens for the events files and writing files is reported separately.
3. **Memory**: the process's peak RSS (``getrusage``'s ``ru_maxrss``) after
   each phase, and each phase's own peak (Linux ``VmHWM``, reset between
   phases through ``/proc/self/clear_refs``).
4. **FLOP ceiling**: forward FLOPs per token, counted as 2 x the weights of
   every ``nn.Linear`` that actually runs (found with hooks: the plain forward
   runs the LM head, the recorder stops after the last layer's MLP neurons)
   plus the attention score and value products at the texts' mean causal
   context; the machine's dense float32 matmul rate (2048 x 2048 ``torch.mm``
   with torch's threads); the resulting tokens/s ceiling and each measured
   throughput as a fraction of it. A matmul at the model's own shape (one
   batch of tokens through an MLP up projection) is shown too, since small
   matrices rarely reach the large-matrix rate.
5. **File format**: the same runs recorded as ``.nii`` and as ``.nii.gz``:
   bytes on disk, record and write time, and the time to read every image
   back with ``nib.load(path).get_fdata(dtype=np.float32)`` (alone, which for
   ``.nii`` may only memory-map, and followed by touching every value).

Each timed phase runs ``--repeats`` times after a warm-up; tables show the best
and the median. Run from the repository root::

    .venv/bin/python benchmarks/bench_record.py            # full: 256 SST-2 texts, 3 repeats
    .venv/bin/python benchmarks/bench_record.py --quick    # smoke test, < 1 minute

Other inputs: ``--input FILE`` (.txt, .jsonl, .csv or .tsv, as ``llmfbn
record`` reads them). The default input is the SST-2 dev set in
``../shared/data/sst2/dev.tsv`` (relative to the repository). Recordings are
written under ``--tmp-dir`` (default: the system's temporary folder) and
removed afterwards; the full run needs about 1.2 GB of free space there.
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import llmfbn  # noqa: E402
from llmfbn.grid import NeuronGrid  # noqa: E402
from llmfbn.models import load_model  # noqa: E402
from llmfbn.recording import ActivationRecorder, RecordingLayout, read_texts, record  # noqa: E402
from llmfbn.recording import _record as record_module  # noqa: E402
from llmfbn.recording._capture import pad_batch  # noqa: E402
from llmfbn.recording._plan import plan_runs  # noqa: E402
from llmfbn.recording._record import _pad_id, iter_piece_activations  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "sst2" / "dev.tsv"
TARGET_RATIO = 0.9


# -- machine and memory -----------------------------------------------------

def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb():
    """Peak resident memory of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_kib(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def reset_phase_peak():
    """Reset Linux's peak-RSS mark (VmHWM); return False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def phase_peak_mb():
    """Peak RSS since the last :func:`reset_phase_peak` (VmHWM), or None."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


def current_rss_mb():
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def machine_cpu_seconds():
    """CPU seconds all processes have used so far (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields[:3]) + sum(fields[5:7])  # user nice system, irq softirq
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    times = os.times()
    return times.user + times.system


class CpuShare:
    """CPU time used by other processes while the benchmark runs (Linux only)."""

    def __init__(self):
        self.start()

    def start(self):
        self.wall = time.perf_counter()
        self.machine = machine_cpu_seconds()
        self.own = own_cpu_seconds()

    def others(self):
        """``(own CPU s, other processes' CPU s or None, wall s)`` since :meth:`start`."""
        wall = time.perf_counter() - self.wall
        own = own_cpu_seconds() - self.own
        machine = machine_cpu_seconds()
        if machine is None or self.machine is None:
            return own, None, wall
        return own, max(0.0, machine - self.machine - own), wall


# -- timing helpers ---------------------------------------------------------

def repeat(fn, repeats):
    """Call ``fn()`` ``repeats`` times; return the wall times and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def matmul_gflops(m, k, n, min_seconds, repeats=3):
    """Best GFLOP/s of ``x @ w.T``, x (m, k) and w (n, k) float32, as nn.Linear runs it."""
    x, w = torch.randn(m, k), torch.randn(n, k)
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)  # warm-up
        start, iters = time.perf_counter(), 0
        while iters < 3 or time.perf_counter() - start < min_seconds:
            torch.nn.functional.linear(x, w)
            iters += 1
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(iters):
                torch.nn.functional.linear(x, w)
            best = min(best, (time.perf_counter() - start) / iters)
    return 2.0 * m * k * n / best / 1e9


@contextmanager
def timed_calls(targets):
    """Accumulate the wall time spent in some functions by wrapping them in place.

    ``targets`` holds ``(label, owner, attribute)``; yields ``{label: seconds}``.
    The originals are restored on exit.
    """
    totals = {label: 0.0 for label, _, _ in targets}
    saved = []

    def wrap(label, original):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start
        return timed

    try:
        for label, owner, name in targets:
            original = owner.__dict__[name]
            saved.append((owner, name, original))
            setattr(owner, name, wrap(label, original))
        yield totals
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def record_targets():
    return [
        ("image", NeuronGrid, "to_img"),          # activations -> Nifti1Image
        ("events", record_module, "_events"),     # token decoding for events.tsv
        ("write", RecordingLayout, "write_run"),  # image + events + sidecar files
    ]


# -- FLOPs ------------------------------------------------------------------

def linear_weights_run(model, forward):
    """Number of ``nn.Linear`` weights used per token when ``forward()`` runs."""
    ran = set()
    handles = [
        module.register_forward_hook(lambda mod, args, out, name=name: ran.add(name))
        for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
    ]
    try:
        forward()
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    return sum(modules[name].weight.numel() for name in ran)


def attention_flops_per_token(config, n_layers, mean_context):
    """QK^T and attention x V FLOPs per token at a mean causal context length."""
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not heads or not hidden:
        return 0.0
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return n_layers * 2 * 2 * heads * head_dim * mean_context


# -- the phases -------------------------------------------------------------

def capture_batches(pieces, batch_size, pad_id):
    """The batches ``iter_piece_activations`` forms, as lists of token-id lists.

    A stand-in recorder notes each batch instead of running the model, so the
    plain forward pass sees exactly what the recorder sees.
    """
    class BatchSpy:
        def __init__(self):
            self.batches = []

        def record(self, token_ids, pad_id=0):
            self.batches.append([list(ids) for ids in token_ids])
            return [torch.empty((len(ids), 0)) for ids in token_ids]

    spy = BatchSpy()
    for _ in iter_piece_activations(spy, pieces, batch_size, pad_id):
        pass
    return spy.batches


def plain_forward(model, padded):
    with torch.inference_mode():
        for input_ids, attention_mask in padded:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)


def capture_only(model, pieces, batch_size, pad_id):
    n_tokens = 0
    with ActivationRecorder(model) as recorder:
        for _, act in iter_piece_activations(recorder, pieces, batch_size, pad_id):
            n_tokens += act.shape[0]
    return n_tokens


def record_once(lm, args, compress):
    """One end-to-end ``record`` call into a fresh folder (the caller removes it)."""
    out = Path(tempfile.mkdtemp(prefix="bench-record-", dir=args.tmp_dir))
    try:
        return record(lm, args.input, out, max_tokens=args.max_tokens,
                      batch_size=args.batch_size, limit=args.n_texts,
                      text_column=args.text_column, compress=compress, verbose=0)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def load_back(files, touch):
    """Read every image with nibabel; with ``touch``, also read every value."""
    start = time.perf_counter()
    for path in files:
        data = nib.load(str(path)).get_fdata(dtype=np.float32)
        if touch:
            data.sum(dtype=np.float64)
        del data
    return time.perf_counter() - start


# -- main -------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark llmfbn recording against a plain forward pass "
                    "(throughput, memory, FLOP ceiling, .nii vs .nii.gz).")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT,
                        help=f"texts to record (default: {DEFAULT_INPUT})")
    parser.add_argument("--text-column", help="text column of a .tsv/.csv/.jsonl input "
                                              "(default 'text')")
    parser.add_argument("--model", default="smollm2-135m",
                        help="model name or path for llmfbn.load_model (default smollm2-135m)")
    parser.add_argument("--n-texts", type=int,
                        help="first N non-empty texts (default 256; 16 with --quick)")
    parser.add_argument("--max-tokens", type=int, default=128,
                        help="tokens per text (default 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="default 8")
    parser.add_argument("--repeats", type=int,
                        help="timed repeats per phase (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--tmp-dir", type=Path,
                        help="where recordings are written (default: system temp folder)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny configuration for smoke testing (16 texts, 1 repeat)")
    args = parser.parse_args(argv)
    args.n_texts = args.n_texts or (16 if args.quick else 256)
    args.repeats = args.repeats or (1 if args.quick else 3)
    for name in ("n_texts", "repeats", "max_tokens", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.input.is_file():
        parser.error(f"--input {args.input} does not exist")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join([sys.executable] + sys.argv)
    matmul_seconds = 0.3 if args.quick else 1.0
    rows = {}       # throughput table: name -> dict
    memory = []     # (phase, process peak MB, phase peak MB, current MB)
    # Resetting VmHWM also resets ru_maxrss on Linux, so the process peak is
    # the running maximum of the phase peaks.
    process_peak = [0.0]

    def mark(phase):
        phase_peak = phase_peak_mb()
        process_peak[0] = max(process_peak[0], peak_rss_mb(), phase_peak or 0.0)
        memory.append((phase, process_peak[0], phase_peak, current_rss_mb()))
        reset_phase_peak()
        print(f"  done: {phase} (peak RSS so far {process_peak[0]:.0f} MB)", flush=True)

    print(f"llmfbn {llmfbn.__version__} recording benchmark: {command}", flush=True)
    share = CpuShare()
    time.sleep(0.5)
    _, others, wall = share.others()
    if others is not None and others / wall > 0.1:
        print(f"  warning: other processes used {others / wall:.1f} CPUs in the last "
              f"{wall:.1f} s; if that goes on, every figure will be slower than on an idle "
              f"machine (see 'cpu use' at the end).", flush=True)
    share.start()
    mark("start (imports)")

    # Model and texts.
    start = time.perf_counter()
    lm = load_model(args.model)
    load_seconds = time.perf_counter() - start
    model, tokenizer = lm.model, lm.tokenizer
    mark("load model")

    textset = read_texts(args.input, text_column=args.text_column)
    textset.texts, textset.indices = textset.texts[:args.n_texts], textset.indices[:args.n_texts]
    textset.labels = None
    tokenise_times, (runs, stats) = repeat(
        lambda: plan_runs(tokenizer, textset, max_tokens=args.max_tokens), args.repeats)
    pieces = [run.pieces[0] for run in runs]
    lengths = [len(p.token_ids) for p in pieces]
    n_tokens = sum(lengths)
    pad_id = _pad_id(tokenizer)
    batches = capture_batches(pieces, args.batch_size, pad_id)
    padded = [pad_batch(batch, pad_id) for batch in batches]
    padded_tokens = sum(ids.numel() for ids, _ in padded)
    mean_context = sum(n * (n + 1) / 2 for n in lengths) / n_tokens
    rows["tokenise (plan_runs)"] = {"times": tokenise_times}

    # FLOPs per token, from the linear layers that actually run.
    tiny = [padded[0][0][:1, :4], padded[0][1][:1, :4]]
    plain_weights = linear_weights_run(model, lambda: plain_forward(model, [tiny]))
    record_weights = linear_weights_run(
        model, lambda: capture_only(model, [pieces[0]], 1, pad_id))
    n_layers = model.config.num_hidden_layers
    attention = attention_flops_per_token(model.config, n_layers, mean_context)
    flops = {"plain": 2.0 * plain_weights + attention, "record": 2.0 * record_weights + attention}
    mark("first forward")  # pages in the memory-mapped weights

    # Machine's matmul rate.
    print("Measuring the matmul rate ...", flush=True)
    gflops_big = matmul_gflops(2048, 2048, 2048, matmul_seconds)
    median_batch = int(statistics.median(ids.numel() for ids, _ in padded))
    hidden = model.config.hidden_size
    inter = getattr(model.config, "intermediate_size", 4 * hidden)
    gflops_model = matmul_gflops(median_batch, hidden, inter, matmul_seconds)
    mark("matmul rate")

    # Warm up every path once (first calls allocate and pick kernels).
    print("Warming up ...", flush=True)
    plain_forward(model, padded[:1])
    capture_only(model, pieces[:args.batch_size], args.batch_size, pad_id)
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as warm:
        record(lm, textset.texts[:2], warm, max_tokens=args.max_tokens, verbose=0)
    mark("warm-up")

    print(f"Plain forward x{args.repeats} ...", flush=True)
    rows["plain forward (LM head)"] = {
        "times": repeat(lambda: plain_forward(model, padded), args.repeats)[0],
        "flops": flops["plain"]}
    mark("plain forward")

    print(f"Capture only x{args.repeats} ...", flush=True)
    times, captured = repeat(lambda: capture_only(model, pieces, args.batch_size, pad_id),
                             args.repeats)
    if captured != n_tokens:
        raise RuntimeError(f"capture returned {captured} tokens, expected {n_tokens}")
    rows["capture only (memory)"] = {"times": times, "flops": flops["record"]}
    mark("capture only")

    files = {}
    for compress, ext in ((False, ".nii"), (True, ".nii.gz")):
        print(f"record() {ext} x{args.repeats} ...", flush=True)
        times, parts, recording = [], [], None
        for _ in range(args.repeats):
            if recording is not None:
                shutil.rmtree(recording.out_dir, ignore_errors=True)
            with timed_calls(record_targets()) as spent:
                start = time.perf_counter()
                recording = record_once(lm, args, compress)
                times.append(time.perf_counter() - start)
            parts.append(dict(spent))
        best = min(range(len(times)), key=times.__getitem__)
        try:
            if recording.summary["n_tokens"] != n_tokens:
                raise RuntimeError(f"record wrote {recording.summary['n_tokens']} tokens, "
                                   f"expected {n_tokens}")
            bold = recording.bold_files
            files[ext] = {
                "record": times[best], **parts[best],
                "bold_bytes": sum(p.stat().st_size for p in bold),
                "all_bytes": folder_bytes(recording.out_dir), "n_files": len(bold),
                "load": load_back(bold, touch=False),
                "load_touch": load_back(bold, touch=True),
                "lazy": isinstance(nib.load(str(bold[0])).get_fdata(dtype=np.float32),
                                   np.memmap),
            }
        finally:
            shutil.rmtree(recording.out_dir, ignore_errors=True)
        rows[f"record() {ext} (end to end)"] = {"times": times, "flops": flops["record"]}
        mark(f"record {ext}")

    # Measured again at the end (best of the two): one busy moment elsewhere on
    # the machine would otherwise lower the ceiling of every figure.
    print("Measuring the matmul rate again ...", flush=True)
    gflops_big = max(gflops_big, matmul_gflops(2048, 2048, 2048, matmul_seconds))
    gflops_model = max(gflops_model,
                       matmul_gflops(median_batch, hidden, inter, matmul_seconds))
    own, others, wall = share.others()
    cpu = {"wall": wall, "own": own, "others": others}
    report(args, command, lm, stats, n_tokens, lengths, padded_tokens, len(padded),
           mean_context, load_seconds, flops, gflops_big, gflops_model, median_batch,
           hidden, inter, rows, files, memory, cpu)


# -- report -----------------------------------------------------------------

def report(args, command, lm, stats, n_tokens, lengths, padded_tokens, n_batches,
           mean_context, load_seconds, flops, gflops_big, gflops_model, median_batch,
           hidden, inter, rows, files, memory, cpu):
    config = lm.model.config
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    import transformers

    def rate(times):
        return n_tokens / min(times), n_tokens / statistics.median(times)

    print()
    print("=" * 78)
    print("llmfbn recording benchmark")
    print("=" * 78)
    print(f"command     : {command}")
    print(f"cpu         : {cpu_model()} ({os.cpu_count()} logical CPUs, "
          f"{affinity} usable)")
    print(f"torch       : {torch.__version__}, {torch.get_num_threads()} threads; "
          f"transformers {transformers.__version__}, nibabel {nib.__version__}, "
          f"numpy {np.__version__}, python {platform.python_version()}")
    print(f"model       : {lm.name} ({config.model_type}, {config.num_hidden_layers} layers, "
          f"hidden {hidden}, MLP {inter}), "
          f"{next(lm.model.parameters()).dtype}, loaded in {load_seconds:.1f} s")
    print(f"input       : {args.input} -- {stats['n_texts']} texts, {n_tokens} tokens "
          f"(mean {np.mean(lengths):.1f}, max {max(lengths)} per text; "
          f"{stats['n_truncated']} truncated at {args.max_tokens})")
    print(f"batches     : {n_batches} of <= {args.batch_size} texts, right-padded; "
          f"padding {100 * (1 - n_tokens / padded_tokens):.1f}% of "
          f"{padded_tokens} positions (only real tokens are counted)")
    print(f"repeats     : {args.repeats} per phase, after one warm-up")
    others = ("n/a" if cpu["others"] is None else
              f"{cpu['others']:.1f} s ({cpu['others'] / cpu['wall']:.2f} CPUs on average)")
    print(f"cpu use     : this process {cpu['own']:.0f} s CPU in {cpu['wall']:.0f} s wall "
          f"({cpu['own'] / cpu['wall']:.2f} CPUs); other processes meanwhile {others}")
    if cpu["others"] is not None and cpu["others"] / cpu["wall"] > 0.1:
        print("  WARNING: the machine was shared during the run; torch's threads slow down "
              "many times over on shared cores, so these figures understate it.")

    print()
    print("FLOP-bound ceiling")
    print(f"  fp32 matmul 2048x2048x2048: {gflops_big:.1f} GFLOP/s (best of start and end; "
          f"the ceiling below)")
    print(f"  fp32 matmul {median_batch}x{hidden}x{inter} (one batch through an MLP "
          f"up projection): {gflops_model:.1f} GFLOP/s")
    attention = attention_flops_per_token(config, config.num_hidden_layers, mean_context)
    for key, what in (("plain", "plain forward (all linears + LM head)"),
                      ("record", "recording (stops at last layer's neurons)")):
        print(f"  FLOPs/token, {what:<42}: {flops[key] / 1e6:7.1f} M "
              f"-> ceiling {gflops_big * 1e9 / flops[key]:7.0f} tok/s")
    print(f"  (attention products at mean causal context {mean_context:.1f}: "
          f"{attention / 1e6:.2f} MFLOP/token, included)")

    plain_best = rate(rows["plain forward (LM head)"]["times"])[0]
    print()
    print("Throughput (real tokens/s)")
    header = (f"  {'phase':<28}{'best':>9}{'median':>9}{'s (best)':>10}"
              f"{'vs plain':>10}{'GFLOP/s':>9}{'of ceil.':>9}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, row in rows.items():
        best, median = rate(row["times"])
        line = f"  {name:<28}{best:9.0f}{median:9.0f}{min(row['times']):10.3f}"
        if "flops" in row:
            achieved = best * row["flops"] / 1e9
            line += f"{best / plain_best:9.2f}x{achieved:9.1f}{achieved / gflops_big:8.0%}"
        print(line)
    ratio = rate(rows["record() .nii (end to end)"]["times"])[0] / plain_best
    print(f"  record(.nii) / plain forward = {ratio:.2f}x (target >= {TARGET_RATIO}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}); 'of ceil.' is the achieved "
          f"GFLOP/s of each path's own FLOPs over the 2048 matmul rate")

    print()
    print("Files (best repeat; load = nib.load(f).get_fdata(dtype=float32) over all runs, "
          "page cache warm)")
    header = (f"  {'format':<8}{'runs':>6}{'images MB':>11}{'folder MB':>11}{'record s':>10}"
              f"{'image s':>9}{'events s':>10}{'write s':>9}{'load s':>8}{'+read s':>9}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for ext, f in files.items():
        print(f"  {ext:<8}{f['n_files']:6d}{f['bold_bytes'] / 1e6:11.1f}"
              f"{f['all_bytes'] / 1e6:11.1f}{f['record']:10.2f}{f['image']:9.2f}"
              f"{f['events']:10.2f}{f['write']:9.2f}{f['load']:8.2f}{f['load_touch']:9.2f}")
    print("  image s: NeuronGrid.to_img; events s: token decoding for events.tsv; write s: "
          "RecordingLayout.write_run (image, events, sidecar files);")
    print("  +read s: get_fdata followed by reading every value (sum). "
          + ", ".join(f"{ext} get_fdata returns {'a memory map' if f['lazy'] else 'an array'}"
                      for ext, f in files.items()) + ".")
    if len(files) == 2:
        nii, gz = files[".nii"], files[".nii.gz"]
        print(f"  .nii.gz is {100 * (1 - gz['bold_bytes'] / nii['bold_bytes']):.1f}% smaller, "
              f"records {gz['record'] / nii['record']:.2f}x slower, "
              f"loads {gz['load_touch'] / max(nii['load_touch'], 1e-9):.2f}x slower.")

    print()
    print("Memory (RSS, MB; weights are memory-mapped, so they count from the first forward)")
    print(f"  {'after phase':<22}{'process peak':>14}{'phase peak':>12}{'current':>10}")
    for phase, process_peak, phase_peak, current in memory:
        shown = ["n/a" if x is None else f"{x:.0f}" for x in (phase_peak, current)]
        print(f"  {phase:<22}{process_peak:14.0f}{shown[0]:>12}{shown[1]:>10}")


if __name__ == "__main__":
    main()
