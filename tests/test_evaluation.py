"""Tests for llmfbn.evaluation: perplexity, task loaders and zero-shot scoring."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import WORDS, make_loaded, shared_data
from llmfbn.evaluation import (
    DATA_ENV,
    TASKS,
    Item,
    TaskItems,
    encode_pair,
    evaluate,
    evaluate_task,
    load_task,
    perplexity,
    read_text_rows,
)

# --------------------------------------------------------------------------------------
# Reference implementations, written independently of the package
# --------------------------------------------------------------------------------------


def hf_recipe(model, ids, max_length, stride):
    """The loop of the transformers docs "Perplexity of fixed-length models".

    Returns ``(ppl, nll_sum, n_tokens, literal_ppl)``: ``n_tokens`` counts the
    labels left after the model's internal shift (exact); ``literal_ppl``
    counts ``num_valid_tokens - batch_size`` per window, as the docs' code does.
    """
    encodings = torch.tensor([ids])
    seq_len = encodings.size(1)
    nll_sum, n_tokens, literal_sum, literal_n, prev_end_loc = 0.0, 0, 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = encodings[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss.item()
        n_loss = (target_ids[:, 1:] != -100).sum().item()
        nll_sum += loss * n_loss
        n_tokens += n_loss
        n_literal = (target_ids != -100).sum().item() - target_ids.size(0)
        literal_sum += loss * n_literal
        literal_n += n_literal
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens), nll_sum, n_tokens, math.exp(literal_sum / literal_n)


def disjoint_reference(model, ids, max_length):
    nll_sum, n_tokens = 0.0, 0
    for begin in range(0, len(ids), max_length):
        chunk = torch.tensor([ids[begin:begin + max_length]])
        if chunk.size(1) < 2:
            continue
        with torch.no_grad():
            loss = model(chunk, labels=chunk).loss.item()
        nll_sum += loss * (chunk.size(1) - 1)
        n_tokens += chunk.size(1) - 1
    return math.exp(nll_sum / n_tokens), nll_sum, n_tokens


def manual_loglik(model, tokenizer, context, continuation):
    """One unbatched forward over context + continuation tokenised apart."""
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return sum(logp[len(ctx) + j - 1, tok].item() for j, tok in enumerate(cont))


def random_texts(n_texts=10, n_words=30, seed=0):
    rng = np.random.default_rng(seed)
    words = [w for w in WORDS if w.isalpha()]
    return [" ".join(rng.choice(words, n_words)) for _ in range(n_texts)]


def tokens_of(tokenizer, texts):
    return tokenizer("\n\n".join(texts))["input_ids"]


# --------------------------------------------------------------------------------------
# Perplexity on tiny models
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return make_loaded("llama")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_perplexity_matches_hf_recipe(family):
    loaded = make_loaded(family)
    texts = random_texts()
    ids = tokens_of(loaded.tokenizer, texts)
    assert len(ids) == 300
    result = perplexity(loaded.model, loaded.tokenizer, texts, max_length=64, stride=24)
    ppl, nll, n, literal_ppl = hf_recipe(loaded.model, ids, 64, 24)
    assert result.n_scored_tokens == n == len(ids) - 1
    assert result.nll_sum == pytest.approx(nll, rel=1e-5)
    assert result.perplexity == pytest.approx(ppl, rel=1e-5)
    assert result.perplexity == pytest.approx(literal_ppl, rel=5e-3)
    assert result.n_windows == 11 and result.n_tokens == 300
    assert (result.mode, result.max_length, result.stride) == ("sliding", 64, 24)


def test_perplexity_disjoint(tiny):
    texts = random_texts()
    ids = tokens_of(tiny.tokenizer, texts)
    disjoint = perplexity(tiny.model, tiny.tokenizer, texts, max_length=64, mode="disjoint")
    ppl, nll, n = disjoint_reference(tiny.model, ids, 64)
    assert disjoint.n_windows == 5
    assert disjoint.n_scored_tokens == n == len(ids) - 5
    assert disjoint.perplexity == pytest.approx(ppl, rel=1e-5)
    assert disjoint.stride == 64
    sliding = perplexity(tiny.model, tiny.tokenizer, texts, max_length=64, stride=24)
    assert sliding.perplexity != pytest.approx(disjoint.perplexity, rel=1e-6)
    # stride == max_length in sliding mode is the disjoint computation
    same = perplexity(tiny.model, tiny.tokenizer, texts, max_length=64, stride=64)
    assert same.nll_sum == pytest.approx(disjoint.nll_sum, rel=1e-6)
    assert same.n_scored_tokens == disjoint.n_scored_tokens


@pytest.mark.parametrize("mode", ["sliding", "disjoint"])
def test_perplexity_batching_is_invariant(tiny, mode):
    texts = random_texts(n_texts=9)  # 270 tokens: the last window is shorter (padding)
    one = perplexity(tiny.model, tiny.tokenizer, texts, max_length=64, stride=24, mode=mode)
    four = perplexity(tiny.model, tiny.tokenizer, texts, max_length=64, stride=24,
                      mode=mode, batch_size=4)
    assert four.nll_sum == pytest.approx(one.nll_sum, rel=1e-4)
    assert four.n_scored_tokens == one.n_scored_tokens
    assert four.n_windows == one.n_windows


def test_perplexity_max_tokens_and_file_source(tiny, tmp_path):
    texts = random_texts()
    ids = tokens_of(tiny.tokenizer, texts)
    result = perplexity(tiny.model, tiny.tokenizer, texts, max_length=64, stride=32,
                        max_tokens=100)
    assert result.n_tokens == 100 and result.n_scored_tokens == 99
    _, nll, _, _ = hf_recipe(tiny.model, ids[:100], 64, 32)
    assert result.nll_sum == pytest.approx(nll, rel=1e-5)

    # A file is read as Hugging Face wikitext rows: lines keep "\n", blank lines are "".
    path = tmp_path / "text.raw"
    path.write_text(" \n the cat sat \n \n a dog ran \n", encoding="utf-8")
    rows = read_text_rows(path)
    assert rows == ["", " the cat sat \n", "", " a dog ran \n"]
    from_file = perplexity(tiny.model, tiny.tokenizer, path, max_length=8, stride=4)
    from_list = perplexity(tiny.model, tiny.tokenizer, rows, max_length=8, stride=4)
    assert from_file == from_list


def test_perplexity_errors(tiny):
    model, tok = tiny.model, tiny.tokenizer
    texts = random_texts(2)
    with pytest.raises(ValueError, match="'stride' must be <= 'max_length' \\(64\\). 65"):
        perplexity(model, tok, texts, max_length=64, stride=65)
    with pytest.raises(ValueError, match="'mode' must be one of"):
        perplexity(model, tok, texts, mode="rolling")
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(model, tok, [])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(model, tok, ["", ""])
    with pytest.raises(TypeError, match="'source' must be"):
        perplexity(model, tok, 42)
    with pytest.raises(FileNotFoundError, match="not a file"):
        perplexity(model, tok, "/no/such/file.txt")
    with pytest.raises(TypeError, match="'batch_size' must be an int"):
        perplexity(model, tok, texts, batch_size=1.5)
    gpt2 = make_loaded("gpt2")  # 128 positions
    with pytest.raises(ValueError, match="position limit \\(128\\). 256 was provided"):
        perplexity(gpt2.model, gpt2.tokenizer, texts, max_length=256, stride=128)
    # disjoint mode ignores stride
    perplexity(model, tok, texts, max_length=16, mode="disjoint")


# --------------------------------------------------------------------------------------
# Zero-shot scoring on a tiny model
# --------------------------------------------------------------------------------------


def tiny_items():
    return TaskItems([
        Item("the cat sat on the", ("mat", "dog", "big red house"), 0, id="a"),
        Item("it was a very", ("good film", "bad"), 1, id="b"),
        Item("one two", ("three four five", "six"), 0, id="c"),
        Item("", ("sun is big",), 1, id="d",
             contexts=("the moon is small and the", "the water is blue and the")),
        Item("we ran far away and", ("they sat", "he sat on the mat ."), 1, id="e"),
    ], task="toy", path=".")


def test_evaluate_task_matches_manual_forward(tiny):
    items = tiny_items()
    result = evaluate_task(tiny.model, tiny.tokenizer, items, batch_size=3)
    assert result.task == "toy" and result.n == 5
    for item, row in zip(items, result.per_item.itertuples()):
        expected = [manual_loglik(tiny.model, tiny.tokenizer, c, x) for c, x in item.requests()]
        np.testing.assert_allclose(row.loglik, expected, rtol=1e-5, atol=1e-5)
        assert row.pred == int(np.argmax(expected))
        n_chars = np.array([len(t) for t in item.option_texts], dtype=float)
        assert row.pred_norm == int(np.argmax(np.array(expected) / n_chars))
        assert row.joint
    p = result.per_item["correct"].mean()
    assert result.accuracy == pytest.approx(p)
    assert result.accuracy_stderr == pytest.approx(math.sqrt(p * (1 - p) / 4))
    assert result.accuracy_norm == pytest.approx(result.per_item["correct_norm"].mean())
    # partial scoring: one shared continuation, so acc_norm ranks as acc
    row_d = result.per_item.set_index("id").loc["d"]
    assert row_d.pred == row_d.pred_norm and row_d.n_chars == (10, 10)


def test_evaluate_task_batching_is_invariant(tiny):
    items = tiny_items()
    one = evaluate_task(tiny.model, tiny.tokenizer, items, batch_size=1)
    many = evaluate_task(tiny.model, tiny.tokenizer, items, batch_size=16)
    np.testing.assert_allclose(np.concatenate(many.per_item["loglik"].to_list()),
                               np.concatenate(one.per_item["loglik"].to_list()),
                               rtol=1e-5, atol=1e-5)
    assert one.accuracy == many.accuracy


def test_encode_pair_conventions(tiny):
    tok = tiny.tokenizer
    # trailing context whitespace moves to the continuation (lm-eval)
    ctx, cont, joint = encode_pair(tok, "the cat ", "sat")
    assert (ctx, cont, joint) == (tok("the cat")["input_ids"], tok("sat")["input_ids"], True)
    # a token merging across the boundary ("ca" + "t" -> "cat"): tokenised apart
    ctx, cont, joint = encode_pair(tok, "the ca", "t")
    assert not joint
    assert cont == tok("t", add_special_tokens=False)["input_ids"]
    # empty context: start from the eos token
    ctx, cont, _ = encode_pair(tok, "", "the cat")
    assert ctx == [tok.eos_token_id]


def test_item_validation():
    with pytest.raises(ValueError, match="'gold' must be an int in \\[0, 1\\]. 2"):
        Item("q", ("a", "b"), 2)
    with pytest.raises(ValueError, match="'choices' must hold at least 2"):
        Item("q", ("a",), 0)
    with pytest.raises(ValueError, match="exactly 1 shared continuation"):
        Item("", ("a", "b"), 0, contexts=("x", "y"))
    assert Item("", ("end",), 1, contexts=["x", "y"]).requests() == [("x", " end"), ("y", " end")]


def test_evaluate_task_errors(tiny):
    with pytest.raises(ValueError, match="non-empty list of Item"):
        evaluate_task(tiny.model, tiny.tokenizer, [])
    with pytest.raises(TypeError, match="Item 0 is a dict"):
        evaluate_task(tiny.model, tiny.tokenizer, [{"context": "x"}])


# --------------------------------------------------------------------------------------
# Task loaders
# --------------------------------------------------------------------------------------

COUNTS = {"sst2": 872, "piqa": 1838, "boolq": 3270, "arc_easy": 2376,
          "arc_challenge": 1172, "openbookqa": 500, "winogrande": 1267}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_load_task_real_files(name):
    folder = shared_data(TASKS[name].folder)
    items = load_task(name, folder)
    assert len(items) == COUNTS[name]
    assert items.task == name
    assert all(isinstance(item, Item) for item in items)
    expected_corrections = {"arc_easy": 71, "arc_challenge": 20}.get(name, 0)
    assert items.n_gold_corrected == expected_corrections
    assert len(load_task(name, folder, limit=7)) == 7


def test_load_task_arc_official_keys():
    items = load_task("arc_easy", shared_data("arc_easy"))
    # row 14: [air, elements, water, soil], official key "2" -> elements
    assert items[14].choices[items[14].gold] == "elements"
    assert items[14].id == json.loads(
        shared_data("arc_easy/question-answers.jsonl").read_text().splitlines()[14])["id"]
    assert 14 in items.corrected_rows
    first_30 = load_task("arc_easy", shared_data("arc_easy"), limit=30)
    assert first_30.corrected_rows == [14, 26]
    assert load_task("arc_challenge", shared_data("arc_challenge")).corrected_rows[:3] == \
        [44, 135, 313]


def test_load_task_prompts():
    sst2 = load_task("sst2", shared_data("sst2"), limit=1)[0]
    assert sst2.requests() == [
        ("Review: it 's a charming and often affecting journey .\nSentiment:", " negative"),
        ("Review: it 's a charming and often affecting journey .\nSentiment:", " positive"),
    ]
    assert sst2.gold == 1
    wino = load_task("winogrande", shared_data("winogrande"), limit=1)[0]
    assert wino.requests()[1] == ("Sarah was a much better surgeon than Maria so Maria",
                                  " always got the easier cases.")
    assert wino.gold == 1


def test_load_task_env_and_path_errors(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(ValueError, match="pass 'path=' .*or set LLMFBN_DATA"):
        load_task("sst2")
    with pytest.raises(ValueError, match="'name' must be one of"):
        load_task("mmlu", tmp_path)
    with pytest.raises(FileNotFoundError, match="dev.tsv"):
        load_task("sst2", tmp_path)
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text("text\tlabel\ngood film \t1\n")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    items = load_task("sst2")
    assert items[0] == Item("Review: good film\nSentiment:", ("negative", "positive"), 1, id=0)


def test_load_task_format_errors(tmp_path):
    bad = tmp_path / "boolq.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": True}) + "\n")
    with pytest.raises(ValueError, match="expects the fields \\('query', 'choices', 'gold'\\)"
                                         ". Found \\('question', 'answer'\\)"):
        load_task("boolq", bad)
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_task("boolq", bad)
    bad.write_text(json.dumps({"query": "q", "choices": ["no", "yes"], "gold": 5}) + "\n")
    with pytest.raises(ValueError, match="'gold' to be an int in \\[0, 1\\]. 5 was found"):
        load_task("boolq", bad)
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("review\tstars\nnice\t5\n")
    with pytest.raises(ValueError, match="'text' \\(or 'sentence'\\) and 'label'"):
        load_task("sst2", tsv)
    arc = tmp_path / "arc_easy.jsonl"
    arc.write_text(json.dumps({"query": "Question: q", "choices": ["a", "b"], "gold": 0}) + "\n")
    with pytest.raises(FileNotFoundError, match="official answer keys"):
        load_task("arc_easy", arc)
    (tmp_path / "question-answers.jsonl").write_text("")
    with pytest.raises(ValueError, match="0 answer keys but .* has 1 rows"):
        load_task("arc_easy", arc)
    piqa = tmp_path / "valid.jsonl"
    piqa.write_text(json.dumps({"goal": "g", "sol1": "a", "sol2": "b"}) + "\n")
    (tmp_path / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(ValueError, match="2 labels but .* has 1 rows"):
        load_task("piqa", piqa)


# --------------------------------------------------------------------------------------
# Integration: SmolLM2 on real data
# --------------------------------------------------------------------------------------

WIKI_TOKENS, WIKI_LENGTH, WIKI_STRIDE = 2000, 512, 256


@pytest.fixture(scope="module")
def one_thread():
    """Run torch on one thread for this module's SmolLM2 tests, then restore.

    On a machine whose cores are shared with other jobs, torch's default thread
    pool slowed these tests 5-10x (measured: 190 s instead of 16 s for the
    SST-2/ARC test at load average ~5 on 2 cores); one thread keeps each under 30 s.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def wiki_reference(smollm2, one_thread):
    """The docs' loop on the first WIKI_TOKENS tokens of WikiText-2 test."""
    rows = read_text_rows(shared_data("wikitext-2-raw/wiki.test.raw"))
    ids = tokens_of(smollm2.tokenizer, rows)[:WIKI_TOKENS]
    return hf_recipe(smollm2.model, ids, WIKI_LENGTH, WIKI_STRIDE)


@pytest.mark.integration
def test_smollm2_wikitext_perplexity_matches_hf_recipe(smollm2, wiki_reference, one_thread):
    ppl, nll, n, literal_ppl = wiki_reference
    path = shared_data("wikitext-2-raw/wiki.test.raw")
    result = perplexity(smollm2.model, smollm2.tokenizer, path, max_length=WIKI_LENGTH,
                        stride=WIKI_STRIDE, max_tokens=WIKI_TOKENS)
    assert result.n_scored_tokens == n == WIKI_TOKENS - 1
    assert result.perplexity == pytest.approx(ppl, rel=1e-4)
    assert result.perplexity == pytest.approx(literal_ppl, rel=5e-3)


@pytest.mark.integration
def test_smollm2_wikitext_sliding_beats_disjoint_and_batches(smollm2, wiki_reference,
                                                            one_thread):
    _, nll, _, _ = wiki_reference
    model, tok = smollm2.model, smollm2.tokenizer
    path = shared_data("wikitext-2-raw/wiki.test.raw")
    kwargs = dict(max_length=WIKI_LENGTH, max_tokens=WIKI_TOKENS, batch_size=4)
    sliding = perplexity(model, tok, path, stride=WIKI_STRIDE, **kwargs)
    assert sliding.nll_sum == pytest.approx(nll, rel=1e-4)  # batches of 4 vs unbatched
    disjoint = perplexity(model, tok, path, mode="disjoint", **kwargs)
    assert disjoint.n_scored_tokens == WIKI_TOKENS - 4
    assert sliding.perplexity < disjoint.perplexity


@pytest.mark.integration
def test_smollm2_sst2_and_arc_easy(smollm2, one_thread):
    model, tok = smollm2.model, smollm2.tokenizer
    sst2 = evaluate(model, tok, "sst2", shared_data("sst2"), limit=40, batch_size=8)
    assert sst2.n == 40 and isinstance(sst2.accuracy, float)
    # Measured 0.85 on these 40 items (0.79 on the first 200; 0.5 is chance): the
    # score is deterministic, the margin only absorbs float and platform noise.
    assert sst2.accuracy >= 0.7
    items = load_task("sst2", shared_data("sst2"), limit=2)
    for item, row in zip(items, sst2.per_item.itertuples()):
        expected = [manual_loglik(model, tok, c, x) for c, x in item.requests()]
        np.testing.assert_allclose(row.loglik, expected, rtol=1e-4, atol=1e-4)
    arc = evaluate(model, tok, "arc_easy", shared_data("arc_easy"), limit=40, batch_size=8)
    assert arc.n == 40
    assert 0.0 <= arc.accuracy <= 1.0 and 0.0 <= arc.accuracy_norm <= 1.0
    assert arc.n_split_tokenised == 0
