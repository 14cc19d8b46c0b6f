r"""Zero-shot multiple-choice tasks read from local files, as :class:`Item` lists.

Prompts follow lm-evaluation-harness' zero-shot templates where one exists;
each option is scored after a single space (its ``target_delimiter``):

- ``sst2``: ``"Review: {text}\nSentiment:"`` -> ``negative`` / ``positive``
- ``piqa``: ``"Question: {goal}\nAnswer:"`` -> ``sol1`` / ``sol2``
- ``boolq``: ``"Passage: {passage}\nQuestion: {question}?\nAnswer:"`` -> ``no`` / ``yes``
- ``arc_easy``, ``arc_challenge``: ``"Question: {stem}\nAnswer:"`` -> the answer texts
- ``openbookqa``: ``"{question_stem}"`` -> the answer texts
- ``winogrande``: ``sentence[:blank] + option`` for each option -> ``sentence[blank + 1:]``

SST-2's prompt is ours (lm-eval's GLUE template asks "Is this sentence
positive or negative?"). WinoGrande is scored partially, as in lm-eval: the
shared continuation after the blank is scored given each filled-in context.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from llmfbn._utils import check_positive_int, log
from llmfbn.datasets._base import dataset_file

__all__ = ["TASKS", "Item", "TaskItems", "load_task"]


@dataclass(frozen=True)
class Item:
    """One multiple-choice question.

    An ordinary item scores ``delimiter + choices[i]`` after ``context`` for
    each option ``i``. A partial-scoring item (WinoGrande) gives one context
    per option in ``contexts`` and a single shared continuation in
    ``choices``: option ``i`` scores ``delimiter + choices[0]`` after
    ``contexts[i]``; ``context`` is then unused (``""``).

    Attributes
    ----------
    context : str
    choices : tuple of str
        Option texts without the delimiter (their character lengths normalise
        ``acc_norm``), or the one shared continuation of a partial-scoring item.
    gold : int
        Index of the correct option.
    id : object, optional
        Row number or official question id.
    contexts : tuple of str or None, optional
        Per-option contexts of a partial-scoring item.
    delimiter : str, default " "
        Put between context and continuation (lm-eval's ``target_delimiter``).
    """

    context: str
    choices: tuple
    gold: int
    id: object = None
    contexts: tuple = None
    delimiter: str = " "

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.contexts is not None:
            object.__setattr__(self, "contexts", tuple(self.contexts))
            if len(self.contexts) < 2 or len(self.choices) != 1:
                raise ValueError(
                    "A partial-scoring Item needs >= 2 'contexts' and exactly 1 shared "
                    f"continuation in 'choices'. {len(self.contexts)} contexts and "
                    f"{len(self.choices)} choices were provided."
                )
        elif len(self.choices) < 2:
            raise ValueError(
                f"'choices' must hold at least 2 options. {len(self.choices)} were provided."
            )
        if isinstance(self.gold, bool) or not isinstance(self.gold, int) \
                or not 0 <= self.gold < self.n_options:
            raise ValueError(
                f"'gold' must be an int in [0, {self.n_options - 1}]. "
                f"{self.gold!r} was provided."
            )

    @property
    def n_options(self):
        return len(self.contexts) if self.contexts is not None else len(self.choices)

    @property
    def option_texts(self):
        """The text whose length normalises each option (lm-eval ``acc_norm``)."""
        if self.contexts is not None:
            return self.choices * len(self.contexts)
        return self.choices

    def requests(self):
        """``(context, continuation)`` to score for each option."""
        if self.contexts is not None:
            return [(c, self.delimiter + self.choices[0]) for c in self.contexts]
        return [(self.context, self.delimiter + c) for c in self.choices]


class TaskItems(list):
    """A list of :class:`Item` that also says where it came from.

    Attributes
    ----------
    task : str
    path : pathlib.Path
        The main data file read.
    n_gold_corrected : int
        Golds of the returned items changed from the converted file to the
        official answer key (ARC, OpenBookQA); 0 for the other tasks.
    corrected_rows : list of int
        0-based rows of those items.
    """

    def __init__(self, items, task, path, corrected_rows=()):
        super().__init__(items)
        self.task = task
        self.path = Path(path)
        self.corrected_rows = list(corrected_rows)

    @property
    def n_gold_corrected(self):
        return len(self.corrected_rows)


@dataclass(frozen=True)
class _Spec:
    folder: str
    filename: str
    reader: object
    description: str


def _read_jsonl(path, fields, task):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path} line {n} is not valid JSON ({err.msg}); task {task!r} "
                    f"expects one JSON object per line with the fields {fields}."
                ) from err
            if not isinstance(row, dict) or any(key not in row for key in fields):
                found = tuple(row) if isinstance(row, dict) else type(row).__name__
                raise ValueError(
                    f"{path} line {n}: task {task!r} expects the fields {fields}. "
                    f"Found {found}."
                )
            rows.append(row)
    return rows


def _check_value(ok, path, row, task, what, value):
    if not ok:
        raise ValueError(
            f"{path} row {row}: task {task!r} expects {what}. {value!r} was found."
        )


def _check_choices(row, n, path, task, n_choices=None):
    choices, gold = row["choices"], row["gold"]
    _check_value(isinstance(choices, list) and len(choices) >= 2
                 and all(isinstance(c, str) for c in choices)
                 and (n_choices is None or len(choices) == n_choices),
                 path, n, task, "'choices' to be a list of >= 2 strings", choices)
    _check_value(isinstance(gold, int) and not isinstance(gold, bool)
                 and 0 <= gold < len(choices),
                 path, n, task, f"'gold' to be an int in [0, {len(choices) - 1}]", gold)


def _read_sst2(path, task):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        text_col = next((c for c in ("text", "sentence") if header and c in header), None)
        if header is None or text_col is None or "label" not in header:
            raise ValueError(
                f"{path}: task {task!r} expects a TSV with a header naming the columns "
                f"'text' (or 'sentence') and 'label'. Found the header {header!r}."
            )
        i_text, i_label = header.index(text_col), header.index("label")
        items = []
        for n, row in enumerate(reader):
            _check_value(len(row) == len(header), path, n, task,
                         f"{len(header)} tab-separated fields", row)
            label = row[i_label].strip()
            _check_value(label in ("0", "1"), path, n, task, "'label' 0 or 1", label)
            items.append(Item(f"Review: {row[i_text].strip()}\nSentiment:",
                              ("negative", "positive"), int(label), id=n))
    return items, []


def _read_piqa(path, task):
    rows = _read_jsonl(path, ("goal", "sol1", "sol2"), task)
    labels_path = path.with_name("valid-labels.lst")
    if not labels_path.is_file():
        raise FileNotFoundError(
            f"Task {task!r} needs the labels file {labels_path} beside {path.name}."
        )
    labels = labels_path.read_text(encoding="utf-8").split()
    if len(labels) != len(rows):
        raise ValueError(
            f"{labels_path} has {len(labels)} labels but {path} has {len(rows)} rows."
        )
    items = []
    for n, (row, label) in enumerate(zip(rows, labels)):
        _check_value(label in ("0", "1"), labels_path, n, task, "a label 0 or 1", label)
        items.append(Item(f"Question: {row['goal']}\nAnswer:", (row["sol1"], row["sol2"]),
                          int(label), id=n))
    return items, []


def _read_boolq(path, task):
    rows = _read_jsonl(path, ("query", "choices", "gold"), task)
    items = []
    for n, row in enumerate(rows):
        _check_choices(row, n, path, task, n_choices=2)
        items.append(Item(row["query"].rstrip() + "\nAnswer:", row["choices"], row["gold"],
                          id=n))
    return items, []


def _official_keys(path, n_rows, task):
    keys_path = path.with_name("question-answers.jsonl")
    if not keys_path.is_file():
        raise FileNotFoundError(
            f"Task {task!r} needs the official answer keys {keys_path} beside {path.name}."
        )
    keys = _read_jsonl(keys_path, ("id", "answerKey"), task)
    if len(keys) != n_rows:
        raise ValueError(
            f"{keys_path} has {len(keys)} answer keys but {path} has {n_rows} rows; "
            f"line i of both must be the same question."
        )
    return keys


def _read_arc(path, task):
    """ARC: gold from the official key when it is a digit ("1"-"4" -> 0-3).

    llm-foundry stored ``int(answerKey)`` for digit keys (an off-by-one);
    letter keys are left as the file has them, since llm-foundry reshaped the
    choices of a few rows (padded 3-choice and cut 5-choice questions), so the
    letter's position no longer indexes them while the stored gold text is right.
    """
    rows = _read_jsonl(path, ("query", "choices", "gold"), task)
    keys = _official_keys(path, len(rows), task)
    items, corrected = [], []
    for n, (row, key) in enumerate(zip(rows, keys)):
        _check_choices(row, n, path, task)
        gold, answer = row["gold"], str(key["answerKey"])
        if answer.isdigit():
            gold = int(answer) - 1
            _check_value(0 <= gold < len(row["choices"]), path, n, task,
                         "a digit answerKey within the choices", answer)
            if gold != row["gold"]:
                corrected.append(n)
        stem = row["query"].strip()
        if not stem.startswith("Question:"):
            stem = f"Question: {stem}"
        items.append(Item(f"{stem}\nAnswer:", row["choices"], gold, id=key["id"]))
    return items, corrected


def _read_openbookqa(path, task):
    """OpenBookQA: gold = position of the official letter key (choices are in A-D order)."""
    rows = _read_jsonl(path, ("query", "choices", "gold"), task)
    keys = _official_keys(path, len(rows), task)
    items, corrected = [], []
    for n, (row, key) in enumerate(zip(rows, keys)):
        _check_choices(row, n, path, task)
        letters = "ABCDE"[:len(row["choices"])]
        answer = str(key["answerKey"])
        _check_value(len(answer) == 1 and answer in letters, path, n, task,
                     f"an answerKey in {tuple(letters)}", answer)
        gold = letters.index(answer)
        if gold != row["gold"]:
            corrected.append(n)
        items.append(Item(row["query"].strip(), row["choices"], gold, id=key["id"]))
    return items, corrected


def _read_winogrande(path, task):
    rows = _read_jsonl(path, ("context_options", "continuation", "gold"), task)
    items = []
    for n, row in enumerate(rows):
        options, gold = row["context_options"], row["gold"]
        _check_value(isinstance(options, list) and len(options) == 2
                     and all(isinstance(c, str) for c in options),
                     path, n, task, "'context_options' to be a list of 2 strings", options)
        _check_value(isinstance(gold, int) and gold in (0, 1), path, n, task,
                     "'gold' 0 or 1", gold)
        items.append(Item("", (row["continuation"].strip(),), gold, id=n,
                          contexts=[c.rstrip() for c in options]))
    return items, []


#: name -> where its files live under ``$LLMFBN_DATA`` and how to read them.
TASKS = {
    "sst2": _Spec("sst2", "dev.tsv", _read_sst2, "SST-2 (GLUE) dev, 872 reviews"),
    "piqa": _Spec("piqa", "valid.jsonl", _read_piqa, "PIQA validation, 1,838 items"),
    "boolq": _Spec("boolq", "boolq.jsonl", _read_boolq, "BoolQ dev, 3,270 items"),
    "arc_easy": _Spec("arc_easy", "arc_easy.jsonl", _read_arc, "ARC-Easy test, 2,376 items"),
    "arc_challenge": _Spec("arc_challenge", "arc_challenge.jsonl", _read_arc,
                           "ARC-Challenge test, 1,172 items"),
    "openbookqa": _Spec("openbookqa", "openbook_qa.jsonl", _read_openbookqa,
                        "OpenBookQA main test, 500 items"),
    "winogrande": _Spec("winogrande", "winogrande.jsonl", _read_winogrande,
                        "WinoGrande (xl) dev, 1,267 items, partial scoring"),
}


def load_task(name, path=None, limit=None, verbose=0):
    """Read a zero-shot multiple-choice task from local files.

    Parameters
    ----------
    name : {"sst2", "piqa", "arc_easy", "arc_challenge", "openbookqa", "winogrande", "boolq"}
    path : str or path, optional
        The dataset's folder (or its main file). Defaults to
        ``$LLMFBN_DATA/<name>`` when the environment variable ``LLMFBN_DATA``
        is set (e.g. ``LLMFBN_DATA=/work/shared/data``); otherwise required
        (resolved by :func:`llmfbn.datasets._base.dataset_file`).
        Expected files: ``sst2/dev.tsv`` (``text<TAB>label``),
        ``piqa/valid.jsonl`` + ``valid-labels.lst``, ``boolq/boolq.jsonl``,
        ``arc_easy/arc_easy.jsonl`` + ``question-answers.jsonl`` (likewise
        ``arc_challenge``), ``openbookqa/openbook_qa.jsonl`` +
        ``question-answers.jsonl``, ``winogrande/winogrande.jsonl``.
    limit : int or None, default None
        Keep the first ``limit`` items (file order).
    verbose : int, default 0

    Returns
    -------
    TaskItems
        A list of :class:`Item`. For ARC and OpenBookQA the golds come from
        the official answer keys; ``n_gold_corrected`` says how many of the
        returned items differ from the converted file's gold (the full ARC-Easy
        and ARC-Challenge files: 71 and 20).
    """
    if name not in TASKS:
        raise ValueError(f"'name' must be one of {tuple(TASKS)}. {name!r} was provided.")
    check_positive_int(limit, "limit", allow_none=True)
    spec = TASKS[name]
    path = dataset_file(f"{spec.folder}/{spec.filename}", path=path, caller=f"Task {name!r}",
                        data_dir_param=None)
    items, corrected = TASKS[name].reader(path, name)
    if limit is not None:
        items = items[:limit]
        corrected = [n for n in corrected if n < limit]
    result = TaskItems(items, name, path, corrected)
    log(f"{name}: {len(result)} items from {path}"
        + (f"; {len(corrected)} golds corrected from the official keys" if corrected else ""),
        verbose)
    return result
