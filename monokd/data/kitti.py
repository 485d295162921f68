"""Readers and writers of the KITTI 3-D object detection files.

Formats (see docs/kitti.md): label_2 lines, calib files, velodyne .bin sweeps, image_2 PNGs,
depth_2 PNGs (uint16 = metres * 256, 0 = no depth) and ImageSets split files. Every reader
raises :class:`monokd.errors.KittiFormatError` naming the file, the line and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monokd.errors import KittiFormatError
from monokd.geometry.calib import Calibration

CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
LABEL_FIELDS = ("type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2",
                "h", "w", "l", "x", "y", "z", "rotation_y", "score")
CALIB_KEYS = {"P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4),
              "R0_rect": (3, 3), "Tr_velo_to_cam": (3, 4), "Tr_imu_to_velo": (3, 4)}
# Some KITTI derivatives (e.g. the raw-data calib converters) spell the keys differently.
_CALIB_ALIASES = {"R_rect": "R0_rect", "R0": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam",
                  "Tr_imu_velo": "Tr_imu_to_velo"}


@dataclass
class Object3D:
    """One label_2 line. Dimensions in metres, location = bottom centre in rectified camera
    coordinates (x right, y down, z forward), angles in radians."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    box2d: np.ndarray  # (4,) x1, y1, x2, y2 in pixels
    h: float
    w: float
    l: float  # noqa: E741 - KITTI's own name
    location: np.ndarray  # (3,) x, y, z
    rotation_y: float
    score: float | None = None

    @property
    def dims(self) -> np.ndarray:
        """(3,) h, w, l."""
        return np.array([self.h, self.w, self.l], dtype=np.float64)

    @property
    def height_2d(self) -> float:
        return float(self.box2d[3] - self.box2d[1])


# What a KITTI file may hold (the devkit's readme); a value outside cannot be right.
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # plain decimal, as C's printf writes
ANGLE_LIMIT = math.pi + 0.01  # alpha, rotation_y in [-pi, pi] (+ rounding to 2 decimals)
NO_ALPHA = -10.0  # a result file's "alpha not estimated"
OCCLUSION_LEVELS = (0, 1, 2, 3)  # fully visible, partly, largely occluded, unknown
MAX_DIMENSION = 100.0  # metres: no KITTI class is longer (a larger value is another unit)
MAX_DISTANCE = 1000.0  # metres from the camera / the sensor, for locations and LiDAR points


def read_lines(path: str | Path) -> list[str]:
    """The lines of a text file: UTF-8, a leading byte-order mark dropped (Windows editors
    write one; it would otherwise become part of the first field). Bytes that are not UTF-8
    text are a KittiFormatError naming the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise KittiFormatError(path, line, None, f"not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r})") from None


def parse_number(token: str, path: str | Path, line: int | None, name: str) -> float:
    """A finite decimal number (``1.5``, ``-2``, ``3e-4``); anything else (``nan``, ``inf``,
    ``1_000``, non-ASCII digits, ``0x10``) is a KittiFormatError naming ``name``."""
    if not NUMBER.fullmatch(token):
        raise KittiFormatError(path, line, name, f"not a number: {token!r}")
    value = float(token)
    if not math.isfinite(value):
        raise KittiFormatError(path, line, name, f"not finite: {token!r}")
    return value


def parse_label_line(text: str, path: str | Path = "<string>", line: int | None = None) -> Object3D:
    """Parse one label_2 line (15 fields, or 16 with a detection score), checking each value
    against KITTI's ranges (DontCare lines carry sentinels and are only checked for numbers)."""
    parts = text.split()
    if len(parts) not in (15, 16):
        missing = LABEL_FIELDS[len(parts)] if len(parts) < 15 else "score"
        raise KittiFormatError(path, line, missing,
                               f"expected 15 fields (16 with a score), found {len(parts)}")
    values = [parse_number(token, path, line, name) for name, token in zip(LABEL_FIELDS[1:], parts[1:])]
    trunc, occ, alpha, x1, y1, x2, y2, h, w, l, x, y, z, ry = values[:14]
    score = values[14] if len(values) == 15 else None
    kind = parts[0]
    if not (kind.isascii() and kind.isprintable()):
        raise KittiFormatError(path, line, "type", f"not a class name: {kind!r}")
    if occ != int(occ):
        raise KittiFormatError(path, line, "occluded", f"not an integer: {parts[2]!r}")
    if kind != "DontCare":
        _check_label_ranges(kind, dict(zip(LABEL_FIELDS[1:], values)), path, line)
    for name, low, high in (("x2", x1, x2), ("y2", y1, y2)):
        if high < low:
            raise KittiFormatError(path, line, name, f"{high:g} is less than {name[0]}1 = {low:g} (an inverted box)")
    return Object3D(kind, trunc, int(occ), alpha, np.array([x1, y1, x2, y2]), h, w, l,
                    np.array([x, y, z]), ry, score)


def _check_label_ranges(kind: str, value: dict, path, line) -> None:
    for known in CLASSES:
        if kind != known and kind.lower() == known.lower():
            raise KittiFormatError(path, line, "type", f"{kind!r} is not a KITTI class; did you mean {known!r}?")
    ranges = {"truncated": (0.0, 1.0, "a fraction in [0, 1]"),
              "alpha": (-ANGLE_LIMIT, ANGLE_LIMIT, "radians in [-pi, pi] (or -10: not estimated)"),
              "rotation_y": (-ANGLE_LIMIT, ANGLE_LIMIT, "radians in [-pi, pi]"),
              **{d: (0.0, MAX_DIMENSION, f"metres in [0, {MAX_DIMENSION:g}]") for d in ("h", "w", "l")},
              **{c: (-MAX_DISTANCE, MAX_DISTANCE, f"metres in [-{MAX_DISTANCE:g}, {MAX_DISTANCE:g}]")
                 for c in ("x", "y", "z")}}
    if int(value["occluded"]) not in OCCLUSION_LEVELS:
        raise KittiFormatError(path, line, "occluded", f"{value['occluded']:g} is not one of {OCCLUSION_LEVELS}")
    for name, (low, high, what) in ranges.items():
        if name == "alpha" and value[name] == NO_ALPHA:
            continue
        if not low <= value[name] <= high:
            kind_of = "negative dimension" if name in "hwl" and value[name] < 0 else "out of range"
            raise KittiFormatError(path, line, name, f"{kind_of} {value[name]:g}: expected {what}")


def _number(value: float, integral_as_int: bool) -> str:
    if integral_as_int and float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}"


def format_label_line(obj: Object3D) -> str:
    """The label_2 line of ``obj`` (KITTI's printed precision: 2 decimals, score 4).

    DontCare lines keep KITTI's integer sentinels (-1, -10, -1000) so that a label file
    read and written again is the same text.
    """
    x1, y1, x2, y2 = obj.box2d
    sentinel = obj.type == "DontCare"
    box = " ".join(f"{v:.2f}" for v in (x1, y1, x2, y2))
    geometry = [obj.h, obj.w, obj.l, *obj.location, obj.rotation_y]
    text = (f"{obj.type} {_number(obj.truncated, sentinel)} {int(obj.occluded)} "
            f"{_number(obj.alpha, sentinel)} {box} "
            + " ".join(_number(v, sentinel) for v in geometry))
    if obj.score is not None:
        text += f" {obj.score:.4f}"
    return text


def read_label(path: str | Path) -> list[Object3D]:
    """All objects of a label_2 (or result) file; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "label file not found")
    objects = []
    for number, text in enumerate(read_lines(path), start=1):
        if text.strip():
            objects.append(parse_label_line(text, path, number))
    return objects


def write_label(path: str | Path, objects: list[Object3D]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(format_label_line(o) + "\n" for o in objects))


# The devkit's difficulty levels (cumulative: hard includes moderate includes easy).
DIFFICULTY_MIN_HEIGHT = (40.0, 25.0, 25.0)  # 2-D box height, pixels at KITTI's 375-px rows
DIFFICULTY_MAX_OCCLUSION = (0, 1, 2)
DIFFICULTY_MAX_TRUNCATION = (0.15, 0.30, 0.50)


def difficulty(height_2d, occluded, truncated, min_height_scale: float = 1.0) -> np.ndarray:
    """Devkit difficulty of objects: the easiest level whose limits they meet.

    Args:
        height_2d, occluded, truncated: (N,) 2-D box height (px), occlusion, truncation.
        min_height_scale: multiplies the minimum heights (1.0 for KITTI-sized images; e.g.
            height / 375 for smaller renders, so that the same objects count as the same level).
    Returns:
        (N,) int64: 0 easy, 1 moderate, 2 hard, -1 none.
    """
    height = np.asarray(height_2d, dtype=np.float64)
    occluded = np.asarray(occluded)
    truncated = np.asarray(truncated, dtype=np.float64)
    level = np.full(height.shape, -1, dtype=np.int64)
    for k in reversed(range(3)):  # easiest level last, so it wins
        meets = ((height >= DIFFICULTY_MIN_HEIGHT[k] * min_height_scale)
                 & (occluded <= DIFFICULTY_MAX_OCCLUSION[k])
                 & (truncated <= DIFFICULTY_MAX_TRUNCATION[k]))
        level[meets] = k
    return level


def read_calib_keys(path: str | Path, wanted: dict[str, tuple[int, int]],
                    aliases: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The float64 (rows, cols) matrices of the ``wanted`` keys (key -> (rows, cols)) found in a
    calib file of ``KEY: v v v`` lines, ``aliases`` mapping other spellings to a key. Other keys
    (raw-data extras such as calib_time, S_xx) are skipped; a missing one is the caller's to
    refuse. Raises KittiFormatError (file, line, key): no file, a line without ``:``, a wrong
    count of numbers, a key given twice, a value that is not a number."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "calib file not found")
    found: dict[str, np.ndarray] = {}
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        if ":" not in text:
            raise KittiFormatError(path, number, None, f"expected 'KEY: values', got {text[:40]!r}")
        key, _, rest = text.partition(":")
        key = (aliases or {}).get(key.strip(), key.strip())
        if key not in wanted:
            continue
        rows, cols = wanted[key]
        tokens = rest.split()
        if len(tokens) != rows * cols:
            raise KittiFormatError(path, number, key, f"expected {rows * cols} numbers, found {len(tokens)}")
        if key in found:
            raise KittiFormatError(path, number, key, "given twice")
        values = [parse_number(t, path, number, key) for t in tokens]
        found[key] = np.array(values, dtype=np.float64).reshape(rows, cols)
    return found


def read_calib(path: str | Path) -> Calibration:
    """Parse a KITTI calib file. All seven keys are required (P0..P3, R0_rect,
    Tr_velo_to_cam, Tr_imu_to_velo). P2 must be a camera matrix (fx, fy > 0, third row
    (0, 0, 1, t)) and R0_rect a rotation; the LiDAR transform is checked where a sweep is
    read (monokd.data.checks), since image-only datasets may leave it empty."""
    path = Path(path)
    found = read_calib_keys(path, CALIB_KEYS, _CALIB_ALIASES)
    for key in CALIB_KEYS:
        if key not in found:
            raise KittiFormatError(path, None, key, "missing calib key")
    check_camera_matrix(found["P2"], path, "P2")
    check_rotation(found["R0_rect"], path, "R0_rect")
    return Calibration(**found)


def check_camera_matrix(P: np.ndarray, path: str | Path, key: str, tolerance: float = 1e-3) -> None:
    """A rectified camera's projection matrix: fx, fy > 0 and third row (0, 0, 1, t)."""
    if not (P[0, 0] > 0 and P[1, 1] > 0):
        raise KittiFormatError(path, None, key, f"focal lengths fx = {P[0, 0]:g}, fy = {P[1, 1]:g} must be positive")
    if np.abs(P[2, :3] - (0.0, 0.0, 1.0)).max() > tolerance:
        raise KittiFormatError(path, None, key, f"third row {P[2, :3].tolist()} is not (0, 0, 1): not a "
                                                "rectified camera matrix")


def check_rotation(transform: np.ndarray, path: str | Path, key: str, tolerance: float = 1e-2) -> None:
    """The 3x3 part of ``transform`` must be a rotation (R R^T = I, det R = 1)."""
    rotation = np.asarray(transform, dtype=np.float64)[:3, :3]
    error = float(np.abs(rotation @ rotation.T - np.eye(3)).max())
    if error > tolerance or np.linalg.det(rotation) < 0:
        raise KittiFormatError(path, None, key, "its 3x3 part is not a rotation "
                                                f"(|R R^T - I| = {error:.3g}, det = {np.linalg.det(rotation):.3g})")


def write_calib(path: str | Path, calib: Calibration) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{k}: " + " ".join(f"{v:.12e}" for v in getattr(calib, k).reshape(-1))
             for k in CALIB_KEYS]
    path.write_text("\n".join(lines) + "\n")


def read_velodyne(path: str | Path) -> np.ndarray:
    """(N, 4) float32 x, y, z, reflectance in the LiDAR frame (coordinates finite within
    MAX_DISTANCE metres, reflectance in [0, 1])."""
    path = Path(path)
    check_velodyne_size(path)
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    for column, name in enumerate(("x", "y", "z", "reflectance")):
        low, high = (0.0, 1.0) if name == "reflectance" else (-MAX_DISTANCE, MAX_DISTANCE)
        values = points[:, column]
        bad = ~(np.isfinite(values) & (values >= low) & (values <= high))
        if bad.any():
            index = int(np.argmax(bad))
            hint = " (0-255 intensities? KITTI's are divided by 255)" if name == "reflectance" else ""
            raise KittiFormatError(path, None, name, f"{int(bad.sum())} points outside [{low:g}, {high:g}], first "
                                                     f"point {index}: {float(values[index])!r}{hint}")
    return points


def check_velodyne_size(path: str | Path) -> None:
    """A sweep file must exist and hold whole points (16 bytes each: x, y, z, reflectance)."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "velodyne file not found")
    size = path.stat().st_size
    if size % 16:
        raise KittiFormatError(path, None, "size",
                               f"{size} bytes is not a multiple of 16 (4 float32 a point)")


def write_velodyne(path: str | Path, points: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 4).tofile(path)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # a frame's image: any of these, looked up in this order


def find_image(image_dir: str | Path, frame: str) -> Path | None:
    """The image of ``frame`` in ``image_dir`` (.png, .jpg or .jpeg, either case), or None."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (suffix, suffix.upper()):
            path = Path(image_dir) / f"{frame}{candidate}"
            if path.is_file():
                return path
    return None


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB. A truncated file is an error (a decoder would fill the missing
    rows with grey)."""
    import cv2

    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise KittiFormatError(path, None, None, "image missing or not readable")
    check_image_complete(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# The last marker of a whole file: JPEG's end-of-image, PNG's IEND chunk (+ its CRC).
_IMAGE_END = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}
_TAIL_BYTES = 64  # how far from the end the marker may sit (some writers pad after it)


def check_image_complete(path: str | Path) -> None:
    """A .png / .jpg / .jpeg must end with its format's end marker (else it was cut short)."""
    path = Path(path)
    marker = _IMAGE_END.get(path.suffix.lower())
    if marker is None:
        return
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - _TAIL_BYTES))
        if marker not in handle.read():
            raise KittiFormatError(path, None, "size", f"truncated: no {path.suffix.lower()[1:].upper()} "
                                                       f"end marker in its last {_TAIL_BYTES} bytes")


def write_image(path: str | Path, image: np.ndarray) -> None:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR))


def read_depth(path: str | Path, nan_policy: str = "raise") -> np.ndarray:
    """(H, W) float32 metres from a depth_2 PNG (uint16 / 256; 0 = no depth).

    A float depth image (e.g. a .npy or a float TIFF a user made) may hold NaN: with
    ``nan_policy="raise"`` that is reported naming the file and the first bad pixel; with
    ``"zero"`` NaN pixels become 0 (= no depth), so they never propagate into a loss.
    """
    import cv2

    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise KittiFormatError(path, None, None, "depth file not found")
        depth = np.load(path).astype(np.float32)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise KittiFormatError(path, None, None, "depth image missing or not readable")
        if raw.ndim != 2:
            raise KittiFormatError(path, None, "channels", f"expected one channel, found {raw.shape[2]}")
        if raw.dtype == np.uint8:
            raise KittiFormatError(path, None, "dtype", "an 8-bit image: KITTI depth PNGs are 16-bit "
                                                        "(metres * 256)")
        depth = raw.astype(np.float32) / 256.0 if raw.dtype == np.uint16 else raw.astype(np.float32)
    bad = ~np.isfinite(depth)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        if nan_policy == "raise":
            raise KittiFormatError(path, row + 1, "depth",
                                   f"{int(bad.sum())} non-finite pixels, first at row {row}, column {col}")
        depth[bad] = 0.0
    if (depth < 0).any():
        row, col = (int(i) for i in np.argwhere(depth < 0)[0])
        raise KittiFormatError(path, row + 1, "depth", f"negative depth at row {row}, column {col}")
    return depth


def write_depth(path: str | Path, depth: np.ndarray) -> None:
    """Write metres as KITTI's uint16 PNG (metres * 256, clipped to the uint16 range)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    raw = np.clip(np.round(depth * 256.0), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(path), raw)


def read_split(path: str | Path, image_dir: str | Path | None = None) -> list[str]:
    """Frame ids of an ImageSets file. With ``image_dir``, every id must have an image
    (.png, .jpg or .jpeg). A repeated id is an error (it would weigh a frame twice)."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "split file not found")
    ids: dict[str, int] = {}
    for number, text in enumerate(read_lines(path), start=1):
        token = text.strip()
        if not token:
            continue
        if not token.isdigit() or not token.isascii():
            raise KittiFormatError(path, number, "id", f"not a frame id: {token!r}")
        frame = token.zfill(6)
        if frame in ids:
            raise KittiFormatError(path, number, "id", f"frame {frame} is listed twice (first on line {ids[frame]})")
        if image_dir is not None and find_image(image_dir, frame) is None:
            raise KittiFormatError(path, number, "id",
                                   f"frame {frame} has no image in {image_dir} (.png, .jpg or .jpeg)")
        ids[frame] = number
    return list(ids)


def write_split(path: str | Path, ids: list[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


@dataclass(frozen=True)
class KittiPaths:
    """Where the files of one frame live under a KITTI root (``training`` or ``testing``)."""

    root: Path
    part: str = "training"

    def file(self, kind: str, frame: str) -> Path:
        """The file of ``frame`` in ``kind`` (image_2, label_2, calib, velodyne, depth_2). An
        image may be .png, .jpg or .jpeg (the one present; .png when there is none)."""
        if kind == "image_2":
            found = find_image(Path(self.root) / self.part / kind, frame)
            if found is not None:
                return found
        ext = {"image_2": "png", "depth_2": "png", "velodyne": "bin"}.get(kind, "txt")
        return Path(self.root) / self.part / kind / f"{frame}.{ext}"

    def split(self, name: str) -> Path:
        return Path(self.root) / "ImageSets" / f"{name}.txt"
