"""``llmfbn glm``: a task-GLM localizer on a labelled recording."""

from pathlib import Path

from llmfbn.cli._checks import check_finite, check_int_at_least, check_recording_folder

HEIGHT_CONTROL_CHOICES = ("fdr", "fpr", "bonferroni", "none")


def add_glm_parser(subparsers):
    p = subparsers.add_parser(
        "glm", help="task-GLM localizer: neurons selective for a contrast of text labels",
        description="Fit nilearn's FirstLevelModel per run (tokens are scans, one indicator "
                    "per label, no HRF) and SecondLevelModel across runs (texts are the "
                    "random effect); threshold the z-map of each contrast into a network. "
                    "The recording needs labels: `llmfbn record ... --label-column COLUMN`.")
    p.add_argument("in_dir", type=Path, help="recording folder (from `llmfbn record "
                                             "--label-column`)")
    p.add_argument("--contrast", action="append", required=True,
                   help="e.g. 'positive-negative', 'positive', '1-0', 'a+b-2*c' "
                        "(repeatable: one network per contrast)")
    p.add_argument("--out", required=True, type=Path, help="GLM folder to write")
    p.add_argument("--task", help="only the runs of this task")
    p.add_argument("--height-control", default="fdr", choices=HEIGHT_CONTROL_CHOICES,
                   help="multiple-comparison control over neurons (default fdr)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="FDR q, or error rate for fpr/bonferroni (default 0.05)")
    p.add_argument("--threshold", type=float,
                   help="z threshold (overrides --height-control)")
    p.add_argument("--two-sided", action="store_true",
                   help="select |z| (default: neurons MORE active in the contrast)")
    p.add_argument("--top-k", type=int,
                   help="keep at most the K neurons of largest z among those passing the "
                        "threshold (a localizer at FDR can hold a sixth of all neurons)")
    p.add_argument("--n-top-tokens", type=int, default=10,
                   help="tokens kept per network where it is most active (default 10)")
    p.add_argument("--drift-model", choices=("cosine", "polynomial"),
                   help="drift regressors over token position (default none)")
    p.add_argument("--high-pass", type=float, default=0.01,
                   help="cosine drift cut-off in cycles per token (default 0.01)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing GLM folder (never a folder of another kind)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_glm)


def _cmd_glm(args):
    from llmfbn.glm import TaskGLM, check_threshold_params
    from llmfbn.io import check_output_folder, map_file_names
    from llmfbn.networks import top_tokens

    # every cheap check before any image is read
    check_finite(args.threshold, "--threshold")
    check_int_at_least(args.top_k, "--top-k")
    check_int_at_least(args.n_top_tokens, "--n-top-tokens")
    check_finite(args.high_pass, "--high-pass", 0, None, open_interval=True)
    height_control = None if args.height_control == "none" else args.height_control
    height_control = check_threshold_params(height_control, args.alpha, args.threshold,
                                            args.two_sided)
    check_recording_folder(args.in_dir)
    check_output_folder(args.out, "glm", overwrite=args.force)
    glm = TaskGLM(drift_model=args.drift_model, high_pass=args.high_pass, task=args.task,
                  verbose=0 if args.quiet else 1)
    # Labels, contrasts and run counts are checked before any image is read;
    # nothing is written until every contrast is computed.
    glm.fit(args.in_dir, contrasts=args.contrast)
    result = glm.localize(args.contrast, height_control=height_control, alpha=args.alpha,
                          threshold=args.threshold, two_sided=args.two_sided, top_k=args.top_k)
    # Top tokens as `llmfbn networks` finds them, on the GLM's runs; an empty network has none.
    tokens = top_tokens(result.networks, result.run_paths, n_tokens=args.n_top_tokens)
    result.networks.top_tokens = [rows if size else []
                                  for rows, size in zip(tokens, result.networks.sizes)]
    out = result.save(args.out, overwrite=args.force).resolve()
    how = ("given threshold" if height_control is None
           else f"{height_control.upper()} alpha={args.alpha:g}")
    stat = "|z|" if args.two_sided else "z"
    zmap_files = map_file_names(result.contrasts)
    for k, contrast in enumerate(result.contrasts):
        entry = result.info["contrasts"][k]
        if entry["design"] == "within-run":
            runs = f"{len(entry['n_runs']) and max(entry['n_runs'].values())} paired runs"
        else:
            runs = " vs ".join(f"{n} {c!r}" for c, n in entry["n_runs"].items()) + " runs"
        layer, unit, z = result.peak(k)
        kept = (f"{int(result.n_selected[k])} of {entry['n_passing']} passing kept (--top-k)"
                if int(result.n_selected[k]) < entry["n_passing"]
                else f"{int(result.n_selected[k])} neurons selected")
        print(f"{contrast}: {entry['design']} ({runs}); {stat} >= {result.thresholds[k]:.3f} "
              f"({how}); {kept}; peak layer {layer} "
              f"unit {unit} (z = {z:.2f}); {out / zmap_files[contrast]}")
        rows = result.networks.top_tokens[k]
        if rows:
            print("  top tokens: " + " | ".join(r["context"] for r in rows[:3]))
    print(f"Wrote {out}: networks (components.nii.gz, networks.nii.gz, networks.json), "
          f"glm.json; use it with `llmfbn intervene --networks {out}`")
