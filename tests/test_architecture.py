"""The shape of the package (docs/architecture.md): stages import only earlier stages, the
modules of CPU-only rules never load torch, and functions read at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nlp4neuro.codedigest import package_modules

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "nlp4neuro"
# Stages in pipeline order; a module may import its own stage and earlier ones only.
STAGES = [
    {"errors", "config", "conventions", "provenance", "codedigest", "metrics", "ladder", "ridge"},
    {"simulate", "dataverse"},
    {"ingest"},
    {"preprocessing"},
    {"dataset"},
    {"problem"},
    {"device", "models"},
    {"training"},
    {"statistics", "null", "horizons"},
    {"saliency", "anatomy"},
    {"explain"},
    {"saliency_summary"},
    {"plots"},
]
# Modules the CPU-only rules (data, evaluation, saliency summary, plots) run.
CPU_ONLY = ["ingest", "preprocessing", "dataset", "problem", "metrics", "statistics",
            "anatomy", "saliency_summary", "plots", "simulate", "dataverse", "ridge",
            "null", "horizons"]  # fmt: skip
MAX_FUNCTION_LINES = 70


def stage_of(path: Path) -> int:
    top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    for index, names in enumerate(STAGES):
        if top in names:
            return index
    raise AssertionError(f"{path}: module in no stage of this test (add it to STAGES)")


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__")


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_stage_imports_a_later_stage(path):
    own = stage_of(path)
    later = [
        str(dep.relative_to(PACKAGE))
        for dep in package_modules(path, SRC)
        if dep != PACKAGE / "__init__.py" and stage_of(dep) > own
    ]
    assert not later, f"{path.relative_to(PACKAGE)} imports later stages: {later}"


def third_party_imports(paths: list[Path]) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("stage", CPU_ONLY)
def test_cpu_only_stages_never_load_torch(stage):
    path = PACKAGE / f"{stage}.py"
    path = path if path.exists() else PACKAGE / stage / "__init__.py"
    files = [path, *(PACKAGE / stage).rglob("*.py")] if path.name == "__init__.py" else [path]
    loaded = {dep for file in files for dep in package_modules(file, SRC)} | set(files)
    assert "torch" not in third_party_imports(sorted(loaded)), stage


def test_functions_read_at_once():
    long = []
    for path in [*package_files(), PACKAGE / "__init__.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} {length}")
    assert not long, long
