"""The one configuration: its schema holds every key's default, allowed values and description.

`validate_config` is what the workflow (`workflow/rules/common.smk`) and the tests both call, so
a function gets the same parameters whether Snakemake or a test calls it. Parameter objects are
built from validated sections with `build`, which takes no default of its own: the schema
(`config.schema.yaml` beside this module) is the only place a default is written.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from nlp4neuro.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
T = TypeVar("T")


@functools.cache
def schema() -> dict[str, Any]:
    """The config schema (JSON Schema 2020-12, as YAML)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _filling_validator() -> type:
    """A validator class that writes each missing property's `default` before descending."""
    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, props, instance, node):
        if validator.is_type(instance, "object"):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, node)

    return jsonschema.validators.extend(base, {"properties": properties})


def validate_config(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of `config` completed with the schema's defaults and validated.

    Raises `ConfigError` naming the dotted key (e.g. `training.epocs`), what the schema expects
    and what was found.
    """
    completed = copy.deepcopy(dict(config or {}))
    validator = _filling_validator()(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(completed))
    if error is not None:
        raise _config_error(error)
    return completed


def _config_error(error: jsonschema.ValidationError) -> ConfigError:
    key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        return ConfigError(key, "only the keys the schema lists", error.message)
    if error.validator == "enum":
        return ConfigError(key, f"one of {error.validator_value}", error.instance)
    expected = {k: v for k, v in error.schema.items() if k not in ("description", "default")}
    return ConfigError(key, f"a value matching {expected} ({error.message})", error.instance)


def section(name: str, **values: Any) -> dict[str, Any]:
    """One validated config section with the given keys set and every other key at its default."""
    return validate_config({name: values})[name]


def _node(path: tuple[str, ...]) -> dict[str, Any]:
    """The schema node of a key path; `*` steps into a mapping's additionalProperties."""
    node = schema()
    for key in path:
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
        node = _resolve(node)
    return node


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Merge a node with what it refers to (`$ref`, `allOf` of refs) into one dict."""
    merged: dict[str, Any] = {}
    for part in [*node.get("allOf", []), node]:
        ref = part.get("$ref")
        if ref:
            target = schema()
            for step in ref.removeprefix("#/").split("/"):
                target = target[step]
            merged = _deep_merge(merged, _resolve(target))
        merged = _deep_merge(merged, {k: v for k, v in part.items() if k not in ("$ref", "allOf")})
    return merged


def _deep_merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    out = dict(left)
    for key, value in right.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def allowed_values(*path: str) -> tuple[Any, ...]:
    """The values the schema allows for a key, e.g. `allowed_values("preprocessing", "mode")`."""
    node = _node(path)
    if "enum" not in node:
        raise KeyError(f"schema key {'.'.join(path)} has no list of allowed values")
    return tuple(node["enum"])


def default_value(*path: str) -> Any:
    """The schema's default of one key (a deep copy)."""
    return copy.deepcopy(_node(path)["default"])


def build(cls: type[T], values: Mapping[str, Any], key: str, **extra: Any) -> T:
    """Construct the dataclass `cls` from a validated config section plus `extra` fields.

    Every field must be given: a missing one names `key.field` (the dataclasses of this package
    carry no defaults; the schema does). Keys of `values` that are not fields are ignored, so a
    section may hold keys that steer the workflow rather than this object.
    """
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    given = {**{k: v for k, v in values.items() if k in fields}, **extra}
    missing = [f for f in fields if f not in given]
    if missing:
        raise ConfigError(f"{key}.{missing[0]}", "a value (validate the config first)", None)
    return cls(**given)
