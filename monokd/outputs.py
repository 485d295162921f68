"""What a command may write into: nothing already there is lost unless the user says so.

    check_output(out, command, overwrite)        before any work, nothing written
      out missing, or an empty folder            -> fine
      out holds ``command``'s own mark           -> fine: the command rewrites its own output
      anything else                              -> ConfigError naming ``--overwrite`` (with it: fine)
    mark_output(out, command)                    just before the first file is written

The mark is ``out/.monokd-output.json`` (``{"command": "predict"}``). A command whose output
already says whose it is passes that file as ``own`` too (``monokd synth``'s manifest,
``monokd gt-database``'s index). An output that is one file (``--json``) cannot carry a mark:
an existing one is refused unless ``overwrite`` (:func:`check_output_file`).
"""

from __future__ import annotations

import json
from pathlib import Path

from monokd.atomic import write_json
from monokd.errors import ConfigError

MARK = ".monokd-output.json"


def marked_by(out: str | Path) -> str | None:
    """The command named by ``out``'s mark, or None (no mark, or not one of ours)."""
    try:
        return json.loads((Path(out) / MARK).read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def is_own(out: str | Path, command: str, own: str | None = None) -> bool:
    """``out`` was written by ``command``: it holds the command's mark, or ``own`` (a file
    only that command writes)."""
    return marked_by(out) == command or (own is not None and (Path(out) / own).is_file())


def check_output(out: str | Path, command: str, overwrite: bool = False, own: str | None = None,
                 flag: str | None = "--out") -> None:
    """Refuse ``out`` (a folder ``command`` writes) when it holds anything ``command`` did not
    write, unless ``overwrite``. Raises ConfigError: one line naming ``out``, ``flag`` (the
    option that chose it; None: a folder the command derives) and --overwrite."""
    out = Path(out)
    if overwrite or not out.exists():
        return
    where = f"{flag} {out}" if flag else str(out)
    another = f"give another {flag}, or " if flag else ""
    if not out.is_dir():
        raise ConfigError(f"{where}: exists and is not a folder; {another}pass --overwrite to write over it")
    if not any(out.iterdir()) or is_own(out, command, own):
        return
    whose = marked_by(out)
    what = f"the output of `monokd {whose}`" if whose and whose != command else \
        f"files `monokd {command}` did not write"
    raise ConfigError(f"{where}: holds {what}; {another}pass --overwrite to write over it")


def mark_output(out: str | Path, command: str) -> Path:
    """Say that ``out`` is ``command``'s output (the folder is made); returns the mark's path."""
    return write_json(Path(out) / MARK, {"command": command})


def check_output_file(path: str | Path | None, overwrite: bool = False, flag: str = "--json") -> None:
    """Refuse an existing file ``path`` (a command's one-file output) unless ``overwrite``."""
    if path is not None and Path(path).exists() and not overwrite:
        raise ConfigError(f"{flag} {path}: exists; give another {flag}, or pass --overwrite to replace it")
