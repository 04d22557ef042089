"""Tests for nlp4neuro.models.lean: frozen weights in bf16, fused GELU, dropout, the unused
token-embedding table; and what they change (or must not change) in a built decoder."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers.activations import NewGELUActivation

from nlp4neuro.models import ModelSpec, build_decoder, make_tiny_backbone
from nlp4neuro.models.lean import (
    fuse_activations,
    release_token_embeddings,
    set_dropout,
    store_frozen,
)

N_NEURONS, N_OUTPUTS = 12, 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean_backbones")
    return {a: make_tiny_backbone(root / a, a, seed=3) for a in ("gpt2", "llama", "bert")}


def spec(folder, **entry) -> ModelSpec:
    return ModelSpec.from_config("lean", {"kind": "llm", "source": str(folder), **entry})


def test_store_frozen_converts_only_frozen_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    model[1].requires_grad_(False)
    converted = store_frozen(model, torch.bfloat16)
    assert converted == 3 * 4  # the frozen Linear's weight matrix; not its bias, not the norm
    assert model[0].weight.dtype == torch.bfloat16
    assert model[0].bias.dtype == torch.float32
    assert model[1].weight.dtype == torch.float32
    assert model[2].weight.dtype == torch.float32  # trains: an fp32 master
    assert store_frozen(model, torch.bfloat16) == 0  # nothing left to convert


def test_fused_gelu_computes_gpt2s_gelu_new():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    # the formula by hand: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
    by_hand = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(nn.GELU(approximate="tanh")(x), by_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(NewGELUActivation()(x), by_hand, rtol=0, atol=1e-12)
    block = nn.Sequential(nn.Linear(4, 4), NewGELUActivation(), nn.Sequential(NewGELUActivation()))
    assert fuse_activations(block) == 2
    assert isinstance(block[1], nn.GELU) and isinstance(block[2][0], nn.GELU)
    assert fuse_activations(block) == 0


def test_set_dropout_reaches_modules_and_attention_attributes():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention_dropout = 0.1
            self.drop = nn.Dropout(0.1)

    model = nn.Sequential(Attention(), nn.Dropout(0.2))
    assert set_dropout(model, 0.0) == 3
    assert model[0].attention_dropout == 0.0 and model[0].drop.p == 0.0 and model[1].p == 0.0
    with pytest.raises(ValueError, match="dropout probability"):
        set_dropout(model, 1.0)


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
def test_backbone_dropout_zero_makes_training_mode_deterministic(tiny, arch):
    """GPT-2's and BERT's configs carry dropout 0.1: two training-mode passes differ, unless
    backbone_dropout is 0 (then they agree bit for bit)."""
    x = torch.randn(2, 5, N_NEURONS, generator=torch.Generator().manual_seed(0))
    for dropout, same in ((None, arch == "llama"), (0.0, True)):
        model = build_decoder(
            spec(tiny[arch], finetune="lora", lora_dropout=0.0, backbone_dropout=dropout),
            N_NEURONS,
            N_OUTPUTS,
            backbone_dir=tiny[arch],
            seed=0,
        ).train()
        assert torch.equal(model(x), model(x)) is same, (arch, dropout)


def test_gpt2_decoder_runs_the_fused_gelu_with_unchanged_outputs(tiny):
    """The built GPT-2 decoder has no Python GELU left, and its eval outputs equal those of the
    same decoder with GPT-2's own gelu_new put back (to float rounding)."""
    model = build_decoder(
        spec(tiny["gpt2"], finetune="head"), N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], seed=0
    ).eval()
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    x = torch.randn(2, 5, N_NEURONS, generator=torch.Generator().manual_seed(1))
    fused = model(x)
    for block in model.backbone.h:
        block.mlp.act = NewGELUActivation()
    torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
def test_frozen_backbones_drop_the_unused_token_embeddings(tiny, arch):
    """LoRA and head decoders free the token-embedding table (never read with inputs_embeds)
    after measuring its norm; outputs equal those of a decoder that keeps it."""
    x = torch.randn(2, 5, N_NEURONS, generator=torch.Generator().manual_seed(2))
    model = build_decoder(
        spec(tiny[arch], finetune="head"), N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=0
    ).eval()
    embeddings = model.backbone.get_input_embeddings()
    assert embeddings.weight.numel() == 0
    full = build_decoder(
        spec(tiny[arch], finetune="full"), N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=0
    ).eval()
    assert full.backbone.get_input_embeddings().weight.numel() > 0  # full saves its state
    assert torch.equal(model.embedding_norm, full.embedding_norm)
    full.backbone.requires_grad_(False)
    full.backbone.get_input_embeddings().requires_grad_(False)
    torch.testing.assert_close(model(x), full(x), rtol=0, atol=0)


def test_release_token_embeddings_leaves_a_trainable_table():
    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)

        def get_input_embeddings(self):
            return self.embed

    backbone = Backbone()
    assert release_token_embeddings(backbone) == 0 and backbone.embed.weight.shape == (10, 4)
    backbone.requires_grad_(False)
    assert release_token_embeddings(backbone) == 40 and backbone.embed.weight.shape == (0, 4)


def test_bf16_storage_keeps_the_residual_stream_fp32(tiny):
    """With frozen matrices in bf16 the tokens stay fp32 (the dtype of the embeddings when the
    decoder was built), so norms and residual sums keep fp32; the output is close to fp32's."""
    x = torch.randn(2, 5, N_NEURONS, generator=torch.Generator().manual_seed(3))
    model = build_decoder(
        spec(tiny["llama"], finetune="lora"),
        N_NEURONS,
        N_OUTPUTS,
        backbone_dir=tiny["llama"],
        seed=0,
    ).eval()
    reference = model(x)
    assert store_frozen(model, torch.bfloat16) > 0
    assert model.token_dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lean = model(x)
    assert lean.dtype == torch.bfloat16  # autocast's matmul output; the loss takes .float()
    torch.testing.assert_close(lean.float(), reference, rtol=0.05, atol=0.05)
