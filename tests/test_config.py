"""The config schema: defaults fill in, and typos or wrong types fail naming the key."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from nlp4neuro.config import (
    SCHEMA_PATH,
    allowed_values,
    build,
    default_value,
    section,
    validate_config,
)
from nlp4neuro.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(SCHEMA_PATH)


def load_default() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults():
    config = validate_config(load_default())
    # keys absent from config.yaml come from the schema
    assert config["data"]["use_iscell"] is True
    assert config["decoding"]["gap_frames"] is None
    assert config["models"]["smollm2"]["untrained_twin"] is True
    assert config["models"]["smollm2"]["lora_alpha"] == 16
    assert config["training"]["grad_clip_norm"] == 1.0
    assert config["saliency"]["atlas"]["kind"] is None


def test_empty_config_is_completed_from_schema():
    config = validate_config({})
    assert config["fish"] == [1, 2]
    assert set(config["models"]) == {"ridge", "mean"}
    assert config["preprocessing"]["mode"] == "dff"


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["training"].update(epocs=3), "epocs"),
        (lambda c: c["decoding"].update(windows="10"), "windows"),
        (lambda c: c["models"]["lstm"].update(kind="lstmm"), "lstmm"),
        (lambda c: c["preprocessing"].update(mode="dF/F"), "dF/F"),
        (lambda c: c["data"].update(fish_dir="fish"), "fish_dir"),
        (lambda c: c.update(modles={}), "modles"),
    ],
)
def test_bad_values_fail_naming_the_key(edit, named):
    config = copy.deepcopy(load_default())
    edit(config)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert named in str(error.value)


def test_every_schema_property_has_a_description():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    missing = []

    def walk(node: dict, path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            # properties of a node built with allOf only add defaults to a described $ref
            if "description" not in sub and "allOf" not in node:
                missing.append(f"{path}.{key}".lstrip("."))
            walk(sub, f"{path}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")

    walk(schema, "")
    for name, definition in schema["$defs"].items():
        walk(definition, f"$defs.{name}")
    assert not missing, f"schema keys without a description: {missing}"


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_presets_are_valid(preset):
    validate_config(yaml.safe_load((ROOT / "config" / preset).read_text()))


def test_validation_does_not_modify_the_users_config():
    config = load_default()
    before = copy.deepcopy(config)
    validate_config(config)
    assert config == before


def test_errors_name_the_dotted_key():
    with pytest.raises(ConfigError) as error:
        validate_config({"models": {"lstm": {"kind": "lstm", "hidden_size": 0}}})
    assert error.value.key == "models.lstm.hidden_size"


def test_allowed_values_and_defaults_come_from_the_schema():
    assert allowed_values("preprocessing", "mode") == ("dff", "reference", "raw")
    assert "ridge" in allowed_values("models", "*", "kind")
    # training settings reached through allOf/$ref
    assert allowed_values("training", "schedule") == ("constant", "cosine", "linear")
    assert default_value("training", "schedule") == "cosine"
    assert section("training", epochs=2)["epochs"] == 2
    assert section("training")["warmup_fraction"] == default_value("training", "warmup_fraction")


def test_build_takes_no_default_of_its_own():
    @dataclasses.dataclass(frozen=True)
    class Pair:
        epochs: int
        schedule: str

    assert build(Pair, section("training"), "training") == Pair(10, "cosine")
    with pytest.raises(ConfigError, match=r"training\.schedule"):
        build(Pair, {"epochs": 3}, "training")


def test_package_dataclasses_carry_no_defaults():
    """Defaults are written once, in the schema: no parameter dataclass repeats them."""
    import importlib
    import pkgutil

    import nlp4neuro

    offenders = []
    for info in pkgutil.walk_packages(nlp4neuro.__path__, "nlp4neuro."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and obj.__module__ == info.name
                and obj.__name__.endswith("Params")
                and dataclasses.is_dataclass(obj)
            ):
                offenders += [
                    f"{obj.__name__}.{f.name}"
                    for f in dataclasses.fields(obj)
                    if f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                ]
    assert not offenders, offenders
