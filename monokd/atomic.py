"""Files written whole or not at all: every file monokd writes goes through this module.

    writer -> <dir>/.<stem>.tmp<pid><suffix>   (same folder, so the rename never copies)
           -> os.replace(temporary, path)      (atomic on POSIX: a reader sees the old file
                                                or the new one, never half of one)
    any error on the way -> the temporary removed, ``path`` untouched, the error re-raised

An ``OSError`` without a file name (e.g. ``ENOSPC`` raised by a writer that does not say
where) is re-raised naming ``path``, so that the command's one error line says which file
could not be written. A writer that reports a failed write without raising (OpenCV's
``imwrite`` returns False) is checked here too: :func:`write_image_file` encodes in memory
and writes the bytes. The temporary keeps the suffix so that writers choosing a format by it
(matplotlib, PIL, OpenCV) still do; its leading dot hides it from ``*.txt``-style listings.

Imports only monokd.errors (see docs/errors.md, "Files").
"""

from __future__ import annotations

import errno as errno_codes
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from monokd.errors import MonokdError


def temporary_name(path: str | Path) -> Path:
    """The temporary beside ``path``: ``.<stem>.tmp<pid><suffix>`` (one per process)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


_FULL_BYTES = 1 << 20  # free space below which a failed write is reported as a full disk


def write_error(err: BaseException, path: str | Path) -> BaseException:
    """How a writer's failure ``err`` is reported: an ``OSError`` naming ``path`` (``err``
    itself when it names a file already); another error (torch.save and safetensors report a
    full disk in their own words) as ENOSPC naming ``path`` when the disk holding ``path`` is
    full, else ``err`` unchanged (a failure of the writer's own, not of the disk)."""
    if isinstance(err, OSError):
        if err.filename is not None:
            return err
        code = err.errno or errno_codes.EIO
        named = OSError(code, err.strerror or str(err) or os.strerror(code), str(path))
    elif _disk_full(Path(path)):
        named = OSError(errno_codes.ENOSPC, os.strerror(errno_codes.ENOSPC), str(path))
    else:
        return err
    named.__cause__ = err
    return named


def _disk_full(path: Path) -> bool:
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), None)
    try:
        return folder is not None and shutil.disk_usage(folder).free < _FULL_BYTES
    except OSError:
        return False


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path: str | Path, publish: bool = True) -> Iterator[Path]:
    """Yields the temporary to write ``path`` through; on success renames it onto ``path``.

    ``publish=False`` (a DDP rank other than 0, whose writer writes nothing) skips the rename
    and the clean-up. The parent folder is created. A failure is raised as :func:`write_error`
    reports it (monokd's own errors unchanged), the temporary removed and ``path`` unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if publish:
            os.replace(tmp, path)
    except Exception as err:
        if isinstance(err, OSError) and err.filename is not None and Path(err.filename) == tmp:
            err.filename = str(path)  # the user knows the file, not its temporary
        reported = err if isinstance(err, MonokdError) else write_error(err, path)
        if publish:
            _remove(tmp)
        if reported is err:
            raise
        raise reported from err
    except BaseException:
        if publish:
            _remove(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns ``path``."""
    with atomic_path(path) as tmp:
        _write_all(tmp, data)
    return Path(path)


def _write_all(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, document, indent: int = 1) -> Path:
    """``document`` as JSON (with a final newline) to ``path`` whole or not at all."""
    return write_text(path, json.dumps(document, indent=indent) + "\n")


def write_image_file(path: str | Path, array) -> Path:
    """An OpenCV array (BGR, or one channel of uint8/uint16) encoded by ``path``'s suffix and
    written whole or not at all. A failed encoding is an ``OSError`` naming ``path``."""
    import cv2

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", array)
    if not ok:
        raise OSError(errno_codes.EIO, f"could not encode the image as {path.suffix or '.png'}", str(path))
    return write_bytes(path, encoded.tobytes())
