"""``llmfbn models`` and ``llmfbn demo``."""

from pathlib import Path

from llmfbn.cli._record import print_recording

DEMO_TEXTS = Path(__file__).resolve().parents[2] / "data" / "probe_texts.tsv"


def add_info_parsers(subparsers):
    p = subparsers.add_parser("models", help="list built-in models and supported architectures")
    p.set_defaults(func=_cmd_models)
    p = subparsers.add_parser("demo", help="record the built-in probe texts with SmolLM2")
    p.add_argument("--out", type=Path, default=Path("results/demo"),
                   help="output folder (default results/demo)")
    p.set_defaults(func=_cmd_demo)


def _cmd_models(args):
    from llmfbn.models import ARCHITECTURES, describe_builtins

    print("Built-in models (no download needed):")
    for name, description in describe_builtins().items():
        print(f"  {name:<16} {description}")
    print("Also accepted: a local Hugging Face model folder, a local .gguf file, or a hub "
          "id already in the local cache.")
    print("Architectures with known neuron locations: " + ", ".join(sorted(ARCHITECTURES)))


def _cmd_demo(args):
    """Record the built-in probe texts with the embedded model; show nilearn reading them."""
    import numpy as np
    from nilearn.maskers import NiftiMasker

    from llmfbn.models import load_model
    from llmfbn.recording import record

    model = load_model("smollm2-135m", verbose=1)
    recording = record(model, DEMO_TEXTS, args.out, task="probes",
                       label_column="condition", max_tokens=64, verbose=1)
    print_recording(recording)
    masker = NiftiMasker(mask_img=str(recording.mask_file), standardize=None).fit()
    matrix = masker.transform(str(recording.bold_files[0]))
    neurons = recording.grid.masked_to_neurons(matrix)
    peak = np.unravel_index(np.abs(neurons).argmax(), neurons.shape)
    print(f"nilearn's NiftiMasker reads run 1 as a {matrix.shape[0]} tokens x "
          f"{matrix.shape[1]} neurons matrix; its strongest neuron is layer {peak[1]}, "
          f"unit {peak[2]} ({neurons[peak]:.2f} at token {peak[0]}).")
