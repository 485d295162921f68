"""Readers and writers of the KITTI raw recordings (the synced drives the object benchmark
was drawn from).

Layout under a raw root (the devkit's, as the raw download unpacks)::

    <date>/calib_cam_to_cam.txt      P_rect_00..03 (3x4), R_rect_00 (3x3), S_rect_0x, ...
    <date>/calib_velo_to_cam.txt     R (3x3, row-major), T (3): LiDAR -> unrectified camera 0
    <date>/calib_imu_to_velo.txt     R, T (optional; identity when absent)
    <date>/<date>_drive_<nnnn>_sync/image_02/data/<frame>.png        left colour camera
    <date>/<date>_drive_<nnnn>_sync/velodyne_points/data/<frame>.bin LiDAR sweep (N, 4) float32
    <date>/<date>_drive_<nnnn>_sync/depth_02/data/<frame>.png        monokd's depth maps
                                                                     (``monokd depth-maps --raw``)
    ImageSets/<name>.txt             raw split files (below)

``<frame>`` is the frame's index in its drive, 10 digits. A raw date's calibration is the
object benchmark's calib file of any frame of that date, key for key::

    P0..P3 = P_rect_00..P_rect_03    R0_rect = R_rect_00    Tr_velo_to_cam = [R | T]
    Tr_imu_to_velo = [R | T] of calib_imu_to_velo.txt

so :func:`read_raw_calib` returns the same :class:`monokd.data.kitti.Calibration` as
:func:`monokd.data.kitti.read_calib` and every formula of monokd.geometry.calib applies.

A raw split file lists one frame per line, in any of the forms in use:

    2011_09_26_drive_0005_sync 0000000109                        <drive> <frame>
    2011_09_26/2011_09_26_drive_0005_sync 109 l                  the Eigen split's (monodepth)
    2011_09_26/2011_09_26_drive_0005_sync/image_02/data/0000000109   CMKD's ImageSets lists

(a trailing ``.png`` is allowed; a frame number may be unpadded; ``r``, the right camera,
is refused since monokd reads image_02). Every reader raises KittiFormatError naming the
file, the line and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monokd.data.kitti import (Calibration, KittiFormatError, check_camera_matrix, check_rotation, read_calib_keys,
                               read_lines)

DRIVE = re.compile(r"(?P<date>\d{4}_\d{2}_\d{2})_drive_(?P<number>\d{4})_sync")
FRAME_DIGITS = 10
CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"
IMU_TO_VELO = "calib_imu_to_velo.txt"
SUBDIRS = {"image_2": ("image_02", "png"), "velodyne": ("velodyne_points", "bin"), "depth_2": ("depth_02", "png")}
# calib_cam_to_cam.txt key -> (Calibration field, shape)
CAM_KEYS = {"P_rect_00": ("P0", (3, 4)), "P_rect_01": ("P1", (3, 4)), "P_rect_02": ("P2", (3, 4)),
            "P_rect_03": ("P3", (3, 4)), "R_rect_00": ("R0_rect", (3, 3))}
RIGID_KEYS = {"R": (3, 3), "T": (3, 1)}


@dataclass(frozen=True, order=True)
class RawFrame:
    """One frame of a raw drive: ``drive`` is ``<date>_drive_<nnnn>_sync``, ``frame`` its
    10-digit index."""

    drive: str
    frame: str

    @property
    def date(self) -> str:
        return self.drive[:10]

    @property
    def id(self) -> str:
        """``<drive>/<frame>``: the frame's name in batches, logs and provenance records."""
        return f"{self.drive}/{self.frame}"


def raw_frame(drive: str, frame: str, path: str | Path = "<string>", line: int | None = None) -> RawFrame:
    """A checked RawFrame (drive name of the devkit's form, frame digits, zero-padded)."""
    if not DRIVE.fullmatch(drive):
        raise KittiFormatError(path, line, "drive", f"not a raw drive name (<date>_drive_<nnnn>_sync): {drive!r}")
    if not (frame.isascii() and frame.isdigit()) or len(frame) > FRAME_DIGITS:
        raise KittiFormatError(path, line, "frame", f"not a frame number: {frame!r}")
    return RawFrame(drive, frame.zfill(FRAME_DIGITS))


def frame_from_id(frame_id: str) -> RawFrame:
    """The RawFrame of ``<drive>/<frame>`` (RawFrame.id)."""
    drive, _, frame = frame_id.partition("/")
    return raw_frame(drive, frame, "<frame id>")


# --- calibration ---------------------------------------------------------------------------

def _require(found: dict, keys, path: Path) -> None:
    for key in keys:
        if key not in found:
            raise KittiFormatError(path, None, key, "missing calib key")


def _rigid(path: Path) -> np.ndarray:
    """(3, 4) [R | T] of a calib_velo_to_cam / calib_imu_to_velo file (R a rotation)."""
    found = read_calib_keys(path, RIGID_KEYS)
    _require(found, RIGID_KEYS, path)
    check_rotation(found["R"], path, "R")
    return np.concatenate([found["R"], found["T"]], axis=1)


def read_raw_calib(date_dir: str | Path) -> Calibration:
    """The calibration of a raw date folder (see the module docstring for the key mapping).

    calib_cam_to_cam.txt must hold P_rect_00..03 and R_rect_00, calib_velo_to_cam.txt R and
    T; calib_imu_to_velo.txt is optional. Checked like read_calib: P2 a rectified camera
    matrix, R0_rect and R rotations.
    """
    date_dir = Path(date_dir)
    cam_path = date_dir / CAM_TO_CAM
    found = read_calib_keys(cam_path, {key: shape for key, (_, shape) in CAM_KEYS.items()})
    _require(found, CAM_KEYS, cam_path)
    mats = {field: found[key] for key, (field, _) in CAM_KEYS.items()}
    check_camera_matrix(mats["P2"], cam_path, "P_rect_02")
    check_rotation(mats["R0_rect"], cam_path, "R_rect_00")
    mats["Tr_velo_to_cam"] = _rigid(date_dir / VELO_TO_CAM)
    imu = date_dir / IMU_TO_VELO
    mats["Tr_imu_to_velo"] = _rigid(imu) if imu.is_file() else np.eye(3, 4)
    return Calibration(**mats)


def _line(key: str, values) -> str:
    return f"{key}: " + " ".join(f"{v:.12e}" for v in np.asarray(values, dtype=np.float64).reshape(-1))


def write_raw_calib(date_dir: str | Path, calib: Calibration, image_size: tuple[int, int]) -> None:
    """Write the three devkit calib files of a date folder from ``calib``; ``image_size``
    (W, H) is the rectified image size (S_rect_0x). Unrectified keys (K, D, R, T of each
    camera) and R_rect_01..03 are not written: monokd reads the rectified image_02 only."""
    date_dir = Path(date_dir)
    date_dir.mkdir(parents=True, exist_ok=True)
    cam = ["calib_time: 01-Jan-2000 00:00:00"]
    for index, field in enumerate(("P0", "P1", "P2", "P3")):
        cam.append(_line(f"S_rect_0{index}", image_size))
        if index == 0:
            cam.append(_line("R_rect_00", calib.R0_rect))
        cam.append(_line(f"P_rect_0{index}", getattr(calib, field)))
    (date_dir / CAM_TO_CAM).write_text("\n".join(cam) + "\n")
    for name, transform in ((VELO_TO_CAM, calib.Tr_velo_to_cam), (IMU_TO_VELO, calib.Tr_imu_to_velo)):
        rigid = ["calib_time: 01-Jan-2000 00:00:00", _line("R", transform[:, :3]), _line("T", transform[:, 3])]
        (date_dir / name).write_text("\n".join(rigid) + "\n")


# --- paths ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawPaths:
    """Where the files of a raw frame live under a raw root."""

    root: Path

    def drive_dir(self, frame: RawFrame) -> Path:
        return Path(self.root) / frame.date / frame.drive

    def file(self, kind: str, frame: RawFrame | str) -> Path:
        """The file of ``frame`` (a RawFrame or its id) in ``kind`` (image_2, velodyne,
        depth_2: the object benchmark's names, so code written for KittiPaths reads raw frames
        too; calib: the date's calib_cam_to_cam.txt)."""
        if isinstance(frame, str):
            frame = frame_from_id(frame)
        if kind == "calib":
            return Path(self.root) / frame.date / CAM_TO_CAM
        folder, ext = SUBDIRS[kind]
        return self.drive_dir(frame) / folder / "data" / f"{frame.frame}.{ext}"

    def date_dir(self, date: str) -> Path:
        return Path(self.root) / date

    def split(self, name: str) -> Path:
        return Path(self.root) / "ImageSets" / f"{name}.txt"


def list_raw_frames(root: str | Path) -> list[RawFrame]:
    """Every frame with an image_02 PNG under ``root``, sorted (drive, frame)."""
    frames = []
    for drive_dir in sorted(Path(root).glob("*/*_drive_*_sync")):
        if not DRIVE.fullmatch(drive_dir.name) or drive_dir.parent.name != drive_dir.name[:10]:
            continue
        for image in sorted((drive_dir / "image_02" / "data").glob("*.png")):
            frames.append(raw_frame(drive_dir.name, image.stem, image))
    return frames


# --- split files ---------------------------------------------------------------------------

_PATH_LINE = re.compile(r"(?:(?P<date>[^/\s]+)/)?(?P<drive>[^/\s]+)"
                        r"/image_0(?P<camera>\d)/data/(?P<frame>[^/\s]+?)(?:\.png)?")


def parse_raw_split_line(text: str, path: str | Path = "<string>", line: int | None = None) -> RawFrame:
    """One line of a raw split file (the forms of the module docstring)."""
    parts = text.split()
    match = _PATH_LINE.fullmatch(parts[0]) if len(parts) == 1 else None
    if match:
        drive, frame, camera, date = match["drive"], match["frame"], match["camera"], match["date"]
    elif len(parts) in (2, 3):
        date, _, drive = parts[0].rpartition("/")
        frame = parts[1]
        side = parts[2] if len(parts) == 3 else "l"
        if side not in ("l", "r"):
            raise KittiFormatError(path, line, "side", f"expected l or r, got {side!r}")
        camera = "2" if side == "l" else "3"
    else:
        raise KittiFormatError(path, line, None, "expected '<drive> <frame>', '<date>/<drive> <frame> [l|r]' or "
                                                 f"'<date>/<drive>/image_02/data/<frame>', got {text.strip()[:80]!r}")
    if camera != "2":
        raise KittiFormatError(path, line, "camera", f"image_0{camera} frames are not read (monokd reads image_02, "
                                                     "the left colour camera)")
    found = raw_frame(drive, frame, path, line)
    if date and date != found.date:
        raise KittiFormatError(path, line, "date", f"folder {date!r} does not match drive {drive!r}")
    return found


def read_raw_split(path: str | Path, root: str | Path | None = None) -> list[RawFrame]:
    """The frames of a raw split file, in file order. A repeated frame is an error (it would
    weigh a frame twice); with ``root``, every frame must have its image_02 PNG."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(path, None, None, "split file not found")
    seen: dict[RawFrame, int] = {}
    paths = RawPaths(Path(root)) if root is not None else None
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        frame = parse_raw_split_line(text, path, number)
        if frame in seen:
            raise KittiFormatError(path, number, "frame", f"{frame.id} is listed twice (first on line {seen[frame]})")
        if paths is not None and not paths.file("image_2", frame).is_file():
            raise KittiFormatError(path, number, "frame", f"{frame.id} has no image ({paths.file('image_2', frame)} "
                                                          "not found)")
        seen[frame] = number
    return list(seen)


def write_raw_split(path: str | Path, frames: list[RawFrame]) -> None:
    """One ``<drive> <frame>`` line per frame."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f.drive} {f.frame}\n" for f in frames))
