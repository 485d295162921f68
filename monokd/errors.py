"""The error types monokd raises for bad input.

Every reader raises :class:`KittiFormatError` for malformed data so that a user sees, in
one line, which file, which line and which field is wrong.
"""

from __future__ import annotations

from pathlib import Path


class KittiFormatError(ValueError):
    """Malformed KITTI-format input.

    Attributes:
        path: the offending file.
        line: 1-based line number, or None when the problem is not tied to a line.
        field: the name of the offending field (e.g. ``"h"``, ``"P2"``, ``"size"``).
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | Path, line: int | None, field: str | None, reason: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}")


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into (names the mismatched keys)."""


class ConfigError(ValueError):
    """An invalid configuration file or override (names the file and the key)."""
