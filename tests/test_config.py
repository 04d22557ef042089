"""The config schema: defaults fill in, and typos or wrong types fail naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "src" / "nlp4neuro" / "config.schema.yaml")


def load_default() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults():
    config = load_default()
    validate(config, SCHEMA, set_default=True)
    # keys absent from config.yaml come from the schema
    assert config["data"]["use_iscell"] is True
    assert config["decoding"]["gap_frames"] is None
    assert config["models"]["smollm2"]["untrained_twin"] is True
    assert config["models"]["smollm2"]["lora_alpha"] == 16
    assert config["training"]["grad_clip_norm"] == 1.0
    assert config["saliency"]["atlas"]["kind"] is None


def test_empty_config_is_completed_from_schema():
    config: dict = {}
    validate(config, SCHEMA, set_default=True)
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
    with pytest.raises(WorkflowError) as error:
        validate(config, SCHEMA, set_default=True)
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
    config = yaml.safe_load((ROOT / "config" / preset).read_text())
    validate(config, SCHEMA, set_default=True)
