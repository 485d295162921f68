"""``monokd depth-maps --root data/kitti [--split trainval] [--raw] [--overwrite]``: pixel-wise depth
for a real KITTI from its LiDAR sweeps, written as ``training/depth_2/<id>.png`` (uint16,
metres x 256, 0 = no depth), the input of CaDDN's depth loss and of its GT-depth teacher.

    velodyne/<id>.bin (M, 4) --calib--> rectified camera --P2--> sparse (H, W) depth
        (a pixel hit by several returns keeps the nearest: monokd.geometry.depth.lidar_depth_map)
    -> completion (below) -> every pixel that had a return reset to that return's depth
    -> depth_2/<id>.png

Completion: a morphological fill in the manner of IP-Basic (Ku et al., "In Defense of Classical
Image Processing: Fast Depth Completion on the CPU", CRV 2018), CaDDN's choice and the field's
usual one: it needs no training, no GPU and no data beyond the sweep, so the maps can be made
on any machine and are the same everywhere. Depth is inverted (``INVERT - d``) so that grey
dilation lets the NEAREST depth spread (a far background never grows over a near object's
edge), then: dilation with a 5x5 diamond, a 5x5 closing, a 7x7 dilation into the pixels still
empty, a 31x31 dilation into the remaining holes, and a 5x5 median on the filled pixels. Pixels
above the top LiDAR beam (per column) stay 0: there is no measurement to extend into the sky.
Finally every pixel with a return is given back its measured depth, so completion only ever
writes pixels that had none (a return is exact to the PNG's 1/256 m).

SynthKITTI's depth_2 is different: dense and exact, written by the renderer's z-buffer
(``monokd synth``); this command is for real KITTI only.

``--raw``: the root is a KITTI raw root (monokd.data.raw) and ``--split`` a raw split name
(``<root>/ImageSets/<split>.txt``); each frame's map goes to
``<date>/<drive>/depth_02/data/<frame>.png`` beside its image_02 (the unlabeled dataset's
``depth_2`` for ``data.depth_maps``), computed as above with the date's calibration.

Resumable: a frame whose PNG exists is skipped unless ``--overwrite``; each PNG is written to a
temporary name and renamed, so an interrupted run never leaves a half-written map.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from monokd.data.kitti import Calibration, KittiPaths, read_calib, read_image, read_split, read_velodyne, write_depth
from monokd.data.raw import RawPaths, list_raw_frames, read_raw_calib, read_raw_split
from monokd.geometry.depth import lidar_depth_map

INVERT = 100.0  # metres; inverted depth = INVERT - d (returns beyond it keep their value, unfilled)
_DIAMOND5 = np.array([[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], np.uint8)


def complete_depth(sparse: np.ndarray) -> np.ndarray:
    """(H, W) float32 sparse depth (0 = none) -> completed depth (see the module docstring).

    Pixels with a return keep exactly their value; pixels above the top beam stay 0.
    """
    import cv2

    sparse = np.asarray(sparse, dtype=np.float32)
    valid = sparse > 0.1
    inverted = np.where(valid & (sparse < INVERT), INVERT - sparse, 0).astype(np.float32)
    filled = cv2.dilate(inverted, _DIAMOND5)
    filled = cv2.morphologyEx(filled, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    for size in (7, 31):
        empty = filled < 0.1
        grown = cv2.dilate(filled, np.ones((size, size), np.uint8))
        filled[empty] = grown[empty]
    smooth = cv2.medianBlur(filled, 5)
    keep = filled > 0.1
    filled[keep] = np.where(smooth[keep] > 0.1, smooth[keep], filled[keep])
    depth = np.where(filled > 0.1, INVERT - filled, 0).astype(np.float32)
    depth[~below_top_beam(valid)] = 0
    depth[valid] = sparse[valid]
    return depth


def below_top_beam(valid: np.ndarray, width: int = 15) -> np.ndarray:
    """(H, W) bool: rows at or below the highest return of each column (searched over a
    ``width``-column window, since returns are sparse across columns)."""
    height, cols = valid.shape
    rows = np.where(valid, np.arange(height)[:, None], height)
    top = rows.min(axis=0)
    half = width // 2
    padded = np.pad(top, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    top = windows.min(axis=1)
    return np.arange(height)[:, None] >= top[None, :cols]


def frame_depth(root: Path, frame: str, part: str = "training") -> np.ndarray:
    """Completed (H, W) depth of one frame from its velodyne sweep and calib."""
    paths = KittiPaths(root, part)
    return sweep_depth(paths.file("image_2", frame), paths.file("velodyne", frame),
                       read_calib(paths.file("calib", frame)))


def sweep_depth(image: Path, sweep: Path, calib: Calibration) -> np.ndarray:
    """Completed (H, W) depth of the image ``image`` from the sweep ``sweep`` (H, W: the image's)."""
    height, width = read_image(image).shape[:2]
    return complete_depth(lidar_depth_map(read_velodyne(sweep), calib, (width, height)))


def frames_to_do(root: Path, split: str | None, part: str = "training") -> list[str]:
    """The frames of ``split`` (None: every sweep in ``<part>/velodyne``) that have a sweep."""
    paths = KittiPaths(root, part)
    if split is None:
        return sorted(p.stem for p in (root / part / "velodyne").glob("*.bin"))
    return [f for f in read_split(paths.split(split)) if paths.file("velodyne", f).is_file()]


def write_depth_maps(root: str | Path, split: str | None = None, overwrite: bool = False,
                     part: str = "training", log=print) -> dict:
    """Write ``<part>/depth_2/<id>.png`` for every frame to do; returns counts."""
    root = Path(root)
    paths = KittiPaths(root, part)
    jobs = [(paths.file("depth_2", frame), lambda frame=frame: frame_depth(root, frame, part))
            for frame in frames_to_do(root, split, part)]
    return _write_all(jobs, overwrite, log)


def write_raw_depth_maps(root: str | Path, split: str | None = None, overwrite: bool = False, log=print) -> dict:
    """The same for KITTI raw frames (monokd.data.raw): ``<date>/<drive>/depth_02/data/<frame>.png``
    for every frame of the raw split ``<root>/ImageSets/<split>.txt`` (None: every frame under
    ``root``) that has a sweep; each date's calibration is read once."""
    paths = RawPaths(Path(root))
    frames = read_raw_split(paths.split(split), root) if split else list_raw_frames(root)
    calibs: dict[str, Calibration] = {}

    def depth(frame):
        if frame.date not in calibs:
            calibs[frame.date] = read_raw_calib(paths.date_dir(frame.date))
        return sweep_depth(paths.file("image_2", frame), paths.file("velodyne", frame), calibs[frame.date])

    jobs = [(paths.file("depth_2", f), lambda f=f: depth(f)) for f in frames if paths.file("velodyne", f).is_file()]
    return _write_all(jobs, overwrite, log)


def _write_all(jobs: list, overwrite: bool, log) -> dict:
    """Write each ``(out path, depth())`` job: skipped when the file exists (unless
    ``overwrite``), else written to a temporary name and renamed. Returns counts."""
    done = skipped = 0
    start = time.monotonic()
    for index, (out, compute) in enumerate(jobs, start=1):
        if out.is_file() and not overwrite:
            skipped += 1
        else:
            tmp = out.with_name(f".{out.stem}.tmp.png")
            write_depth(tmp, compute())
            os.replace(tmp, out)
            done += 1
        if index == len(jobs) or index % 50 == 0:
            rate = done / max(time.monotonic() - start, 1e-9)
            log(f"depth-maps: {index}/{len(jobs)} frames ({done} written, {skipped} already there, "
                f"{rate:.1f} frames/s)")
    return {"frames": len(jobs), "written": done, "skipped": skipped}
