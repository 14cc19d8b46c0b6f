"""Read the texts to record: .txt, .jsonl, .csv/.tsv files or a list of strings."""

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TextSet", "check_text_source", "read_texts"]

PLAIN_TEXT_SUFFIXES = (".txt", ".raw")
SUPPORTED_SUFFIXES = PLAIN_TEXT_SUFFIXES + (".jsonl", ".csv", ".tsv")


@dataclass
class TextSet:
    """Texts with optional labels.

    Attributes
    ----------
    texts : list of str
        The non-empty texts, in input order.
    labels : list of str or None
        One label per text, when a label column was given.
    indices : list of int
        Position of each text in the input (0-based; lines or rows).
    n_skipped_empty : int
        Empty or whitespace-only texts that were skipped.
    source : str
        The file path, or ``"<list>"``.
    """

    texts: list
    labels: object
    indices: list
    n_skipped_empty: int
    source: str

    def __len__(self):
        return len(self.texts)


def _read_rows(path, text_column, label_column):
    suffix = path.suffix.lower()
    if suffix in PLAIN_TEXT_SUFFIXES:
        if label_column is not None:
            raise ValueError(
                f"'label_column' needs a .jsonl, .csv or .tsv input; {path.name} is plain text."
            )
        with open(path, encoding="utf-8") as f:
            return [(line.rstrip("\r\n"), None) for line in f]
    text_column = text_column or "text"
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number} is not valid JSON: {err.msg}.") from err
                rows.append(record)
        fields = sorted(rows[0]) if rows else []
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE
                                    if delimiter == "\t" else csv.QUOTE_MINIMAL)
            rows = list(reader)
            fields = reader.fieldnames or []
    for column, what in ((text_column, "text_column"), (label_column, "label_column")):
        if column is not None and rows and column not in fields:
            raise ValueError(
                f"{path.name} has no column {column!r} ('{what}'). "
                f"Its columns are {list(fields)}."
            )
    out = []
    for row in rows:
        text = row.get(text_column)
        label = row.get(label_column) if label_column is not None else None
        out.append(("" if text is None else str(text), None if label is None else str(label)))
    return out


def check_text_source(source):
    """Check cheaply (without reading it) that ``source`` is a supported input.

    Raises ValueError for an unsupported suffix, FileNotFoundError for a
    missing file, TypeError for anything but a path or a list of str.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise ValueError(
                f"Input must be one of {SUPPORTED_SUFFIXES} files. {path.name!r} was provided."
            )
        if not path.is_file():
            raise FileNotFoundError(f"Input file {path} does not exist.")
    elif not isinstance(source, (list, tuple)):
        raise TypeError(
            f"'source' must be a path or a list of str. {type(source).__name__} was provided."
        )


def read_texts(source, text_column=None, label_column=None, labels=None):
    """Read texts from a file or a list, skipping empty ones with a warning.

    Parameters
    ----------
    source : str, Path or list of str
        ``.txt`` or ``.raw`` (one text per line, e.g. WikiText-2's
        ``wiki.test.raw``), ``.jsonl`` (one JSON object per line),
        ``.csv`` or ``.tsv`` (with a header row); or the texts themselves.
    text_column : str, optional
        Field holding the text in .jsonl/.csv/.tsv input. Default ``"text"``.
    label_column : str, optional
        Field holding a label (condition) per text.
    labels : list, optional
        Labels for a list ``source``.

    Returns
    -------
    TextSet
    """
    check_text_source(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        rows = _read_rows(path, text_column, label_column)
        name = str(path)
    elif isinstance(source, (list, tuple)):
        if labels is not None and len(labels) != len(source):
            raise ValueError(
                f"'labels' must have one label per text: {len(source)} texts, "
                f"{len(labels)} labels were provided."
            )
        if not all(isinstance(t, str) for t in source):
            raise TypeError("'source' must be a list of str.")
        label_list = [None] * len(source) if labels is None else [str(x) for x in labels]
        rows = list(zip(source, label_list))
        name = "<list>"
    if not rows:
        raise ValueError(f"Input {name} holds no texts.")
    kept = [(i, text, label) for i, (text, label) in enumerate(rows) if text.strip()]
    n_skipped = len(rows) - len(kept)
    if not kept:
        raise ValueError(f"Input {name} holds no texts: all {len(rows)} are empty or whitespace.")
    if n_skipped:
        warnings.warn(f"Skipped {n_skipped} empty or whitespace-only texts in {name}.",
                      stacklevel=2)
    has_labels = label_column is not None or labels is not None
    return TextSet(
        texts=[text for _, text, _ in kept],
        labels=[label for _, _, label in kept] if has_labels else None,
        indices=[i for i, _, _ in kept],
        n_skipped_empty=n_skipped,
        source=name,
    )
