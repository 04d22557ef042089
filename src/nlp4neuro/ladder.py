"""The ablation ladder: the control models generated for every pretrained language model.

Does the language model matter? Each pretrained llm `<name>` gets, for every rung listed in
`models.<name>.ladder`, a model `<name>_<rung>` that the workflow trains on the same splits,
seeds and schedule:

- `untrained`: the same architecture and freezing with random weights (the untrained twin);
- `nobackbone`: the input projection straight to the readout (no sequence model at all);
- `attention`: the language model replaced by one randomly initialised self-attention layer of
  the backbone's width;
- `block`: the language model replaced by one randomly initialised transformer block of the
  backbone's width;
- `timeshuffled`: the pretrained model with the frames of each window shuffled, at train and test.

How each rung is built lives in `nlp4neuro.models` (`ModelSpec.rung`); this module only names
them and writes their config entries. It imports no torch: the workflow
(`workflow/rules/common.smk`) expands its models here while it plans the jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlp4neuro.config import allowed_values, validate_config
from nlp4neuro.errors import ConfigError

# Bookkeeping keys the expansion adds to a rung's entry; not config keys (`ModelSpec`
# ignores them). `twin_of` names an untrained twin's pretrained model (kept for the untrained
# rung, which the statistics and saliency summaries contrast by it); `rung_of` is
# {"model": pretrained model, "rung": rung} for every rung.
TWIN_KEY = "twin_of"
RUNG_KEY = "rung_of"
WORKFLOW_KEYS = (TWIN_KEY, RUNG_KEY)

# What each rung's entry sets on top of its pretrained model's entry. The rungs that replace the
# backbone train every weight they have (all of it is random) and load nothing pretrained.
RUNG_SETTINGS: dict[str, dict[str, Any]] = {
    "untrained": {"pretrained": False},
    "nobackbone": {"pretrained": False, "finetune": "full", "quantization": "none"},
    "attention": {"pretrained": False, "finetune": "full", "quantization": "none"},
    "block": {"pretrained": False, "finetune": "full", "quantization": "none"},
    "timeshuffled": {"pretrained": True},
}
# Rungs whose model has no language-model backbone (built by `nlp4neuro.models.rungs`).
BACKBONE_FREE_RUNGS = ("nobackbone", "attention", "block")


def rungs() -> tuple[str, ...]:
    """Every rung of the ladder, in the schema's order (`models.*.rung` less "none")."""
    return tuple(r for r in allowed_values("models", "*", "rung") if r != "none")


def model_rungs(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """The rungs a validated `models.<name>` entry asks for, in the order of its `ladder`.

    Only a pretrained llm has rungs; `untrained_twin: false` removes the `untrained` rung even
    when `ladder` lists it.
    """
    if entry["kind"] != "llm" or not entry["pretrained"]:
        return ()
    return tuple(r for r in entry["ladder"] if r != "untrained" or entry["untrained_twin"])


def rung_entry(name: str, entry: Mapping[str, Any], rung: str) -> dict[str, Any]:
    """The config entry of model `<name>_<rung>`: `name`'s entry with the rung's settings."""
    out = dict(entry, rung=rung, **RUNG_SETTINGS[rung])
    out[RUNG_KEY] = {"model": name, "rung": rung}
    if rung == "untrained":
        out[TWIN_KEY] = name
    return out


def expand_models(models: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every configured model, each followed by the rungs of its ladder (`<name>_<rung>`).

    Args:
        models: the config's `models` section, raw or validated (the schema fills defaults).

    Returns:
        model name -> entry (validated, with defaults); a rung's entry is its pretrained
        model's with the rung's settings (`RUNG_SETTINGS`), `rung: <rung>` and the
        bookkeeping keys `rung_of` (and `twin_of` for `untrained`).

    Raises:
        ConfigError: an llm without a source, or a configured model named like a rung
            (`models.<name>_<rung>`).
    """
    validated = validate_config({"models": {k: dict(v) for k, v in models.items()}})["models"]
    expanded: dict[str, dict[str, Any]] = {}
    for name, entry in validated.items():
        if entry["kind"] == "llm" and entry["source"] is None:
            raise ConfigError(f"models.{name}.source", "a model source", None)
        expanded[name] = entry
        for rung in model_rungs(entry):
            rung_name = f"{name}_{rung}"
            if rung_name in validated or rung_name in expanded:
                raise ConfigError(
                    f"models.{rung_name}",
                    f"no model of that name (it is the automatic '{rung}' rung of '{name}')",
                    rung_name,
                )
            expanded[rung_name] = rung_entry(name, entry, rung)
    return expanded


def rungs_of(models: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Pretrained model -> {rung: rung model's name}, from `expand_models`'s output.

    E.g. {"smollm2": {"untrained": "smollm2_untrained", "nobackbone": "smollm2_nobackbone"}}.
    """
    out: dict[str, dict[str, str]] = {}
    for name, entry in models.items():
        if RUNG_KEY in entry:
            out.setdefault(entry[RUNG_KEY]["model"], {})[entry[RUNG_KEY]["rung"]] = name
    return out
