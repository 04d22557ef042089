"""A lean training step: frozen weights in the compute precision, fused activations, dropout
only where asked for.

Four changes to a built decoder, each leaving the function it computes unchanged or changed
only where the config says so:

- `store_frozen`: in bf16 compute, the weight matrices nothing trains (a LoRA or head-only
  backbone) are stored once in bf16, so autocast never casts them again; trainable weights keep
  fp32 masters, and vectors (biases, norm weights) stay fp32 (CPU layer norm refuses bf16
  weights on fp32 inputs).
- `fuse_activations`: GPT-2's tanh-approximated GELU, written in Python as seven elementwise
  operations that each keep a (tokens x 4 d_model) tensor for the backward pass, becomes
  torch's one fused kernel of the same formula (docs/benchmarks.md: 20 % of a LoRA step).
- `set_dropout`: every dropout of a backbone set to one probability (the model's
  `backbone_dropout`); a probability of 0 costs nothing at all in torch, and lets attention run
  the fused (flash) kernel.
- `release_token_embeddings`: the token-embedding table, which a decoder fed `inputs_embeds`
  never reads, is dropped from a frozen backbone (GPT-2: 38.6 M weights, 154 MB in fp32).
"""

from __future__ import annotations

import torch
from torch import nn


def store_frozen(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen floating-point weight matrices (ndim >= 2) of `model` in `dtype`.

    Returns:
        The number of weights converted (0 when everything trains or is already `dtype`).
    """
    converted = 0
    for parameter in model.parameters():
        frozen_matrix = not parameter.requires_grad and parameter.ndim >= 2
        if frozen_matrix and parameter.is_floating_point() and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
            converted += parameter.numel()
    return converted


def fuse_activations(module: nn.Module) -> int:
    """Replace every transformers `NewGELUActivation` (GPT-2's "gelu_new", written as Python
    operations) in `module` by `nn.GELU(approximate="tanh")`.

    Both compute 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))); the fused kernel keeps one
    tensor for the backward pass instead of seven. Returns the number replaced.
    """
    from transformers.activations import NewGELUActivation

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(parent, name, nn.GELU(approximate="tanh"))
                replaced += 1
    return replaced


# Float attributes some attention modules read instead of an nn.Dropout (Llama, Qwen2, BERT's
# sdpa path).
_DROPOUT_ATTRIBUTES = ("attention_dropout", "dropout_prob")


def set_dropout(module: nn.Module, probability: float) -> int:
    """Set every dropout inside `module` to `probability`; returns how many were set.

    Covers `nn.Dropout` modules and the float dropout attributes of attention modules.
    """
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"dropout probability: expected 0 <= p < 1, found {probability}")
    count = 0
    for child in module.modules():
        if isinstance(child, nn.Dropout):
            child.p = probability
            count += 1
        for name in _DROPOUT_ATTRIBUTES:
            if isinstance(getattr(child, name, None), float):
                setattr(child, name, probability)
                count += 1
    return count


def release_token_embeddings(backbone: nn.Module) -> int:
    """Replace a frozen backbone's token-embedding table by an empty one; returns the weights
    freed.

    Only for backbones that are fed `inputs_embeds` and never save their frozen weights (LoRA
    and head-only decoders; their token-embedding norm is measured before). A trainable table
    is left alone.
    """
    embeddings = backbone.get_input_embeddings()
    weight = embeddings.weight
    if weight.requires_grad or weight.numel() == 0:
        return 0
    freed = weight.numel()
    empty = torch.empty((0, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    embeddings.weight = nn.Parameter(empty, requires_grad=False)
    return freed
