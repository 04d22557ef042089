"""The ablation ladder's models (`nlp4neuro.ladder`): what is left when the language model goes.

`BackboneFreeDecoder` keeps the LLM decoder's input projection and per-frame readout and puts
in place of the language model nothing (`nobackbone`), one randomly initialised self-attention
layer (`attention`) or one randomly initialised transformer block (`block`) of the backbone's
width, causal for a causal backbone and bidirectional for an encoder. The `timeshuffled` rung
keeps the pretrained `LLMDecoder` and permutes each window's frames (`frame_orders`,
`in_frame_order`).

Every random draw (weights, training-time permutations) uses torch's global CPU generator, which
`build_decoder` and the training loop seed, so the numbers are the same on every device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nlp4neuro.errors import InputFileError
from nlp4neuro.models.backbones import (
    backbone_attention_heads,
    backbone_family,
    backbone_hidden_size,
)
from nlp4neuro.models.baselines import causal_mask
from nlp4neuro.models.spec import ModelSpec

logger = logging.getLogger(__name__)


class SelfAttentionLayer(nn.Module):
    """One multi-head self-attention layer with a residual and a LayerNorm (post-norm).

    (batch, window, width) -> (batch, window, width); causal when `causal`.
    """

    def __init__(self, width: int, n_heads: int, *, causal: bool, dropout: float) -> None:
        super().__init__()
        self.causal = causal
        self.attention = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mask = causal_mask(h.shape[1], h.device) if self.causal else None
        mixed, _ = self.attention(h, h, h, attn_mask=mask, need_weights=False)
        return self.norm(h + mixed)


class TransformerBlock(nn.Module):
    """One pre-norm transformer block (self-attention + GELU MLP of 4 x width, residuals).

    (batch, window, width) -> (batch, window, width); causal when `causal`.
    """

    def __init__(self, width: int, n_heads: int, *, causal: bool, dropout: float) -> None:
        super().__init__()
        self.causal = causal
        self.layer = nn.TransformerEncoderLayer(
            width,
            n_heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mask = causal_mask(h.shape[1], h.device) if self.causal else None
        return self.layer(h, src_mask=mask, is_causal=self.causal)


MIXERS: dict[str, type[nn.Module] | None] = {
    "nobackbone": None,
    "attention": SelfAttentionLayer,
    "block": TransformerBlock,
}


class BackboneFreeDecoder(nn.Module):
    """Input projection -> (random attention layer or block, or nothing) -> per-frame readout.

    Args:
        n_neurons: N, neurons per frame.
        n_outputs: K, decoded variables per frame.
        rung: "nobackbone", "attention" or "block".
        width: d_model, the replaced backbone's hidden size.
        n_heads: attention heads (the backbone's; unused by nobackbone).
        family: "causal" (frame t sees frames <= t) or "encoder" (the whole window).
        dropout: dropout inside the attention layer or block.

    Forward: (batch, window, N) -> (batch, window, K). Every weight trains.
    """

    random_backbone = None
    lora = None

    def __init__(
        self,
        n_neurons: int,
        n_outputs: int,
        *,
        rung: str,
        width: int,
        n_heads: int,
        family: str,
        dropout: float,
    ) -> None:
        super().__init__()
        if family not in ("causal", "encoder"):
            raise ValueError(f"family: expected 'causal' or 'encoder', found {family!r}")
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.family = family
        self.d_model = width
        self.input_proj = nn.Linear(n_neurons, width)
        mixer = MIXERS[rung]
        self.mixer = (
            None
            if mixer is None
            else mixer(width, n_heads, causal=family == "causal", dropout=dropout)
        )
        self.output_head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_neurons:
            raise ValueError(
                f"input: expected shape (batch, window, {self.n_neurons}), found {tuple(x.shape)}"
            )
        hidden = self.input_proj(x)
        if self.mixer is not None:
            hidden = self.mixer(hidden)
        return self.output_head(hidden)


def build_backbone_free_decoder(
    spec: ModelSpec, n_neurons: int, n_outputs: int, *, backbone_dir: Path, device: str
) -> BackboneFreeDecoder:
    """The `spec.rung` decoder with the width, heads and family of `backbone_dir/config.json`
    (no backbone weights are read). Draws its weights from torch's global generator."""
    from transformers import AutoConfig

    if not (Path(backbone_dir) / "config.json").is_file():
        raise InputFileError(
            backbone_dir,
            f"a prepared backbone folder with config.json for model '{spec.name}'",
            "no config.json",
        )
    config = AutoConfig.from_pretrained(backbone_dir)
    name = str(backbone_dir)
    model = BackboneFreeDecoder(
        n_neurons,
        n_outputs,
        rung=spec.rung,
        width=backbone_hidden_size(config, name=name),
        n_heads=backbone_attention_heads(config, name=name),
        family=backbone_family(config, name=name),
        dropout=spec.dropout,
    )
    logger.info(
        "'%s' rung '%s': %s family, width %d, no language model",
        spec.name,
        spec.rung,
        model.family,
        model.d_model,
    )
    return model.to(device)


def frame_orders(batch: int, window: int, *, seed: int | None) -> torch.Tensor:
    """(batch, window) int64 permutations of each window's frames, on the CPU.

    seed None (training): a fresh permutation per window from torch's global CPU generator
    (seeded and checkpointed by the training loop). An integer seed (evaluation): one
    permutation of `window` frames drawn from that seed, the same for every window, so a
    window's prediction does not depend on the batch it comes in.
    """
    if seed is None:
        return torch.rand(batch, window).argsort(dim=1)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(window, generator=generator).expand(batch, window)


def in_frame_order(
    decode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: torch.Tensor
) -> torch.Tensor:
    """`decode` applied to each window with its frames in `order`, outputs put back in place.

    Args:
        decode: (batch, window, N) -> (batch, window, K), one output per input frame.
        x: (batch, window, N) frames.
        order: (batch, window) permutation per window; position i is given frame order[b, i].

    Returns:
        (batch, window, K): row t is what `decode` made of frame t (seen at its shuffled
        position), so every prediction stays aligned with its own frame's target. Frames never
        leave their window.
    """
    order = order.to(x.device)
    inverse = order.argsort(dim=1)
    shuffled = x.gather(1, order[..., None].expand_as(x))
    out = decode(shuffled)
    return out.gather(1, inverse[..., None].expand(-1, -1, out.shape[-1]))
