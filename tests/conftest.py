"""Shared fixtures: tiny random models of every family, a word-level tokenizer,
and (for integration tests) the embedded SmolLM2 model."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers as tf  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

from llmfbn.models import LoadedModel  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VOCAB_SIZE = 64

WORDS = (
    "the a cat dog sat ran on mat far away and is was it good bad film very "
    "not of to in we you they he she red blue big small house tree sun moon "
    "water fire one two three four five six seven eight nine ten , . ! ?"
).split()

_SMALL = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, vocab_size=VOCAB_SIZE)
_GATED = dict(_SMALL, intermediate_size=24, num_key_value_heads=1, pad_token_id=0,
              bos_token_id=0, eos_token_id=0)

#: family -> (config factory, intermediate width). Tiny, random, no download.
TINY_CONFIGS = {
    "llama": lambda: tf.LlamaConfig(**_GATED),
    "mistral": lambda: tf.MistralConfig(**_GATED),
    "qwen2": lambda: tf.Qwen2Config(**_GATED),
    "qwen3": lambda: tf.Qwen3Config(**_GATED, head_dim=8),
    "gemma": lambda: tf.GemmaConfig(**_GATED, head_dim=8),
    "gemma2": lambda: tf.Gemma2Config(**_GATED, head_dim=8),
    "phi3": lambda: tf.Phi3Config(**_GATED),
    "olmo": lambda: tf.OlmoConfig(**_GATED),
    "gpt2": lambda: tf.GPT2Config(n_embd=16, n_layer=3, n_head=2, n_inner=24,
                                  vocab_size=VOCAB_SIZE, n_positions=128,
                                  bos_token_id=0, eos_token_id=0),
    "gptj": lambda: tf.GPTJConfig(n_embd=16, n_layer=3, n_head=2, n_inner=24, rotary_dim=4,
                                  vocab_size=VOCAB_SIZE, n_positions=128,
                                  bos_token_id=0, eos_token_id=0),
    "gpt_neox": lambda: tf.GPTNeoXConfig(**_SMALL, intermediate_size=24,
                                         bos_token_id=0, eos_token_id=0),
    "opt": lambda: tf.OPTConfig(hidden_size=16, ffn_dim=24, num_hidden_layers=3,
                                num_attention_heads=2, vocab_size=VOCAB_SIZE,
                                word_embed_proj_dim=16, pad_token_id=0,
                                bos_token_id=0, eos_token_id=0),
    "falcon": lambda: tf.FalconConfig(hidden_size=16, num_hidden_layers=3,
                                      num_attention_heads=2, vocab_size=VOCAB_SIZE,
                                      bos_token_id=0, eos_token_id=0),
    "bloom": lambda: tf.BloomConfig(hidden_size=16, n_layer=3, n_head=2, vocab_size=VOCAB_SIZE,
                                    bos_token_id=0, eos_token_id=0, pad_token_id=0),
    "phi": lambda: tf.PhiConfig(**_SMALL, intermediate_size=24,
                                bos_token_id=0, eos_token_id=0),
    "bert": lambda: tf.BertConfig(**_SMALL, intermediate_size=24, pad_token_id=0),
}


def make_tokenizer():
    """A word-level tokenizer over :data:`WORDS` (unknown words -> [UNK])."""
    vocab = {"[PAD]": 0, "[UNK]": 1}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    assert len(vocab) <= VOCAB_SIZE
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", eos_token="[PAD]"
    )


def make_model(family, seed=0):
    """A tiny random-initialised model of ``family`` in eval mode."""
    torch.manual_seed(seed)
    config = TINY_CONFIGS[family]()
    if family == "bert":
        model = tf.BertModel(config)
    else:
        model = tf.AutoModelForCausalLM.from_config(config)
    return model.eval()


def make_loaded(family="llama", seed=0):
    return LoadedModel(make_model(family, seed), make_tokenizer(), name=f"tiny-{family}",
                       source="random init", weights_hash=f"seed:{seed}")


@pytest.fixture
def tiny_llama():
    return make_loaded("llama")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama saved as a local Hugging Face model folder (for CLI tests)."""
    folder = tmp_path_factory.mktemp("tiny-llama", numbered=False)
    loaded = make_loaded("llama")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def texts():
    return [
        "the cat sat on the mat .",
        "a dog ran far away",
        "the sun is big and the moon is small",
        "one two three",
        "it was a very good film , not a bad film !",
        "red house",
    ]


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M-Instruct (integration tests only)."""
    from llmfbn.models import load_model

    return load_model("smollm2-135m")


def shared_data(relative):
    """Path of a file in ../shared/data, or skip when this checkout has none."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is not available beside this checkout")
    return path


def write_synthetic_recording(folder, grid, runs, events=None):
    """Write ``runs`` (list of (n_tokens, n_layers, width) arrays) as a recording folder.

    Written through :mod:`llmfbn.io` as ``llmfbn record`` writes it (``llmfbn.json``,
    grid, mask, description, one sidecar with ``NumberOfTokens`` per run), subject and
    task ``syn``. ``events``: None (no events files) or, per run, a list of row dicts
    (``onset``, ``duration``, ``trial_type``, ``token``, ...). Returns the image paths.
    """
    from llmfbn.io import RecordingLayout, open_folder

    layout = RecordingLayout(folder, "syn", "syn")
    identity = {"model": grid.model, "weights_hash": grid.weights_hash, "signal": grid.signal}
    with open_folder(folder, "recording"):
        layout.prepare(grid, identity)
        for n, data in enumerate(runs, start=1):
            layout.write_run(n, grid.to_img(data), None if events is None else events[n - 1],
                             {"NumberOfTokens": len(data)})
    return [layout.bold_path(n) for n in range(1, len(runs) + 1)]


def token_events(n_tokens, label="token"):
    """Events rows of one run, one per token ``w<t>``, as ``llmfbn record`` writes them."""
    return [{"onset": t, "duration": 1, "trial_type": label, "token": f"w{t}"}
            for t in range(n_tokens)]


def planted_networks(n_layers=4, width=64, n_networks=5, size=10, n_runs=8, n_tokens=100,
                     noise=0.3, seed=0):
    """Token signals mixed from sparse sources on known neuron sets.

    Returns
    -------
    runs : list of (n_tokens, n_layers, width) float32 arrays
    masks : bool array (n_networks, n_layers, width), the planted networks (disjoint)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n_neurons = n_layers * width
    order = rng.permutation(n_neurons)
    masks = np.zeros((n_networks, n_neurons), dtype=bool)
    for k in range(n_networks):
        masks[k, order[k * size:(k + 1) * size]] = True
    loadings = masks * rng.uniform(1.0, 2.0, size=masks.shape)
    runs = []
    for _ in range(n_runs):
        sources = rng.laplace(size=(n_tokens, n_networks)) ** 3  # sparse, super-Gaussian
        data = sources @ loadings + noise * rng.standard_normal((n_tokens, n_neurons))
        runs.append(data.reshape(n_tokens, n_layers, width).astype(np.float32))
    return runs, masks.reshape(n_networks, n_layers, width)
