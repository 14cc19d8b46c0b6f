"""Where the datasets live (one resolver), and the provenance text that goes with them."""

import os
import re
from pathlib import Path

__all__ = ["DATA_ENV", "LAYOUT_EXAMPLE", "dataset_file", "describe", "get_data_dir"]

#: Environment variable naming the folder that holds one sub-folder per dataset.
DATA_ENV = "LLMFBN_DATA"

#: What every data folder looks like, for error messages.
LAYOUT_EXAMPLE = "<folder>/sst2/train.tsv"

_MARKUP = re.compile(r"\*\*|`")


def get_data_dir(data_dir=None):
    """The folder holding the standard datasets (never downloaded).

    Parameters
    ----------
    data_dir : str or path, optional
        A folder laid out like the team's ``shared/data``: one sub-folder per
        dataset (``<data_dir>/sst2/train.tsv``,
        ``<data_dir>/wikitext-2-raw/wiki.test.raw``, ...). Defaults to the
        environment variable ``LLMFBN_DATA``.

    Returns
    -------
    pathlib.Path
        The folder, ``~`` expanded.

    Raises
    ------
    ValueError
        When ``data_dir`` is None and ``LLMFBN_DATA`` is not set (or empty).
    FileNotFoundError
        When the folder does not exist.
    """
    return _data_dir(data_dir, "pass 'data_dir='")


def _data_dir(data_dir, ask):
    source = "data_dir"
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or None
        source = f"${DATA_ENV}"
        if data_dir is None:
            raise ValueError(
                "The standard datasets are not bundled with llmfbn and are never "
                f"downloaded: {ask}, or set {DATA_ENV} to a folder laid out "
                f"like {LAYOUT_EXAMPLE}."
            )
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(
            f"'data_dir' must be a str or a path. {type(data_dir).__name__} was provided."
        )
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"'{source}' must be an existing folder laid out like {LAYOUT_EXAMPLE}. "
            f"{str(folder)!r} is not a folder."
        )
    return folder


def dataset_file(relative, data_dir=None, path=None, caller=None, data_dir_param="data_dir"):
    """Resolve a dataset's main file from ``path``, ``data_dir`` or ``$LLMFBN_DATA``.

    The one resolver of dataset files: the ``load_*`` loaders and
    :func:`llmfbn.evaluation.load_task` all go through it.

    Parameters
    ----------
    relative : str
        The file below the data folder, e.g. ``"sst2/train.tsv"``.
    data_dir : str or path, optional
        See :func:`get_data_dir`; ignored when ``path`` is given.
    path : str or path, optional
        The file itself, or a folder holding a file named like ``relative``'s
        last part.
    caller : str, optional
        Who asks (``"load_sst2()"``, ``"Task 'sst2'"``), for error messages.
    data_dir_param : str or None, default "data_dir"
        The caller's name for ``data_dir``, for error messages; None when it
        has no such parameter (``data_dir`` is then None).

    Returns
    -------
    pathlib.Path
    """
    relative = Path(relative)
    who = f"{caller} " if caller else ""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"'path' must be a str or a path. {type(path).__name__} was provided.")
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / relative.name
        if not path.is_file():
            raise FileNotFoundError(
                f"{who}reads {relative.name} ('path': the file, or a folder holding it). "
                f"{str(path)!r} does not exist."
            )
        return path.resolve()
    ask = "pass 'path=' (the file or its folder)"
    if data_dir_param is not None:
        ask = f"{ask} or '{data_dir_param}='"
    folder = _data_dir(data_dir, f"{who}reads {relative.as_posix()}; {ask}")
    path = folder.resolve() / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{who}expects the file {path} (<data_dir>/{relative.as_posix()}). "
            "It does not exist."
        )
    return path


def provenance_summary(folder):
    """Title and first prose paragraph of ``folder/PROVENANCE.md``, or None.

    Headings, tables and bullet lists are skipped; Markdown ``**`` and
    backticks are removed and the paragraph's lines joined with spaces.
    """
    path = Path(folder) / "PROVENANCE.md"
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    title = next((ln.lstrip("#").strip() for ln in lines if ln.startswith("# ")), None)
    blocks, block = [], []
    for line in lines + [""]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if block:
                blocks.append(block)
            block = []
        else:
            block.append(stripped)
    paragraph = next((b for b in blocks if not b[0].startswith(("|", "* ", "- ", "```"))),
                     None)
    parts = [p for p in (title, paragraph and " ".join(paragraph)) if p]
    if not parts:
        return None
    text = _MARKUP.sub("", ". ".join(p.rstrip(".") for p in parts) + ".")
    return f"Provenance ({path}): {text}"


def describe(summary, folder=None):
    """``summary``, followed by the provenance paragraph found in ``folder``."""
    summary = " ".join(summary.split())
    extra = provenance_summary(folder) if folder is not None else None
    return summary if extra is None else f"{summary}\n\n{extra}"
