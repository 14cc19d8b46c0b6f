"""Command line: ``llmfbn record | networks | consistency | glm | evaluate | intervene |
prune | fingerprint | report | models | demo``.

One module per group of commands. Bad input ends with one line
``llmfbn: error: ...`` and exit status 2, never a traceback. Importing this
module changes nothing; :func:`main` sets offline mode (``HF_HUB_OFFLINE=1``
unless already set) before any model library loads.
"""

import argparse
import os
import sys
import warnings

from llmfbn import __version__
from llmfbn.cli._fingerprint import add_fingerprint_parser
from llmfbn.cli._glm import add_glm_parser
from llmfbn.cli._info import add_info_parsers
from llmfbn.cli._intervene import add_intervention_parsers
from llmfbn.cli._networks import add_networks_parsers
from llmfbn.cli._prune import add_prune_parser
from llmfbn.cli._record import add_record_parser
from llmfbn.cli._report import add_report_parser
from llmfbn.cluster import TaskFailedError

__all__ = ["build_parser", "main"]

#: Errors that are the user's input, not a bug: one line, exit status 2.
#: llmfbn.io's errors subclass ValueError (FormatError, FolderKindError,
#: ResumeMismatchError) or OSError (OutputExistsError, OutputLockedError); a task
#: that failed on a Dask cluster names its run or evaluation (TaskFailedError).
USER_ERRORS = (ValueError, TypeError, OSError, ModuleNotFoundError, FloatingPointError,
               TaskFailedError)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="llmfbn", description="Scan a large language model the way you scan a brain.")
    parser.add_argument("--version", action="version", version=f"llmfbn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_record_parser(subparsers)
    add_networks_parsers(subparsers)
    add_glm_parser(subparsers)
    add_intervention_parsers(subparsers)
    add_prune_parser(subparsers)
    add_fingerprint_parser(subparsers)
    add_report_parser(subparsers)
    add_info_parsers(subparsers)
    return parser


#: Library words -> the flags that say the same on the command line.
_API_TO_FLAGS = (("pass overwrite=True", "pass --force"), ("Pass overwrite=True", "Pass --force"),
                 ("overwrite=True", "--force"),
                 ("allow_other_model=True", "--allow-other-model"),
                 ("another out_csv", "another --out"),
                 ("'device' must be", "'--device' must be"),
                 ("'scheduler'", "'--scheduler'"))


def error_line(err):
    """The one line ``llmfbn: error: ...`` for ``err``, in the CLI's terms (flags)."""
    message = " ".join(str(err).split()) or type(err).__name__
    for api, flag in _API_TO_FLAGS:
        message = message.replace(api, flag)
    return f"llmfbn: error: {message}"


def main(argv=None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
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
    except USER_ERRORS as err:
        print(error_line(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmfbn: interrupted; finished runs are kept, re-run to resume.", file=sys.stderr)
        return 130
    return 0
