"""Decoders: LLM backbones from offline sources, the LLM decoder and classic baselines.

Public API (see each submodule for details):
- `ModelSpec` (spec): one model's parameters, built from a validated config entry.
- `resolve_source`, `prepare_backbone`, `make_tiny_backbone` (backbones): backbone folders.
- `LLMDecoder` (llm): frames as tokens through a pretrained language model.
- `LAYOUTS`, `lora_layout`, `lora_targets` (lora): where LoRA adapters sit per architecture.
- `RecurrentDecoder`, `ReservoirDecoder`, `TransformerDecoder`, `RidgeDecoder`, `MeanDecoder`
  (baselines).
- `build_decoder`, `initialise_readout`, `trainable_parameter_count`, `save_decoder`,
  `load_decoder`, `see_past_only` (build; the last for decoding ahead).
- `random_backbone`, `state_sha256` (twin): an untrained twin's random backbone, redrawn from
  its config and seed instead of saved.
- `BackboneFreeDecoder`, `frame_orders`, `in_frame_order` (rungs): the ablation ladder's
  models without a language model, and the timeshuffled rung's frame permutations (the ladder
  itself is `nlp4neuro.ladder`).
"""

from nlp4neuro.models.backbones import (
    ResolvedSource,
    backbone_attention_heads,
    backbone_family,
    backbone_hidden_size,
    make_tiny_backbone,
    mean_embedding_norm,
    prepare_backbone,
    resolve_source,
)
from nlp4neuro.models.baselines import (
    MeanDecoder,
    RecurrentDecoder,
    ReservoirDecoder,
    RidgeDecoder,
    TransformerDecoder,
)
from nlp4neuro.models.build import (
    build_decoder,
    initialise_readout,
    load_decoder,
    save_decoder,
    see_past_only,
    trainable_parameter_count,
)
from nlp4neuro.models.llm import LLMDecoder, load_backbone
from nlp4neuro.models.lora import LAYOUTS, LoraLayout, lora_layout, lora_targets
from nlp4neuro.models.rungs import BackboneFreeDecoder, frame_orders, in_frame_order
from nlp4neuro.models.spec import FRAME_KINDS, ModelSpec
from nlp4neuro.models.twin import random_backbone, state_sha256

__all__ = [
    "FRAME_KINDS",
    "LAYOUTS",
    "BackboneFreeDecoder",
    "LLMDecoder",
    "LoraLayout",
    "MeanDecoder",
    "ModelSpec",
    "RecurrentDecoder",
    "ReservoirDecoder",
    "ResolvedSource",
    "RidgeDecoder",
    "TransformerDecoder",
    "backbone_attention_heads",
    "backbone_family",
    "backbone_hidden_size",
    "build_decoder",
    "frame_orders",
    "in_frame_order",
    "initialise_readout",
    "load_backbone",
    "load_decoder",
    "lora_layout",
    "lora_targets",
    "make_tiny_backbone",
    "mean_embedding_norm",
    "prepare_backbone",
    "random_backbone",
    "resolve_source",
    "save_decoder",
    "see_past_only",
    "state_sha256",
    "trainable_parameter_count",
]
