"""The leakage guard: unlabeled raw frames must not be the student's validation frames.

KITTI raw holds every frame of the object benchmark, val included, and the frames next to a
val frame in its drive are near-copies of it (10 Hz recording). The object devkit's mapping
files say where each object frame came from:

    mapping/train_mapping.txt   line r (1-based): ``<date> <drive> <frame>``
    mapping/train_rand.txt      one line of comma-separated 1-based line numbers: object
                                frame i (000000 = the first) is line train_rand[i] of
                                train_mapping.txt

so the val split's object ids map to raw frames V and to the drives D holding them. The
guard refuses unlabeled frames in V and, by default, every unlabeled frame of a drive in D;
``data.unlabeled.allow_overlap: true`` lets them through with a warning. Without the mapping
files nothing can be checked: one MonokdWarning says so (once per raw root and process).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from monokd.data.kitti import KittiFormatError, read_lines
from monokd.data.raw import RawFrame, raw_frame
from monokd.errors import ConfigError, MonokdWarning

MAPPING = "train_mapping.txt"
RAND = "train_rand.txt"
MAPPING_DIRS = ("mapping", "devkit/mapping")  # looked up under the object root, in this order
_SHOWN = 3  # drives named in a message
_WARNED: set[str] = set()


def read_mapping(path: str | Path) -> list[RawFrame]:
    """The raw frame of each line of train_mapping.txt (a blank line before the last is an
    error: it would shift every later line number)."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "mapping file not found")
    lines = read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()  # blank lines at the end shift nothing
    frames = []
    for number, text in enumerate(lines, start=1):
        parts = text.split()
        if len(parts) != 3:
            raise KittiFormatError(path, number, None, f"expected '<date> <drive> <frame>', got {text.strip()[:80]!r}")
        date, drive, frame = parts
        found = raw_frame(drive, frame, path, number)
        if found.date != date:
            raise KittiFormatError(path, number, "date", f"{date!r} does not match drive {drive!r}")
        frames.append(found)
    return frames


def read_rand(path: str | Path, lines: int | None = None) -> list[int]:
    """The 1-based mapping line of each object frame (train_rand.txt). With ``lines`` (the
    mapping's length), every index must be within it."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "mapping file not found")
    indices = []
    for number, text in enumerate(read_lines(path), start=1):
        tokens = [t.strip() for t in text.split(",")]
        if tokens and tokens[-1] == "":
            tokens.pop()  # a trailing comma
        for position, token in enumerate(tokens, start=1):
            field = f"index {len(indices) + 1}"
            if not (token.isascii() and token.isdigit()) or int(token) < 1:
                raise KittiFormatError(path, number, field, f"not a 1-based line number: {token!r} "
                                                            f"(item {position} of the line)")
            if lines is not None and int(token) > lines:
                raise KittiFormatError(path, number, field, f"{token} is past the mapping's {lines} lines")
            indices.append(int(token))
    return indices


def object_to_raw(mapping_dir: str | Path) -> dict[str, RawFrame]:
    """{object frame id (6 digits): its raw frame} from a devkit mapping folder."""
    mapping_dir = Path(mapping_dir)
    mapping = read_mapping(mapping_dir / MAPPING)
    rand = read_rand(mapping_dir / RAND, len(mapping))
    return {f"{i:06d}": mapping[line - 1] for i, line in enumerate(rand)}


def find_mapping_dir(object_root: str | Path | None, given: str | Path | None) -> Path | None:
    """The folder holding both mapping files: ``given`` (must hold them), else the first of
    MAPPING_DIRS under ``object_root`` that does; None when there is none."""
    if given is not None:
        for name in (MAPPING, RAND):
            if not (Path(given) / name).is_file():
                raise ConfigError(f"data.unlabeled.mapping: {Path(given) / name} not found")
        return Path(given)
    if object_root is None:
        return None
    for sub in MAPPING_DIRS:
        folder = Path(object_root) / sub
        if (folder / MAPPING).is_file() and (folder / RAND).is_file():
            return folder
    return None


@dataclass
class Overlap:
    """The unlabeled frames that touch the validation frames: ``val_frames`` are val frames
    themselves, ``same_drive`` frames of a drive holding one (val frames included); per drive,
    the count of unlabeled frames it contributes."""

    val_frames: list[RawFrame]
    same_drive: list[RawFrame]
    drives: Counter

    def __bool__(self) -> bool:
        return bool(self.same_drive)

    def describe(self, val_split: str) -> str:
        named = ", ".join(f"{drive} ({count} frames)" for drive, count in self.drives.most_common(_SHOWN))
        more = f" and {len(self.drives) - _SHOWN} more drives" if len(self.drives) > _SHOWN else ""
        return (f"{len(self.same_drive)} unlabeled frames lie in drives that hold frames of the val split "
                f"{val_split!r}, {len(self.val_frames)} of them val frames themselves: {named}{more}")


def find_overlap(unlabeled: list[RawFrame], val_raw: list[RawFrame]) -> Overlap:
    """The unlabeled frames equal to a val frame, and those sharing a drive with one."""
    val_set = set(val_raw)
    val_drives = {f.drive for f in val_raw}
    same = [f for f in unlabeled if f.drive in val_drives]
    return Overlap([f for f in same if f in val_set], same, Counter(f.drive for f in same))


def check_leakage(unlabeled: list[RawFrame], val_ids: list[str], mapping_dir: Path | None, *,
                  val_split: str = "val", allow_overlap: bool = False, raw_root: str | Path = "") -> list[str]:
    """Refuse (ConfigError) unlabeled frames that are, or share a drive with, the student's
    validation frames ``val_ids`` (object ids); with ``allow_overlap`` warn instead. Without
    ``mapping_dir`` warn once that nothing is checked. Returns the notes shown (for the run's
    record)."""
    if mapping_dir is None:
        message = (f"data.unlabeled: no KITTI object mapping files (mapping/{MAPPING}, mapping/{RAND}; "
                   "data.unlabeled.mapping): cannot check that the unlabeled frames exclude the val frames")
        if str(raw_root) not in _WARNED:
            _WARNED.add(str(raw_root))
            warnings.warn(message, MonokdWarning, stacklevel=2)
        return [message]
    to_raw = object_to_raw(mapping_dir)
    unmapped = [i for i in val_ids if i not in to_raw]
    if unmapped:
        raise KittiFormatError(Path(mapping_dir) / RAND, None, None,
                               f"maps {len(to_raw)} object frames; val frame {unmapped[0]} is not among them "
                               f"({len(unmapped)} unmapped): not the mapping of this dataset")
    overlap = find_overlap(unlabeled, [to_raw[i] for i in val_ids])
    if not overlap:
        return []
    message = f"data.unlabeled: {overlap.describe(val_split)}"
    if not allow_overlap:
        raise ConfigError(f"{message}; the student would train on its own val images (adjacent frames are "
                          "near-copies). Drop those drives from data.unlabeled.split or set "
                          "data.unlabeled.allow_overlap=true")
    warnings.warn(f"{message} (allowed by data.unlabeled.allow_overlap)", MonokdWarning, stacklevel=2)
    return [message]


def write_mapping(mapping_dir: str | Path, object_frames: list[RawFrame], rand: list[int]) -> None:
    """Write train_mapping.txt (``lines``: the raw frames in mapping-line order) and
    train_rand.txt so that object frame i maps to ``object_frames[i]``: line rand[i] of
    the mapping holds it (``rand`` a permutation of 1..N)."""
    if sorted(rand) != list(range(1, len(object_frames) + 1)):
        raise ValueError("rand must be a permutation of 1..N")
    lines: list[RawFrame | None] = [None] * len(object_frames)
    for frame, line in zip(object_frames, rand):
        lines[line - 1] = frame
    mapping_dir = Path(mapping_dir)
    mapping_dir.mkdir(parents=True, exist_ok=True)
    (mapping_dir / MAPPING).write_text("".join(f"{f.date} {f.drive} {f.frame}\n" for f in lines))
    (mapping_dir / RAND).write_text(",".join(str(r) for r in rand) + "\n")
