"""Where LoRA adapters sit: one named placement, mapped onto each architecture's modules.

`models.*.lora_placement` names what to adapt in the same terms for every family, so that a
comparison across families is not confounded by where the adapters sit:
- `attention`: every attention block's query, key, value and output projections;
- `attention_mlp`: those plus every MLP projection.
`models.*.lora_target_modules` (exact module names or dotted path suffixes) overrides it.

Every adapted module is sorted into a kind (`attention_qkv`, `attention_out`, `mlp`, or `other`
for an override's modules outside the layout) and counted in projections: GPT-2's fused
`c_attn` holds query, key and value, so it counts as three `attention_qkv` projections.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from nlp4neuro.errors import ConfigError
from nlp4neuro.models.backbones import text_config
from nlp4neuro.models.spec import ModelSpec

logger = logging.getLogger(__name__)

# The kinds of projection each placement (the schema's `models.*.lora_placement` enum) adapts.
PLACEMENT_KINDS: dict[str, tuple[str, ...]] = {
    "attention": ("attention_qkv", "attention_out"),
    "attention_mlp": ("attention_qkv", "attention_out", "mlp"),
}
KINDS = ("attention_qkv", "attention_out", "mlp", "other")


@dataclass(frozen=True)
class LoraLayout:
    """One architecture's projections by kind, as dotted module-path suffixes.

    peft adapts a module whose path ends in `.<suffix>`; where several suffixes fit one path
    (BERT's `attention.output.dense` also ends in the MLP's `output.dense`) the longest decides
    its kind, so an `attention` placement never lists an MLP suffix that could catch it.

    Attributes:
        suffixes: kind -> suffixes of that kind's modules (kinds: attention_qkv, attention_out,
            mlp).
        fused_qkv: suffixes of modules that project query, key and value at once (3 each).
        fan_in_fan_out: weights stored transposed (GPT-2's Conv1D); peft must be told.
    """

    suffixes: Mapping[str, tuple[str, ...]]
    fused_qkv: tuple[str, ...]
    fan_in_fan_out: bool


_LLAMA_STYLE = LoraLayout(
    suffixes={
        "attention_qkv": ("q_proj", "k_proj", "v_proj"),
        "attention_out": ("o_proj",),
        "mlp": ("gate_proj", "up_proj", "down_proj"),
    },
    fused_qkv=(),
    fan_in_fan_out=False,
)
_BERT_STYLE = LoraLayout(
    suffixes={
        "attention_qkv": ("attention.self.query", "attention.self.key", "attention.self.value"),
        "attention_out": ("attention.output.dense",),
        "mlp": ("intermediate.dense", "output.dense"),
    },
    fused_qkv=(),
    fan_in_fan_out=False,
)
_GPT2 = LoraLayout(
    suffixes={
        "attention_qkv": ("attn.c_attn",),
        "attention_out": ("attn.c_proj",),
        "mlp": ("mlp.c_fc", "mlp.c_proj"),
    },
    fused_qkv=("attn.c_attn",),
    fan_in_fan_out=True,
)
# By the backbone config's `model_type`; any other architecture needs lora_target_modules.
LAYOUTS: dict[str, LoraLayout] = {
    **{
        model_type: _LLAMA_STYLE
        for model_type in ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mistral")
    },
    "bert": _BERT_STYLE,
    "roberta": _BERT_STYLE,
    "gpt2": _GPT2,
}


def lora_layout(config: Any) -> LoraLayout | None:
    """The layout of a backbone config's architecture (by `model_type`), None if not known."""
    return LAYOUTS.get(getattr(text_config(config), "model_type", None))


def lora_targets(spec: ModelSpec, config: Any) -> tuple[list[str], bool]:
    """(peft `target_modules`, `fan_in_fan_out`) for `spec` on a backbone with `config`.

    `spec.lora_target_modules` wins when given; otherwise the placement's kinds are looked up
    in the architecture's layout.

    Raises:
        ConfigError: `models.<name>.lora_placement` on an architecture without a layout.
    """
    layout = lora_layout(config)
    fan_in_fan_out = layout.fan_in_fan_out if layout is not None else False
    if spec.lora_target_modules is not None:
        return list(spec.lora_target_modules), fan_in_fan_out
    if layout is None:
        model_type = getattr(text_config(config), "model_type", None)
        raise ConfigError(
            f"models.{spec.name}.lora_placement",
            f"an architecture with a known LoRA layout ({', '.join(sorted(LAYOUTS))}); for "
            f"others give models.{spec.name}.lora_target_modules (exact module names)",
            f"{spec.lora_placement!r} on model_type {model_type!r}",
        )
    targets = [s for kind in PLACEMENT_KINDS[spec.lora_placement] for s in layout.suffixes[kind]]
    return targets, fan_in_fan_out


def module_kind(path: str, layout: LoraLayout | None) -> tuple[str, int]:
    """(kind, projections) of the module at `path` (`other`, 1 when the layout has no suffix
    for it); the longest fitting suffix decides."""
    best: tuple[int, str, int] = (-1, "other", 1)
    for kind, suffixes in (layout.suffixes if layout else {}).items():
        for suffix in suffixes:
            if (path == suffix or path.endswith(f".{suffix}")) and len(suffix) > best[0]:
                best = (len(suffix), kind, 3 if suffix in layout.fused_qkv else 1)
    return best[1], best[2]


def adapted_modules(backbone: nn.Module) -> list[str]:
    """Paths of the modules that carry LoRA adapters in a peft-wrapped backbone."""
    from peft.tuners.lora import LoraLayer

    return [name for name, module in backbone.named_modules() if isinstance(module, LoraLayer)]


def lora_record(spec: ModelSpec, backbone: nn.Module) -> dict[str, Any]:
    """What a LoRA build adapted, for the run's metadata (and the build log).

    Returns:
        {"placement": the preset, or "lora_target_modules" for an override; "target_modules":
        what peft was given; "fan_in_fan_out"; "projections": {kind: count} over KINDS, a fused
        q/k/v module counted 3 times; "total_projections"; "adapted_modules": LoRA-wrapped
        modules}.
    """
    config = backbone.peft_config[backbone.active_adapter]
    targets = config.target_modules  # a set, or one regex string
    layout = lora_layout(backbone.config)
    projections = dict.fromkeys(KINDS, 0)
    modules = adapted_modules(backbone)
    for path in modules:
        kind, count = module_kind(path, layout)
        projections[kind] += count
    override = spec.lora_target_modules is not None
    record = {
        "placement": "lora_target_modules" if override else spec.lora_placement,
        "target_modules": targets if isinstance(targets, str) else sorted(targets),
        "fan_in_fan_out": bool(config.fan_in_fan_out),
        "projections": projections,
        "total_projections": sum(projections.values()),
        "adapted_modules": len(modules),
    }
    logger.info(
        "LoRA on '%s' (%s): %d modules adapted, projections %s",
        spec.name,
        record["placement"],
        record["adapted_modules"],
        projections,
    )
    return record
