"""Checks of a split's frames, run before anything is built, so that bad data fails in seconds.

    split file -> frame ids (read_split: digits, no repeats)  -> refused when empty
      per frame: image_2   present (.png/.jpg/.jpeg), whole (its end marker present); its
                           W x H read from the file header
                 calib     parsed (read_calib's ranges); P2's principal point inside W x H
                 label_2   parsed (read_label's ranges) when the part has labels; every
                           2-D box inside W x H (KITTI clips boxes to the image); every
                           3-D box ahead of the camera, projecting through P2 near its
                           2-D box (PROJECTION_MARGIN)
                 velodyne  when the config reads LiDAR: present (depth_maps=lidar), and its
                           size a multiple of 16 bytes, not 0 when it is read;
                           Tr_velo_to_cam a rigid transform
                 depth_2   present when depth_maps=depth_2; its header: one 16-bit channel,
                           W x H the image's
                 data.depth_pred_dir/<frame>.png (estimated depth) present, the same header

:class:`monokd.data.dataset.KittiDataset` calls :func:`check_frames` at construction, so
every command and every model whose data goes through it (train, evaluate, the BEV models)
refuses a bad split before a model or a trainer exists. Pixel values (an image's content, a
depth map's pixels, a sweep's points) are checked when the frame is read, since reading them
all here would cost minutes on KITTI. Every error is a KittiFormatError naming the file (and
line) and the field.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from monokd.data.kitti import (CLASSES, Calibration, KittiPaths, check_image_complete, check_rotation,
                               check_velodyne_size, find_image, parse_label_line, read_calib, read_lines)
from monokd.errors import ConfigError, KittiFormatError, did_you_mean
from monokd.geometry.boxes import project_boxes

# A 2-D box may reach this far past the image border (KITTI clips boxes to [0, W-1] and
# prints 2 decimals); farther, the label belongs to another image size.
BOX_TOLERANCE_PX = 2.0


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file from its header (the pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise KittiFormatError(path, None, None, f"not a readable image ({err})") from None


DEPTH_MAP_MODES = (None, "depth_2", "lidar", "auto")


def check_data_options(data_cfg: dict) -> None:
    """``data.classes`` are KITTI classes (exact spelling: another would silently supervise
    nothing) and ``data.depth_maps`` one of :data:`DEPTH_MAP_MODES`."""
    check_classes(data_cfg.get("classes"), "data.classes")
    if data_cfg.get("depth_maps") not in DEPTH_MAP_MODES:
        raise ConfigError(f"data.depth_maps: {data_cfg.get('depth_maps')!r} is not one of {DEPTH_MAP_MODES}")


def check_classes(classes, key: str) -> None:
    """A non-empty list of KITTI classes (DontCare excluded)."""
    known = [c for c in CLASSES if c != "DontCare"]
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ConfigError(f"{key}: expected a non-empty list of classes, got {classes!r}")
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise ConfigError(f"{key}: {unknown} not KITTI classes ({did_you_mean(unknown[0], known)}"
                          f"known: {', '.join(known)})")


def require_frames(ids: list[str], source: str | Path) -> None:
    """An empty set of frames is an error naming where the frames were to come from."""
    if not ids:
        raise KittiFormatError(source, None, "id", "lists no frames: the set would be empty")


def check_frames(paths: KittiPaths, ids: list[str], split_file: str | Path | None, data_cfg: dict,
                 has_labels: bool) -> Counter:
    """Check every frame of ``ids`` (see the module docstring); ``data_cfg`` is ``cfg["data"]``.
    Returns the number of labelled objects of each type."""
    require_frames(ids, split_file or (Path(paths.root) / paths.part / "image_2"))
    counts: Counter = Counter()
    lines = _split_lines(split_file) if split_file else {}
    depth_mode = data_cfg.get("depth_maps")
    reads_lidar = depth_mode in ("lidar", "auto") or bool(data_cfg.get("load_points"))
    for frame in ids:
        where = (split_file, lines.get(frame)) if split_file else (paths.file("image_2", frame), None)
        image = find_image(Path(paths.root) / paths.part / "image_2", frame)
        if image is None:
            raise KittiFormatError(*where, "id", f"frame {frame} has no image in {paths.file('image_2', frame).parent}")
        size = image_size(image)
        check_image_complete(image)
        calib = _frame_calib(paths, frame, data_cfg, where, size)
        if has_labels:
            counts.update(check_label_file(_present(paths, "label_2", frame, where), size,
                                           calib.P2 if calib is not None else None))
        velo = paths.file("velodyne", frame)
        if depth_mode == "lidar":
            _present(paths, "velodyne", frame, where)
        if reads_lidar and velo.is_file():
            check_velodyne_size(velo)
            if velo.stat().st_size == 0 and (depth_mode == "lidar" or data_cfg.get("load_points")
                                             or (depth_mode == "auto" and not paths.file("depth_2", frame).is_file())):
                raise KittiFormatError(velo, None, "points", "an empty sweep (0 points): no depth to read from it")
            if calib is not None:
                check_rotation(calib.Tr_velo_to_cam, paths.file("calib", frame), "Tr_velo_to_cam")
        depth = paths.file("depth_2", frame)
        if depth_mode == "depth_2":
            _present(paths, "depth_2", frame, where)
        if depth_mode in ("depth_2", "auto") and depth.is_file():
            check_depth_header(depth, size)
        if data_cfg.get("depth_pred_dir"):
            estimated = Path(data_cfg["depth_pred_dir"]) / f"{frame}.png"
            if not estimated.is_file():
                raise KittiFormatError(*where, "id", f"frame {frame} has no estimated depth map ({estimated} "
                                                     "not found; data.depth_pred_dir)")
            check_depth_header(estimated, size)
    return counts


def check_label_file(path: Path, size: tuple[int, int], P2: np.ndarray | None = None) -> list[str]:
    """Parse a label file (read_label's checks) and require every 2-D box inside its W x H
    image (within BOX_TOLERANCE_PX) and, given the frame's P2, every object (DontCare aside)
    ahead of the camera and projecting near its own 2-D box (PROJECTION_MARGIN; else label and
    calib disagree). Returns the objects' types."""
    width, height = size
    types = []
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        obj = parse_label_line(text, path, number)
        x1, y1, x2, y2 = (float(v) for v in obj.box2d)
        for name, value, limit in (("x1", x1, width), ("x2", x2, width), ("y1", y1, height), ("y2", y2, height)):
            if not -BOX_TOLERANCE_PX <= value <= limit - 1 + BOX_TOLERANCE_PX:
                raise KittiFormatError(path, number, name, f"{value:g} lies outside the {width}x{height} "
                                                           "image of this frame (a label for another image size?)")
        if P2 is not None and obj.type != "DontCare":
            _check_projection(obj, P2, size, path, number)
        types.append(obj.type)
    return types


NEAR_PLANE = 0.1  # metres: a box with no corner farther ahead than this is behind the camera
# "Projects near its own 2-D box": the 3-D box projected through P2 (its part ahead of the near
# plane) must overlap the 2-D box grown by this fraction of its width and height on each side
# (plus BOX_TOLERANCE_PX). Occlusion and truncation make the two differ (on the 82 real KITTI
# frames of shared/ the IoU goes down to 0.46), but a label whose projection misses its box by
# more is of another frame, another calib, or another unit.
PROJECTION_MARGIN = 0.5


def _check_projection(obj, P2: np.ndarray, size, path: Path, number: int) -> None:
    from monokd.geometry.boxes import corners_3d, project_boxes

    corners = corners_3d(obj.dims[None], obj.location[None], np.array([obj.rotation_y]))[0]
    if corners[:, 2].max() <= NEAR_PLANE:
        raise KittiFormatError(path, number, "z", f"the object lies behind the camera (z = {obj.location[2]:g} m, "
                                                  f"no corner of its 3-D box ahead of {NEAR_PLANE:g} m), yet it "
                                                  "has a 2-D box in the image")
    # unclipped: a box projecting wholly outside the image must not touch it by being clipped to its border
    px1, py1, px2, py2 = project_boxes(obj.dims[None], obj.location[None], np.array([obj.rotation_y]), P2)[0]
    x1, y1, x2, y2 = obj.box2d
    grow_x = PROJECTION_MARGIN * (x2 - x1) + BOX_TOLERANCE_PX
    grow_y = PROJECTION_MARGIN * (y2 - y1) + BOX_TOLERANCE_PX
    if min(px2, x2 + grow_x) < max(px1, x1 - grow_x) or min(py2, y2 + grow_y) < max(py1, y1 - grow_y):
        raise KittiFormatError(path, number, "location", f"the 3-D box projects through the calib's P2 to "
                                                         f"[{px1:.0f}, {py1:.0f}, {px2:.0f}, {py2:.0f}], nowhere "
                                                         f"near its 2-D box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]: "
                                                         "label and calib disagree")


def check_principal_point(P2: np.ndarray, path: str | Path, size: tuple[int, int]) -> None:
    """P2's principal point must lie inside the frame's W x H image (else the calib is of
    another camera or image size)."""
    width, height = size
    cx, cy = float(P2[0, 2]), float(P2[1, 2])
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise KittiFormatError(path, None, "P2", f"principal point ({cx:g}, {cy:g}) lies outside the "
                                                 f"{width}x{height} image of this frame")


def check_depth_size(depth: np.ndarray, path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A depth map must have its frame's W x H (else it belongs to another image); returns it."""
    if tuple(depth.shape[:2]) != (size[1], size[0]):
        raise KittiFormatError(path, None, "size", f"{depth.shape[1]}x{depth.shape[0]} depth map for a "
                                                   f"{size[0]}x{size[1]} image")
    return depth


def check_depth_header(path: Path, size: tuple[int, int]) -> None:
    """A depth PNG's header: one channel of 16 bits (KITTI's metres x 256) and its frame's
    W x H; the pixels (none may be NaN or negative, not all 0) are checked where they are read
    (monokd.data.kitti.read_depth)."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() != ".png":
        return
    try:
        with Image.open(path) as image:
            mode, width, height = image.mode, *image.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise KittiFormatError(path, None, None, f"not a readable image ({err})") from None
    if mode in ("L", "P", "1"):
        raise KittiFormatError(path, None, "dtype", "an 8-bit image: KITTI depth PNGs are 16-bit (metres * 256)")
    if mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise KittiFormatError(path, None, "channels", f"expected one channel, found {len(mode)} ({mode})")
    check_depth_size(np.empty((height, width), dtype=np.uint8), path, size)


def check_sweep_projects(depth: np.ndarray, points: int, velodyne: str | Path, calib: str | Path) -> np.ndarray:
    """A sweep's projected (H, W) depth must hold a point: an empty sweep, or one whose
    every point lies behind the camera or outside the image (a sweep and a calib of
    different frames or sensors), has no depth to give. Returns ``depth``."""
    if not (depth > 0).any():
        height, width = depth.shape[:2]
        if points == 0:
            raise KittiFormatError(velodyne, None, "points", "an empty sweep (0 points): no depth to read from it")
        raise KittiFormatError(velodyne, None, "points", f"none of its {points} points projects into the "
                                                         f"{width}x{height} image through {calib} (all behind "
                                                         "the camera, or the calib of another frame)")
    return depth


def _frame_calib(paths: KittiPaths, frame: str, data_cfg: dict, where, size) -> Calibration | None:
    path = paths.file("calib", frame)
    if not path.is_file() and data_cfg.get("default_P2") is not None:
        return None
    calib = read_calib(_present(paths, "calib", frame, where))
    check_principal_point(calib.P2, path, size)
    return calib


def _present(paths: KittiPaths, kind: str, frame: str, where) -> Path:
    path = paths.file(kind, frame)
    if not path.is_file():
        raise KittiFormatError(*where, "id", f"frame {frame} has no {kind} file ({path} not found)")
    return path


def _split_lines(split_file: str | Path) -> dict[str, int]:
    """{frame id: line number} of a split file (already validated by read_split)."""
    lines = {}
    for number, text in enumerate(read_lines(split_file), start=1):
        if text.strip():
            lines.setdefault(text.strip().zfill(6), number)
    return lines

