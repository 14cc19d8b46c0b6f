"""Faster sweeps: shared layers across edits (exact), bfloat16 recorded in the settings."""

import numpy as np
import pytest
import torch

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.evaluation import MetricScore, evaluate_task, perplexity
from llmfbn.hooks import active_hook_count
from llmfbn.intervention import (
    Evaluation,
    NonFiniteActivationError,
    _sweep,
    baseline_rows,
    make_evaluation,
    matched_controls,
)
from llmfbn.intervention._sweep import evaluate_edits, shares_prefix
from llmfbn.io import ResumeMismatchError

TEXTS = ["the cat sat on the mat . a dog ran far away and it was good"] * 6 + \
        ["one two three four five six seven eight nine ten"] * 5


def _perplexity_eval(batch_size=3):
    def run(model, tokenizer):
        # Sliding windows 16/8, three per batch: the last batch is right-padded.
        result = perplexity(model, tokenizer, TEXTS, max_length=16, stride=8,
                            batch_size=batch_size)
        return {"perplexity": MetricScore.perplexity(result.window_nll, result.window_tokens)}

    return Evaluation("ppl", run)


def _targets(first_layer=1, n_controls=3, width=24):
    mask = np.zeros((3, width), bool)
    mask[first_layer, :5] = True
    mask[2, 3:9] = True
    return [mask] + list(matched_controls(mask, n_controls, random_state=0))


@pytest.fixture
def count_shared(monkeypatch):
    """How many target_logprobs calls the shared path computed."""
    calls = []
    compute = _sweep._SharedPrefix.compute

    def counted(self, sequences, starts, pad_token_id, return_greedy=False):
        calls.append(len(self.resolved))
        return compute(self, sequences, starts, pad_token_id, return_greedy=return_greedy)

    monkeypatch.setattr(_sweep._SharedPrefix, "compute", counted)
    return calls


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_shared_prefix_gives_the_plain_per_window_nll(family, count_shared):
    loaded = make_loaded(family)
    model, tokenizer = loaded.model, loaded.tokenizer
    assert shares_prefix(model)
    evaluation, targets = _perplexity_eval(), _targets()
    shared = evaluate_edits(model, tokenizer, evaluation, targets, torch.zeros_like)
    assert count_shared and set(count_shared) == {len(targets)}  # the shared path ran
    plain = evaluate_edits(model, tokenizer, evaluation, targets, torch.zeros_like,
                           share=False)
    for got, want in zip(shared, plain, strict=True):
        np.testing.assert_allclose(got["perplexity"].units, want["perplexity"].units,
                                   atol=1e-4, rtol=0)
        np.testing.assert_array_equal(got["perplexity"].weights, want["perplexity"].weights)
    values = [s["perplexity"].value for s in shared]
    assert len(set(np.round(values, 6))) == len(values)  # each edit its own numbers
    assert active_hook_count(model) == 0


def test_layers_before_the_first_edited_one_run_once_per_batch(tiny_llama):
    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    calls = {0: 0, 2: 0}

    def counter(layer):
        def hook(module, args, kwargs, output):
            calls[layer] += 1
        return hook

    handles = [model.model.layers[k].register_forward_hook(counter(k), with_kwargs=True)
               for k in calls]
    try:
        evaluation, targets = _perplexity_eval(), _targets(first_layer=2)
        evaluate_edits(model, tokenizer, evaluation, targets, torch.zeros_like)
        n_batches = calls[2]  # layer 2 runs once per batch, all edits stacked
        assert n_batches and calls[0] == n_batches
        calls.update({0: 0, 2: 0})
        evaluate_edits(model, tokenizer, evaluation, targets, torch.zeros_like, share=False)
        assert calls[0] == calls[2] == len(targets) * n_batches
    finally:
        for handle in handles:
            handle.remove()


def test_shared_path_gives_plain_zero_shot_and_cloze_scores(tmp_path, tiny_llama,
                                                            count_shared):
    from llmfbn.evaluation import evaluate_cloze, load_task

    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    # Choices of different words, so that no item is a tie decided by rounding.
    mc = tmp_path / "mc.jsonl"
    mc.write_text("".join(
        f'{{"query": "{q}", "choices": [" {a}", " {b} {a}"], "gold": {k % 2}}}\n'
        for k, (q, a, b) in enumerate([("the film was", "good", "very"),
                                       ("the cat sat on the", "mat", "red"),
                                       ("one two", "three", "four"), ("a dog ran", "far", "away"),
                                       ("the sun is", "big", "small"),
                                       ("it was a", "film", "bad")])))
    cloze = tmp_path / "cloze.jsonl"
    cloze.write_text("".join(f'{{"context": "{c}", "continuation": " {w}"}}\n' for c, w in [
        ("the cat sat on the", "mat"), ("one two three", "four"), ("the sun is", "big"),
        ("a dog ran far", "away")]))
    items, cloze_items = load_task("mc", mc), load_task("cloze", cloze)

    def run(model, tokenizer):
        choices = evaluate_task(model, tokenizer, items, batch_size=2).per_item
        greedy = evaluate_cloze(model, tokenizer, cloze_items, batch_size=3).per_item
        return {"loglik": MetricScore.proportion(np.concatenate(choices["loglik"].tolist())),
                "correct": MetricScore.proportion(choices["correct"]),
                "greedy": MetricScore.proportion(greedy["correct"])}

    evaluation, targets = Evaluation("zero-shot", run), _targets()
    shared = evaluate_edits(model, tokenizer, evaluation, targets, lambda x: x * 3.0)
    assert count_shared
    plain = evaluate_edits(model, tokenizer, evaluation, targets, lambda x: x * 3.0,
                           share=False)
    for got, want in zip(shared, plain, strict=True):
        np.testing.assert_allclose(got["loglik"].units, want["loglik"].units, atol=1e-4)
        gaps = np.abs(np.diff(want["loglik"].units.reshape(-1, 2), axis=1))
        assert gaps.min() > 1e-3  # no tie for rounding to break
        for metric in ("correct", "greedy"):
            np.testing.assert_array_equal(got[metric].units, want[metric].units)


def test_gpt2_falls_back_to_full_forwards_with_the_same_numbers(count_shared):
    loaded = make_loaded("gpt2")
    model, tokenizer = loaded.model, loaded.tokenizer
    assert not shares_prefix(model)
    evaluation, targets = _perplexity_eval(), _targets()
    shared = evaluate_edits(model, tokenizer, evaluation, targets, torch.zeros_like)
    assert not count_shared
    for target, got in zip(targets, shared, strict=True):
        from llmfbn.intervention import inhibit

        with inhibit(model, target):
            want = evaluation.run(model, tokenizer)
        np.testing.assert_allclose(got["perplexity"].units, want["perplexity"].units,
                                   atol=1e-4, rtol=0)
    assert active_hook_count(model) == 0


def test_an_evaluation_calling_the_model_itself_is_edited_as_usual(tiny_llama):
    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    ids = torch.tensor([[2, 3, 4, 5, 6, 7]])

    def run(model, tokenizer):  # scores through target_logprobs, then calls the model
        score = _perplexity_eval().run(model, tokenizer)["perplexity"].value
        with torch.inference_mode():
            logit = float(model(ids).logits[0, -1, 3])
        return {"perplexity": score, "logit": logit}

    targets = _targets()
    shared = evaluate_edits(model, tokenizer, Evaluation("mixed", run), targets,
                            torch.zeros_like)
    plain = evaluate_edits(model, tokenizer, Evaluation("mixed", run), targets,
                           torch.zeros_like, share=False)
    for got, want in zip(shared, plain, strict=True):
        assert got["logit"] == pytest.approx(want["logit"], abs=1e-5)
        assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-6)
    assert len({round(s["logit"], 6) for s in shared}) > 1  # each edit applied to it
    assert active_hook_count(model) == 0


def test_calls_the_first_run_did_not_make_are_computed_afresh(tiny_llama, count_shared):
    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    runs = []

    def run(model, tokenizer):  # each run scores one more text: calls differ between runs
        runs.append(1)
        result = perplexity(model, tokenizer, TEXTS[:4 + len(runs)], max_length=16, stride=8)
        return {"perplexity": MetricScore.perplexity(result.window_nll, result.window_tokens)}

    targets = _targets()
    shared = evaluate_edits(model, tokenizer, Evaluation("growing", run), targets,
                            torch.zeros_like)
    assert count_shared
    runs.clear()
    plain = evaluate_edits(model, tokenizer, Evaluation("growing", run), targets,
                           torch.zeros_like, share=False)
    for got, want in zip(shared, plain, strict=True):
        np.testing.assert_allclose(got["perplexity"].units, want["perplexity"].units,
                                   atol=1e-4, rtol=0)


def test_no_hook_is_left_after_an_error(tiny_llama):
    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    with pytest.raises(NonFiniteActivationError, match="layer 1"):
        evaluate_edits(model, tokenizer, _perplexity_eval(), _targets(),
                       lambda x: x * float("inf"))
    assert active_hook_count(model) == 0
    assert _perplexity_eval().run(model, tokenizer)["perplexity"].value < 1e6


# --- dtype ------------------------------------------------------------------


def test_a_resume_never_mixes_float32_and_bfloat16(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXTS))
    evaluation = make_evaluation("text", text, max_length=16, stride=8)
    out = tmp_path / "r.csv"
    loaded = make_loaded("llama")
    baseline_rows(loaded, [evaluation], out_csv=out, verbose=0)
    loaded.model.to(torch.bfloat16)
    with pytest.raises(ResumeMismatchError,
                       match="the model dtype was 'float32', now 'bfloat16'"):
        baseline_rows(loaded, [evaluation], out_csv=out, verbose=0)


def test_model_dtype_flag_loads_and_is_checked_before_the_model(tmp_path, tiny_model_dir,
                                                                capsys):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXTS))
    out = tmp_path / "r.csv"
    args = ["--eval", f"text={text}", "--max-length", "16", "--stride", "8", "--out",
            str(out), "-q"]
    assert main(["evaluate", "--model", str(tiny_model_dir), "--model-dtype", "bfloat16",
                 *args]) == 0
    from llmfbn.io import read_settings

    assert read_settings(out)["model_dtype"] == "bfloat16"
    capsys.readouterr()
    assert main(["evaluate", "--model", "nope-model", *args]) == 2  # float32 by default
    err = capsys.readouterr().err
    assert "--model-dtype was 'bfloat16', now 'float32'" in err and "nope-model" not in err
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--model", str(tiny_model_dir), "--model-dtype", "int8", *args])
    assert info.value.code == 2
    assert "--model-dtype: invalid choice: 'int8'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_score_positions_is_log_softmax_in_float32_block_by_block(dtype):
    from llmfbn.evaluation._forward import CPU_SCORE_ROWS, score_positions

    generator = torch.Generator().manual_seed(0)
    n = 3 * CPU_SCORE_ROWS + 5  # several blocks and a short last one
    logits = (5 * torch.randn(n, 300, generator=generator)).to(dtype)
    targets = torch.randint(0, 300, (n,), generator=generator)
    want = torch.log_softmax(logits.float(), dim=-1)[torch.arange(n), targets].double()
    logp, greedy = score_positions(logits, targets, return_greedy=True)
    assert logp.dtype == np.float64 and logp.shape == (n,)
    np.testing.assert_allclose(logp, want.numpy(), atol=1e-5)
    assert greedy is False
    assert score_positions(logits, targets)[1] is None  # argmax skipped unless asked
    best = logits.float().argmax(dim=-1)
    assert score_positions(logits, best, return_greedy=True)[1] is True
    empty = score_positions(logits[:0], targets[:0], return_greedy=True)
    assert empty[0].shape == (0,) and empty[1] is True
