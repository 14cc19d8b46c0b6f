import numpy as np
import pytest
import torch

from conftest import TINY_CONFIGS, make_loaded, make_model
from llmfbn.models import ARCHITECTURES, load_model, locate_neurons
from llmfbn.recording import record_activations

# MLP width of each tiny model: 24 where set, 4 x hidden (64) where fixed.
EXPECTED_UNITS = {family: 24 for family in TINY_CONFIGS}
EXPECTED_UNITS.update(falcon=64, bloom=64)


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_every_family_is_in_the_table(family):
    model = make_model(family)
    assert model.config.model_type in ARCHITECTURES
    location = locate_neurons(model)
    assert location.n_layers == 3
    assert location.n_units == EXPECTED_UNITS[family]
    assert location.hidden_size == 16
    for path in location.down_proj_paths + location.layer_paths:
        model.get_submodule(path)  # resolves


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_mlp_signal_is_the_down_projection_input(family, texts):
    """For every family, down_proj(recorded 'mlp') == recorded 'mlp_out'."""
    loaded = make_loaded(family)
    neurons = record_activations(loaded, texts, signal="mlp")
    outputs = record_activations(loaded, texts, signal="mlp_out")
    location = locate_neurons(loaded.model)
    for act, out in zip(neurons, outputs):
        for layer, path in enumerate(location.down_proj_paths):
            down = loaded.model.get_submodule(path)
            with torch.no_grad():
                projected = down(torch.from_numpy(act[:, layer, :])).numpy()
            np.testing.assert_allclose(projected, out[:, layer, :], rtol=1e-5, atol=1e-6)


def _mlp_inputs(model, path, ids):
    seen = []
    handle = model.get_submodule(path).register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    return seen[0][0]


def test_gated_mlp_signal_equals_act_gate_times_up(texts):
    """Independent check on Llama: act(gate(x)) * up(x) from the MLP's own input."""
    loaded = make_loaded("llama")
    model = loaded.model
    recorded = record_activations(loaded, texts[:1])[0]
    ids = torch.tensor([loaded.tokenizer(texts[0])["input_ids"]])
    for layer in range(3):
        mlp = model.model.layers[layer].mlp
        x = _mlp_inputs(model, f"model.layers.{layer}.mlp", ids)
        with torch.no_grad():
            expected = (mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)).numpy()
        np.testing.assert_allclose(recorded[:, layer], expected, rtol=1e-5, atol=1e-6)


def test_plain_mlp_signal_equals_act_fc_in(texts):
    """Independent check on GPT-2: act(c_fc(x)) from the MLP's own input."""
    loaded = make_loaded("gpt2")
    model = loaded.model
    recorded = record_activations(loaded, texts[:1])[0]
    ids = torch.tensor([loaded.tokenizer(texts[0])["input_ids"]])
    for layer in range(3):
        mlp = model.transformer.h[layer].mlp
        x = _mlp_inputs(model, f"transformer.h.{layer}.mlp", ids)
        with torch.no_grad():
            expected = mlp.act(mlp.c_fc(x)).numpy()
        np.testing.assert_allclose(recorded[:, layer], expected, rtol=1e-5, atol=1e-6)


def test_residual_signal_is_layer_output(texts):
    loaded = make_loaded("llama")
    recorded = record_activations(loaded, texts[:1], signal="residual")[0]
    ids = torch.tensor([loaded.tokenizer(texts[0])["input_ids"]])
    with torch.no_grad():
        hidden = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    # hidden_states[l + 1] is layer l's output, except the last (after final norm).
    for layer in range(2):
        np.testing.assert_allclose(recorded[:, layer], hidden[layer + 1][0].numpy(),
                                   rtol=1e-5, atol=1e-6)


class _Unknown(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"model_type": "mamba"})()
        self.mixer_proj = torch.nn.Linear(4, 4)


def test_unknown_architecture_names_what_the_model_has():
    with pytest.raises(ValueError, match=r"'mamba'.*not in llmfbn's table.*mixer_proj"):
        locate_neurons(_Unknown())


def test_missing_down_projection_lists_layer_modules():
    model = make_model("llama")
    for layer in model.model.layers:
        del layer.mlp.down_proj
    with pytest.raises(ValueError, match=r"no 'mlp.down_proj'.*gate_proj"):
        locate_neurons(model)


def test_load_model_from_local_folder(tiny_model_dir, texts):
    loaded = load_model(str(tiny_model_dir))
    assert loaded.weights_hash.startswith("sha256:")
    assert not loaded.model.training
    reference = record_activations(make_loaded("llama"), texts)
    for a, b in zip(record_activations(loaded, texts), reference):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_unknown_model_lists_builtins_and_what_was_tried():
    with pytest.raises(ValueError) as info:
        load_model("no-such-model-anywhere")
    message = str(info.value)
    assert "smollm2-135m" in message
    assert "local model folder" in message and "Hugging Face cache" in message


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_bad_dtype_names_the_choices(tiny_model_dir):
    with pytest.raises(ValueError, match=r"'dtype' must be one of .*'float64x'"):
        load_model(tiny_model_dir, dtype="float64x")


def test_remote_code_is_off_by_default(tiny_model_dir, monkeypatch):
    seen = {}
    import transformers

    original = transformers.AutoTokenizer.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    load_model(tiny_model_dir)
    assert seen["trust_remote_code"] is False
    assert seen["local_files_only"] is True


def test_hub_id_loads_only_from_the_local_cache(tmp_path, monkeypatch, texts):
    """A hub id resolves from an existing Hugging Face cache, offline."""
    import huggingface_hub.constants as hub_constants

    snapshot = tmp_path / "hub" / "models--tiny--llama" / "snapshots" / "0123abcd"
    loaded = make_loaded("llama")
    loaded.model.save_pretrained(snapshot)
    loaded.tokenizer.save_pretrained(snapshot)
    refs = tmp_path / "hub" / "models--tiny--llama" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from_cache = load_model("tiny/llama")
    assert from_cache.source == "hf-cache:tiny/llama"
    for a, b in zip(record_activations(from_cache, texts), record_activations(loaded, texts)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="Unknown model 'tiny/other'"):
        load_model("tiny/other")
