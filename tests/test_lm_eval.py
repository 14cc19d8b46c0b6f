"""lm-evaluation-harness on an intervened model, offline, against llmfbn's own scoring.

``lm_eval.simple_evaluate`` runs local task files (YAML over a local JSONL,
``dataset_path: json``) with ``HFLM(pretrained=model, tokenizer=tokenizer)``
inside an llmfbn intervention context. Skipped only when lm_eval is not
installed (``pip install llmfbn[lmeval]``).
"""

import json
import os

import numpy as np
import pytest

lm_eval = pytest.importorskip("lm_eval")

from conftest import make_loaded  # noqa: E402
from llmfbn.evaluation import evaluate_cloze, evaluate_task, load_task  # noqa: E402
from llmfbn.intervention import inhibit, make_evaluation  # noqa: E402

MC_ROWS = [
    {"query": "the cat sat on the", "choices": ["mat", "sun", "big red dog"], "gold": 0},
    {"query": "a dog ran far", "choices": ["away", "red", "on the mat"], "gold": 0},
    {"query": "one two three", "choices": ["four", "big", "five six"], "gold": 0},
    {"query": "the sun is big and the moon is", "choices": ["small", "a cat", "blue"],
     "gold": 0},
    {"query": "it was a very good film , not a", "choices": ["bad film", "tree", "sun"],
     "gold": 0},
    {"query": "we ran to the house and", "choices": ["sat", "they ran far away", "the"],
     "gold": 1},
    {"query": "seven eight nine", "choices": ["ten", "water", "fire and water"], "gold": 0},
    {"query": "she is in the", "choices": ["house", "blue moon", "two"], "gold": 0},
]
CLOZE_ROWS = [
    {"context": "the cat sat on the", "continuation": "mat"},
    {"context": "one two three four", "continuation": "five six"},
    {"context": "a dog ran far", "continuation": "away"},
    {"context": "the sun is big and the moon is", "continuation": "small"},
    {"context": "it was a very good film , not a bad", "continuation": "film !"},
    {"context": "he ran to the", "continuation": "house"},
]

MC_YAML = """task: llmfbn_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

# lm-eval's own lambada_openai.yaml, on a local file with the cloze JSONL fields.
CLOZE_YAML = """task: llmfbn_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{' ' + continuation}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    for name, rows, yaml in (("mc", MC_ROWS, MC_YAML), ("cloze", CLOZE_ROWS, CLOZE_YAML)):
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        (folder / f"llmfbn_{name}.yaml").write_text(yaml.format(path=data), encoding="utf-8")
    return folder


def run_lm_eval(loaded, folder):
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    os.environ["HF_DATASETS_OFFLINE"] = "1"  # the json builder ships with datasets
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=4,
              add_bos_token=False)
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=["llmfbn_mc", "llmfbn_cloze"],
                                  num_fewshot=0, task_manager=manager, log_samples=True)
    samples = {task: sorted(rows, key=lambda s: s["doc_id"])
               for task, rows in out["samples"].items()}
    return out["results"], samples


def half_of_every_layer(loaded):
    """Inhibit the first half of each layer's MLP neurons."""
    config = loaded.model.config
    mask = np.zeros(config.intermediate_size, dtype=bool)
    mask[:config.intermediate_size // 2] = True
    return {layer: mask for layer in range(config.num_hidden_layers)}


def loud_mlp_model():
    """The tiny random Llama with its MLP outputs made 30x larger, so edits show."""
    import torch

    loaded = make_loaded("llama")
    with torch.no_grad():
        for layer in loaded.model.model.layers:
            layer.mlp.down_proj.weight.mul_(30.0)
    return loaded


def test_lm_eval_offline_matches_llmfbn_inside_an_intervention(task_files):
    loaded = loud_mlp_model()
    mc = load_task("mc", task_files / "mc.jsonl")
    cloze = load_task("cloze", task_files / "cloze.jsonl")
    targets = half_of_every_layer(loaded)
    with inhibit(loaded.model, targets):
        results, samples = run_lm_eval(loaded, task_files)
        ours = evaluate_task(loaded.model, loaded.tokenizer, mc)
        ours_cloze = evaluate_cloze(loaded.model, loaded.tokenizer, cloze)
        scores = make_evaluation("mc", task_files / "mc.jsonl").run(loaded.model,
                                                                   loaded.tokenizer)
    # the same numbers, item by item, then the same accuracies
    theirs = [[resp[0] for resp in s["filtered_resps"]] for s in samples["llmfbn_mc"]]
    np.testing.assert_allclose(np.concatenate(theirs),
                               np.concatenate(ours.per_item["loglik"].tolist()), atol=1e-4)
    assert results["llmfbn_mc"]["acc,none"] == ours.accuracy == scores["accuracy"].value
    assert results["llmfbn_mc"]["acc_norm,none"] == ours.accuracy_norm \
        == scores["accuracy_norm"].value
    theirs_cloze = [s["filtered_resps"][0] for s in samples["llmfbn_cloze"]]
    np.testing.assert_allclose([r[0] for r in theirs_cloze], ours_cloze.per_item["loglik"],
                               atol=1e-4)
    assert [bool(r[1]) for r in theirs_cloze] == ours_cloze.per_item["correct"].tolist()
    assert results["llmfbn_cloze"]["acc,none"] == ours_cloze.accuracy
    assert results["llmfbn_cloze"]["perplexity,none"] == pytest.approx(ours_cloze.perplexity,
                                                                       rel=1e-5)
    # the hooks were in force for lm_eval: without them its numbers change
    plain, plain_samples = run_lm_eval(loaded, task_files)
    plain_ll = [[resp[0] for resp in s["filtered_resps"]] for s in plain_samples["llmfbn_mc"]]
    assert np.abs(np.concatenate(plain_ll) - np.concatenate(theirs)).max() > 0.1
    assert plain["llmfbn_cloze"]["perplexity,none"] != pytest.approx(
        results["llmfbn_cloze"]["perplexity,none"], rel=1e-3)
    unedited = evaluate_task(loaded.model, loaded.tokenizer, mc)
    assert plain["llmfbn_mc"]["acc,none"] == unedited.accuracy != ours.accuracy
