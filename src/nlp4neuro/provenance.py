"""Provenance: software versions, file checksums and all-or-nothing output files."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nlp4neuro import __version__

_TRACKED_PACKAGES = (
    "numpy",
    "scipy",
    "xarray",
    "netCDF4",
    "pandas",
    "torch",
    "transformers",
    "peft",
    "scikit-learn",
    "captum",
)


def versions() -> dict[str, str]:
    """Versions of Python, nlp4neuro and the scientific packages that are installed."""
    found = {"python": platform.python_version(), "nlp4neuro": __version__}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def versions_json() -> str:
    """`versions()` as a JSON string, for netCDF/CSV attributes."""
    return json.dumps(versions(), sort_keys=True)


def json_default(obj: object) -> object:
    """`json.dumps(default=...)` for numpy scalars and arrays and paths."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so large files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Works for files and directories: whatever the block writes at the yielded path replaces
    `path` at the end. On error the temporary is removed and `path` is left untouched, so a
    reader never sees a half-written output.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: the block wrote nothing for {target}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path: str | Path, obj: object, indent: int = 2) -> Path:
    """Write `obj` as sorted, indented JSON atomically (numpy values and paths allowed)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=True, default=json_default) + "\n")
    return path


def write_table(table, path: str | Path, parameters: dict | None = None) -> Path:
    """Write a pandas table as CSV atomically, with a `<path>.json` provenance sidecar.

    The sidecar holds the software versions and the parameters that made the table, since a
    CSV has no place for them that every reader would accept.
    """
    path = Path(path)
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(path.with_name(path.name + ".json")) as tmp:
        tmp.write_text(
            json.dumps(
                {"versions": versions(), "parameters": parameters or {}},
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
    return path
