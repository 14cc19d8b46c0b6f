"""Command line: ``llmfbn record | networks | consistency | glm | evaluate | intervene |
report | models | demo``.

One module per group of commands. Bad input ends with one line
``llmfbn: error: ...`` and exit status 2, never a traceback.
"""

import argparse
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmfbn import __version__  # noqa: E402
from llmfbn.cli._glm import add_glm_parser  # noqa: E402
from llmfbn.cli._info import add_info_parsers  # noqa: E402
from llmfbn.cli._intervene import add_intervention_parsers  # noqa: E402
from llmfbn.cli._networks import add_networks_parsers  # noqa: E402
from llmfbn.cli._record import add_record_parser  # noqa: E402
from llmfbn.cli._report import add_report_parser  # noqa: E402

__all__ = ["build_parser", "main"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="llmfbn", description="Scan a large language model the way you scan a brain.")
    parser.add_argument("--version", action="version", version=f"llmfbn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_record_parser(subparsers)
    add_networks_parsers(subparsers)
    add_glm_parser(subparsers)
    add_intervention_parsers(subparsers)
    add_report_parser(subparsers)
    add_info_parsers(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *a, **k: print(
                f"llmfbn: warning: {message}", file=sys.stderr)
            args.func(args)
    except (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError,
            FloatingPointError) as err:
        print(f"llmfbn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmfbn: interrupted; finished runs are kept, re-run to resume.", file=sys.stderr)
        return 130
    return 0
