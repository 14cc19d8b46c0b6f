"""Devices and dtypes: the resolver, dtype checks, CLI flags, bfloat16 recording.

No test needs a GPU: CUDA is faked by monkeypatching ``torch.cuda``.
"""

import warnings

import numpy as np
import pytest
import torch

from conftest import make_loaded
from llmfbn.cli import main
from llmfbn.io import read_settings
from llmfbn.models import available_devices, check_dtype, load_model, resolve_device
from llmfbn.recording import ActivationRecorder, _capture

TEXTS = ["the cat sat on the mat . a dog ran far away and it was good"] * 4 + \
        ["one two three four five six seven eight nine ten"] * 3
BATCH = [[2, 5, 9, 11, 3, 7], [4, 8], [6, 10, 12, 13]]


def fake_cuda(monkeypatch, n_gpus=2, current=0, capability=(9, 0)):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")


# -- resolve_device ------------------------------------------------------------

def test_cpu_and_auto_without_cuda(monkeypatch):
    fake_cuda(monkeypatch, n_gpus=0)
    assert resolve_device("cpu") == resolve_device("auto") == resolve_device(" CPU ") == "cpu"
    assert resolve_device(torch.device("cpu")) == "cpu"
    assert available_devices() == ["cpu"]


@pytest.mark.parametrize("device, expected", [
    ("cuda", "cuda:1"), ("auto", "cuda:1"), ("cuda:0", "cuda:0"), ("cuda:1", "cuda:1"),
    ("cpu", "cpu")])
def test_cuda_devices_resolve_to_an_index(monkeypatch, device, expected):
    fake_cuda(monkeypatch, n_gpus=2, current=1)
    assert resolve_device(device) == expected
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]


@pytest.mark.parametrize("n_gpus, device", [
    (0, "cuda"), (0, "cuda:0"), (1, "cuda:3"), (1, "cuda:-1"), (1, "cuda:x"), (1, "mps"),
    (1, "tpu"), (1, "gpu"), (1, ""), (1, "cuda:0:1")])
def test_absent_or_unknown_devices_are_refused(monkeypatch, n_gpus, device):
    fake_cuda(monkeypatch, n_gpus=n_gpus)
    here = "cpu, cuda:0" if n_gpus else "cpu (no CUDA device"
    with pytest.raises(ValueError) as info:
        resolve_device(device)
    message = str(info.value)
    assert message.startswith("'device' must be one of ('cpu', 'cuda', 'cuda:N', 'auto')")
    assert f"available here: {here}" in message
    assert message.endswith(f"{device!r} was provided.")


# -- check_dtype ---------------------------------------------------------------

def test_dtypes_on_the_cpu():
    assert check_dtype("float32") is torch.float32
    assert check_dtype("bfloat16", "cpu") is torch.bfloat16
    assert check_dtype("float16", "cpu") is torch.float16
    with pytest.raises(ValueError, match=r"^'dtype' must be one of \('float32', 'bfloat16', "
                                         r"'float16'\). 'int8' was provided\.$"):
        check_dtype("int8")


def test_float16_refused_where_the_cpu_cannot_multiply_it(monkeypatch):
    def no_half(a, b):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')

    monkeypatch.setattr(torch.Tensor, "__matmul__", no_half)
    with pytest.raises(ValueError, match=r"^'dtype' must be one of \('float32', 'bfloat16'\) "
                                         r"on this CPU .*not implemented.*'float16' was "):
        check_dtype("float16", "cpu")


@pytest.mark.parametrize("capability, ok", [((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_bfloat16_on_cuda_needs_ampere(monkeypatch, capability, ok):
    fake_cuda(monkeypatch, n_gpus=1, capability=capability)
    assert check_dtype("float16", "cuda:0") is torch.float16
    if ok:
        assert check_dtype("bfloat16", "cuda:0") is torch.bfloat16
        return
    with pytest.raises(ValueError, match=r"^'dtype' must be one of \('float32', 'float16'\) on "
                                         r"cuda:0 \(Fake GPU, compute capability 7\.0; "
                                         r"bfloat16 needs 8\.0 or newer\)\. 'bfloat16' was "):
        check_dtype("bfloat16", "cuda:0")


# -- load_model ----------------------------------------------------------------

def test_load_model_records_device_and_dtype_not_in_the_weights_hash(tiny_model_dir):
    full = load_model(tiny_model_dir)
    half = load_model(tiny_model_dir, dtype="bfloat16", device="auto")
    assert (full.device, full.dtype) == ("cpu", "float32")
    assert (half.device, half.dtype) == ("cpu", "bfloat16")
    assert half.model.dtype == torch.bfloat16
    assert full.weights_hash == half.weights_hash is not None


def test_load_model_checks_device_and_dtype_before_reading_anything(monkeypatch, tmp_path):
    fake_cuda(monkeypatch, n_gpus=1, capability=(7, 5))
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="'cuda:1' was provided"):
        load_model(missing, device="cuda:1")
    with pytest.raises(ValueError, match="compute capability 7.5"):
        load_model(missing, dtype="bfloat16", device="cuda")


def test_float16_on_a_cpu_without_amx_fp16_warns(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False, raising=False)
    with pytest.warns(UserWarning, match="float16 on this CPU .* far slower than float32"):
        loaded = load_model(tiny_model_dir, dtype="float16")
    assert loaded.model.dtype == torch.float16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(tiny_model_dir, dtype="bfloat16")


# -- recording -----------------------------------------------------------------

def _record(model, **kwargs):
    with ActivationRecorder(model) as recorder:
        return recorder.record(BATCH, **kwargs)


@pytest.mark.parametrize("signal", ["mlp", "mlp_out", "residual"])
def test_bfloat16_model_gives_float32_images_close_to_float32(signal):
    loaded = make_loaded("llama")
    with ActivationRecorder(loaded.model, signal=signal) as recorder:
        full = recorder.record(BATCH)
    loaded.model.to(torch.bfloat16)
    with ActivationRecorder(loaded.model, signal=signal) as recorder:
        half = recorder.record(BATCH)
    for a, b, ids in zip(full, half, BATCH):
        assert b.dtype == torch.float32 and b.shape == a.shape == (len(ids), 3, b.shape[2])
        scale = float(a.abs().max())
        assert scale > 0
        # bfloat16 keeps 8 bits of mantissa: about 0.4% per value, a few % after 3 layers.
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=0.05 * scale)
        assert not torch.equal(a, b)  # the model really ran in bfloat16


def test_keep_on_device_returns_views_on_the_model_device():
    loaded = make_loaded("llama")
    default = _record(loaded.model)
    kept = _record(loaded.model, keep_on_device=True)
    device = next(loaded.model.parameters()).device
    for a, b in zip(default, kept):
        assert b.device == device and b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # On the CPU no text is copied: every text is a view of one batch buffer.
    assert len({t.untyped_storage().data_ptr() for t in kept}) == 1
    assert len({t.untyped_storage().data_ptr() for t in default}) == 1


def test_pinned_copy_keeps_real_tokens_in_text_order(monkeypatch):
    """The CUDA path's copy, with pinning and the stream faked on the CPU."""
    pinned, synced = [], []
    real_empty = torch.empty

    def empty(*args, pin_memory=False, **kwargs):
        pinned.append(pin_memory)
        return real_empty(*args, **kwargs)

    class Stream:
        def synchronize(self):
            synced.append(True)

    monkeypatch.setattr(_capture.torch, "empty", empty)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    lengths = [len(ids) for ids in BATCH]
    _, mask = _capture.pad_batch(BATCH, 0)
    buffer = torch.randn(len(BATCH), max(lengths), 2, 5)
    host = _capture._to_pinned_host(buffer, mask)
    assert pinned == [True] and synced == [True]
    for row, part in enumerate(host.split(lengths)):
        torch.testing.assert_close(part, buffer[row, :lengths[row]], rtol=0, atol=0)


# -- CLI -----------------------------------------------------------------------

def _evaluate_args(tmp_path, model):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXTS))
    return ["evaluate", "--model", str(model), "--eval", f"text={text}", "--max-length", "16",
            "--stride", "8", "--out", str(tmp_path / "r.csv"), "-q"]


@pytest.mark.parametrize("command", ["evaluate", "intervene"])
@pytest.mark.parametrize("device", ["cuda:3", "mps", "cuda"])
def test_cli_refuses_absent_devices_in_one_line_before_the_model(monkeypatch, tmp_path, capsys,
                                                                 command, device):
    fake_cuda(monkeypatch, n_gpus=1)
    args = _evaluate_args(tmp_path, "nope-model")
    args[0] = command
    if command == "intervene":
        args += ["--networks", str(tmp_path / "no-networks")]
    if device == "cuda":
        fake_cuda(monkeypatch, n_gpus=0)
    assert main(args + ["--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llmfbn: error: '--device' must be one of")
    assert f"{device!r} was provided" in err
    assert "nope-model" not in err and "no-networks" not in err
    assert not (tmp_path / "r.csv").exists()


def test_cli_refuses_bfloat16_on_an_old_gpu_before_the_model(monkeypatch, tmp_path, capsys):
    fake_cuda(monkeypatch, n_gpus=1, capability=(7, 0))
    args = _evaluate_args(tmp_path, "nope-model")
    assert main(args + ["--device", "cuda:0", "--model-dtype", "bfloat16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'bfloat16' was provided" in err
    assert "nope-model" not in err


def test_cli_records_model_dtype_and_loads_on_the_resolved_device(tmp_path, tiny_model_dir):
    args = _evaluate_args(tmp_path, tiny_model_dir)
    assert main(args + ["--device", "auto", "--model-dtype", "bfloat16"]) == 0
    assert read_settings(tmp_path / "r.csv")["model_dtype"] == "bfloat16"


def test_cli_records_device_and_refuses_a_resume_on_another(monkeypatch, tmp_path,
                                                            tiny_model_dir, capsys):
    args = _evaluate_args(tmp_path, tiny_model_dir)
    assert main(args + ["--device", "cpu"]) == 0
    assert read_settings(tmp_path / "r.csv")["device"] == "cpu"
    capsys.readouterr()
    fake_cuda(monkeypatch, n_gpus=1)
    assert main(args + ["--device", "cuda:0"]) == 2
    err = capsys.readouterr().err
    assert "--device was 'cpu', now 'cuda:0'" in err and err.count("\n") == 1
