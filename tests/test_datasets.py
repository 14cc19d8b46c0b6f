"""Dataset loaders: built-in probe texts, held-out prose, standard datasets."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, shared_data
from llmfbn import datasets
from llmfbn.datasets import _probe
from llmfbn.evaluation import DATA_ENV, Item, load_task
from llmfbn.recording._texts import read_texts


@pytest.fixture
def no_data_env(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)


def _words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


# --- built-in probe texts -----------------------------------------------------------

def test_probe_texts_counts_and_fields():
    probe = datasets.load_probe_texts()
    assert len(probe.texts) == len(probe.conditions) == 32
    assert probe.condition_names == ["code", "fact", "negative", "positive"]
    for name in probe.condition_names:
        assert probe.conditions.count(name) == 8
    assert probe.frame.shape == (32, 2)
    assert list(probe.frame.columns) == ["text", "condition"]
    assert probe.frame["text"].tolist() == probe.texts
    assert all(isinstance(t, str) and t.strip() for t in probe.texts)
    assert probe.path == Path(_probe.__file__).resolve().parent / "data" / "probe_texts.tsv"
    assert "32" in probe.description and "condition" in probe.description


def test_probe_texts_path_reads_with_label_column():
    probe = datasets.load_probe_texts()
    text_set = read_texts(probe.path, label_column="condition")
    assert text_set.texts == probe.texts
    assert text_set.labels == probe.conditions
    assert text_set.n_skipped_empty == 0


def test_probe_texts_ship_inside_the_package():
    """Package data, not the repository's data/ folder: a non-editable install has them."""
    package = Path(datasets.__file__).resolve().parent
    assert datasets.load_probe_texts().path.parent == package / "data"
    assert datasets.load_probe_heldout().path.parent == package / "data"


def test_probe_missing_file_names_path(monkeypatch, tmp_path):
    monkeypatch.setattr(_probe, "PACKAGE_DATA_DIR", tmp_path / "nowhere")
    expected = str(tmp_path / "nowhere" / "probe_texts.tsv")
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        datasets.load_probe_texts()
    with pytest.raises(FileNotFoundError, match="probe_heldout.txt"):
        datasets.load_probe_heldout()


# --- held-out prose -----------------------------------------------------------------

def test_probe_heldout_text():
    heldout = datasets.load_probe_heldout()
    assert heldout.path.name == "probe_heldout.txt"
    assert heldout.text == heldout.path.read_text(encoding="utf-8")
    assert heldout.n_words == len(heldout.text.split())
    assert 900 <= heldout.n_words <= 1200
    assert len(heldout.paragraphs) >= 5
    assert heldout.text.isascii()
    assert str(heldout.n_words) in heldout.description


def test_probe_heldout_does_not_overlap_probe_texts():
    heldout_words = _words(datasets.load_probe_heldout().text)
    grams = {tuple(heldout_words[i:i + 5]) for i in range(len(heldout_words) - 4)}
    for text in datasets.load_probe_texts().texts:
        words = _words(text)
        shared = [g for g in zip(*(words[i:] for i in range(5))) if g in grams]
        assert not shared, (text, shared)


# --- data folder resolution -------------------------------------------------------

def test_get_data_dir_missing_env_is_one_clear_error(no_data_env):
    with pytest.raises(ValueError, match=r"not bundled.*'data_dir='.*LLMFBN_DATA"
                                         r".*<folder>/sst2/train\.tsv"):
        datasets.get_data_dir()


def test_get_data_dir_argument_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "from-env"))
    (tmp_path / "from-env").mkdir()
    assert datasets.get_data_dir() == tmp_path / "from-env"
    assert datasets.get_data_dir(tmp_path) == tmp_path  # the argument wins
    with pytest.raises(FileNotFoundError, match=r"'data_dir' must be an existing folder"):
        datasets.get_data_dir(tmp_path / "absent")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"LLMFBN_DATA.*absent"):
        datasets.get_data_dir()
    with pytest.raises(TypeError, match="'data_dir' must be a str or a path. int"):
        datasets.get_data_dir(3)


def test_one_resolver_for_loaders_and_load_task(no_data_env, tmp_path, monkeypatch):
    """load_task and the loaders resolve files alike and fail with the same words."""
    with pytest.raises(ValueError, match=r"not bundled.*Task 'sst2' reads sst2/dev\.tsv; "
                                         r"pass 'path=' .*LLMFBN_DATA"):
        load_task("sst2")
    with pytest.raises(ValueError, match=r"not bundled.*load_sst2\(\) reads sst2/train\.tsv; "
                                         r"pass 'path=' .* or 'data_dir='.*LLMFBN_DATA"):
        datasets.load_sst2()
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "absent"))
    for call in (lambda: load_task("sst2"), lambda: datasets.load_sst2("dev")):
        with pytest.raises(FileNotFoundError, match=r"\$LLMFBN_DATA' must be an existing"):
            call()
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text("text\tlabel\ngood film\t1\n")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert load_task("sst2").path == datasets.load_sst2("dev").path


def test_datasets_sit_below_evaluation():
    """llmfbn.datasets imports neither llmfbn.evaluation nor torch."""
    code = ("import sys, llmfbn.datasets; "
            "print(sorted(m for m in sys.modules if m == 'torch' or "
            "m.startswith('llmfbn.evaluation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_evaluation_reexports_the_task_readers():
    from llmfbn import evaluation
    from llmfbn.datasets import _tasks

    for name in ("TASKS", "Item", "TaskItems", "load_task"):
        assert getattr(evaluation, name) is getattr(_tasks, name)
    assert evaluation.DATA_ENV == datasets.DATA_ENV == "LLMFBN_DATA"


def test_standard_loader_without_data_dir(no_data_env):
    with pytest.raises(ValueError, match="not bundled"):
        datasets.load_sst2()


def test_missing_file_names_expected_path(tmp_path):
    expected = tmp_path.resolve() / "sst2" / "dev.tsv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        datasets.load_sst2("dev", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "x.raw"))):
        datasets.load_wikitext2(path=tmp_path / "x.raw")


def test_bad_choices():
    with pytest.raises(ValueError, match=re.escape(
            "'split' must be one of ('train', 'dev'). 'test' was provided.")):
        datasets.load_sst2("test")
    with pytest.raises(ValueError, match=re.escape(
            "'difficulty' must be one of ('easy', 'challenge'). 'hard' was provided.")):
        datasets.load_arc("hard")


# --- small synthetic copies (no shared data needed) -------------------------------

def test_sst2_from_data_dir_and_env(monkeypatch, tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text(
        "sentence\tlabel\na fine film \t1\ndull \t0\n", encoding="utf-8")
    (tmp_path / "sst2" / "PROVENANCE.md").write_text(
        "# Tiny SST\n\n| a | b |\n\n## Source\nHand-written **for** `tests`.\nSecond line.\n")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    sst = datasets.load_sst2()
    assert sst.texts == ["a fine film", "dull"]
    np.testing.assert_array_equal(sst.labels, [1, 0])
    assert sst.conditions == ["positive", "negative"]
    assert sst.label_names == ["negative", "positive"]
    assert sst.path == (tmp_path / "sst2" / "train.tsv").resolve()
    assert sst.description.endswith(
        "Tiny SST. Hand-written for tests. Second line.")
    assert sst.task_items.task == "sst2" and sst.task_items[0].gold == 1
    by_path = datasets.load_sst2(path=tmp_path / "sst2" / "train.tsv")
    assert by_path.texts == sst.texts


def test_wikitext2_parsing(tmp_path):
    raw = (" \n = First = \n \n Para one . \n \n = = Section = = \n \n Para two @-@ x . \n"
           " \n = Second = \n \n = = = Deep = = = \n Para three . \n")
    path = tmp_path / "wiki.test.raw"
    path.write_text(raw, encoding="utf-8")
    wiki = datasets.load_wikitext2(path=tmp_path)  # a folder holding the file
    assert wiki.text == raw
    assert wiki.paragraphs == ["Para one .", "Para two @-@ x .", "Para three ."]
    assert wiki.paragraph_articles == [0, 0, 1]
    assert wiki.articles == [("First", "Para one .\n= = Section = =\nPara two @-@ x ."),
                             ("Second", "= = = Deep = = =\nPara three .")]
    assert "2 Wikipedia" in wiki.description


# --- the real shared data -----------------------------------------------------------

def test_wikitext2_real():
    path = shared_data("wikitext-2-raw/wiki.test.raw")
    wiki = datasets.load_wikitext2(data_dir=SHARED_DATA)
    assert wiki.path == path.resolve()
    assert len(wiki.text.splitlines()) == 4358
    assert len(wiki.text.split()) == 241211
    assert len(wiki.articles) == 62
    assert wiki.articles[0][0] == "Robert Boulter"
    assert wiki.articles[0][1].startswith("Robert Boulter is an English film")
    assert not any(re.fullmatch(r"=( =)* .* =( =)*", p) for p in wiki.paragraphs)
    assert "= National record" in wiki.paragraphs  # a table legend, not a heading
    assert len(wiki.paragraph_articles) == len(wiki.paragraphs) > 2000
    assert "Merity" in wiki.description and "sha256" in wiki.description


@pytest.mark.parametrize("split, n, n_pos", [("dev", 872, 444), ("train", 67349, 37569)])
def test_sst2_real(split, n, n_pos, monkeypatch):
    shared_data(f"sst2/{split}.tsv")
    monkeypatch.setenv(DATA_ENV, str(SHARED_DATA))
    sst = datasets.load_sst2(split)
    assert len(sst.texts) == len(sst.conditions) == sst.labels.shape[0] == n
    assert int(sst.labels.sum()) == n_pos
    assert sst.labels.dtype.kind == "i"
    assert f"{n:,}" in sst.description and "Socher" in sst.description
    if split == "dev":
        assert sst.texts[0] == "it 's a charming and often affecting journey ."
        assert [i.context for i in sst.task_items] == \
            [i.context for i in load_task("sst2", SHARED_DATA / "sst2")]


@pytest.mark.parametrize("loader, folder, n, mention", [
    (datasets.load_piqa, "piqa", 1838, "AFL-3.0"),
    (datasets.load_boolq, "boolq", 3270, "yes/no"),
    (datasets.load_openbookqa, "openbookqa", 500, "official answer keys"),
    (datasets.load_winogrande, "winogrande", 1267, "partial"),
])
def test_multiple_choice_real(loader, folder, n, mention):
    shared_data(folder)
    bunch = loader(data_dir=SHARED_DATA)
    assert bunch.n_items == len(bunch.task_items) == n
    assert all(isinstance(item, Item) for item in bunch.task_items)
    assert bunch.path.parent == (SHARED_DATA / folder).resolve()
    assert f"{n:,}" in bunch.description and mention in bunch.description
    assert "Provenance (" in bunch.description
    by_path = loader(path=bunch.path)
    assert by_path.task_items == bunch.task_items


def test_winogrande_items_are_partial():
    shared_data("winogrande")
    item = datasets.load_winogrande(data_dir=SHARED_DATA).task_items[0]
    assert item.contexts is not None and len(item.contexts) == 2 and item.gold == 1


@pytest.mark.parametrize("difficulty, n, n_corrected", [("easy", 2376, 71),
                                                         ("challenge", 1172, 20)])
def test_arc_real_uses_official_keys(difficulty, n, n_corrected):
    shared_data(f"arc_{difficulty}")
    arc = datasets.load_arc(difficulty, data_dir=SHARED_DATA)
    assert arc.n_items == n
    assert arc.n_gold_corrected == len(arc.corrected_rows) == n_corrected
    assert f"{n_corrected} of its golds were corrected" in arc.description
    assert f"ARC-{difficulty.capitalize()}" in arc.description
    if difficulty == "easy":
        item = arc.task_items[14]  # "All living and nonliving material is composed of"
        assert 14 in arc.corrected_rows
        assert item.choices[item.gold] == "elements"


def test_arc_path_needs_official_keys_beside_it(tmp_path):
    source = shared_data("arc_challenge/arc_challenge.jsonl")
    shutil.copy(source, tmp_path / "arc_challenge.jsonl")
    with pytest.raises(FileNotFoundError, match="question-answers.jsonl"):
        datasets.load_arc("challenge", path=tmp_path / "arc_challenge.jsonl")
