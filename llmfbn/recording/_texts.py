"""Read the texts to record: .txt, .jsonl, .csv/.tsv files or a list of strings."""

import csv
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from llmfbn._utils import check_choice, check_positive_int
from llmfbn.datasets._wikitext import is_wikitext_file, parse_wikitext

__all__ = ["TextSet", "check_text_source", "parse_label_names", "read_texts", "select_texts"]

PLAIN_TEXT_SUFFIXES = (".txt", ".raw", ".tokens")
SUPPORTED_SUFFIXES = PLAIN_TEXT_SUFFIXES + (".jsonl", ".csv", ".tsv")
#: Readers of plain-text files; "auto" is "wikitext" for WikiText's own file
#: names (``wiki.test.raw``, ``wiki.train.tokens``, ...) and "lines" otherwise.
INPUT_FORMATS = ("auto", "lines", "wikitext", "wikitext-articles")
#: Several text columns are joined into one text with this separator, in the given order.
TEXT_JOINER = "\n"
STRATIFY_CHOICES = ("label",)
#: The events' trial_type of unlabelled tokens: not a usable label name.
_NO_LABEL = "token"
#: A label name usable as a condition in a GLM contrast ("positive-negative").
_LABEL_NAME = re.compile(r"^[^\s+\-*,=]+$")


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
        Position of each text in the input (0-based): the line of a plain-text
        file (for WikiText, the paragraph's line or the article title's line),
        the record of a .jsonl file, the data row of a .csv/.tsv file, the
        item of a list.
    n_skipped_empty : int
        Empty or whitespace-only texts that were skipped.
    source : str
        The file path, or ``"<list>"``.
    n_in_input : int
        Texts the reader offered, empty ones included (before any selection):
        lines of a plain-text file, records of a .jsonl file (blank lines are
        no record), data rows of a .csv/.tsv file, items of a list, and for
        WikiText the paragraphs (``"wikitext"``) or articles
        (``"wikitext-articles"``): headings and blank lines are boundaries,
        not texts.
    input_format : str
        The reader used: ``"lines"``, ``"wikitext"``, ``"wikitext-articles"``,
        ``"jsonl"``, ``"csv"``, ``"tsv"`` or ``"list"``.
    n_headings : int
        WikiText heading lines read as boundaries (0 for other formats).
    selection : dict or None
        How the texts were selected by :func:`select_texts` (None: all).
    """

    texts: list
    labels: object
    indices: list
    n_skipped_empty: int
    source: str
    n_in_input: int = None
    input_format: str = "list"
    n_headings: int = 0
    selection: object = None
    label_names: object = field(default=None)

    def __len__(self):
        return len(self.texts)


def _plain_format(path, input_format):
    if input_format == "auto":
        return "wikitext" if is_wikitext_file(path) else "lines"
    return input_format


def _read_plain(path, input_format):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    if input_format == "lines":
        return [(line, None) for line in lines], list(range(len(lines))), 0
    articles, n_headings = parse_wikitext(lines)
    if input_format == "wikitext":
        pairs = [pair for article in articles for pair in article.paragraphs]
        return [(text, None) for _, text in pairs], [line for line, _ in pairs], n_headings
    articles = [a for a in articles if a.paragraphs]
    return ([(TEXT_JOINER.join(text for _, text in a.paragraphs), None) for a in articles],
            [a.line if a.line >= 0 else a.paragraphs[0][0] for a in articles], n_headings)


def _columns(text_column):
    if text_column is None:
        return ["text"]
    columns = [text_column] if isinstance(text_column, str) else list(text_column)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(f"'text_column' must be a column name or a list of column names. "
                         f"{text_column!r} was provided.")
    return columns


def _read_rows(path, text_column, label_column, input_format):
    """Rows ``(text, label)``, their positions, the reader used and the headings seen."""
    suffix = path.suffix.lower()
    if suffix in PLAIN_TEXT_SUFFIXES:
        if label_column is not None or text_column is not None:
            what = "label_column" if label_column is not None else "text_column"
            raise ValueError(
                f"'{what}' needs a .jsonl, .csv or .tsv input; {path.name} is plain text."
            )
        input_format = _plain_format(path, input_format)
        rows, indices, n_headings = _read_plain(path, input_format)
        return rows, indices, input_format, n_headings
    if input_format not in ("auto", "lines"):
        raise ValueError(f"'input_format' {input_format!r} reads plain-text files "
                         f"{PLAIN_TEXT_SUFFIXES}; {path.name} is {suffix[1:]}.")
    columns = _columns(text_column)
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
    for column, what in [(c, "text_column") for c in columns] + [(label_column,
                                                                   "label_column")]:
        if column is not None and rows and column not in fields:
            raise ValueError(
                f"{path.name} has no column {column!r} ('{what}'). "
                f"Its columns are {list(fields)}."
            )
    out = []
    for row in rows:
        parts = [row.get(c) for c in columns]
        text = TEXT_JOINER.join("" if part is None else str(part) for part in parts
                                if part is not None and str(part).strip())
        label = row.get(label_column) if label_column is not None else None
        out.append((text, None if label is None else str(label)))
    return out, list(range(len(out))), suffix[1:], 0


def check_text_source(source, input_format="auto"):
    """Check cheaply (without reading it) that ``source`` is a supported input.

    Raises ValueError for an unsupported suffix or ``input_format``,
    FileNotFoundError for a missing file, TypeError for anything but a path or
    a list of str.
    """
    check_choice(input_format, INPUT_FORMATS, "input_format")
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
    elif input_format not in ("auto", "lines"):
        raise ValueError(f"'input_format' {input_format!r} reads plain-text files; "
                         f"a list of texts was provided.")


def parse_label_names(text):
    """Parse ``"0=negative,1=positive"`` into ``{"0": "negative", "1": "positive"}``."""
    names = {}
    for part in str(text).split(","):
        label, sep, name = part.partition("=")
        if not sep or not label.strip() or not name.strip():
            raise ValueError(f"'label_names' takes LABEL=NAME pairs separated by commas, "
                             f"e.g. '0=negative,1=positive'. {text!r} was provided.")
        if label.strip() in names:
            raise ValueError(f"'label_names' names label {label.strip()!r} twice in {text!r}.")
        names[label.strip()] = name.strip()
    return names


def check_label_names(label_names):
    """Check a ``{label: name}`` dict: names usable as GLM conditions, one label per name."""
    if label_names is None:
        return None
    if not isinstance(label_names, dict) or not label_names:
        raise TypeError(f"'label_names' must be a non-empty dict {{label: name}}. "
                        f"{label_names!r} was provided.")
    names = {str(k): str(v) for k, v in label_names.items()}
    bad = [v for v in names.values() if not _LABEL_NAME.match(v) or v == _NO_LABEL]
    if bad:
        raise ValueError(f"'label_names' must be names without spaces, '+', '-', '*', ',' or "
                         f"'=' (they are conditions in GLM contrasts such as "
                         f"'positive-negative'), and not {_NO_LABEL!r}. {bad} was provided.")
    twice = sorted(v for v, n in Counter(names.values()).items() if n > 1)
    if twice:
        raise ValueError(f"'label_names' gives the name(s) {twice} to several labels: "
                         f"{names}.")
    return names


def _rename(labels, label_names, name):
    present = list(dict.fromkeys(labels))
    unnamed = [x for x in present if x not in label_names]
    if unnamed:
        raise ValueError(f"'label_names' names labels {sorted(label_names)}, but {name} also "
                         f"holds labels {sorted(unnamed)}: name every label.")
    absent = [x for x in label_names if x not in present]
    if absent:
        raise ValueError(f"'label_names' names labels {absent} that {name} does not hold; "
                         f"its labels are {sorted(present)}.")
    return [label_names[x] for x in labels]


def read_texts(source, text_column=None, label_column=None, labels=None, label_names=None,
               input_format="auto"):
    """Read texts from a file or a list, skipping empty ones with a warning.

    Parameters
    ----------
    source : str, Path or list of str
        ``.txt``, ``.raw`` or ``.tokens`` (plain text, see ``input_format``),
        ``.jsonl`` (one JSON object per line), ``.csv`` or ``.tsv`` (with a
        header row); or the texts themselves.
    text_column : str or list of str, optional
        Field holding the text in .jsonl/.csv/.tsv input. Default ``"text"``.
        Several fields (e.g. ``["title", "description"]``) are joined, in that
        order, into one text with a newline between them (:data:`TEXT_JOINER`);
        an empty field is left out.
    label_column : str, optional
        Field holding a label (condition) per text.
    labels : list, optional
        One label per text of a list ``source``.
    label_names : dict, optional
        ``{label: name}`` for every label, e.g. ``{"0": "negative", "1":
        "positive"}``: the texts carry the names (the events' ``trial_type``,
        so a GLM contrast reads ``"positive-negative"``).
    input_format : {"auto", "lines", "wikitext", "wikitext-articles"}, default "auto"
        Reader of a plain-text file. ``"lines"``: one text per line.
        ``"wikitext"``: one text per paragraph (line) of a WikiText file;
        headings (`` = Robert Boulter = ``, `` = = Career = = ``) and blank
        lines are boundaries, not texts, and each paragraph is stripped of its
        surrounding space. ``"wikitext-articles"``: one text per article (its
        paragraphs joined with newlines, section headings left out).
        ``"auto"``: ``"wikitext"`` for WikiText's own file names
        (``wiki.test.raw``, ``wiki.valid.tokens``, ...), ``"lines"`` otherwise.

    Returns
    -------
    TextSet
    """
    check_text_source(source, input_format)
    label_names = check_label_names(label_names)
    if isinstance(source, (str, Path)):
        path = Path(source)
        rows, indices, input_format, n_headings = _read_rows(path, text_column, label_column,
                                                             input_format)
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
        indices, input_format, n_headings, name = list(range(len(rows))), "list", 0, "<list>"
    if not rows:
        raise ValueError(f"Input {name} holds no texts.")
    kept = [(i, text, label) for i, (text, label) in zip(indices, rows) if text.strip()]
    n_skipped = len(rows) - len(kept)
    if not kept:
        raise ValueError(f"Input {name} holds no texts: all {len(rows)} are empty or whitespace.")
    if n_skipped:
        warnings.warn(f"Skipped {n_skipped} empty or whitespace-only texts in {name}.",
                      stacklevel=2)
    has_labels = label_column is not None or labels is not None
    kept_labels = [label for _, _, label in kept] if has_labels else None
    if label_names is not None:
        if not has_labels:
            raise ValueError("'label_names' needs labels: give 'label_column' (a file) or "
                             "'labels' (a list of texts).")
        kept_labels = _rename(kept_labels, label_names, name)
    return TextSet(
        texts=[text for _, text, _ in kept],
        labels=kept_labels,
        indices=[i for i, _, _ in kept],
        n_skipped_empty=n_skipped,
        source=name,
        n_in_input=len(rows),
        input_format=input_format,
        n_headings=n_headings,
        label_names=label_names,
    )


def check_selection(limit=None, sample=None, stratify_by=None, seed=None):
    """Check the arguments of :func:`select_texts` without any text (cheap)."""
    check_positive_int(limit, "limit", allow_none=True)
    check_positive_int(sample, "sample", allow_none=True)
    if limit is not None and sample is not None:
        raise ValueError(f"Give 'limit' (the first texts) or 'sample' (a random sample), not "
                         f"both. limit={limit} and sample={sample} were provided.")
    if stratify_by is not None:
        check_choice(stratify_by, STRATIFY_CHOICES, "stratify_by")
        if sample is None:
            raise ValueError(f"'stratify_by' needs 'sample' (the sample's size). "
                             f"stratify_by={stratify_by!r} was provided without it.")
    if seed is not None:
        check_positive_int(seed, "seed", minimum=0)
        if sample is None:
            raise ValueError(f"'seed' needs 'sample'. seed={seed} was provided without it.")


def _balanced_counts(sizes, n, rng):
    """Per-class counts summing to ``n``: equal where possible, small classes taken whole."""
    counts = {c: 0 for c in sizes}
    open_classes = sorted(sizes)
    left = n
    while left and open_classes:
        share = left // len(open_classes)
        small = [c for c in open_classes if sizes[c] - counts[c] <= share]
        if small:  # classes with too few texts give all they have; the rest share again
            for c in small:
                left -= sizes[c] - counts[c]
                counts[c] = sizes[c]
            open_classes = [c for c in open_classes if c not in small]
            continue
        for c in open_classes:
            counts[c] += share
        left -= share * len(open_classes)
        for c in rng.choice(open_classes, size=left, replace=False):  # the remainder
            counts[str(c)] += 1
        left = 0
    return counts


def select_texts(textset, limit=None, sample=None, stratify_by=None, seed=None):
    """The first ``limit`` texts, or a random sample of ``sample`` texts, balanced by label.

    Parameters
    ----------
    textset : TextSet
        From :func:`read_texts` (empty texts already skipped).
    limit : int, optional
        Keep the first ``limit`` texts.
    sample : int, optional
        Draw ``sample`` texts without replacement (at most the number of texts).
    stratify_by : {"label"}, optional
        Draw the same number of texts from every label (``sample // n_labels``,
        the remainder going to randomly chosen labels). A label with fewer
        texts gives all of them, with a warning, and the others share what it
        could not give, equally again; so the sample has ``sample`` texts
        whenever the input holds that many.
    seed : int, optional
        Seed of the draw (``numpy.random.default_rng``); default 0. The same
        input, ``sample``, ``stratify_by`` and ``seed`` draw the same texts.

    Returns
    -------
    TextSet
        The selected texts in input order; ``selection`` says how they were
        chosen (``limit``, or ``sample``, ``stratify_by``, ``seed`` and
        ``n_per_label``).
    """
    check_selection(limit, sample, stratify_by, seed)
    if limit is None and sample is None:
        return textset
    if limit is not None:
        keep = list(range(min(limit, len(textset))))
        selection = {"limit": limit}
    else:
        if sample > len(textset):
            raise ValueError(f"'sample' must be at most the number of non-empty texts in "
                             f"{textset.source} ({len(textset)}). {sample} was provided.")
        seed = 0 if seed is None else seed
        rng = np.random.default_rng(seed)
        if stratify_by is None:
            keep = sorted(int(i) for i in rng.choice(len(textset), size=sample, replace=False))
        else:
            if textset.labels is None:
                raise ValueError("'stratify_by' 'label' needs labels: give 'label_column' "
                                 "(a file) or 'labels' (a list of texts).")
            by_label = {}
            for i, label in enumerate(textset.labels):
                by_label.setdefault(label, []).append(i)
            counts = _balanced_counts({c: len(v) for c, v in by_label.items()}, sample, rng)
            short = {c: len(by_label[c]) for c in sorted(by_label)
                     if len(by_label[c]) < sample // len(by_label)}
            if short:
                warnings.warn(f"Labels {short} have fewer texts than an equal share "
                              f"({sample // len(by_label)} of {sample}): all of them are "
                              f"taken, and the other labels share the rest equally.",
                              stacklevel=2)
            keep = sorted(int(i) for c in sorted(by_label)
                          for i in rng.choice(by_label[c], size=counts[c], replace=False))
        selection = {"sample": sample, "stratify_by": stratify_by, "seed": seed}
    if textset.labels is not None:
        selection["n_per_label"] = dict(sorted(Counter(textset.labels[i] for i in keep).items()))
    return replace(
        textset,
        texts=[textset.texts[i] for i in keep],
        labels=None if textset.labels is None else [textset.labels[i] for i in keep],
        indices=[textset.indices[i] for i in keep],
        selection=selection,
    )
