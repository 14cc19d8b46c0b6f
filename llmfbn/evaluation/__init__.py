"""Evaluation: perplexity and zero-shot multiple choice, for plain or intervened models.

Everything here calls ``model(...)`` once per batch, so any forward hook on
the model (an llmfbn intervention, :class:`llmfbn.hooks.HookGroup`) that is
active around a call applies to it.

- :func:`perplexity` follows the Hugging Face recipe "Perplexity of
  fixed-length models" (texts joined with ``"\\n\\n"``, strided sliding
  windows), counting scored tokens exactly; ``mode="disjoint"`` gives the
  no-overlap variant.
- :func:`load_task` reads SST-2, PIQA, BoolQ, ARC-Easy/Challenge,
  OpenBookQA, WinoGrande, HellaSwag and LAMBADA (OpenAI) from local files
  (``$LLMFBN_DATA``), and a user's own multiple-choice (``"mc"``: ``query``,
  ``choices``, ``gold``) or cloze (``"cloze"``: ``context``,
  ``continuation``) JSONL; ARC and OpenBookQA golds come from the official
  answer keys. The readers live in :mod:`llmfbn.datasets` (below this
  package) and are re-exported here. :data:`EVALUATION_KINDS` lists every
  kind ``llmfbn evaluate --eval NAME=KIND:PATH`` accepts.
- :func:`evaluate_task` scores each option by the summed log-likelihood of
  its tokens (``acc``) and by that sum over the option's length in
  characters (``acc_norm``), as lm-evaluation-harness does.
- :func:`evaluate_cloze` scores a continuation by whether every token is the
  greedy prediction (``acc``) and by ``exp`` of the mean over items of its
  summed NLL (``perplexity``), as lm-eval's ``lambada_openai``.
- :func:`score_requests` is the primitive under both: lm-eval's
  ``loglikelihood`` requests (summed log-likelihood, scored tokens, greedy
  flag per ``(context, continuation)``), with :func:`encode_pair`'s split.
  HellaSwag, LAMBADA, ``mc`` and ``cloze`` add no BOS (lm-eval's
  ``add_bos_token=False``); the older tasks keep the tokenizer's default.

Running lm-evaluation-harness on an intervened model
----------------------------------------------------
``pip install "llmfbn[lmeval]"`` installs lm-evaluation-harness (tested
with 0.4.13). Its ``HFLM`` wrapper accepts an already loaded model, so hooks
placed by llmfbn stay in force for every request it makes. Offline, point a
task file at a local JSONL (``dataset_path: json``)::

    # tasks/mytask.yaml
    task: mytask
    dataset_path: json
    dataset_kwargs: {data_files: {test: /path/items.jsonl}}
    test_split: test
    output_type: multiple_choice
    doc_to_text: "{{query}}"
    doc_to_choice: "{{choices}}"
    doc_to_target: "{{gold}}"
    metric_list: [{metric: acc}, {metric: acc_norm}]

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    loaded = load_model("smollm2-135m")
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=8,
              add_bos_token=False)
    tasks = TaskManager(include_path="tasks", include_defaults=False)
    with inhibit(loaded.model, networks, networks=[3]):   # any llmfbn hook context
        out = lm_eval.simple_evaluate(model=lm, tasks=["mytask"], task_manager=tasks)
    out["results"]["mytask"]            # {"acc,none": ..., "acc_norm,none": ...}

``tests/test_lm_eval.py`` runs exactly this (with ``HF_DATASETS_OFFLINE=1``)
and checks that lm-eval's log-likelihoods, accuracies and cloze perplexity
equal those of :func:`evaluate_task` / :func:`evaluate_cloze` on the same
items, with the hooks in force (lm-eval's numbers change without them).
``load_task("mc", path)`` reads the same JSONL. lm-eval's built-in task
configs fetch their datasets from the Hugging Face Hub, so offline they need
those datasets already in the local cache. Numbers from its built-in tasks
and from this module differ where prompts differ (e.g. SST-2, and BoolQ's
"Passage:" prefix from the converted file), and for HellaSwag where the
converted file hides the ``ctx_a``/``ctx_b`` boundary (see
``llmfbn.datasets._tasks._read_hellaswag``).
"""

from llmfbn.datasets._base import DATA_ENV
from llmfbn.datasets._tasks import FORMATS, TASKS, ClozeItem, Item, TaskItems, load_task
from llmfbn.evaluation._forward import position_limit, target_logprobs
from llmfbn.evaluation._kinds import EVALUATION_KINDS
from llmfbn.evaluation._perplexity import PerplexityResult, perplexity, read_text_rows
from llmfbn.evaluation._scores import SCALES, MetricScore
from llmfbn.evaluation._scoring import (
    ClozeResult,
    Loglikelihoods,
    TaskResult,
    encode_pair,
    evaluate,
    evaluate_cloze,
    evaluate_task,
    leading_special_ids,
    score_requests,
)

__all__ = [
    "DATA_ENV",
    "EVALUATION_KINDS",
    "FORMATS",
    "TASKS",
    "ClozeItem",
    "ClozeResult",
    "Item",
    "Loglikelihoods",
    "MetricScore",
    "PerplexityResult",
    "SCALES",
    "TaskItems",
    "TaskResult",
    "encode_pair",
    "evaluate",
    "evaluate_cloze",
    "evaluate_task",
    "leading_special_ids",
    "load_task",
    "perplexity",
    "position_limit",
    "read_text_rows",
    "score_requests",
    "target_logprobs",
]
