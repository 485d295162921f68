"""The error types monokd raises for bad input.

Every reader raises :class:`KittiFormatError` for malformed data so that a user sees, in
one line, which file, which line and which field is wrong. All of monokd's error types
derive from :class:`MonokdError`: the ``monokd`` command (monokd/cli.py) catches that base
class for every subcommand and prints ``monokd <command>: error: <message>`` as one line
(``--debug`` or ``MONOKD_DEBUG=1`` shows the traceback instead). docs/errors.md lists them.
"""

from __future__ import annotations

import difflib
from pathlib import Path


class MonokdError(Exception):
    """Base of every error monokd raises for bad input (data, config, checkpoint, run)."""


class KittiFormatError(MonokdError, ValueError):
    """Malformed KITTI-format input.

    Attributes:
        path: the offending file.
        line: 1-based line number, or None when the problem is not tied to a line.
        field: the name of the offending field (e.g. ``"h"``, ``"P2"``, ``"size"``).
        reason: what is wrong, in words.

    ``KittiFormatError(message)`` with a single argument keeps ``message`` as it is (so the
    error survives being re-raised from a DataLoader worker, which passes only the text).
    """

    def __init__(self, path: str | Path, line: int | None = None, field: str | None = None,
                 reason: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        if reason is None and line is None and field is None:
            super().__init__(self.path)
            return
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}")


class CheckpointMismatchError(MonokdError, RuntimeError):
    """A checkpoint does not fit the model it is loaded into (names the mismatched keys)."""


class ConfigError(MonokdError, ValueError):
    """An invalid configuration file or override (names the file and the key)."""


class RunFolderError(MonokdError, RuntimeError):
    """A run folder that a training would damage: it holds another run, or another training
    is writing into it (monokd.training.rundir)."""


class MonokdWarning(UserWarning):
    """Input that is usable but probably not what was meant (e.g. a run whose train and val
    splits overlap); the ``monokd`` command prints it as one ``warning:`` line."""


def did_you_mean(name, known) -> str:
    """``"did you mean 'lr_milestones'? "`` for the spelling in ``known`` nearest ``name`` (by
    difflib's similarity ratio, at least 0.6, ignoring case), or ``""`` when none is near: the
    hint an unknown-name error puts before its list of known names."""
    spellings = {str(k).lower(): str(k) for k in known}
    close = difflib.get_close_matches(str(name).lower(), list(spellings), n=1)
    return f"did you mean {spellings[close[0]]!r}? " if close else ""
