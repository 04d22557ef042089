"""Exception types shared by every stage.

Each error names the file (or config key), what was expected and what was found, so that a user
can fix the input without reading code.
"""

from __future__ import annotations

from pathlib import Path


class InputFileError(ValueError):
    """A user-supplied file is missing or does not have the expected content."""

    def __init__(self, path: str | Path, expected: str, found: str) -> None:
        self.path = Path(path)
        self.expected = expected
        self.found = found
        super().__init__(f"{path}: expected {expected}, found {found}")


class ConfigError(ValueError):
    """A configuration value is invalid or inconsistent with the data."""

    def __init__(self, key: str, expected: str, found: object) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        super().__init__(f"config key '{key}': expected {expected}, found {found!r}")
