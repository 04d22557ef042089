"""`LLMDecoder`: neural frames in as tokens, tail angles out of every token, any LLM family.

One imaging frame is one token. A linear layer maps the frame's N neuron values to a d_model
vector fed to the backbone as `inputs_embeds` (the token embedding is bypassed); a second linear
layer reads the tail angles from every token's last hidden state. Decoder-only backbones are
causal (the prediction for frame t sees frames <= t); encoders (BERT) see the whole window, or
with `past_only` (decoding ahead) the frames <= t through a causal attention mask.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.models.backbones import (
    backbone_family,
    backbone_hidden_size,
    mean_embedding_norm,
)
from nlp4neuro.models.lean import fuse_activations, release_token_embeddings, set_dropout
from nlp4neuro.models.lora import lora_record, lora_targets
from nlp4neuro.models.rungs import frame_orders, in_frame_order
from nlp4neuro.models.spec import ModelSpec
from nlp4neuro.models.twin import random_backbone, twin_dtype

logger = logging.getLogger(__name__)


class LLMDecoder(nn.Module):
    """Language-model backbone between a neural input projection and a tail-angle readout.

    Args:
        backbone: a transformers base model (AutoModel, no LM head), optionally peft-wrapped.
        n_neurons: N, neurons per frame.
        n_outputs: K, decoded variables per frame (6 tail angles).
        family: "causal" or "encoder" (see `backbones.backbone_family`).
        match_embedding_norm: scale projected tokens so that a z-scored frame (independent,
            unit-variance neurons) gives a token whose expected L2 norm equals the backbone's
            mean token-embedding norm; False keeps the reference code's unscaled projection.
        shuffle_seed: None, or shuffle the frames within each window before the backbone (the
            ladder's `timeshuffled` rung, see `rungs.frame_orders`): a fresh permutation per
            window in training mode, the permutation drawn from this seed in eval mode.
            Predictions are put back in frame order.

    Buffers:
        embedding_norm: mean L2 norm of the backbone's token embeddings (scalar).
        token_scale: multiplier applied to the projection's output (scalar).
        shuffle_seed: the eval permutation's seed (int64 scalar; only with `shuffle_seed`).

    Attributes:
        past_only: an encoder's prediction for frame t sees only frames <= t of the window
            (a causal attention mask; set by `build.see_past_only`). A causal backbone always
            does.
        random_backbone: for a random (untrained) backbone, the record `twin.random_backbone`
            returned when it was drawn (seed, sha256, ...); None for pretrained weights.
        lora: in LoRA mode, what was adapted (`lora.lora_record`: placement, projections per
            kind, counts); None otherwise.
        token_dtype: dtype of the tokens fed to the backbone: that of its token embeddings when
            built (bf16 for a quantised backbone or its twin, else fp32). Storing frozen weights
            in bf16 later (`lean.store_frozen`) leaves it, so the residual stream stays fp32.
    """

    random_backbone: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    past_only = False

    def __init__(
        self,
        backbone: nn.Module,
        n_neurons: int,
        n_outputs: int,
        *,
        family: str,
        match_embedding_norm: bool = True,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        if family not in ("causal", "encoder"):
            raise ValueError(f"family: expected 'causal' or 'encoder', found {family!r}")
        self.family = family
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.d_model = backbone_hidden_size(backbone.config)
        self.backbone = backbone
        self.token_dtype = backbone.get_input_embeddings().weight.dtype
        self.input_proj = nn.Linear(n_neurons, self.d_model)
        self.output_head = nn.Linear(self.d_model, n_outputs)
        embedding_norm = mean_embedding_norm(backbone)
        if match_embedding_norm:
            # For x with independent zero-mean unit-variance entries,
            # E||W x + b||^2 = ||W||_F^2 + ||b||^2, so this factor makes the expected token
            # norm (at initialisation) equal the embedding norm the backbone was trained on.
            with torch.no_grad():
                init_norm = torch.sqrt(
                    self.input_proj.weight.float().square().sum()
                    + self.input_proj.bias.float().square().sum()
                )
            token_scale = embedding_norm / init_norm
        else:
            token_scale = torch.tensor(1.0)
        self.register_buffer("embedding_norm", embedding_norm.reshape(()).float())
        self.register_buffer("token_scale", token_scale.reshape(()).float())
        self.shuffles_time = shuffle_seed is not None
        if self.shuffles_time:
            self.register_buffer("shuffle_seed", torch.tensor(shuffle_seed, dtype=torch.int64))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Project frames to backbone tokens: (batch, window, N) -> (batch, window, d_model)."""
        return self.input_proj(x) * self.token_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decode a batch of windows.

        Args:
            x: (batch, window, n_neurons) float neural activity (one frame per token).

        Returns:
            (batch, window, n_outputs) predictions, one per frame.
        """
        if x.ndim != 3 or x.shape[-1] != self.n_neurons:
            raise ValueError(
                f"input: expected shape (batch, window, {self.n_neurons}), found {tuple(x.shape)}"
            )
        if not self.shuffles_time:
            return self.decode(x)
        seed = None if self.training else int(self.shuffle_seed)
        return in_frame_order(self.decode, x, frame_orders(x.shape[0], x.shape[1], seed=seed))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's predictions for windows in the order given: (batch, window, N) ->
        (batch, window, K)."""
        tokens = self.tokens(x).to(self.token_dtype)
        hidden = self.backbone(inputs_embeds=tokens, attention_mask=self.mask(x)).last_hidden_state
        return self.output_head(hidden.to(self.output_head.weight.dtype))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The attention mask of windows `x`: (batch, window) ones (every frame is real; the
        backbone's own family decides what a token sees), or for an encoder with `past_only`
        (batch, 1, window, window) bool, True where frame t may see frame s (s <= t)."""
        batch, window = x.shape[:2]
        if self.past_only and self.family == "encoder":
            below = torch.ones(window, window, dtype=torch.bool, device=x.device).tril()
            return below.expand(batch, 1, window, window)
        return torch.ones(batch, window, dtype=torch.long, device=x.device)


def _require_cuda(spec: ModelSpec, device: str, expected: str) -> None:
    """Refuse a quantised model (or its untrained twin) on a device that is not CUDA."""
    if not (str(device).startswith("cuda") and torch.cuda.is_available()):
        raise ConfigError(
            f"models.{spec.name}.quantization",
            expected,
            f"{spec.quantization} with only a CPU (device {device!r})",
        )


def _quantization_config(spec: ModelSpec, device: str):
    """bitsandbytes config for an 8/4-bit backbone; only on a CUDA device."""
    key = f"models.{spec.name}.quantization"
    _require_cuda(
        spec, device, "'none' on CPU: 8bit/4bit quantization needs a CUDA device and bitsandbytes"
    )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            key, "bitsandbytes installed for 8bit/4bit (pip install bitsandbytes)", "not installed"
        )
    from transformers import BitsAndBytesConfig

    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def load_backbone(
    spec: ModelSpec, backbone_dir: Path, *, seed: int, device: str = "cpu"
) -> tuple[nn.Module, dict[str, Any] | None]:
    """Load a prepared backbone folder: pretrained weights, or random weights from its config.

    The random (pretrained=False) backbone is drawn on the CPU from `backbone_dir/config.json`
    and `seed` alone (`twin.random_backbone`, which reseeds torch's global generator), in fp32,
    or in bf16 for the twin of a quantised model, which like the model itself needs CUDA.

    Returns:
        (backbone on `device`, record): record is None for pretrained weights, else the twin's
        seed, checksum and versions (what `save_decoder` writes to backbone.json).
    """
    from transformers import AutoModel

    backbone_dir = Path(backbone_dir)
    if not (backbone_dir / "config.json").is_file():
        raise InputFileError(
            backbone_dir,
            f"a prepared backbone folder with config.json for model '{spec.name}'",
            "no config.json",
        )
    if not spec.pretrained:
        if spec.quantization != "none":
            _require_cuda(
                spec,
                device,
                "a CUDA GPU for the untrained twin of a quantised model (its random backbone "
                "is drawn unquantised in bfloat16: 13.5 GB for 6.7B weights)",
            )
        model, record = random_backbone(backbone_dir, seed, twin_dtype(spec))
        return model.to(device), record
    if spec.loads_quantized:
        quant = _quantization_config(spec, device)
        model = AutoModel.from_pretrained(
            backbone_dir, quantization_config=quant, device_map={"": device}
        )
        return model, None
    # fp32 master weights: on CUDA the training loop autocasts to bf16.
    model = AutoModel.from_pretrained(backbone_dir, dtype=torch.float32)
    return model.to(device), None


def _lean_step(spec: ModelSpec, backbone: nn.Module) -> None:
    """Before any adapter exists: GPT-2's Python GELU fused, and every dropout of the backbone
    at `spec.backbone_dropout` (None keeps the pretrained config's), `nlp4neuro.models.lean`."""
    fuse_activations(backbone)
    if spec.backbone_dropout is not None:
        set_dropout(backbone, spec.backbone_dropout)


def _apply_finetune_mode(
    spec: ModelSpec, backbone: nn.Module, adapter_dir: Path | None
) -> nn.Module:
    """Freeze, unfreeze or LoRA-wrap the backbone according to `spec.finetune`."""
    if spec.finetune == "full":
        backbone.requires_grad_(True)
        # Weights that `inputs_embeds` + `last_hidden_state` never touch: the token-embedding
        # table (SmolLM2: 28 M of 135 M weights) and BERT's pooler. Freezing them keeps the
        # trainable count honest and spares optimizer state.
        backbone.get_input_embeddings().requires_grad_(False)
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        return backbone
    if spec.finetune == "head":
        backbone.requires_grad_(False)
        return backbone
    return _wrap_lora(spec, backbone, adapter_dir)


def _wrap_lora(spec: ModelSpec, backbone: nn.Module, adapter_dir: Path | None) -> nn.Module:
    """LoRA adapters on the modules `spec` places them on (`lora.lora_targets`), or the saved
    adapter in `adapter_dir`."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if spec.loads_quantized:
        from peft import prepare_model_for_kbit_training

        backbone = prepare_model_for_kbit_training(backbone, use_gradient_checkpointing=False)
    if adapter_dir is not None:
        return PeftModel.from_pretrained(backbone, adapter_dir, is_trainable=True)
    targets, fan_in_fan_out = lora_targets(spec, backbone.config)
    lora_config = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
    )
    try:
        return get_peft_model(backbone, lora_config)
    except ValueError as error:  # peft: target modules not found in the model
        key = "lora_target_modules" if spec.lora_target_modules else "lora_placement"
        raise ConfigError(
            f"models.{spec.name}.{key}",
            "names of Linear layers that exist in the backbone",
            f"{targets} ({error})",
        ) from error


def build_llm_decoder(
    spec: ModelSpec,
    n_neurons: int,
    n_outputs: int,
    *,
    backbone_dir: Path,
    seed: int,
    device: str = "cpu",
    adapter_dir: Path | None = None,
) -> LLMDecoder:
    """Backbone + fine-tuning mode + linear heads (draws from torch's global generator).

    Args:
        spec: a kind-"llm" spec.
        n_neurons, n_outputs: input and output widths.
        backbone_dir: folder written by `prepare_backbone` (or any Hugging Face folder).
        seed: the seed of an untrained (pretrained=False) backbone and of the timeshuffled
            rung's evaluation permutation; unused otherwise.
        device: torch device string.
        adapter_dir: a saved LoRA adapter to load instead of fresh adapters.
    """
    backbone, record = load_backbone(spec, backbone_dir, seed=seed, device=device)
    family = backbone_family(backbone.config, name=str(backbone_dir))
    _lean_step(spec, backbone)
    backbone = _apply_finetune_mode(spec, backbone, adapter_dir)
    model = LLMDecoder(
        backbone,
        n_neurons,
        n_outputs,
        family=family,
        match_embedding_norm=spec.match_embedding_norm,
        shuffle_seed=seed if spec.rung == "timeshuffled" else None,
    )
    model.random_backbone = record
    model.lora = lora_record(spec, backbone) if spec.finetune == "lora" else None
    if spec.finetune != "full" and not spec.loads_quantized:
        release_token_embeddings(backbone)
    # Only the freshly made heads and buffers need moving; a quantized backbone is already placed.
    model.input_proj.to(device)
    model.output_head.to(device)
    model.embedding_norm = model.embedding_norm.to(device)
    model.token_scale = model.token_scale.to(device)
    if model.shuffles_time:
        model.shuffle_seed = model.shuffle_seed.to(device)
    logger.info(
        "LLM decoder '%s': %s family, d_model %d, token scale %.4g (embedding norm %.3g), %s",
        spec.name,
        family,
        model.d_model,
        float(model.token_scale),
        float(model.embedding_norm),
        spec.finetune,
    )
    if not math.isfinite(float(model.token_scale)):
        raise ConfigError(
            f"models.{spec.name}.match_embedding_norm",
            "a backbone with finite token embeddings",
            float(model.embedding_norm),
        )
    return model
