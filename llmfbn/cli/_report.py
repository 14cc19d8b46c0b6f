"""``llmfbn report``."""

from pathlib import Path


def add_report_parser(subparsers):
    p = subparsers.add_parser(
        "report", help="one self-contained HTML report of recordings, networks, GLM, results",
        description="Write one HTML file (figures embedded, nothing else needed to open it) "
                    "from recording, networks and GLM folders, consistency JSON, "
                    "intervention CSV files and pruned model folders (pruning.json only; "
                    "no weights loaded) of one model, or folders holding them.")
    p.add_argument("paths", type=Path, nargs="+", metavar="RUN_DIR",
                   help="folders or files written by llmfbn")
    p.add_argument("--out", required=True, type=Path, help="HTML file to write")
    p.add_argument("--max-networks", type=int,
                   help="show at most this many network maps per networks folder")
    p.add_argument("--connectivity-runs", type=int, default=50,
                   help="runs of a recording used for network connectivity (default 50)")
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args):
    from llmfbn._utils import check_positive_int
    from llmfbn.io import check_output_file
    from llmfbn.reports import make_report
    from llmfbn.reports._report import REPORT_SUFFIXES

    if args.out.suffix.lower() not in REPORT_SUFFIXES:
        raise ValueError(f"'--out' must be an .html file. {str(args.out)!r} was provided.")
    check_output_file(args.out, overwrite=args.force, what="report")
    check_positive_int(args.max_networks, "--max-networks", allow_none=True)
    check_positive_int(args.connectivity_runs, "--connectivity-runs")
    # make_report recognises and checks every input before drawing anything
    out = make_report(args.paths, args.out, max_networks=args.max_networks,
                      connectivity_runs=args.connectivity_runs, overwrite=args.force,
                      verbose=0 if args.quiet else 1)
    print(f"Report: {out.resolve()}")
