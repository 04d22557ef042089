"""Every third-party import a rule runs is declared in that rule's conda environment file."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "nlp4neuro"

# import name -> conda-forge / PyPI distribution name, where they differ
DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "tables": "pytables",
    "netCDF4": "netcdf4",
    "nrrd": "pynrrd",
    "matplotlib": "matplotlib-base",
}
# provided by the Python or Snakemake process itself
IGNORED = set(sys.stdlib_module_names) | {"snakemake", "nlp4neuro", "_runtime"}


def rule_blocks() -> dict[str, tuple[str, str]]:
    """rule name -> (env file, script file) parsed from the workflow's rule files."""
    rules = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            name = re.search(r"rule (\w+):", block)
            env = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/([\w.-]+)"', block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.-]+)"', block)
            if name and script:
                assert env, f"rule {name.group(1)} in {smk.name} declares no conda env"
                rules[name.group(1)] = (env.group(1), script.group(1))
    return rules


def module_name(path: Path) -> str:
    """Dotted name of a package file (`src/nlp4neuro/models/spec.py` -> `nlp4neuro.models.spec`)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the modules a Python file imports (relative imports resolved).

    `from a import b` yields both `a` and `a.b`, since `b` may be a submodule.
    """
    package = None
    if PACKAGE in path.parents:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def package_file(module: str) -> Path | None:
    candidate = PACKAGE.joinpath(*module.split(".")[1:])
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def third_party_imports(script: Path) -> set[str]:
    """Third-party top-level imports of a script and, transitively, of the package code it uses."""
    seen: set[Path] = set()
    todo = [script]
    third_party = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imports_of(path):
            top = module.split(".")[0]
            if top == "nlp4neuro":
                found = package_file(module)
                if found:
                    todo.append(found)
            elif top not in IGNORED:
                third_party.add(top)
    return third_party


def env_packages(env_file: str) -> set[str]:
    spec = yaml.safe_load((ROOT / "envs" / env_file).read_text())
    names = set()
    for dep in spec["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            names.add(re.split(r"[\s=<>!]", entry.strip(), maxsplit=1)[0].lower())
    return names


RULES = rule_blocks()


def test_rules_found():
    assert {"ingest_fish", "compute_dff", "train_llm", "explain_decoder"} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_env_lists_every_third_party_import(rule):
    env_file, script = RULES[rule]
    imports = third_party_imports(ROOT / "workflow" / "scripts" / script)
    declared = env_packages(env_file)
    missing = sorted(
        DISTRIBUTION.get(name, name)
        for name in imports
        if DISTRIBUTION.get(name, name).lower() not in declared
    )
    assert not missing, f"rule {rule}: envs/{env_file} lacks {missing}"


@pytest.mark.parametrize("env_file", sorted(p.name for p in (ROOT / "envs").glob("*.yaml")))
def test_env_files_are_pinned(env_file):
    spec = yaml.safe_load((ROOT / "envs" / env_file).read_text())
    assert "conda-forge" in spec["channels"]
    python = [d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python == ["python =3.11"]
    pip = [d for d in spec["dependencies"] if isinstance(d, dict)]
    for entry in pip[0]["pip"] if pip else []:
        if entry.split("==")[0] in {"torch", "transformers", "peft"}:
            assert "==" in entry, f"{env_file}: {entry} must be pinned exactly"
