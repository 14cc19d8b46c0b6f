"""Loaders for the standard public datasets, read from a local data folder.

Nothing is downloaded: the files must already sit in a folder laid out like
the team's ``shared/data`` (``<data_dir>/sst2/train.tsv``, ...; see
:func:`get_data_dir`). Parsing and validation are those of
:mod:`llmfbn.datasets._tasks`, so a loader here returns exactly the items
that :func:`llmfbn.evaluation.load_task` scores. They sit under ``task_items``,
not ``items``: a Bunch is a dict, and ``bunch.items`` is the dict method.
"""

import numpy as np
from sklearn.utils import Bunch

from llmfbn._utils import check_choice
from llmfbn.datasets._base import dataset_file, describe
from llmfbn.datasets._tasks import TASKS, TaskItems, load_task
from llmfbn.datasets._wikitext import WIKI_HEADING as _WIKI_HEADING
from llmfbn.datasets._wikitext import WIKI_TITLE as _WIKI_TITLE

SST2_SPLITS = ("train", "dev")
SST2_LABEL_NAMES = ["negative", "positive"]
ARC_DIFFICULTIES = ("easy", "challenge")

# The SST-2 reader of datasets._tasks wraps each review in this prompt.
_SST2_PREFIX, _SST2_SUFFIX = "Review: ", "\nSentiment:"

_ITEMS_DOC = (
    "Fields: task_items (a list of llmfbn.evaluation.Item: context, choices, gold, id; "
    "the list's task, path and n_gold_corrected say where it came from, and it can be "
    "passed to llmfbn.evaluation.evaluate_task as it is), n_items, {keys}path."
)


def load_wikitext2(data_dir=None, path=None):
    """Load the WikiText-2 (raw) test split.

    Parameters
    ----------
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/wikitext-2-raw/wiki.test.raw``. Default ``$LLMFBN_DATA``.
    path : str or path, optional
        The ``wiki.test.raw`` file itself (or its folder); overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``text`` : str, the whole file exactly as stored (the usual input of
          WikiText-2 perplexity).
        - ``paragraphs`` : list of str, length n_paragraphs. The file's
          lines that are neither blank nor a heading (``" = Title = "``,
          ``" = = Section = = "``, ...), stripped of their leading and trailing
          space; WikiText's tokenisation (``" @-@ "``, ``" , "``) is kept.
        - ``paragraph_articles`` : list of int, length n_paragraphs, the
          index in ``articles`` of each paragraph's article (e.g. to split
          the paragraphs into disjoint halves by article).
        - ``articles`` : list of (str, str), length n_articles (62): the
          title of each top-level ``" = Title = "`` heading, and the article's
          non-blank lines after it (section headings included, each line
          stripped) joined with ``"\\n"``.
        - ``path`` : pathlib.Path of the file read.
        - ``description`` : str.
    """
    path = dataset_file("wikitext-2-raw/wiki.test.raw", data_dir, path, "load_wikitext2()")
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    paragraphs, paragraph_articles, articles, body = [], [], [], None
    for line in text.splitlines():
        title = _WIKI_TITLE.match(line)
        if title:
            body = []
            articles.append((title.group(1).strip(), body))
        elif not line.strip():
            continue
        else:
            if body is not None:
                body.append(line.strip())
            if not _WIKI_HEADING.match(line):
                paragraphs.append(line.strip())
                paragraph_articles.append(len(articles) - 1)
    articles = [(title, "\n".join(lines)) for title, lines in articles]
    description = describe(
        f"WikiText-2 (raw, wikitext-2-raw-v1), test split: {len(articles)} Wikipedia "
        f"Good and Featured articles, {len(paragraphs):,} paragraphs, "
        f"{len(text.split()):,} whitespace-separated words (Merity et al. 2016, 'Pointer "
        "Sentinel Mixture Models'; licence CC BY-SA 3.0 and GFDL). Fields: text (the "
        "whole raw file), paragraphs (non-blank, non-heading lines, stripped), "
        "paragraph_articles (article index of each paragraph), articles (title, text), "
        "path.",
        path.parent,
    )
    return Bunch(text=text, paragraphs=paragraphs, paragraph_articles=paragraph_articles,
                 articles=articles, path=path, description=description)


def _sst2_text(context):
    if not (context.startswith(_SST2_PREFIX) and context.endswith(_SST2_SUFFIX)):
        raise RuntimeError(  # the prompt of datasets._tasks changed
            f"Unexpected SST-2 prompt {context!r}: expected {_SST2_PREFIX!r} + text + "
            f"{_SST2_SUFFIX!r}."
        )
    return context[len(_SST2_PREFIX):-len(_SST2_SUFFIX)]


def load_sst2(split="train", data_dir=None, path=None):
    """Load SST-2 (GLUE, binary sentiment), train or dev split.

    Parameters
    ----------
    split : {"train", "dev"}, default "train"
        GLUE train (67,349 sentences) or dev (872, the usual evaluation set;
        GLUE's test labels are not public).
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/sst2/<split>.tsv``. Default ``$LLMFBN_DATA``.
    path : str or path, optional
        The TSV itself (header ``text`` or ``sentence``, and ``label``), or its
        folder; overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``texts`` : list of str, length n_texts, the sentences (lower-cased,
          PTB-tokenised as in GLUE; outer whitespace stripped).
        - ``labels`` : ndarray of int, shape (n_texts,), 0 = negative,
          1 = positive.
        - ``label_names`` : list of str, ``["negative", "positive"]``.
        - ``conditions`` : list of str, length n_texts, the label name of each
          text (for recordings' ``trial_type``).
        - ``task_items`` : list of :class:`llmfbn.evaluation.Item`, the zero-shot
          items of :func:`llmfbn.evaluation.load_task` for these texts.
        - ``path`` : pathlib.Path of the TSV read.
        - ``description`` : str.
    """
    check_choice(split, SST2_SPLITS, "split")
    path = dataset_file(f"sst2/{split}.tsv", data_dir, path, "load_sst2()")
    items, _ = TASKS["sst2"].reader(path, "sst2")
    items = TaskItems(items, "sst2", path)
    texts = [_sst2_text(item.context) for item in items]
    labels = np.array([item.gold for item in items], dtype=int)
    conditions = [SST2_LABEL_NAMES[label] for label in labels]
    n_pos = int(labels.sum())
    description = describe(
        f"SST-2, the binary Stanford Sentiment Treebank task of GLUE (Socher et al. 2013), "
        f"{split} split: {len(texts):,} movie-review sentences, {n_pos:,} positive and "
        f"{len(texts) - n_pos:,} negative. Sentences are lower-cased and PTB-tokenised as in "
        "GLUE. No licence is stated by the source; the Stanford release asks for a "
        "citation. Fields: texts, labels (0 = negative, 1 = positive), label_names, "
        "conditions (label name per text), task_items (zero-shot items, "
        "llmfbn.evaluation.Item), path.",
        path.parent,
    )
    return Bunch(texts=texts, labels=labels, label_names=list(SST2_LABEL_NAMES),
                 conditions=conditions, task_items=items, path=path, description=description)


def _load_items(task, loader, data_dir, path, summary, keys=False):
    """Bunch of one multiple-choice task; ``keys``: golds from official answer keys."""
    spec = TASKS[task]
    path = dataset_file(f"{spec.folder}/{spec.filename}", data_dir, path, f"{loader}()")
    items = load_task(task, path)
    fields = _ITEMS_DOC.format(keys="n_gold_corrected, corrected_rows (0-based rows whose "
                               "gold differs from the converted file), " if keys else "")
    description = describe(
        summary.format(n_items=len(items), n_corrected=items.n_gold_corrected) + " " + fields,
        path.parent,
    )
    bunch = Bunch(task_items=items, n_items=len(items), path=items.path,
                  description=description)
    if keys:
        bunch.n_gold_corrected = items.n_gold_corrected
        bunch.corrected_rows = list(items.corrected_rows)
    return bunch


def load_piqa(data_dir=None, path=None):
    """Load PIQA (Physical Interaction QA), validation split (1,838 items).

    Parameters
    ----------
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/piqa/valid.jsonl`` and ``valid-labels.lst`` beside it.
        Default ``$LLMFBN_DATA``.
    path : str or path, optional
        ``valid.jsonl`` itself (``valid-labels.lst`` must sit beside it), or
        its folder; overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``task_items`` : list of :class:`llmfbn.evaluation.Item`, length n_items.
          ``context`` is ``"Question: {goal}\\nAnswer:"``, ``choices`` the two
          solutions, ``gold`` the label.
        - ``n_items`` : int.
        - ``path`` : pathlib.Path of ``valid.jsonl``.
        - ``description`` : str.
    """
    return _load_items("piqa", "load_piqa", data_dir, path, (
        "PIQA (Physical Interaction QA, Bisk et al. 2020), validation split: {n_items:,} "
        "goals, each with two candidate solutions and the index of the right one, from the "
        "official files (valid.jsonl + valid-labels.lst; licence AFL-3.0)."
    ))


def load_arc(difficulty="easy", data_dir=None, path=None):
    """Load ARC (AI2 Reasoning Challenge), Easy or Challenge test split.

    Golds come from AllenAI's official answer keys: the converted
    llm-foundry files store ``int(answerKey)`` instead of
    ``int(answerKey) - 1`` for numeric keys, which is wrong for 71 Easy and
    20 Challenge questions (see the data's PROVENANCE.md).

    Parameters
    ----------
    difficulty : {"easy", "challenge"}, default "easy"
        ARC-Easy (2,376 questions) or ARC-Challenge (1,172).
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/arc_<difficulty>/arc_<difficulty>.jsonl`` and the
        official keys ``question-answers.jsonl`` beside it.
        Default ``$LLMFBN_DATA``.
    path : str or path, optional
        ``arc_<difficulty>.jsonl`` itself (``question-answers.jsonl`` must sit
        beside it), or its folder; overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``task_items`` : list of :class:`llmfbn.evaluation.Item`, length n_items,
          ``id`` the official question id, ``gold`` from the official key.
        - ``n_items`` : int.
        - ``n_gold_corrected`` : int, golds that differ from the converted file.
        - ``corrected_rows`` : list of int, their 0-based rows.
        - ``path`` : pathlib.Path of the questions file.
        - ``description`` : str.
    """
    check_choice(difficulty, ARC_DIFFICULTIES, "difficulty")
    task = f"arc_{difficulty}"
    return _load_items(task, "load_arc", data_dir, path, (
        f"ARC-{difficulty.capitalize()} (AI2 Reasoning Challenge, Clark et al. 2018), test "
        "split: {n_items:,} grade-school science questions with 3-5 answer options (padded "
        "or cut to 4 in this converted copy from mosaicml/llm-foundry). Golds come from "
        "AllenAI's official answer keys (allenai/aristo-leaderboard, Apache-2.0): the "
        "converted file stores int(answerKey) instead of int(answerKey) - 1 for numeric "
        "keys, so {n_corrected} of its golds were corrected. ARC is released by AllenAI "
        "under CC BY-SA 4.0."
    ), keys=True)


def load_openbookqa(data_dir=None, path=None):
    """Load OpenBookQA (main), test split (500 items).

    Parameters
    ----------
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/openbookqa/openbook_qa.jsonl`` and the official keys
        ``question-answers.jsonl`` beside it. Default ``$LLMFBN_DATA``.
    path : str or path, optional
        ``openbook_qa.jsonl`` itself (``question-answers.jsonl`` must sit
        beside it), or its folder; overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``task_items`` : list of :class:`llmfbn.evaluation.Item`, length n_items,
          ``context`` the question stem, ``gold`` from the official key.
        - ``n_items`` : int.
        - ``n_gold_corrected`` : int (0 for the published file: all 500
          converted golds agree with the official keys).
        - ``corrected_rows`` : list of int.
        - ``path`` : pathlib.Path of the questions file.
        - ``description`` : str.
    """
    return _load_items("openbookqa", "load_openbookqa", data_dir, path, (
        "OpenBookQA (Mihaylov et al. 2018), main test split: {n_items:,} elementary science "
        "questions with 4 answer options, in mosaicml/llm-foundry's converted format; golds "
        "are read from AllenAI's official answer keys ({n_corrected} differ from the "
        "converted file). The HF card lists Apache-2.0."
    ), keys=True)


def load_winogrande(data_dir=None, path=None):
    """Load WinoGrande (xl), dev split (1,267 items), for partial scoring.

    Parameters
    ----------
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/winogrande/winogrande.jsonl``. Default ``$LLMFBN_DATA``.
    path : str or path, optional
        The file itself, or its folder; overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``task_items`` : list of :class:`llmfbn.evaluation.Item`, length n_items.
          Partial-scoring items: ``contexts`` holds the sentence up to the
          blank filled with each of the two options, ``choices`` the one
          shared continuation after the blank.
        - ``n_items`` : int.
        - ``path`` : pathlib.Path of the file read.
        - ``description`` : str.
    """
    return _load_items("winogrande", "load_winogrande", data_dir, path, (
        "WinoGrande (Sakaguchi et al. 2020), winogrande_xl dev split: {n_items:,} "
        "fill-in-the-blank pronoun-resolution sentences with two options, in "
        "mosaicml/llm-foundry's converted partial-evaluation format (each option fills the "
        "blank; the text after the blank is scored). The HF card lists CC-BY."
    ))


def load_boolq(data_dir=None, path=None):
    """Load BoolQ, dev split (3,270 yes/no questions).

    Parameters
    ----------
    data_dir : str or path, optional
        Data folder (see :func:`get_data_dir`); reads
        ``<data_dir>/boolq/boolq.jsonl``. Default ``$LLMFBN_DATA``.
    path : str or path, optional
        The file itself, or its folder; overrides ``data_dir``.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``task_items`` : list of :class:`llmfbn.evaluation.Item`, length n_items.
          ``context`` is ``"Passage: ...\\nQuestion: ...?\\nAnswer:"``,
          ``choices`` is ``("no", "yes")``.
        - ``n_items`` : int.
        - ``path`` : pathlib.Path of the file read.
        - ``description`` : str.
    """
    return _load_items("boolq", "load_boolq", data_dir, path, (
        "BoolQ (Clark et al. 2019), dev split: {n_items:,} yes/no questions, each about a "
        "short Wikipedia passage, in mosaicml/llm-foundry's converted format (choices "
        "no/yes, gold 1 = yes). Google releases BoolQ under CC BY-SA 3.0."
    ))
