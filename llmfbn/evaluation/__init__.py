"""Evaluation: perplexity and zero-shot multiple choice, for plain or intervened models.

Everything here calls ``model(...)`` once per batch, so any forward hook on
the model (an llmfbn intervention, :class:`llmfbn.hooks.HookGroup`) that is
active around a call applies to it.

- :func:`perplexity` follows the Hugging Face recipe "Perplexity of
  fixed-length models" (texts joined with ``"\\n\\n"``, strided sliding
  windows), counting scored tokens exactly; ``mode="disjoint"`` gives the
  no-overlap variant.
- :func:`load_task` reads SST-2, PIQA, BoolQ, ARC-Easy/Challenge,
  OpenBookQA and WinoGrande from local files (``$LLMFBN_DATA``); ARC and
  OpenBookQA golds come from the official answer keys. The readers live in
  :mod:`llmfbn.datasets` (below this package) and are re-exported here.
- :func:`evaluate_task` scores each option by the summed log-likelihood of
  its tokens (``acc``) and by that sum over the option's length in
  characters (``acc_norm``), as lm-evaluation-harness does.

Running lm-evaluation-harness on an intervened model
----------------------------------------------------
lm-evaluation-harness is not a dependency of llmfbn (``pip install
"lm_eval[hf]"``). Its ``HFLM`` wrapper accepts an already loaded model, so
hooks placed by llmfbn stay in force for every request it makes::

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    loaded = load_model("smollm2-135m")
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=8)
    with intervention:                       # any llmfbn hook context manager
        out = lm_eval.simple_evaluate(model=lm, tasks=["arc_easy"], num_fewshot=0)
    out["results"]["arc_easy"]               # {"acc,none": ..., "acc_norm,none": ...}

This follows lm-eval's ``docs/python-api.md`` ("With a Pre-initialized
Model") and ``HFLM.__init__`` (a non-string ``pretrained`` is used as the
model; ``tokenizer`` must then be a transformers tokenizer), read in the
harness' source, not run here: lm-eval is not installed in this project.
Its task configs fetch their datasets from the Hugging Face Hub, so offline
runs need those datasets already in the local cache. Numbers from the harness
and from :func:`evaluate_task` differ where prompts differ (e.g. SST-2, and
BoolQ's "Passage:" prefix from the converted file) and where lm-eval adds no
BOS (its default for most models) while this module keeps the tokenizer's
default leading special tokens.
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
