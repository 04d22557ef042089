"""Tests for nlp4neuro.ladder: which control models every pretrained llm gets, and their names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nlp4neuro import config, ladder
from nlp4neuro.errors import ConfigError

LLM = {"kind": "llm", "source": "bundled:smollm2"}


def test_default_ladder_is_the_untrained_twin_as_before():
    models = ladder.expand_models({"smol": LLM, "ridge": {"kind": "ridge"}})
    assert list(models) == ["smol", "smol_untrained", "ridge"]
    twin = models["smol_untrained"]
    assert twin["pretrained"] is False and twin["rung"] == "untrained"
    assert twin[ladder.TWIN_KEY] == "smol"
    assert twin[ladder.RUNG_KEY] == {"model": "smol", "rung": "untrained"}
    # everything else is the pretrained model's entry: same schedule and settings
    same = {k: v for k, v in twin.items() if k not in (*ladder.WORKFLOW_KEYS, "pretrained", "rung")}
    assert same == {k: v for k, v in models["smol"].items() if k not in ("pretrained", "rung")}
    assert models["smol"]["rung"] == "none" and ladder.RUNG_KEY not in models["smol"]
    assert ladder.rungs_of(models) == {"smol": {"untrained": "smol_untrained"}}


def test_every_rung_is_named_and_set_up():
    models = ladder.expand_models({"smol": {**LLM, "ladder": list(ladder.rungs())}})
    assert list(models) == ["smol"] + [f"smol_{r}" for r in ladder.rungs()]
    assert ladder.rungs_of(models)["smol"] == {r: f"smol_{r}" for r in ladder.rungs()}
    for rung in ("nobackbone", "attention", "block"):
        entry = models[f"smol_{rung}"]
        assert (entry["pretrained"], entry["finetune"], entry["quantization"]) == (
            False,
            "full",
            "none",
        )
        assert ladder.TWIN_KEY not in entry
    shuffled = models["smol_timeshuffled"]
    assert shuffled["pretrained"] is True and shuffled["finetune"] == "lora"
    assert shuffled["rung"] == "timeshuffled"


def test_rungs_are_switched_one_by_one_and_keep_their_ladder_order():
    models = ladder.expand_models(
        {"a": {**LLM, "ladder": ["block", "nobackbone"]}, "b": {**LLM, "ladder": []}}
    )
    assert list(models) == ["a", "a_block", "a_nobackbone", "b"]
    assert ladder.rungs_of(models) == {"a": {"block": "a_block", "nobackbone": "a_nobackbone"}}


def test_untrained_twin_false_removes_only_the_untrained_rung():
    models = ladder.expand_models(
        {
            "a": {**LLM, "untrained_twin": False},
            "b": {**LLM, "untrained_twin": False, "ladder": ["untrained", "attention"]},
        }
    )
    assert list(models) == ["a", "b", "b_attention"]


def test_only_pretrained_llms_get_rungs():
    models = ladder.expand_models(
        {
            "random": {**LLM, "pretrained": False, "ladder": ["untrained", "block"]},
            "lstm": {"kind": "lstm", "ladder": ["block"]},
        }
    )
    assert list(models) == ["random", "lstm"]
    assert ladder.rungs_of(models) == {}


@pytest.mark.parametrize("rung", ["untrained", "attention"])
def test_a_configured_model_named_like_a_rung_is_an_error(rung):
    with pytest.raises(ConfigError) as info:
        ladder.expand_models({"smol": {**LLM, "ladder": [rung]}, f"smol_{rung}": {"kind": "lstm"}})
    assert info.value.key == f"models.smol_{rung}"
    assert "automatic" in str(info.value)
    # switched off, the name is free
    models = ladder.expand_models({"smol": {**LLM, "ladder": []}, f"smol_{rung}": {"kind": "lstm"}})
    assert models[f"smol_{rung}"]["kind"] == "lstm"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"kind": "llm"}, "models.m.source"),
        ({**LLM, "ladder": ["none"]}, "models.m.ladder.0"),
        ({**LLM, "ladder": ["shuffled"]}, "models.m.ladder.0"),
        ({**LLM, "ladder": ["block", "block"]}, "models.m.ladder"),
        ({**LLM, "rung": "blocks"}, "models.m.rung"),
    ],
)
def test_bad_ladders_name_the_key(entry, key):
    with pytest.raises(ConfigError) as info:
        ladder.expand_models({"m": entry})
    assert info.value.key == key


def test_rungs_and_their_settings_are_the_schema_enum():
    assert ladder.rungs() == tuple(r for r in config.allowed_values("models", "*", "rung"))[1:]
    assert set(ladder.RUNG_SETTINGS) == set(ladder.rungs())
    assert set(ladder.BACKBONE_FREE_RUNGS) <= set(ladder.rungs())
    assert config.default_value("models", "*", "ladder") == ["untrained"]
    assert config.default_value("models", "*", "rung") == "none"


def test_every_rung_entry_is_a_valid_model_spec():
    from nlp4neuro.models import ModelSpec

    models = ladder.expand_models({"smol": {**LLM, "ladder": list(ladder.rungs())}})
    for name, entry in models.items():
        spec = ModelSpec.from_workflow(name, entry)
        assert spec.rung == entry["rung"]
        assert spec.replaces_backbone == (spec.rung in ladder.BACKBONE_FREE_RUNGS)


def test_the_ladder_loads_no_torch():
    # the workflow expands its models while planning, in a process without torch
    code = "import sys, nlp4neuro.ladder; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
