"""``llmfbn fingerprint``: network time courses matched across models, CKA, nulls, the table."""

import numpy as np
import pytest
import torch
import transformers as tf
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from conftest import VOCAB_SIZE, WORDS, make_loaded, make_tokenizer, planted_networks
from llmfbn.cli import main
from llmfbn.fingerprint import (
    centred_gram,
    circular_shifts,
    fbn_null,
    fbn_score,
    fingerprint,
    fit_networks,
    linear_cka,
    p_value,
    shared_words,
    token_words,
    within_text_permutation,
)
from llmfbn.grid import NeuronGrid
from llmfbn.io import (
    FINGERPRINT_COLUMNS,
    FormatError,
    read_fingerprints,
    write_fingerprints,
)
from llmfbn.models import LoadedModel

K = 3  # networks per model in these tests: the texts give 15 words per network
_VOCAB = [w for w in WORDS if w not in ",.!?"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run fastest on one thread (the CPU is shared with other test workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _texts(n=14, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_VOCAB, size=rng.integers(8, 16))) + " ." for _ in range(n)]


def _char_tokenizer():
    """A fast tokenizer of characters, GPT-2 style (``" c"`` keeps its space), with a BOS."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2}
    for char in "abcdefghijklmnopqrstuvwxyz,.!?":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(" " + char, len(vocab))
    assert len(vocab) <= VOCAB_SIZE
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?\S"), behavior="isolated")
    backend.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    backend.decoder = decoders.Fuse()
    return tf.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                      unk_token="[UNK]", bos_token="[BOS]")


def _permuted(loaded, seed=1):
    """A copy with each layer's MLP neurons permuted (gate/up rows, down columns)."""
    model = make_loaded("llama").model
    model.load_state_dict(loaded.model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.model.layers:
            order = torch.randperm(layer.mlp.down_proj.in_features, generator=generator)
            layer.mlp.gate_proj.weight.copy_(layer.mlp.gate_proj.weight[order])
            layer.mlp.up_proj.weight.copy_(layer.mlp.up_proj.weight[order])
            layer.mlp.down_proj.weight.copy_(layer.mlp.down_proj.weight[:, order])
    return LoadedModel(model, loaded.tokenizer, name="permuted", weights_hash="permuted")


def _rows(table, candidate):
    rows = table[table["candidate"] == candidate].set_index("method")
    return rows.loc["fbn"], rows.loc["cka"]


# --- words: one axis for every tokenizer ---------------------------------------------


def test_words_are_the_same_axis_for_a_word_and_a_character_tokenizer():
    texts = ["the cat  sat on , mat .", "  a dog ran"]
    words = token_words(make_tokenizer(), texts, max_tokens=512)
    chars = token_words(_char_tokenizer(), texts, max_tokens=512)
    # [BOS] and the lone space before "a" belong to no word; " c" belongs to "cat"
    assert chars.words[1][:4].tolist() == [-1, -1, 0, 1]
    assert chars.words[0][:5].tolist() == [-1, 0, 0, 0, 1]
    assert words.words[0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    axis = shared_words(texts, [words, chars])
    assert axis.lengths.tolist() == [7, 3] and axis.limited_by == [None, None]
    # 5 tokens cut inside "cat" ([BOS] t h e " c") and "dog" ([BOS] " " " a" " d" o): the
    # words from there on are dropped for both models
    short = token_words(_char_tokenizer(), texts, max_tokens=5)
    axis = shared_words(texts, [words, short])
    assert axis.lengths.tolist() == [1, 1] and axis.limited_by == [1, 1]
    assert axis.axis_words(words, 0).tolist() == [0, -1, -1, -1, -1, -1, -1]


# --- scores and nulls -----------------------------------------------------------------


def test_nulls_keep_the_texts_apart_and_give_large_p_for_unrelated_signals():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 1, 7])
    index = circular_shifts(lengths, 4, rng)
    assert index.shape == (13, 4)
    for start, n in ((0, 5), (5, 1), (6, 7)):  # each text's rows stay in the text, shifted
        block = index[start:start + n]
        assert all(sorted(col) == list(range(start, start + n)) for col in block.T)
    order = within_text_permutation(lengths, rng)
    assert sorted(order[:5]) == list(range(5)) and sorted(order[6:]) == list(range(6, 13))

    z = lambda x: (x - x.mean(0)) / x.std(0)  # noqa: E731
    a, b = z(rng.standard_normal((120, 3))), z(rng.standard_normal((120, 3)))
    lengths = np.full(8, 15)
    unrelated = fbn_score(a, b)
    assert p_value(unrelated, fbn_null(a, b, lengths, 99, rng)) > 0.05
    assert fbn_score(a, a[:, ::-1] * -1) == pytest.approx(1.0)

    x = rng.standard_normal((120, 30))
    gx = centred_gram(x, block=7)
    assert linear_cka(gx, centred_gram(x[:, rng.permutation(30)])) == pytest.approx(1.0)
    assert 0 <= linear_cka(gx, centred_gram(rng.standard_normal((120, 50)))) < 0.5
    assert p_value(0.5, [0.1, 0.5, 0.7]) == 0.75


def test_networks_do_not_depend_on_the_order_of_a_layers_neurons():
    runs, _ = planted_networks(n_layers=3, width=16, n_networks=3, size=6, n_runs=1,
                               n_tokens=120)
    x = runs[0].reshape(120, -1)
    rng = np.random.default_rng(1)
    order = np.concatenate([layer * 16 + rng.permutation(16) for layer in range(3)])
    a = fit_networks(x, NeuronGrid(3, 16), n_components=3)
    b = fit_networks(x[:, order], NeuronGrid(3, 16), n_components=3)
    np.testing.assert_array_equal(a.time_courses, b.time_courses)
    np.testing.assert_array_equal(a.maps[:, order], b.maps)
    assert fbn_score(a.time_courses, b.time_courses) == pytest.approx(1.0)


# --- the library on tiny models -------------------------------------------------------


def test_reference_its_permuted_copy_and_an_independent_model():
    reference = make_loaded("llama", seed=0)
    again = make_loaded("llama", seed=0)
    again.name = "again"
    permuted = _permuted(reference)
    ids = torch.tensor([[2, 3, 4, 5, 6, 7]])
    with torch.no_grad():  # permuting a layer's neurons leaves the function unchanged
        assert torch.allclose(reference.model(ids).logits, permuted.model(ids).logits,
                              atol=1e-5)
    independent = make_loaded("llama", seed=1)
    independent.name = "independent"
    table = fingerprint(reference, [again, permuted, independent], _texts(),
                        n_components=K, n_permutations=99)
    assert list(table.columns) == FINGERPRINT_COLUMNS
    assert table["method"].tolist() == ["fbn", "cka"] * 3
    assert (table["n_words"] == 186).all() and (table["n_components"] == K).all()
    for row in _rows(table, "again"):  # loaded separately: the same numbers
        assert row["score"] == pytest.approx(1.0, abs=1e-9)
    perm_fbn, perm_cka = _rows(table, "permuted")
    assert perm_fbn["score"] >= 0.99 and perm_cka["score"] >= 0.99
    assert perm_fbn["p_value"] == perm_cka["p_value"] == 1 / 100
    other_fbn, other_cka = _rows(table, "independent")
    assert other_fbn["score"] < 0.6 and other_cka["score"] < 0.8
    assert other_fbn["p_value"] >= perm_fbn["p_value"]
    assert other_fbn["null_mean"] < other_fbn["score"]


def test_candidates_of_another_tokenizer_width_and_a_pruned_copy():
    from llmfbn.pruning import remove_neurons

    reference = make_loaded("llama", seed=0)
    torch.manual_seed(3)
    config = tf.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_inner=40, vocab_size=VOCAB_SIZE,
                           n_positions=128, bos_token_id=2, eos_token_id=0)
    wide = LoadedModel(tf.GPT2LMHeadModel(config).eval(), _char_tokenizer(), name="gpt2-chars")
    keep = np.ones((3, 24), dtype=bool)
    keep[1, ::3] = keep[2, 1::4] = False
    pruned = remove_neurons(reference, keep)
    texts = _texts()
    texts[0] = " ".join(["the red sun"] * 30)  # 90 words, 271 tokens of gpt2-chars
    table = fingerprint(reference, [wide, pruned], texts, n_components=K, n_permutations=49)
    # its 128 positions hold [BOS] and 127 characters: 42 whole words of the first text
    assert table["n_words"].iloc[0] == 186 - len(_texts()[0].split()) + 42
    assert table["score"].between(0, 1).all() and table["p_value"].between(0, 1).all()
    pruned_fbn, pruned_cka = _rows(table, "tiny-llama (pruned)")
    wide_fbn, wide_cka = _rows(table, "gpt2-chars")
    assert pruned_cka["score"] > wide_cka["score"]


def test_bad_input_is_refused_before_any_forward_pass(tmp_path):
    reference = make_loaded("llama", seed=0)
    calls = []
    reference.model.register_forward_pre_hook(lambda *a: calls.append(1))
    other = make_loaded("llama", seed=1)
    other.name = "other"
    with pytest.raises(ValueError, match=r"'texts' <list> gives 9 words .* at least 5 words "
                                         r"per network \(15\)"):
        fingerprint(reference, [other], ["the cat sat .", "a dog ran far ."], n_components=K)
    slow = make_loaded("llama", seed=2)
    slow.name, slow.tokenizer = "slow", _SlowTokenizer()
    with pytest.raises(ValueError, match="tokenizer of 'slow' .* slow"):
        fingerprint(reference, [other, slow], _texts(), n_components=K)
    with pytest.raises(ValueError, match="candidate '.*missing-model' cannot be loaded"):
        fingerprint(reference, [other, str(tmp_path / "missing-model")], _texts())
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        fingerprint(reference, [other], tmp_path / "nowhere.txt")
    for bad in ({"n_components": 0}, {"n_permutations": 0}, {"max_tokens": 0},
                {"random_state": -1}):
        with pytest.raises(ValueError, match=f"'{next(iter(bad))}' must be >="):
            fingerprint(reference, [other], _texts(), **bad)
    assert calls == []


class _SlowTokenizer(tf.PreTrainedTokenizer):
    """A Python (slow) tokenizer: it has no offset mappings."""

    def __init__(self, **kwargs):
        self._vocab = {"[PAD]": 0, **{w: i + 1 for i, w in enumerate(_VOCAB)}}
        super().__init__(pad_token="[PAD]", **kwargs)

    def get_vocab(self):
        return dict(self._vocab)

    @property
    def vocab_size(self):
        return len(self._vocab)

    def _tokenize(self, text):
        return text.split()

    def _convert_token_to_id(self, token):
        return self._vocab.get(token, 0)

    def _convert_id_to_token(self, index):
        return {i: w for w, i in self._vocab.items()}[index]


# --- the command and its table --------------------------------------------------------


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_model_dir):
    """The tiny Llama (seed 0), its neuron-permuted copy and an independent one, as folders."""
    root = tmp_path_factory.mktemp("fingerprint-models")
    folders = {"reference": tiny_model_dir}
    for name, loaded in (("permuted", _permuted(make_loaded("llama", seed=0))),
                         ("independent", make_loaded("llama", seed=1))):
        loaded.model.save_pretrained(root / name)
        loaded.tokenizer.save_pretrained(root / name)
        folders[name] = root / name
    return folders


@pytest.fixture
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(_texts()) + "\n")
    return path


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("llmfbn: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_cli_needs_force_and_writes_the_same_table_on_rerun(tmp_path, model_dirs, texts_file,
                                                           capsys):
    out = tmp_path / "scores.csv"
    args = ["fingerprint", str(model_dirs["reference"]), str(model_dirs["permuted"]),
            str(model_dirs["independent"]), str(model_dirs["reference"]), "--texts",
            str(texts_file), "--n-components", str(K), "--n-permutations", "49",
            "--max-tokens", "64", "--device", "cpu", "--model-dtype", "float32"]
    assert main(args + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "fbn: score" in printed
    table = read_fingerprints(out)
    assert table["candidate"].tolist() == [str(model_dirs[n]) for n in
                                           ("permuted", "permuted", "independent",
                                            "independent", "reference", "reference")]
    assert table["score"].iloc[[0, 1, 4, 5]].min() >= 0.99
    assert table["score"].iloc[4] == pytest.approx(1.0, abs=1e-9)
    before = out.read_bytes()
    assert main(args + ["--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert "already exists" in line and "--force" in line
    assert out.read_bytes() == before
    # the rerun replaces the table with the same bytes
    assert main(args + ["--out", str(out), "--force", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes() == before


@pytest.mark.parametrize("case", ["texts", "short", "candidate", "components", "permutations",
                                  "results", "inside", "suffix"])
def test_cli_bad_input_one_line_nothing_written(tmp_path, model_dirs, texts_file, capsys, case):
    out = tmp_path / "scores.csv"
    reference, candidate = str(model_dirs["reference"]), str(model_dirs["independent"])
    texts, extra, expected = str(texts_file), [], None
    if case == "texts":
        texts, expected = str(tmp_path / "absent.txt"), "absent.txt"
    elif case == "short":
        (tmp_path / "short.txt").write_text("the cat sat .\na dog ran\n")
        texts, expected = str(tmp_path / "short.txt"), "short.txt gives 7 words"
    elif case == "candidate":
        candidate, expected = str(tmp_path / "no-such-model"), "'" + str(tmp_path / "no-such-model")
    elif case == "components":
        extra, expected = ["--n-components", "0"], "'--n-components' must be >= 1"
    elif case == "permutations":
        extra, expected = ["--n-permutations", "0"], "'--n-permutations' must be >= 1"
    elif case == "results":
        out.write_text(",".join(["network", "n_neurons", "task", "metric", "mode", "edit_value",
                                 "value", "control_mean", "control_ci_low", "control_ci_high",
                                 "ratio", "n_controls", "baseline"]) + "\n")
        extra, expected = ["--force"], "results CSV"
    elif case == "inside":
        (tmp_path / "nets").mkdir()
        (tmp_path / "nets" / "llmfbn.json").write_text('{"kind": "networks"}')
        out, expected = tmp_path / "nets" / "scores.csv", "inside"
    elif case == "suffix":
        out, expected = tmp_path / "scores.txt", "must end in .csv"
    before = out.read_bytes() if out.exists() else None
    code = main(["fingerprint", reference, candidate, "--texts", texts, "--out", str(out),
                 "--n-components", str(K)] + extra)
    assert code == 2
    assert expected in _one_line_error(capsys)
    assert (out.read_bytes() if out.exists() else None) == before
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".llmfbn")) == []


def test_table_is_checked_when_written_and_read(tmp_path):
    import pandas as pd

    row = {"reference": "a", "candidate": "b", "method": "fbn", "score": 0.5, "p_value": 0.01,
           "null_mean": 0.1, "n_components": 3, "n_words": 40, "random_state": 0,
           "reference_networks": "atlas:smollm2-135m"}
    path = write_fingerprints(tmp_path / "t.csv", pd.DataFrame([row]))
    assert read_fingerprints(path).to_dict("records") == [row]
    # format 1 (no reference_networks column) is read, its networks fitted by CanICA
    old = tmp_path / "format1.csv"
    pd.DataFrame([row]).drop(columns="reference_networks").to_csv(old, index=False)
    assert read_fingerprints(old).to_dict("records") == [dict(row, reference_networks="canica")]
    with pytest.raises(ValueError, match="'score' must lie in"):
        write_fingerprints(tmp_path / "u.csv", pd.DataFrame([dict(row, score=1.5)]))
    assert not (tmp_path / "u.csv").exists()
    path.write_text(path.read_text().replace("fbn", "svcca"))
    with pytest.raises(FormatError, match=r"t.csv .* row 0: 'method' must be one of"):
        read_fingerprints(path)
    path.write_text("reference,candidate,score\na,b,0.5\n")
    with pytest.raises(FormatError, match="t.csv is not a valid fingerprint table"):
        read_fingerprints(path)
