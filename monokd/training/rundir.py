"""A run folder (``monokd train --out``) is never overwritten by accident, never written by two
trainings at once, and a resumed run is the run it continues.

    fit(cfg, out, resume)
      -> RunLock(out)          a second training into ``out`` fails at once (flock on
                               out/.monokd.lock, released when the process ends, however)
      -> check_run_folder      ``out`` holding a run (RUN_FILES) is refused unless the run is
                               resumed from a checkpoint in ``out`` or ``overwrite`` is given
      -> changed_keys          on resume, the stored config against the new one: any change
                               but the schedule's length (RESUMABLE_KEYS) is refused unless
                               ``resume_changed`` is given (then recorded in the run's notes)
      -> ... the data and model checks; only then is anything written

Only the first process of a distributed run (global rank 0) takes the lock and judges the
folder: the other ranks start after it has begun writing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

from monokd.errors import ConfigError, RunFolderError

LOCK_NAME = ".monokd.lock"
# What a run leaves in its folder (monokd.training.fit): a folder holding one of these holds a run.
RUN_FILES = ("last.ckpt", "best.ckpt", "metrics.json", "config.yaml", "tensorboard")
TRAINED_FILES = ("last.ckpt", "best.ckpt", "metrics.json")  # a run that trained and validated
# The config keys a resume may change: the schedule's length (training on from where it stopped).
RESUMABLE_KEYS = ("train.epochs", "train.max_steps")
_SHOWN = 6  # keys named in a message


def is_first_process() -> bool:
    """True in the process that launches a run (or global rank 0 under torchrun): Lightning's
    and torchrun's worker processes carry RANK / LOCAL_RANK / NODE_RANK."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("LOCAL_RANK", 0) or 0) == 0 and int(os.environ.get("NODE_RANK", 0) or 0) == 0


class RunLock:
    """An exclusive lock on ``out`` for this process's lifetime (or until :meth:`release`).

    Raises :class:`RunFolderError` at once when another process holds it. The folder is made
    if missing; :meth:`release` removes the lock file and, with ``tidy``, the folder again when
    this lock made it and nothing else was written into it.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.made = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / LOCK_NAME
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self.handle.close()
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunFolderError(f"{self.out}: another `monokd train` is writing into this folder (lock "
                                 f"{self.path}); wait for it to finish or give another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()

    def release(self, tidy: bool = False) -> None:
        if self.handle.closed:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self.handle.close()  # closing releases the flock
        if tidy and self.made:
            try:
                self.out.rmdir()  # only when empty
            except OSError:
                pass


def held_run(out: Path) -> list[str]:
    """The run files (RUN_FILES) present in ``out``."""
    return [name for name in RUN_FILES if (out / name).exists()]


def check_run_folder(out: str | Path, resume: str | Path | None, overwrite: bool, resume_auto: bool = False) -> None:
    """Refuse (RunFolderError) to train into ``out`` when it holds a run that this training
    does not continue: ``resume`` is not a checkpoint inside ``out`` and ``overwrite`` is off.
    ``resume_auto`` (``--resume auto`` that found no last.ckpt) may start over a run that
    stopped before it trained anything (no TRAINED_FILES: only its config and logs)."""
    out = Path(out)
    found = held_run(out)
    if not found or overwrite:
        return
    if resume is not None and Path(resume).resolve().parent == out.resolve():
        return
    if resume is None and resume_auto and not set(found) & set(TRAINED_FILES):
        return
    raise RunFolderError(f"{out}: holds a run ({', '.join(found)}); continue it with --resume auto, train into "
                         "a fresh --out, or replace it with --overwrite")


def clear_run(out: str | Path) -> list[str]:
    """Remove the run files of ``out`` (``--overwrite``, once every check has passed); returns
    what was removed."""
    out = Path(out)
    removed = held_run(out)
    for name in removed:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a.b.c": leaf} of a nested dict."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def changed_keys(stored: dict, new: dict) -> list[str]:
    """The dotted keys whose values differ between two configs (present in one only
    included), less RESUMABLE_KEYS; sorted."""
    old, now = flatten(stored), flatten(new)
    return sorted(k for k in set(old) | set(now)
                  if k not in RESUMABLE_KEYS and (k not in old or k not in now or old[k] != now[k]))


def check_resumed_config(stored: dict | None, new: dict, resume: str | Path, allow: bool) -> str | None:
    """Refuse (ConfigError) to resume ``resume`` with a config that differs from its stored one
    beyond RESUMABLE_KEYS unless ``allow``; returns the note to record when allowed, else None."""
    if not isinstance(stored, dict):
        raise ConfigError(f"{resume}: the checkpoint stores no config to compare the new one with")
    keys = changed_keys(stored, new)
    if not keys:
        return None
    shown = ", ".join(keys[:_SHOWN]) + (f", ... ({len(keys)} keys)" if len(keys) > _SHOWN else "")
    if not allow:
        raise ConfigError(f"{resume}: the config differs from the run's in {shown}; a resume "
                          f"may change only {' and '.join(RESUMABLE_KEYS)}: train into a fresh --out, or pass "
                          "--resume-changed to continue with the new values")
    return f"resumed from {resume} with a changed config (--resume-changed): {', '.join(keys)}"
