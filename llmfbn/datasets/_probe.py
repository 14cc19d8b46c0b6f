"""The team's small built-in texts, shipped inside the package (``llmfbn/datasets/data``)."""

import csv
from pathlib import Path

from sklearn.utils import Bunch

from llmfbn.datasets._base import describe

#: Package data: installed with llmfbn (``[options.package_data]`` in setup.cfg).
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "data"

PROBE_TEXTS_FILE = "probe_texts.tsv"
PROBE_HELDOUT_FILE = "probe_heldout.txt"


def _package_file(name):
    path = PACKAGE_DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"The built-in file {path} does not exist: this llmfbn installation is "
            "incomplete (the file is package data of llmfbn.datasets); reinstall llmfbn."
        )
    return path


def load_probe_texts():
    """Load the built-in probe set: 32 short texts in 4 conditions.

    Written by the llmfbn team to record a model quickly (``llmfbn demo``):
    8 texts each of ``positive`` and ``negative`` sentiment, encyclopedic
    ``fact`` sentences and one-line ``code`` snippets.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``texts`` : list of str, length n_texts (32), in file order.
        - ``conditions`` : list of str, length n_texts, the condition of each text.
        - ``condition_names`` : list of str, the sorted unique conditions
          (``["code", "fact", "negative", "positive"]``).
        - ``frame`` : pandas.DataFrame, shape (n_texts, 2), columns
          ``text`` and ``condition``.
        - ``path`` : pathlib.Path of the TSV, e.g. for
          ``llmfbn record --input PATH --label-column condition``.
        - ``description`` : str.

    Raises
    ------
    FileNotFoundError
        When the package file ``probe_texts.tsv`` is absent (a broken
        installation); the message names the path.
    """
    import pandas as pd

    path = _package_file(PROBE_TEXTS_FILE)
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str,
                        keep_default_na=False, encoding="utf-8")
    missing = [c for c in ("text", "condition") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} must have the columns ['text', 'condition']. "
            f"Its columns are {list(frame.columns)}."
        )
    frame = frame[["text", "condition"]]
    texts = frame["text"].tolist()
    conditions = frame["condition"].tolist()
    condition_names = sorted(set(conditions))
    counts = ", ".join(f"{name} ({conditions.count(name)})" for name in condition_names)
    description = describe(
        f"llmfbn probe texts: {len(texts)} short English texts written by the llmfbn team "
        f"for quick recordings and demos, in {len(condition_names)} conditions: {counts}. "
        "Sentiment sentences (positive/negative) about films, books, places and services; "
        "short encyclopedic facts; one-line code snippets (Python, SQL, C, JavaScript). "
        "Distributed with llmfbn under its BSD-3-Clause licence. Fields: texts, "
        "conditions (one per text), condition_names, frame (text, condition), path "
        "(the TSV, with the columns text and condition)."
    )
    return Bunch(texts=texts, conditions=conditions, condition_names=condition_names,
                 frame=frame, path=path, description=description)


def load_probe_heldout():
    """Load the built-in held-out English prose, for perplexity checks.

    About 1,000 words of original everyday prose (weather, cooking, a train
    journey, a library, a garden, a walk) written by the llmfbn team. It shares
    no sentence with :func:`load_probe_texts`, so the perplexity of a model
    edited from probe recordings is measured on unseen text.

    Returns
    -------
    sklearn.utils.Bunch
        Dictionary-like object with the keys:

        - ``text`` : str, the whole file (paragraphs separated by blank lines).
        - ``paragraphs`` : list of str, the non-empty paragraphs.
        - ``n_words`` : int, whitespace-separated words in ``text``.
        - ``path`` : pathlib.Path of the ``.txt`` file: one paragraph per
          line, blank lines between (e.g. ``llmfbn evaluate --eval text=PATH``).
        - ``description`` : str.

    Raises
    ------
    FileNotFoundError
        When the package file ``probe_heldout.txt`` is absent (a broken
        installation); the message names the path.
    """
    path = _package_file(PROBE_HELDOUT_FILE)
    text = path.read_text(encoding="utf-8")
    paragraphs = [line.strip() for line in text.splitlines() if line.strip()]
    n_words = len(text.split())
    description = describe(
        f"llmfbn held-out prose: {n_words} words of original plain-ASCII English in "
        f"{len(paragraphs)} paragraphs on everyday topics (weather, cooking, a train "
        "journey, a library, a garden, a walk), written by the llmfbn team so that "
        "perplexity can be measured on text that the probe set never shows the model. "
        "Distributed with llmfbn under its BSD-3-Clause licence. Fields: text (the whole "
        "file), paragraphs, n_words, path."
    )
    return Bunch(text=text, paragraphs=paragraphs, n_words=n_words, path=path,
                 description=description)
