"""`ModelSpec`: every parameter that defines one decoder, built from a validated config entry.

The schema (`nlp4neuro/config.schema.yaml`, `models.*`) holds every default, type, range and
allowed value; `ModelSpec` adds only the checks that span several keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nlp4neuro.config import allowed_values, build, validate_config
from nlp4neuro.errors import ConfigError
from nlp4neuro.ladder import BACKBONE_FREE_RUNGS, RUNG_SETTINGS, WORKFLOW_KEYS

# Kinds fitted in closed form on single frames; every other kind is a torch model.
FRAME_KINDS = ("ridge", "mean")


@dataclass(frozen=True)
class ModelSpec:
    """One decoder's definition (one entry of the config's `models` section).

    Build it with `ModelSpec.from_config(name, entry)`: the fields have no defaults of their
    own (the schema's `models.*` holds them).

    Attributes:
        name: the model's name in the config and in output paths (e.g. "smollm2_lora").
        kind: "llm" (pretrained language model backbone), "lstm", "gru", "reservoir" (echo-state
            network), "transformer" (small encoder trained from scratch), "ridge" (frame-wise
            ridge regression) or "mean" (training-mean predictor).
        source: backbone source, llm only: "bundled:smollm2", "bundled:minilm",
            "bundled:gemma3-270m", a local Hugging Face folder, a `.gguf` file or a hub id.
        pretrained: False builds the same backbone architecture with random weights (the paper's
            untrained control), drawn from the build's seed and, when frozen, drawn again on
            load instead of saved (see `nlp4neuro.models.twin`).
        finetune: "lora" (low-rank adapters on the backbone), "head" (backbone frozen, only the
            input/output linears train) or "full" (every weight trains).
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling numerator and adapter dropout.
        backbone_dropout: every dropout inside an llm backbone set to this probability; None
            keeps the pretrained config's (`nlp4neuro.models.lean.set_dropout`).
        lora_placement: where adapters sit when `lora_target_modules` is None, the same kinds of
            projection in every family (`nlp4neuro.models.lora`): "attention" (query, key,
            value and output projections of every attention block) or "attention_mlp" (those
            plus every MLP projection).
        lora_target_modules: exact names or dotted path suffixes of the backbone Linear layers
            that get adapters (overrides `lora_placement`); None uses the placement.
        quantization: "none", "8bit" or "4bit" (bitsandbytes; CUDA only). The untrained twin
            of a quantised model draws its random backbone unquantised in bf16 (still CUDA
            only: 13.5 GB for a 6.7B model).
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
        rung: the ablation rung this llm is (`nlp4neuro.ladder`, set by its expansion): "none",
            "untrained", "nobackbone", "attention", "block" or "timeshuffled".
    """

    name: str
    kind: str
    source: str | None
    pretrained: bool
    finetune: str
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    backbone_dropout: float | None
    lora_placement: str
    lora_target_modules: tuple[str, ...] | None
    quantization: str
    match_embedding_norm: bool
    hidden_size: int
    num_layers: int
    dropout: float
    spectral_radius: float
    leak: float
    input_scaling: float
    ridge_alphas: tuple[float, ...]
    n_heads: int
    max_window: int
    rung: str

    def __post_init__(self) -> None:
        self._check_source()
        self._check_quantization()
        self._check_rung()
        if self.kind == "transformer" and self.hidden_size % self.n_heads:
            raise ConfigError(
                f"models.{self.name}.n_heads",
                f"a divisor of hidden_size ({self.hidden_size})",
                self.n_heads,
            )

    @property
    def is_torch(self) -> bool:
        """True for models trained by gradient descent (all but ridge and mean)."""
        return self.kind not in FRAME_KINDS

    @property
    def loads_quantized(self) -> bool:
        """True when the backbone is loaded 8/4-bit (pretrained weights only; an untrained
        twin's random backbone is drawn unquantised)."""
        return self.kind == "llm" and self.pretrained and self.quantization != "none"

    @property
    def uses_backbone(self) -> bool:
        """True when the model needs a prepared language-model backbone folder (the rungs
        without a backbone read its config.json for their width, heads and family)."""
        return self.kind == "llm"

    @property
    def replaces_backbone(self) -> bool:
        """True for the ladder's rungs that have no language model (nobackbone, attention,
        block; built by `nlp4neuro.models.rungs`)."""
        return self.rung in BACKBONE_FREE_RUNGS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); `from_config(name, d)` inverts it."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_config(cls, name: str, entry: Mapping[str, Any]) -> ModelSpec:
        """Build a spec from one `models.<name>` config entry, raw or already validated.

        The entry is validated against the schema (which fills every default); a bad key
        raises `ConfigError("models.<name>.<key>", expected, found)`. Keys that steer the
        workflow rather than the model (allow_download, untrained_twin, ladder, training) are
        ignored, and so is a `name` key (written by `to_dict`) in favour of the `name` argument.
        """
        key = f"models.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError(key, "a mapping of model parameters", entry)
        if "kind" not in entry:
            raise ConfigError(
                f"{key}.kind", f"one of {list(allowed_values('models', '*', 'kind'))}", None
            )
        raw = {k: v for k, v in entry.items() if k != "name"}
        values = validate_config({"models": {name: raw}})["models"][name]
        targets = values["lora_target_modules"]
        return build(
            cls,
            values,
            key,
            name=name,
            lora_target_modules=None if targets is None else tuple(targets),
            ridge_alphas=tuple(float(a) for a in values["ridge_alphas"]),
        )

    @classmethod
    def from_workflow(cls, name: str, entry: Mapping[str, Any]) -> ModelSpec:
        """`from_config` for a model entry as the workflow holds it (the ladder's bookkeeping
        keys `twin_of` and `rung_of` left out)."""
        return cls.from_config(name, {k: v for k, v in entry.items() if k not in WORKFLOW_KEYS})

    def _check_source(self) -> None:
        """An llm needs a backbone source; no other kind takes one."""
        key = f"models.{self.name}.source"
        if self.kind == "llm" and not self.source:
            raise ConfigError(
                key,
                "a backbone source for kind 'llm' (bundled:smollm2, bundled:minilm, "
                "bundled:gemma3-270m, a local folder, a .gguf file or a hub id)",
                self.source,
            )
        if self.kind != "llm" and self.source is not None:
            raise ConfigError(key, "no source for a non-llm model", self.source)

    def _check_quantization(self) -> None:
        """Quantized weights cannot be fully fine-tuned (an untrained twin is not quantised
        but keeps the setting: it selects the bf16 random backbone, see `twin.twin_dtype`)."""
        if self.kind != "llm" or self.quantization == "none":
            return
        if self.finetune == "full":
            raise ConfigError(
                f"models.{self.name}.finetune",
                "'lora' or 'head' with a quantized backbone (quantized weights cannot be "
                "fully fine-tuned)",
                self.finetune,
            )

    def _check_rung(self) -> None:
        """A rung is an llm with its rung's settings (`ladder.RUNG_SETTINGS`)."""
        if self.rung == "none":
            return
        if self.kind != "llm":
            raise ConfigError(f"models.{self.name}.rung", "'none' for a non-llm model", self.rung)
        for key, value in RUNG_SETTINGS[self.rung].items():
            if getattr(self, key) != value:
                raise ConfigError(
                    f"models.{self.name}.{key}",
                    f"{value!r} for the '{self.rung}' rung",
                    getattr(self, key),
                )
