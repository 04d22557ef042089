"""Which package code a workflow script runs, found from its imports, and a digest of that code.

Snakemake reruns a job when its params change but not when imported code changes, so every rule
carries `code_digest(<its script>)` as a param. The modules are found by reading the `import`
statements of the script, then of each module it imports, transitively (imports inside
functions count too): no rule lists modules by hand, so the list cannot drift from the code.
Standard library only, as the workflow imports this while it is planned.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

PACKAGE = "nlp4neuro"


def _imported_names(path: Path, src_dir: Path) -> set[str]:
    """Dotted names of everything `path` imports (`from a import b` gives `a` and `a.b`).

    Relative imports (`from .x import y`) are resolved against the package of `path`.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, path, src_dir)
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _absolute(node: ast.ImportFrom, path: Path, src_dir: Path) -> str | None:
    """The absolute module name of a `from ... import` (None outside `src_dir` if relative)."""
    if node.level == 0:
        return node.module
    if not path.is_relative_to(src_dir):
        return None
    package = list(path.relative_to(src_dir).parent.parts)
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _module_file(name: str, src_dir: Path) -> Path | None:
    """The file of a package module or subpackage (`__init__.py`), None if it is no module."""
    base = src_dir.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(name: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]: importing a module runs every parent's `__init__`."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def package_modules(script: str | Path, src_dir: str | Path) -> list[Path]:
    """Every package file a script loads, transitively, sorted.

    Sibling modules of the script (e.g. `_runtime.py` next to it) are followed like package
    modules, since they are code the script runs.
    """
    script, src_dir = Path(script), Path(src_dir)
    seen: dict[Path, None] = {}
    queue = [script]
    while queue:
        current = queue.pop()
        for name in _imported_names(current, src_dir):
            root = name.split(".")[0]
            if root == PACKAGE:
                files = [_module_file(n, src_dir) for n in _with_parents(name)]
            elif (script.parent / f"{root}.py").is_file():
                files = [script.parent / f"{root}.py"]
            else:
                continue
            for file in files:
                if file is not None and file not in seen:
                    seen[file] = None
                    queue.append(file)
    return sorted(seen)


def code_digest(script: str | Path, src_dir: str | Path) -> str:
    """`<package version>+<12 hex digits>` of the code `script` runs (see `package_modules`)."""
    src_dir = Path(src_dir)
    init = (src_dir / PACKAGE / "__init__.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', init).group(1)
    digest = hashlib.sha256()
    for file in package_modules(script, src_dir):
        name = file.relative_to(src_dir) if file.is_relative_to(src_dir) else file.name
        digest.update(str(name).encode())
        digest.update(file.read_bytes())
    return f"{version}+{digest.hexdigest()[:12]}"
