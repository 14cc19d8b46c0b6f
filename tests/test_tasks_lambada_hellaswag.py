"""LAMBADA (OpenAI), HellaSwag and a user's own JSONL tasks: readers, cloze scoring,
no added BOS, `--eval NAME=FORMAT:PATH` (issue 10, evaluation breadth)."""

import bz2
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers.processors import TemplateProcessing

from conftest import make_loaded, make_tokenizer, shared_data
from llmfbn.cli import main
from llmfbn.evaluation import (
    EVALUATION_KINDS,
    Item,
    evaluate,
    evaluate_cloze,
    evaluate_task,
    load_task,
    score_requests,
)
from llmfbn.intervention import make_evaluation
from llmfbn.io import read_settings

# --------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------


def test_hellaswag_reader_reconstructs_lm_eval_query():
    items = load_task("hellaswag", shared_data("hellaswag"))
    assert len(items) == 10042 and items.kind == "choice" and not items.add_special_tokens
    first = items[0]
    # lm-eval: activity_label + ": " + ctx_a + " " + ctx_b.capitalize()
    assert first.context == "Roof shingle removal: A man is sitting on a roof. He"
    assert first.gold == 3 and first.choices[3] == "starts pulling up roofing on a roof."
    assert items[1].context.endswith("grabs the pole. The lady")
    labels = np.bincount([item.gold for item in items])
    assert labels.tolist() == [2515, 2485, 2584, 2458]  # PROVENANCE.md's counts


def test_hellaswag_reader_capitalises_only_a_lower_case_tail(tmp_path):
    path = tmp_path / "hs.txt.bz2"
    lines = ["Sports: A man runs. he jumps over A Bar", "0", "a.", "b.", "c.", "d.",
             "Home: Put the pot down. Keep it warm.", "1", "a.", "b.", "c.", "d."]
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    items = load_task("hellaswag", path)
    # str.capitalize() lower-cases the rest, as lm-eval's ctx_b.capitalize() does
    assert items[0].context == "Sports: A man runs. He jumps over a bar"
    assert items[1].context == "Home: Put the pot down. Keep it warm."
    path.write_bytes(bz2.compress("\n".join(lines[:11]).encode()))
    with pytest.raises(ValueError, match="6 lines per item.*11 lines"):
        load_task("hellaswag", path)
    path.write_bytes(b"not bzip2")
    with pytest.raises(ValueError, match="could not be read"):
        load_task("hellaswag", path)


def test_lambada_reader_splits_like_lm_eval():
    items = load_task("lambada_openai", shared_data("lambada_openai"), limit=5)
    assert items.kind == "cloze" and not items.add_special_tokens
    context, continuation = items[0].request()
    assert context.endswith("I don't care about") and continuation == " signs"
    rows = [json.loads(line) for line in
            shared_data("lambada_openai/lambada_openai.jsonl").open(encoding="utf-8")][:5]
    for item, row in zip(items, rows):
        # lm-eval: text.split(' ')[:-1] joined, and ' ' + text.split(' ')[-1]
        text = row["context"] + " " + row["continuation"]
        assert item.request() == (" ".join(text.split(" ")[:-1]), " " + text.split(" ")[-1])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_user_formats_mc_and_cloze(tmp_path):
    mc = write_jsonl(tmp_path / "mc.jsonl", [
        {"query": "the cat sat on the", "choices": ["mat", "sun"], "gold": 0},
        {"query": "the sun is ", "choices": ["big", "small", "red"], "gold": 2, "id": "q2"}])
    items = load_task("mc", mc)
    assert items.kind == "choice" and not items.add_special_tokens and items.task == "mc"
    assert items[0].requests() == [("the cat sat on the", " mat"), ("the cat sat on the", " sun")]
    assert items[1].requests()[2] == ("the sun is ", "red") and items[1].id == "q2"
    cloze = write_jsonl(tmp_path / "cloze.jsonl", [{"context": "a dog ran far", "continuation":
                                                    "away"}])
    assert load_task("cloze", cloze)[0].request() == ("a dog ran far", " away")
    assert load_task("cloze", cloze).kind == "cloze"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "choices": ["a"], "gold": 0}])
    with pytest.raises(ValueError, match="'choices' to be a list of >= 2 strings"):
        load_task("mc", bad)
    with pytest.raises(ValueError, match="expects the fields \\('context', 'continuation'\\)"):
        load_task("cloze", mc)
    with pytest.raises(FileNotFoundError, match="Format 'mc'.*reads a JSONL file"):
        load_task("mc", tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="holds no items"):
        load_task("cloze", empty)
    with pytest.raises(ValueError, match="'name' must be one of the tasks .*'hellaswag'.*"
                                         "the formats \\('mc', 'cloze'\\)"):
        load_task("lambada", cloze)


# --------------------------------------------------------------------------------------
# Cloze scoring and no added BOS, against references written apart from the package
# --------------------------------------------------------------------------------------


def reference_cloze(model, tokenizer, context, continuation, prefix=()):
    """Summed log-likelihood and greedy flag, lm-eval's way, one request at a time."""
    ctx = list(prefix) + tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx) - len(prefix):]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    rows = logp[len(ctx) - 1:-1]
    target = torch.tensor(cont)
    return float(rows.gather(1, target[:, None]).sum()), bool((rows.argmax(-1) == target).all())


def cloze_items(tmp_path):
    path = write_jsonl(tmp_path / "cloze.jsonl", [
        {"context": "the cat sat on the", "continuation": "mat"},
        {"context": "a dog ran", "continuation": "far away"},
        {"context": "one two three", "continuation": "four five six seven"},
        {"context": "the sun is big and the moon is", "continuation": "small"}])
    return load_task("cloze", path)


def test_evaluate_cloze_matches_reference(tmp_path):
    loaded = make_loaded("llama")
    items = cloze_items(tmp_path)
    result = evaluate_cloze(loaded.model, loaded.tokenizer, items, batch_size=3)
    refs = [reference_cloze(loaded.model, loaded.tokenizer, *item.request()) for item in items]
    np.testing.assert_allclose(result.per_item["loglik"], [r[0] for r in refs], rtol=1e-5)
    assert result.per_item["correct"].tolist() == [r[1] for r in refs]
    assert result.per_item["n_tokens"].tolist() == [1, 2, 4, 1]
    # lm-eval's perplexity aggregation: exp(-mean(loglik)) over items
    assert result.perplexity == pytest.approx(math.exp(-np.mean([r[0] for r in refs])),
                                              rel=1e-6)
    assert result.accuracy == np.mean([r[1] for r in refs])
    assert isinstance(evaluate(loaded.model, loaded.tokenizer, "cloze", items.path),
                      type(result))
    with pytest.raises(TypeError, match="ClozeItem"):
        evaluate_cloze(loaded.model, loaded.tokenizer, [Item("a", ("b", "c"), 0)])
    with pytest.raises(TypeError, match="Item 0 is a ClozeItem.*evaluate_cloze"):
        evaluate_task(loaded.model, loaded.tokenizer, items)


def test_greedy_is_every_token():
    """A continuation is greedy only when the argmax is right at every one of its tokens."""
    loaded = make_loaded("llama")
    model, tok = loaded.model, loaded.tokenizer
    ids = tok("the cat", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        first = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        second = int(model(torch.tensor([ids + [first]])).logits[0, -1].argmax())
    wrong = next(i for i in range(2, 60) if i != second)
    words = tok.convert_ids_to_tokens([first, second, wrong])
    scores = score_requests(model, tok, [("the cat", f" {words[0]} {words[1]}"),
                                         ("the cat", f" {words[0]} {words[2]}")])
    assert scores.greedy.tolist() == [True, False]
    assert scores.n_tokens.tolist() == [2, 2]


def bos_tokenizer():
    """The test tokenizer, adding a leading special token ([UNK], id 1) by default."""
    tok = make_tokenizer()
    tok._tokenizer.post_processor = TemplateProcessing(single="[UNK] $A",
                                                       special_tokens=[("[UNK]", 1)])
    assert tok("the cat")["input_ids"][0] == 1
    return tok


def test_lm_eval_tasks_add_no_bos(tmp_path):
    loaded = make_loaded("llama")
    tok = bos_tokenizer()
    items = cloze_items(tmp_path)
    requests = [item.request() for item in items]
    without = score_requests(loaded.model, tok, requests, add_special_tokens=False).loglik
    with_bos = score_requests(loaded.model, tok, requests, add_special_tokens=True).loglik
    assert not np.allclose(without, with_bos)
    result = evaluate_cloze(loaded.model, tok, items)
    np.testing.assert_allclose(result.per_item["loglik"], without)
    ref = [reference_cloze(loaded.model, tok, *r)[0] for r in requests]
    np.testing.assert_allclose(without, ref, rtol=1e-5)
    # multiple choice: mc items score without BOS, the older tasks keep it
    mc = load_task("mc", write_jsonl(tmp_path / "mc.jsonl", [
        {"query": "the cat sat on the", "choices": ["mat", "sun"], "gold": 0}]))
    got = evaluate_task(loaded.model, tok, mc).per_item["loglik"][0]
    assert got == pytest.approx(tuple(score_requests(
        loaded.model, tok, mc[0].requests(), add_special_tokens=False).loglik))
    mc.add_special_tokens = True
    assert evaluate_task(loaded.model, tok, mc).per_item["loglik"][0] == pytest.approx(tuple(
        score_requests(loaded.model, tok, mc[0].requests(), add_special_tokens=True).loglik))


# --------------------------------------------------------------------------------------
# make_evaluation and the command line
# --------------------------------------------------------------------------------------


def test_make_evaluation_cloze_metrics(tmp_path):
    loaded = make_loaded("llama")
    items = cloze_items(tmp_path)
    evaluation = make_evaluation("cloze", items.path, name="story", limit=3)
    assert evaluation.task == "story" and evaluation.settings["kind"] == "cloze"
    assert evaluation.settings["limit"] == 3
    scores = evaluation.run(loaded.model, loaded.tokenizer)
    assert set(scores) == {"accuracy", "perplexity"}
    ppl = scores["perplexity"]
    assert ppl.scale == "perplexity" and ppl.weights.tolist() == [1.0, 1.0, 1.0]
    ref = evaluate_cloze(loaded.model, loaded.tokenizer, items[:3])
    assert ppl.value == pytest.approx(math.exp(-ref.per_item["loglik"].mean()))
    assert scores["accuracy"].units.tolist() == ref.per_item["correct"].astype(float).tolist()


def test_make_evaluation_refuses_jsonl_as_text_and_bad_names(tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", [{"context": "a", "continuation": "b"}])
    for kind in ("text", "wikitext2"):
        with pytest.raises(ValueError, match="would score .*items.jsonl as raw JSON.*"
                                             "=mc:.*=cloze:"):
            make_evaluation(kind, path)
    with pytest.raises(ValueError, match="'task' must be one of .*'lambada_openai', 'mc', "
                                         "'cloze'\\). 'jsonl' was provided"):
        make_evaluation("jsonl", path)
    with pytest.raises(ValueError, match="'name' must start with a letter or digit"):
        make_evaluation("cloze", path, name="my task")
    assert set(EVALUATION_KINDS) >= {"text", "wikitext2", "sst2", "hellaswag",
                                     "lambada_openai", "mc", "cloze"}


def test_cli_eval_names_formats_and_manifest(tmp_path, tiny_model_dir, capsys):
    text_a, text_b = tmp_path / "a.txt", tmp_path / "b.txt"
    text_a.write_text("the cat sat on the mat .\nthe sun is big\n")
    text_b.write_text("a dog ran far away\none two three four\n")
    mc = write_jsonl(tmp_path / "mc.jsonl", [
        {"query": "the cat sat on the", "choices": ["mat", "sun"], "gold": 0}])
    cloze = cloze_items(tmp_path).path
    out = tmp_path / "base.csv"
    args = ["evaluate", "--model", str(tiny_model_dir), "--eval", f"notes=text:{text_a}",
            "--eval", f"more=text:{text_b}", "--eval", f"mine=mc:{mc}",
            "--eval", f"story=cloze:{cloze}", "--eval", f"text={text_a}",
            "--max-length", "8", "--stride", "4", "--out", str(out), "-q"]
    assert main(args) == 0
    rows = pd.read_csv(out)
    assert sorted(set(rows["task"])) == ["mine", "more", "notes", "story", "text"]
    assert set(rows[rows.task == "story"]["metric"]) == {"accuracy", "perplexity"}
    assert set(rows[rows.task == "mine"]["metric"]) == {"accuracy", "accuracy_norm"}
    tasks = read_settings(out)["tasks"]
    assert {t: s["kind"] for t, s in tasks.items()} == {
        "notes": "text", "more": "text", "mine": "mc", "story": "cloze", "text": "text"}
    capsys.readouterr()
    # the kind is verified on resume: the same name read as another format is refused
    code = main(["evaluate", "--model", str(tiny_model_dir), "--eval", f"mine=cloze:{cloze}",
                 "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "the --eval format of task 'mine' was 'mc', now 'cloze'" in err


def test_cli_intervene_on_user_formats(tmp_path, tiny_model_dir, capsys):
    """Networks vs controls on an mc and a cloze task: rows per metric, paired units."""
    from llmfbn.grid import NeuronGrid
    from llmfbn.models import load_model
    from llmfbn.networks import FunctionalNetworks

    grid = NeuronGrid(3, 24, model=str(tiny_model_dir), signal="mlp", model_layers=3,
                      weights_hash=load_model(tiny_model_dir).weights_hash)
    masks = np.zeros((2, 3, 24), bool)
    masks[0, 0, :6] = masks[1, 2, 6:12] = True
    FunctionalNetworks(masks.astype(np.float32), masks, grid).save(tmp_path / "net")
    mc = write_jsonl(tmp_path / "mc.jsonl", [
        {"query": "the cat sat on the", "choices": ["mat", "sun"], "gold": 0},
        {"query": "one two", "choices": ["three", "red"], "gold": 0}])
    cloze = cloze_items(tmp_path).path
    out = tmp_path / "r.csv"
    assert main(["intervene", "--model", str(tiny_model_dir), "--networks", str(tmp_path / "net"),
                 "--eval", f"quiz=mc:{mc}", "--eval", f"story=cloze:{cloze}", "--controls", "2",
                 "--out", str(out), "-q"]) == 0
    rows = pd.read_csv(out)
    edited = rows[rows.network != "none"]
    assert sorted(set(zip(edited.task, edited.metric))) == [
        ("quiz", "accuracy"), ("quiz", "accuracy_norm"), ("story", "accuracy"),
        ("story", "perplexity")]
    assert len(edited) == 2 * 4 and edited["value"].notna().all()
    base = rows[(rows.network == "none") & (rows.task == "story")
                & (rows.metric == "perplexity")]["value"].item()
    loaded = load_model(tiny_model_dir)
    ref = evaluate_cloze(loaded.model, loaded.tokenizer, load_task("cloze", cloze))
    assert base == pytest.approx(ref.perplexity, rel=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("notes=foo.txt", "The format of 'notes' .* is missing or unknown: 'foo.txt' was provided"),
    ("x=jsonl:a.jsonl", "is missing or unknown: 'jsonl:a.jsonl'"),
    ("sst2", "The spec 'sst2' was provided"),
    ("x=mc:", "gives no PATH after the format 'mc'"),
])
def test_cli_eval_spec_errors(tmp_path, spec, message, capsys):
    code = main(["evaluate", "--eval", spec, "--out", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("llmfbn: error:") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err
    if "unknown" in message:
        for kind in EVALUATION_KINDS:  # every accepted format, named
            assert f" {kind} (" in err


def test_cli_refuses_jsonl_as_text_and_repeated_names(tmp_path, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", [{"context": "a", "continuation": "b"}])
    assert main(["evaluate", "--eval", f"notes=text:{items}", "--out",
                 str(tmp_path / "r.csv")]) == 2
    assert "as raw JSON" in capsys.readouterr().err
    text = tmp_path / "t.txt"
    text.write_text("a b\n")
    assert main(["evaluate", "--eval", f"text={text}", "--eval", f"text=text:{text}",
                 "--out", str(tmp_path / "r.csv")]) == 2
    assert "names task 'text' twice" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Against lm-evaluation-harness itself, on SmolLM2 (the target, on fewer items)
# --------------------------------------------------------------------------------------

N_ITEMS = 16  # ~1 min on 2 cores; the first 200 items agree too (measured by hand)


def lm_eval_scores(loaded, folder, hellaswag, lambada):
    """lm-eval's acc/acc_norm and acc/perplexity over the same parsed items (local files)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    write_jsonl(folder / "hs.jsonl", [{"query": i.context, "choices": list(i.choices),
                                       "gold": i.gold} for i in hellaswag])
    write_jsonl(folder / "lb.jsonl", [{"context": i.context, "continuation": i.continuation}
                                      for i in lambada])
    common = "dataset_path: json\ntest_split: test\n"
    (folder / "hs.yaml").write_text(
        f"task: hs_local\n{common}dataset_kwargs: {{data_files: {{test: {folder / 'hs.jsonl'}}}}}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{query}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{gold}}'\n"
        "metric_list: [{metric: acc}, {metric: acc_norm}]\n")
    # lm-eval's lambada_openai.yaml, on the file's own context/continuation split
    (folder / "lb.yaml").write_text(
        f"task: lb_local\n{common}dataset_kwargs: {{data_files: {{test: {folder / 'lb.jsonl'}}}}}\n"
        "output_type: loglikelihood\ndoc_to_text: '{{context}}'\n"
        "doc_to_target: \"{{' ' + continuation}}\"\n"
        "metric_list: [{metric: perplexity, aggregation: perplexity, higher_is_better: false},"
        " {metric: acc, aggregation: mean, higher_is_better: true}]\n")
    import os

    os.environ["HF_DATASETS_OFFLINE"] = "1"
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=8,
              add_bos_token=False)
    out = simple_evaluate(model=lm, tasks=["hs_local", "lb_local"], num_fewshot=0,
                          task_manager=TaskManager(include_path=str(folder),
                                                   include_defaults=False))
    return out["results"]


@pytest.mark.integration
def test_lambada_hellaswag_agree_with_lm_eval(smollm2, tmp_path):
    pytest.importorskip("lm_eval")
    hs_path, lb_path = shared_data("hellaswag"), shared_data("lambada_openai")
    hs = make_evaluation("hellaswag", hs_path, limit=N_ITEMS).run(smollm2.model,
                                                                  smollm2.tokenizer)
    lb = make_evaluation("lambada_openai", lb_path, limit=N_ITEMS).run(smollm2.model,
                                                                       smollm2.tokenizer)
    theirs = lm_eval_scores(smollm2, tmp_path, load_task("hellaswag", hs_path, limit=N_ITEMS),
                            load_task("lambada_openai", lb_path, limit=N_ITEMS))
    assert abs(hs["accuracy"].value - theirs["hs_local"]["acc,none"]) <= 0.015
    assert abs(hs["accuracy_norm"].value - theirs["hs_local"]["acc_norm,none"]) <= 0.015
    assert abs(lb["accuracy"].value - theirs["lb_local"]["acc,none"]) <= 0.015
    assert lb["perplexity"].value == pytest.approx(theirs["lb_local"]["perplexity,none"],
                                                   rel=0.02)
    assert 0.1 < lb["accuracy"].value < 0.9 and 0.1 < hs["accuracy_norm"].value < 0.9
