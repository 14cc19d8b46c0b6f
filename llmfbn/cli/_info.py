"""``llmfbn models`` and ``llmfbn demo``."""

from pathlib import Path

from llmfbn.cli._record import print_recording


def add_info_parsers(subparsers):
    p = subparsers.add_parser("models", help="list built-in models and supported architectures")
    p.set_defaults(func=_cmd_models)
    p = subparsers.add_parser(
        "demo", help="the whole pipeline on the built-in probe texts with SmolLM2")
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


def _check_demo_outputs(out):
    """Before the model loads: every output under ``out`` may be written.

    The recording is resumed; the networks, GLM, CSV and report of an earlier
    demo are replaced. Anything else in their place (a file, a folder of
    another kind) is refused and nothing is written.
    """
    from llmfbn.io import FolderKindError, check_output_file, check_output_folder

    if out.exists() and not out.is_dir():
        raise FolderKindError(f"--out {out} is a file; the demo writes a folder there.")
    check_output_folder(out / "recording", "recording", resume=True)
    check_output_folder(out / "networks", "networks", overwrite=True)
    check_output_folder(out / "glm", "glm", overwrite=True)
    check_output_file(out / "inhibit.csv", overwrite=True)
    check_output_file(out / "report.html", overwrite=True)


def _cmd_demo(args):
    """The whole pipeline on the built-in probe texts with the embedded model.

    record -> networks (CanICA) -> task GLM (positive - negative, code - fact) -> one
    network inhibited against matched random controls (perplexity on the
    held-out probe text) -> one HTML report. Every step writes under
    ``args.out``; a rerun reuses the recording and rewrites the rest.
    """
    import numpy as np

    from llmfbn.datasets import load_probe_heldout, load_probe_texts
    from llmfbn.glm import TaskGLM
    from llmfbn.intervention import intervention_sweep, make_evaluation
    from llmfbn.models import load_model
    from llmfbn.networks import NetworkDecomposition, top_tokens
    from llmfbn.recording import record
    from llmfbn.reports import make_report

    out = Path(args.out)
    _check_demo_outputs(out)
    probes, held_out = load_probe_texts(), load_probe_heldout()
    model = load_model("smollm2-135m", verbose=1)

    print("\n[1/5] Recording the probe texts (every MLP neuron at every token)")
    recording = record(model, probes.path, out / "recording", task="probes",
                       label_column="condition", max_tokens=64, verbose=1)
    print_recording(recording)

    print("\n[2/5] Functional networks (nilearn CanICA, 10 components)")
    estimator = NetworkDecomposition(n_components=10, random_state=0, verbose=0)
    estimator.fit(out / "recording")
    networks = estimator.networks_
    networks.top_tokens = top_tokens(networks, estimator.run_paths_, n_tokens=8)
    estimator.save(out / "networks", overwrite=True)
    print(f"{len(networks)} networks of {int(np.min(networks.sizes))} to "
          f"{int(np.max(networks.sizes))} neurons in {out / 'networks'}")

    print("\n[3/5] Task GLM localizer: positive vs negative texts, code vs facts")
    localizer = TaskGLM().fit(out / "recording").localize(["positive-negative", "code-fact"])
    localizer.save(out / "glm", overwrite=True)
    for contrast, n_selected in zip(localizer.contrasts, localizer.networks.sizes):
        print(f"{contrast}: {n_selected} neurons selective at FDR 0.05")
    print(f"z-maps and masks in {out / 'glm'}")

    target = int(np.argmax(networks.sizes))
    print(f"\n[4/5] Inhibiting network {target} ({networks.sizes[target]} neurons) against "
          f"5 matched random controls: perplexity on the held-out probe text")
    results_csv = out / "inhibit.csv"
    # The networks were refitted: old rows do not apply, so the CSV is replaced.
    frame = intervention_sweep(model, networks, [make_evaluation("text", held_out.path)],
                               network_ids=[target], n_controls=5, out_csv=results_csv,
                               overwrite=True, verbose=0)
    row = frame[frame["network"].astype(str) == str(target)].iloc[0]
    print(f"perplexity {row['value']:.2f} with network {target} inhibited; controls "
          f"{row['control_mean']:.2f} [{row['control_ci_low']:.2f}, "
          f"{row['control_ci_high']:.2f}]; unmodified {row['baseline']:.2f}")

    print("\n[5/5] Report")
    report = make_report([out / "recording", out / "networks", out / "glm", results_csv],
                         out / "report.html", overwrite=True, verbose=0)
    print(f"\nOpen the report: {report.resolve()}")
