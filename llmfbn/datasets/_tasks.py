r"""Zero-shot multiple-choice tasks read from local files, as :class:`Item` lists.

Prompts follow lm-evaluation-harness' zero-shot templates where one exists;
each option is scored after a single space (its ``target_delimiter``):

- ``sst2``: ``"Review: {text}\nSentiment:"`` -> ``negative`` / ``positive``
- ``piqa``: ``"Question: {goal}\nAnswer:"`` -> ``sol1`` / ``sol2``
- ``boolq``: ``"Passage: {passage}\nQuestion: {question}?\nAnswer:"`` -> ``no`` / ``yes``
- ``arc_easy``, ``arc_challenge``: ``"Question: {stem}\nAnswer:"`` -> the answer texts
- ``openbookqa``: ``"{question_stem}"`` -> the answer texts
- ``winogrande``: ``sentence[:blank] + option`` for each option -> ``sentence[blank + 1:]``

- ``hellaswag``: ``"{activity_label}: {ctx}"`` -> the four endings (lm-eval's
  ``hellaswag`` task; see :func:`_read_hellaswag` for the one step the
  converted file forces us to reconstruct)
- ``lambada_openai`` (cloze): the passage up to its last space -> ``" " +`` its
  last word (lm-eval's ``lambada_openai``)

SST-2's prompt is ours (lm-eval's GLUE template asks "Is this sentence
positive or negative?"). WinoGrande is scored partially, as in lm-eval: the
shared continuation after the blank is scored given each filled-in context.

A user's own task needs no code, in one of two JSONL formats (:data:`FORMATS`):

- ``mc``: ``{"query": str, "choices": [str, ...], "gold": int}`` per line; each
  choice is scored after the query and one space (lm-eval's
  ``target_delimiter``; no space is added when the query already ends with
  whitespace).
- ``cloze``: ``{"context": str, "continuation": str}`` per line; the
  continuation is scored after the context and one space (same rule), for
  greedy accuracy and perplexity as ``lambada_openai``.

``hellaswag``, ``lambada_openai``, ``mc`` and ``cloze`` put no special token
(BOS) before the context (``TaskItems.add_special_tokens`` False), as
lm-evaluation-harness does with ``add_bos_token=False``; the older tasks keep
the tokenizer's default leading special tokens.
"""

import bz2
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from llmfbn._utils import check_positive_int, log
from llmfbn.datasets._base import dataset_file

__all__ = ["FORMATS", "TASKS", "ClozeItem", "Item", "TaskItems", "load_task"]


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


@dataclass(frozen=True)
class ClozeItem:
    """One cloze item: a continuation to predict after a context.

    Scored by the log-likelihood of ``delimiter + continuation`` given
    ``context`` and by whether every one of its tokens is the model's greedy
    (argmax) prediction (lm-eval's ``loglikelihood`` requests: ``acc`` and
    ``perplexity``).

    Attributes
    ----------
    context : str
    continuation : str
        Without the delimiter.
    id : object, optional
    delimiter : str, default " "
    """

    context: str
    continuation: str
    id: object = None
    delimiter: str = " "

    def __post_init__(self):
        for field_name in ("context", "continuation", "delimiter"):
            if not isinstance(getattr(self, field_name), str):
                raise TypeError(f"'{field_name}' must be a str. "
                                f"{type(getattr(self, field_name)).__name__} was provided.")
        if not (self.delimiter + self.continuation).strip():
            raise ValueError(f"'continuation' must hold text to score. "
                             f"{self.continuation!r} was provided.")

    def request(self):
        """``(context, continuation)`` to score."""
        return self.context, self.delimiter + self.continuation


class TaskItems(list):
    """A list of :class:`Item` (or :class:`ClozeItem`) that also says where it came from.

    Attributes
    ----------
    task : str
    path : pathlib.Path
        The main data file read.
    kind : {"choice", "cloze"}
        Multiple choice (:class:`Item`) or cloze (:class:`ClozeItem`).
    add_special_tokens : bool
        Whether the tokenizer's default leading special tokens (BOS) go
        before each context when scoring.
    n_gold_corrected : int
        Golds of the returned items changed from the converted file to the
        official answer key (ARC, OpenBookQA); 0 for the other tasks.
    corrected_rows : list of int
        0-based rows of those items.
    """

    def __init__(self, items, task, path, corrected_rows=(), kind="choice",
                 add_special_tokens=True):
        super().__init__(items)
        self.task = task
        self.path = Path(path)
        self.corrected_rows = list(corrected_rows)
        self.kind = kind
        self.add_special_tokens = add_special_tokens

    @property
    def n_gold_corrected(self):
        return len(self.corrected_rows)


@dataclass(frozen=True)
class _Spec:
    folder: str
    filename: str
    reader: object
    description: str
    kind: str = "choice"
    add_special_tokens: bool = True


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


def _read_hellaswag(path, task):
    """HellaSwag from llama.cpp's text file: six lines per item.

    Lines: ``"{activity_label}: {ctx}"``, the gold label (0-3), four endings.
    The converter already applied lm-eval's ``preprocess`` (bracket tags
    removed, ``" [title]"`` -> ``". "``, double spaces joined, stripped) to
    every line. lm-eval's query is ``activity_label + ": " + ctx_a + " " +
    ctx_b.capitalize()``, but the file joins ``ctx_a + " " + ctx_b``
    without capitalising and does not say where ``ctx_b`` starts.
    Reconstruction: ``ctx_b`` is taken to be the text after the last
    ``". "``, ``"! "`` or ``"? "`` when it starts with a lower-case letter
    (ActivityNet items, 3,243 of 10,042, whose ``ctx_b`` is the lower-case
    start of the next sentence) and is then ``str.capitalize()``-d, as
    lm-eval does; otherwise (WikiHow items, whose ``ctx_b`` is empty) the
    line is the query unchanged. Endings are scored after a space and
    ``acc_norm`` divides by their length in characters.
    """
    try:
        with bz2.open(path, "rt", encoding="utf-8") if path.suffix == ".bz2" \
                else open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} could not be read as task {task!r} "
                         f"(bzip2-compressed UTF-8 text): {err}") from err
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or len(lines) % 6:
        raise ValueError(f"{path}: task {task!r} expects 6 lines per item (query, label, 4 "
                         f"endings). {len(lines)} lines were found.")
    items = []
    for n in range(len(lines) // 6):
        query, label, *endings = lines[6 * n:6 * n + 6]
        _check_value(label.strip() in ("0", "1", "2", "3"), path, n, task,
                     "a label line 0-3", label)
        _check_value(all(e.strip() for e in endings), path, n, task, "4 non-empty endings",
                     endings)
        items.append(Item(_capitalize_ctx_b(query.strip()), endings, int(label), id=n))
    return items, []


_LAST_SENTENCE = re.compile(r"^(.*[.!?] )([a-z].*)$", re.DOTALL)


def _capitalize_ctx_b(query):
    match = _LAST_SENTENCE.match(query)
    if match is None:
        return query
    return match.group(1) + match.group(2).capitalize()


def _read_lambada(path, task):
    """LAMBADA (OpenAI): ``context`` is the passage up to its last space, as lm-eval splits it."""
    rows = _read_jsonl(path, ("context", "continuation"), task)
    items = []
    for n, row in enumerate(rows):
        _check_value(isinstance(row["context"], str) and isinstance(row["continuation"], str)
                     and row["continuation"].strip(), path, n, task,
                     "'context' and a non-empty 'continuation' as strings", row)
        items.append(ClozeItem(row["context"], row["continuation"], id=n))
    return items, []


def _delimiter(before, after):
    """One space between two texts unless one already has whitespace at the join."""
    return "" if before[-1:].isspace() or after[:1].isspace() else " "


def _read_mc(path, task):
    rows = _read_jsonl(path, ("query", "choices", "gold"), task)
    items = []
    for n, row in enumerate(rows):
        _check_value(isinstance(row["query"], str), path, n, task, "'query' to be a string",
                     row["query"])
        _check_choices(row, n, path, task)
        items.append(Item(row["query"], row["choices"], row["gold"], id=row.get("id", n),
                          delimiter=_delimiter(row["query"], "")))
    return items, []


def _read_cloze(path, task):
    rows = _read_jsonl(path, ("context", "continuation"), task)
    items = []
    for n, row in enumerate(rows):
        context, continuation = row["context"], row["continuation"]
        _check_value(isinstance(context, str) and isinstance(continuation, str)
                     and continuation.strip(), path, n, task,
                     "'context' and a non-empty 'continuation' as strings", row)
        items.append(ClozeItem(context, continuation, id=row.get("id", n),
                               delimiter=_delimiter(context, continuation)))
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
    "hellaswag": _Spec("hellaswag", "hellaswag_val_full.txt.bz2", _read_hellaswag,
                       "HellaSwag validation, 10,042 items", add_special_tokens=False),
    "lambada_openai": _Spec("lambada_openai", "lambada_openai.jsonl", _read_lambada,
                            "LAMBADA (OpenAI) test, 5,153 passages, cloze", kind="cloze",
                            add_special_tokens=False),
}

#: A user's own task, from a JSONL file (see the module docstring).
FORMATS = {
    "mc": _Spec("", "", _read_mc, "multiple choice JSONL: query, choices, gold",
                add_special_tokens=False),
    "cloze": _Spec("", "", _read_cloze, "cloze JSONL: context, continuation", kind="cloze",
                   add_special_tokens=False),
}


def load_task(name, path=None, limit=None, verbose=0):
    """Read a zero-shot task from local files: a built-in task or a user's JSONL.

    Parameters
    ----------
    name : str
        A built-in task, one of :data:`TASKS` (``"sst2", "piqa", "boolq",
        "arc_easy", "arc_challenge", "openbookqa", "winogrande", "hellaswag",
        "lambada_openai"``), or a format of :data:`FORMATS` (``"mc"``,
        ``"cloze"``; ``path`` is then the JSONL file itself).
    path : str or path, optional
        The dataset's folder (or its main file). Defaults to
        ``$LLMFBN_DATA/<name>`` when the environment variable ``LLMFBN_DATA``
        is set (e.g. ``LLMFBN_DATA=/work/shared/data``); otherwise required
        (resolved by :func:`llmfbn.datasets._base.dataset_file`).
        Expected files: ``sst2/dev.tsv`` (``text<TAB>label``),
        ``piqa/valid.jsonl`` + ``valid-labels.lst``, ``boolq/boolq.jsonl``,
        ``arc_easy/arc_easy.jsonl`` + ``question-answers.jsonl`` (likewise
        ``arc_challenge``), ``openbookqa/openbook_qa.jsonl`` +
        ``question-answers.jsonl``, ``winogrande/winogrande.jsonl``,
        ``hellaswag/hellaswag_val_full.txt.bz2``,
        ``lambada_openai/lambada_openai.jsonl``.
    limit : int or None, default None
        Keep the first ``limit`` items (file order).
    verbose : int, default 0

    Returns
    -------
    TaskItems
        A list of :class:`Item` (``kind == "choice"``) or of
        :class:`ClozeItem` (``lambada_openai``, ``cloze``). For ARC and
        OpenBookQA the golds come from the official answer keys;
        ``n_gold_corrected`` says how many of the returned items differ from
        the converted file's gold (the full ARC-Easy and ARC-Challenge files:
        71 and 20).
    """
    if name not in TASKS and name not in FORMATS:
        raise ValueError(f"'name' must be one of the tasks {tuple(TASKS)} or the formats "
                         f"{tuple(FORMATS)}. {name!r} was provided.")
    check_positive_int(limit, "limit", allow_none=True)
    if name in FORMATS:
        spec = FORMATS[name]
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"Format {name!r} ({spec.description}) reads a JSONL file "
                                    f"given as 'path'. {path!r} is not a file.")
        path = Path(path).resolve()
    else:
        spec = TASKS[name]
        path = dataset_file(f"{spec.folder}/{spec.filename}", path=path,
                            caller=f"Task {name!r}", data_dir_param=None)
    items, corrected = spec.reader(path, name)
    if not items:
        raise ValueError(f"{path} holds no items for {name!r}.")
    if limit is not None:
        items = items[:limit]
        corrected = [n for n in corrected if n < limit]
    result = TaskItems(items, name, path, corrected, kind=spec.kind,
                       add_special_tokens=spec.add_special_tokens)
    log(f"{name}: {len(result)} items from {path}"
        + (f"; {len(corrected)} golds corrected from the official keys" if corrected else ""),
        verbose)
    return result
