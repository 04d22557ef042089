"""Build any decoder from its spec; count, save and reload its weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.models import twin
from nlp4neuro.models.backbones import SOURCE_RECORD
from nlp4neuro.models.baselines import (
    MeanDecoder,
    RecurrentDecoder,
    ReservoirDecoder,
    RidgeDecoder,
    TransformerDecoder,
)
from nlp4neuro.models.llm import LLMDecoder, build_llm_decoder
from nlp4neuro.models.rungs import BackboneFreeDecoder, build_backbone_free_decoder
from nlp4neuro.models.spec import FRAME_KINDS, ModelSpec
from nlp4neuro.provenance import atomic_output, versions

logger = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
Decoder = nn.Module | RidgeDecoder | MeanDecoder


def build_decoder(
    spec: ModelSpec,
    n_neurons: int,
    n_outputs: int,
    *,
    backbone_dir: str | Path | None,
    seed: int,
    device: str = "cpu",
) -> Decoder:
    """Build an untrained decoder (random heads; LLM backbones pretrained unless spec says not).

    Every random draw (heads, untrained backbones, reservoir weights) comes from torch seeded
    with `seed` inside a forked RNG, so equal seeds give identical models and the caller's
    global RNG state is left untouched.

    Args:
        spec: the model's spec.
        n_neurons: N, neurons per frame.
        n_outputs: K, outputs per frame (6 tail angles).
        backbone_dir: prepared backbone folder (kind "llm" only; ignored otherwise).
        seed: integer seed.
        device: torch device string.

    Returns:
        An `nn.Module` mapping (batch, window, N) -> (batch, window, K) for torch kinds, or a
        `RidgeDecoder` / `MeanDecoder` (fit/predict on (T, N) frames). Torch models carry
        `spec`, `n_neurons` and `n_outputs` attributes used by `save_decoder`.
    """
    for name, value in (("n_neurons", n_neurons), ("n_outputs", n_outputs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, found {value!r}")
    if spec.kind in FRAME_KINDS:
        frame_model: RidgeDecoder | MeanDecoder = (
            RidgeDecoder(n_neurons, n_outputs, spec.ridge_alphas)
            if spec.kind == "ridge"
            else MeanDecoder(n_neurons, n_outputs)
        )
        frame_model.spec = spec
        return frame_model
    if spec.uses_backbone and backbone_dir is None:
        raise ConfigError(
            f"models.{spec.name}.source", "a prepared backbone folder for kind 'llm'", None
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_torch(spec, n_neurons, n_outputs, backbone_dir, device, seed, None)
    trainable, total = trainable_parameter_count(model)
    logger.info(
        "built %s '%s' (seed %d): %d of %d parameters trainable",
        spec.kind,
        spec.name,
        seed,
        trainable,
        total,
    )
    return model


def _build_torch(
    spec: ModelSpec,
    n_neurons: int,
    n_outputs: int,
    backbone_dir: str | Path | None,
    device: str,
    seed: int,
    adapter_dir: Path | None,
) -> nn.Module:
    """The torch decoder of `spec` (draws from torch's global generator; `seed` reseeds it
    right before an untrained backbone is drawn)."""
    model: nn.Module
    if spec.kind == "llm" and spec.replaces_backbone:
        assert backbone_dir is not None
        model = build_backbone_free_decoder(
            spec, n_neurons, n_outputs, backbone_dir=Path(backbone_dir), device=device
        )
    elif spec.kind == "llm":
        assert backbone_dir is not None
        model = build_llm_decoder(
            spec,
            n_neurons,
            n_outputs,
            backbone_dir=Path(backbone_dir),
            seed=seed,
            device=device,
            adapter_dir=adapter_dir,
        )
    else:
        model = _build_baseline(spec, n_neurons, n_outputs).to(device)
    model.spec = spec
    return model


def _build_baseline(spec: ModelSpec, n_neurons: int, n_outputs: int) -> nn.Module:
    """A torch baseline (lstm, gru, reservoir, transformer) on the CPU."""
    if spec.kind in ("lstm", "gru"):
        return RecurrentDecoder(
            n_neurons,
            n_outputs,
            cell=spec.kind,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            dropout=spec.dropout,
        )
    if spec.kind == "reservoir":
        return ReservoirDecoder(
            n_neurons,
            n_outputs,
            hidden_size=spec.hidden_size,
            spectral_radius=spec.spectral_radius,
            leak=spec.leak,
            input_scaling=spec.input_scaling,
        )
    if spec.kind == "transformer":
        return TransformerDecoder(
            n_neurons,
            n_outputs,
            d_model=spec.hidden_size,
            n_heads=spec.n_heads,
            num_layers=spec.num_layers,
            dropout=spec.dropout,
            max_window=spec.max_window,
        )
    # ModelSpec validation rules this out
    raise ConfigError(f"models.{spec.name}.kind", "a torch model kind", spec.kind)


def see_past_only(model: Decoder) -> Decoder:
    """Make every prediction of `model` depend on its own frame and earlier ones only.

    For decoding ahead (`problem.DecodingParams.past_only`): the prediction for frame t of a
    window must not see a later neural frame. Frame-wise models (ridge, mean), LSTM/GRU,
    reservoirs and causal language models already comply; a bidirectional encoder (a BERT
    backbone, the from-scratch transformer, an encoder's attention or block rung) gets a
    causal attention mask. Idempotent; returns `model`.

    Raises:
        ConfigError (decoding.horizons): the time-shuffled rung, whose shuffle moves later
            frames before earlier ones.
    """
    if isinstance(model, LLMDecoder) and model.shuffles_time:
        raise ConfigError(
            "decoding.horizons",
            "horizon 0 only for a time-shuffled rung (it moves later frames before earlier ones)",
            f"decoding ahead with '{model.spec.name}'",
        )
    if isinstance(model, LLMDecoder | TransformerDecoder):
        model.past_only = True
    elif isinstance(model, BackboneFreeDecoder) and model.mixer is not None:
        model.mixer.causal = True
    return model


def trainable_parameter_count(model: Decoder) -> tuple[int, int]:
    """(trainable, total) parameter counts; ridge/mean count their fitted numbers as both."""
    if isinstance(model, RidgeDecoder | MeanDecoder):
        return model.n_parameters, model.n_parameters
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _save_format(spec: ModelSpec) -> str:
    """What `save_decoder` writes: only what trains, plus for an untrained twin the record
    that regenerates its frozen random backbone (`twin.RECORD_FILE`). The ladder's rungs
    without a backbone fine-tune fully (`ModelSpec` checks it): their whole state is saved."""
    if spec.kind in FRAME_KINDS:
        return spec.kind
    if spec.kind != "llm" or spec.finetune == "full":
        return "state_dict"
    return "lora" if spec.finetune == "lora" else "heads"


def _regenerates_backbone(spec: ModelSpec) -> bool:
    """An untrained twin whose random backbone stays frozen (LoRA or head mode)."""
    return spec.kind == "llm" and not spec.pretrained and spec.finetune != "full"


def _backbone_record(backbone_dir: str | Path | None) -> dict[str, Any] | None:
    if backbone_dir is None:
        return None
    path = Path(backbone_dir) / SOURCE_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return {"source": record.get("source"), "sha256": record.get("sha256")}


def _heads_state(model: LLMDecoder) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
        if not k.startswith("backbone.")
    }


def save_decoder(
    model: Decoder, out_dir: str | Path, *, backbone_dir: str | Path | None = None
) -> Path:
    """Save what a decoder trained and `spec.json` into `out_dir` (replaced atomically).

    Files by kind: LoRA: `adapter/` (peft adapter, safetensors) and `heads.safetensors` (input
    projection, readout, scale buffers); head mode: the heads only; full fine-tuning (every
    weight trains, so the whole state stays, untrained twins included) and torch baselines:
    `model.safetensors` (all weights and buffers); ridge/mean: their npz + json. An untrained
    twin in LoRA or head mode adds `backbone.json` (seed and sha256 of its random backbone,
    which `load_decoder` draws again) instead of the backbone's weights. Pass `backbone_dir` to
    record which prepared backbone the weights belong to (checked by `load_decoder`). In LoRA
    mode `spec.json` also records what was adapted (key `lora`, see `lora.lora_record`).
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ValueError("save_decoder: expected a model made by build_decoder (no .spec)")
    out_dir = Path(out_dir)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        if isinstance(model, RidgeDecoder | MeanDecoder):
            model.save(tmp)
            fmt = model.kind
        else:
            fmt = _save_format(spec)
            _save_torch(model, spec, fmt, tmp)
        meta = {
            "format": fmt,
            "kind": spec.kind,
            "spec": spec.to_dict(),
            "n_neurons": model.n_neurons,
            "n_outputs": model.n_outputs,
            "family": getattr(model, "family", None),
            "lora": getattr(model, "lora", None),
            "backbone": _backbone_record(backbone_dir),
            "versions": versions(),
        }
        (tmp / SPEC_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out_dir


def _save_torch(model: nn.Module, spec: ModelSpec, fmt: str, folder: Path) -> None:
    """Write a torch decoder's files for format `fmt` (see `save_decoder`) into `folder`."""
    if fmt == "state_dict":
        save_model(model, str(folder / "model.safetensors"))
        return
    assert isinstance(model, LLMDecoder)
    if fmt == "lora":
        model.backbone.save_pretrained(folder / "adapter", safe_serialization=True)
    save_file(_heads_state(model), str(folder / "heads.safetensors"))
    if _regenerates_backbone(spec):
        if model.random_backbone is None:
            raise ValueError(f"save_decoder: '{spec.name}' has no record of its random backbone")
        twin.write_record(folder, model.random_backbone)


def load_decoder(
    spec: ModelSpec,
    n_neurons: int,
    n_outputs: int,
    *,
    backbone_dir: str | Path | None,
    out_dir: str | Path,
    device: str = "cpu",
) -> Decoder:
    """Rebuild a decoder saved by `save_decoder`; torch models come back in eval mode.

    An untrained twin's random backbone is drawn again from the seed in `backbone.json` and
    must match the checksum stored there.

    Raises:
        InputFileError: missing files, a saved spec / shape / backbone that differs from the
            one requested, or a redrawn random backbone whose checksum differs.
    """
    out_dir = Path(out_dir)
    meta = _read_saved_spec(out_dir, spec, n_neurons, n_outputs)
    if spec.kind in FRAME_KINDS:
        frame_model = (RidgeDecoder if spec.kind == "ridge" else MeanDecoder).load(out_dir)
        frame_model.spec = spec
        return frame_model
    _check_backbone(meta.get("backbone"), backbone_dir)
    fmt = meta.get("format")
    # A whole state loads into any mode (untrained twins were once saved so).
    if fmt not in (_save_format(spec), "state_dict"):
        raise InputFileError(out_dir / SPEC_FILE, f"format {_save_format(spec)!r}", fmt)
    adapter_dir = out_dir / "adapter" if fmt == "lora" else None
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise InputFileError(adapter_dir, "a peft adapter folder", "no adapter_config.json")
    regenerate = _regenerates_backbone(spec) and fmt != "state_dict"
    saved_twin = twin.read_record(out_dir) if regenerate else None
    # Every other random weight is overwritten by the saved ones, so the seed is arbitrary.
    seed = saved_twin["seed"] if saved_twin else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_torch(spec, n_neurons, n_outputs, backbone_dir, device, seed, adapter_dir)
    if saved_twin:
        twin.check_record(out_dir, saved_twin, model.random_backbone)
    if fmt == "state_dict":
        _load_state_dict(model, out_dir / "model.safetensors", spec, device)
    else:
        _load_heads(model, out_dir / "heads.safetensors", device)
    model.eval()
    return model


def _read_saved_spec(
    out_dir: Path, spec: ModelSpec, n_neurons: int, n_outputs: int
) -> dict[str, Any]:
    """The folder's spec.json, checked against the requested spec and shapes."""
    meta_path = out_dir / SPEC_FILE
    if not meta_path.is_file():
        raise InputFileError(meta_path, "a decoder folder written by save_decoder", "no spec.json")
    meta = json.loads(meta_path.read_text())
    if (meta.get("n_neurons"), meta.get("n_outputs")) != (n_neurons, n_outputs):
        raise InputFileError(
            meta_path,
            f"a decoder for {n_neurons} neurons and {n_outputs} outputs",
            f"{meta.get('n_neurons')} neurons and {meta.get('n_outputs')} outputs",
        )
    if _saved_spec(meta.get("spec")) != spec:
        raise InputFileError(meta_path, f"the spec {spec.to_dict()}", meta.get("spec"))
    return meta


def _saved_spec(saved: Any) -> ModelSpec | None:
    """The spec a decoder folder records, completed with today's schema defaults (so a key
    added since it was saved takes its default); None when it is no valid spec."""
    if not isinstance(saved, dict) or not isinstance(saved.get("name"), str):
        return None
    try:
        return ModelSpec.from_config(saved["name"], saved)
    except ConfigError:
        return None


def _check_backbone(saved: dict[str, Any] | None, backbone_dir: str | Path | None) -> None:
    """Refuse a backbone folder other than the one the decoder was trained with."""
    current = _backbone_record(backbone_dir)
    if saved and current and saved != current:
        raise InputFileError(
            Path(str(backbone_dir)),
            f"the backbone the decoder was trained with ({saved['source']})",
            current["source"],
        )


def _load_state_dict(model: nn.Module, weights: Path, spec: ModelSpec, device: str) -> None:
    """Load every weight and buffer of a `state_dict`-format decoder."""
    if not weights.is_file():
        raise InputFileError(weights, "the decoder's saved weights", "no such file")
    missing, unexpected = load_model(model, str(weights), strict=False, device=device)
    if missing or unexpected:
        raise InputFileError(
            weights,
            f"weights for {spec.kind} '{spec.name}'",
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}",
        )


def _load_heads(model: nn.Module, heads_path: Path, device: str) -> None:
    """Load an LLM decoder's input/output layers and scale buffers (the backbone is loaded)."""
    if not heads_path.is_file():
        raise InputFileError(heads_path, "the decoder's input/output layers", "no such file")
    heads = load_file(str(heads_path), device=device)
    result = model.load_state_dict(heads, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("backbone.")]
    if missing or result.unexpected_keys:
        raise InputFileError(
            heads_path,
            "input_proj/output_head weights and scale buffers",
            f"missing {missing}, unexpected {result.unexpected_keys}",
        )


def initialise_readout(model: nn.Module, target_mean: np.ndarray, target_std: np.ndarray) -> bool:
    """Start a torch decoder's per-frame readout at the training targets' scale.

    The readout's bias becomes the training mean of each output and its weights are scaled by
    each output's training standard deviation, so an untrained decoder predicts about the mean
    with a spread of the targets' size instead of random offsets of order one radian. This only
    changes the initialisation (and so how few steps a decoder needs); nothing is frozen.

    Args:
        model: a decoder from `build_decoder` with an ``output_head`` or ``readout`` Linear.
        target_mean, target_std: (n_outputs,) training-split mean and sd of the targets.

    Returns:
        True when a readout was found and initialised.
    """
    layer = getattr(model, "output_head", None) or getattr(model, "readout", None)
    if not isinstance(layer, nn.Linear):
        return False
    mean = torch.as_tensor(np.asarray(target_mean), dtype=layer.bias.dtype)
    std = torch.as_tensor(np.asarray(target_std), dtype=layer.weight.dtype)
    if mean.shape != (layer.out_features,) or std.shape != (layer.out_features,):
        raise ValueError(
            f"target_mean/target_std: expected shape ({layer.out_features},), "
            f"found {tuple(mean.shape)} and {tuple(std.shape)}"
        )
    with torch.no_grad():
        layer.weight.mul_(std.to(layer.weight.device)[:, None])
        layer.bias.copy_(mean.to(layer.bias.device))
    return True
