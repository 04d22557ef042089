"""`ModelSpec`: every parameter that defines one decoder, validated once from the config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from nlp4neuro.errors import ConfigError

MODEL_KINDS = ("llm", "lstm", "gru", "reservoir", "transformer", "ridge", "mean")
FINETUNE_MODES = ("lora", "head", "full")
QUANTIZATIONS = ("none", "8bit", "4bit")
_TORCH_KINDS = ("llm", "lstm", "gru", "reservoir", "transformer")


# Keys of a config model entry that steer the workflow rather than the model itself.
WORKFLOW_KEYS = ("allow_download", "untrained_twin", "twin_of", "training")


@dataclass(frozen=True)
class ModelSpec:
    """One decoder's definition (one entry of the config's `models` section).

    Attributes:
        name: the model's name in the config and in output paths (e.g. "smollm2_lora").
        kind: "llm" (pretrained language model backbone), "lstm", "gru", "reservoir" (echo-state
            network), "transformer" (small encoder trained from scratch), "ridge" (frame-wise
            ridge regression) or "mean" (training-mean predictor).
        source: backbone source, llm only: "bundled:smollm2", "bundled:minilm",
            "bundled:gemma3-270m", a local Hugging Face folder, a `.gguf` file or a hub id.
        pretrained: False builds the same backbone architecture with random weights (the paper's
            untrained control).
        finetune: "lora" (low-rank adapters on the backbone), "head" (backbone frozen, only the
            input/output linears train) or "full" (every weight trains).
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling numerator and adapter dropout.
        lora_target_modules: names of the backbone Linear layers that get adapters; None picks a
            default from the backbone's `model_type`.
        quantization: "none", "8bit" or "4bit" (bitsandbytes; CUDA only).
        match_embedding_norm: scale the neural input projection so a z-scored frame gives a
            token as long as the backbone's mean token embedding (False = the reference code's
            unscaled projection).
        hidden_size: width of the LSTM/GRU, reservoir or from-scratch transformer (the reference
            LSTM and reservoir use 256).
        num_layers: stacked LSTM/GRU or transformer layers.
        dropout: dropout between stacked recurrent layers and inside the transformer.
        spectral_radius: largest |eigenvalue| of the reservoir's recurrent matrix (< 1 gives
            fading memory).
        leak: reservoir leak rate a in h_t = (1 - a) h_{t-1} + a tanh(...), in (0, 1].
        input_scaling: reservoir input gain; input weights are U(-1, 1) * input_scaling /
            sqrt(n_neurons) so a z-scored frame gives unit-scale pre-activations.
        ridge_alphas: candidate ridge penalties; the one with the lowest validation RMSE is kept.
        n_heads: attention heads of the from-scratch transformer (must divide hidden_size).
        max_window: longest window (frames) the transformer's learned positional embedding covers.
    """

    name: str
    kind: str
    source: str | None = None
    pretrained: bool = True
    finetune: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] | None = None
    quantization: str = "none"
    match_embedding_norm: bool = True
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    spectral_radius: float = 0.9
    leak: float = 0.9
    input_scaling: float = 1.0
    ridge_alphas: tuple[float, ...] = (1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
    n_heads: int = 4
    max_window: int = 64

    def __post_init__(self) -> None:
        self._validate()

    @property
    def is_torch(self) -> bool:
        """True for models trained by gradient descent (all but ridge and mean)."""
        return self.kind in _TORCH_KINDS

    @property
    def uses_backbone(self) -> bool:
        """True when the model needs a prepared language-model backbone folder."""
        return self.kind == "llm"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); `from_config(name, d)` inverts it."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_config(cls, name: str, cfg: dict[str, Any]) -> ModelSpec:
        """Build and validate a spec from one `models.<name>` config mapping.

        Unknown keys and wrong types raise `ConfigError("models.<name>.<key>", expected, found)`.
        A `name` key inside `cfg` is ignored in favour of the `name` argument.
        """
        if not isinstance(cfg, dict):
            raise ConfigError(f"models.{name}", "a mapping of model parameters", cfg)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {"name": name}
        for key, value in cfg.items():
            if key == "name":
                continue
            if key not in fields:
                raise ConfigError(
                    f"models.{name}.{key}", f"one of {sorted(set(fields) - {'name'})}", key
                )
            values[key] = _coerce(name, key, value, fields[key].default)
        if "kind" not in values:
            raise ConfigError(f"models.{name}.kind", f"one of {list(MODEL_KINDS)}", None)
        return cls(**values)

    @classmethod
    def from_workflow(cls, name: str, cfg: dict[str, Any]) -> ModelSpec:
        """`from_config` for a model entry as the workflow holds it.

        The workflow's own keys (`WORKFLOW_KEYS`: download permission, twin bookkeeping and
        per-model training overrides) are not model parameters and are left out.
        """
        return cls.from_config(name, {k: v for k, v in cfg.items() if k not in WORKFLOW_KEYS})

    def _validate(self) -> None:
        key = f"models.{self.name}"
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"{key}.kind", f"one of {list(MODEL_KINDS)}", self.kind)
        if self.finetune not in FINETUNE_MODES:
            raise ConfigError(f"{key}.finetune", f"one of {list(FINETUNE_MODES)}", self.finetune)
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"{key}.quantization", f"one of {list(QUANTIZATIONS)}", self.quantization
            )
        if self.kind == "llm":
            if not self.source:
                raise ConfigError(
                    f"{key}.source",
                    "a backbone source for kind 'llm' (bundled:smollm2, bundled:minilm, "
                    "bundled:gemma3-270m, a local folder, a .gguf file or a hub id)",
                    self.source,
                )
            if self.quantization != "none" and self.finetune == "full":
                raise ConfigError(
                    f"{key}.finetune",
                    "'lora' or 'head' with a quantized backbone (quantized weights cannot be "
                    "fully fine-tuned)",
                    self.finetune,
                )
            if self.quantization != "none" and not self.pretrained:
                raise ConfigError(
                    f"{key}.quantization",
                    "'none' for an untrained (pretrained: false) backbone",
                    self.quantization,
                )
        elif self.source is not None:
            raise ConfigError(f"{key}.source", "no source for a non-llm model", self.source)
        positive_ints = ("lora_r", "lora_alpha", "hidden_size", "num_layers", "n_heads")
        for field in (*positive_ints, "max_window"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}.{field}", "a positive integer", value)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"{key}.lora_dropout", "a number in [0, 1)", self.lora_dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{key}.dropout", "a number in [0, 1)", self.dropout)
        if not (math.isfinite(self.spectral_radius) and self.spectral_radius > 0):
            raise ConfigError(f"{key}.spectral_radius", "a positive number", self.spectral_radius)
        if not 0.0 < self.leak <= 1.0:
            raise ConfigError(f"{key}.leak", "a number in (0, 1]", self.leak)
        if not (math.isfinite(self.input_scaling) and self.input_scaling > 0):
            raise ConfigError(f"{key}.input_scaling", "a positive number", self.input_scaling)
        if not self.ridge_alphas or any(
            not (math.isfinite(a) and a > 0) for a in self.ridge_alphas
        ):
            raise ConfigError(
                f"{key}.ridge_alphas", "a non-empty list of positive numbers", self.ridge_alphas
            )
        if self.kind == "transformer" and self.hidden_size % self.n_heads:
            raise ConfigError(
                f"{key}.n_heads",
                f"a divisor of hidden_size ({self.hidden_size})",
                self.n_heads,
            )
        if self.lora_target_modules is not None and (
            not self.lora_target_modules
            or any(not isinstance(m, str) or not m for m in self.lora_target_modules)
        ):
            raise ConfigError(
                f"{key}.lora_target_modules",
                "a non-empty list of module names (or null for the default)",
                self.lora_target_modules,
            )


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Check one config value's type against the field default's type; lists become tuples."""
    where = f"models.{name}.{key}"
    if key in ("lora_target_modules", "ridge_alphas"):
        if value is None and key == "lora_target_modules":
            return None
        if not isinstance(value, list | tuple):
            raise ConfigError(where, "a list", value)
        if key == "ridge_alphas":
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
                raise ConfigError(where, "a list of positive numbers", value)
            return tuple(float(v) for v in value)
        return tuple(value)
    if key in ("source",):
        if value is not None and not isinstance(value, str):
            raise ConfigError(where, "a string", value)
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(where, "true or false", value)
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, "an integer", value)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(where, "a number", value)
        return float(value)
    if isinstance(default, str) or default is dataclasses.MISSING:
        if not isinstance(value, str):
            raise ConfigError(where, "a string", value)
        return value
    return value
