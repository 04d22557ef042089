"""Rule code digests: found from the imports, transitively, and changing with exactly that code."""

from __future__ import annotations

from pathlib import Path

from nlp4neuro.codedigest import code_digest, package_modules


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_tree(root: Path) -> tuple[Path, Path]:
    src = root / "src"
    write(src / "nlp4neuro/__init__.py", '__version__ = "9.1"\n')
    write(src / "nlp4neuro/sub/__init__.py", "")
    write(src / "nlp4neuro/sub/a.py", "from .b import x\nfrom . import c\n")
    write(src / "nlp4neuro/sub/b.py", "import numpy\nx = 1\n")
    write(src / "nlp4neuro/sub/c.py", "def f():\n    from nlp4neuro import lazy\n")
    write(src / "nlp4neuro/lazy.py", "")
    write(src / "nlp4neuro/unused.py", "")
    script = root / "scripts/job.py"
    write(root / "scripts/_helper.py", "import os\n")
    write(script, "import _helper\nfrom nlp4neuro.sub.a import x\n")
    return src, script


def test_modules_are_followed_through_relative_lazy_and_sibling_imports(tmp_path):
    src, script = make_tree(tmp_path)
    found = {str(p.relative_to(tmp_path)) for p in package_modules(script, src)}
    assert found == {
        "scripts/_helper.py",
        "src/nlp4neuro/__init__.py",
        "src/nlp4neuro/sub/__init__.py",
        "src/nlp4neuro/sub/a.py",
        "src/nlp4neuro/sub/b.py",
        "src/nlp4neuro/sub/c.py",
        "src/nlp4neuro/lazy.py",
    }


def test_digest_changes_with_imported_code_only(tmp_path):
    src, script = make_tree(tmp_path)
    before = code_digest(script, src)
    assert before.startswith("9.1+") and len(before) == len("9.1+") + 12
    (src / "nlp4neuro/unused.py").write_text("# edited\n")
    assert code_digest(script, src) == before
    (src / "nlp4neuro/lazy.py").write_text("# edited\n")
    assert code_digest(script, src) != before
