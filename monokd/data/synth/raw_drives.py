"""SynthKITTI drives in the KITTI raw layout, with the object devkit's mapping files.

    OUT/raw/<DATE>/calib_{cam_to_cam,velo_to_cam,imu_to_velo}.txt   the object frames' calib
    OUT/raw/<DATE>/<DATE>_drive_<nnnn>_sync/image_02/data/<frame>.png
                                            .../velodyne_points/data/<frame>.bin
                                            .../depth_02/data/<frame>.png   (exact z-buffer depth)
    OUT/raw/ImageSets/all.txt               every raw frame
    OUT/raw/ImageSets/unlabeled.txt         the fresh frames of the drives without a val frame
    OUT/mapping/train_mapping.txt, train_rand.txt   object frame -> raw frame (devkit format)

As in KITTI, every object frame (train and val) is a frame of some drive: its files are
copied into the drive, and the mapping says where. The val frames lie in the first
``val_drives`` drives (the leakage guard's test case: those drives hold val frames and
their neighbours), the train frames are dealt round-robin over all drives. Each drive also
holds ``fresh`` frames rendered from the seed sequence (seed, drive, frame) with a spawn key
of their own, so they are never an object frame's render; the object frames sit evenly
among them. SynthKITTI frames are independent scenes: a drive is not a video (neighbours
are not near-copies as in KITTI), which the guard does not need.
"""

from __future__ import annotations

import multiprocessing
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monokd.data.kitti import KittiPaths, write_depth, write_image, write_velodyne
from monokd.data.leakage import write_mapping
from monokd.data.raw import RawFrame, RawPaths, write_raw_calib, write_raw_split
from monokd.data.synth.camera import make_calibration
from monokd.data.synth.render import render_frame

DATE = "2030_01_01"  # no KITTI recording day, so synthetic drives never pass for real ones
RAW_STREAM = 0x52415744  # spawn key of fresh raw frames ("RAWD"): another stream than the object frames'
RAW_DIR = "raw"
MAPPING_DIR = "mapping"


@dataclass
class DrivePlan:
    """The raw frames of every drive: ``slots[d][k]`` is the object id placed at frame k of
    drive d, or None for a fresh render; ``val_drives`` the drives holding val frames."""

    slots: list[list[str | None]]
    val_drives: int

    def drive(self, d: int) -> str:
        return f"{DATE}_drive_{d + 1:04d}_sync"

    def frames(self) -> list[tuple[int, RawFrame, str | None]]:
        """(drive index, raw frame, object id or None) of every raw frame, in order."""
        return [(d, RawFrame(self.drive(d), f"{k:010d}"), slot) for d, slots in enumerate(self.slots)
                for k, slot in enumerate(slots)]


def plan_drives(train_ids: list[str], val_ids: list[str], drives: int, fresh: int, val_drives: int) -> DrivePlan:
    """Deal the val frames over drives 0 .. val_drives-1 and the train frames over all
    drives (both round-robin), then place each drive's object frames evenly among its
    ``fresh`` frames."""
    if drives < 1 or fresh < 0 or not 0 <= val_drives <= drives or (val_ids and val_drives == 0):
        raise ValueError(f"raw drives: need drives >= 1, fresh >= 0 and 1 <= val_drives <= drives "
                         f"(got {drives}, {fresh}, {val_drives})")
    placed: list[list[str]] = [[] for _ in range(drives)]
    for j, frame in enumerate(val_ids):
        placed[j % val_drives].append(frame)
    for j, frame in enumerate(train_ids):
        placed[j % drives].append(frame)
    slots = []
    for objects in placed:
        total = fresh + len(objects)
        row: list[str | None] = [None] * total
        for j, frame in enumerate(sorted(objects)):
            row[int((j + 0.5) * total / len(objects))] = frame
        slots.append(row)
    return DrivePlan(slots, val_drives)


def fresh_seed(seed: int, drive: int, frame: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(drive), int(frame)], spawn_key=(RAW_STREAM,))


def _write_fresh(args) -> None:
    raw_root, frame, drive_index, frame_index, seed, width, height = args
    rendered = render_frame(np.random.default_rng(fresh_seed(seed, drive_index, frame_index)), width, height)
    paths = RawPaths(Path(raw_root))
    write_image(paths.file("image_2", frame), rendered.image)
    write_velodyne(paths.file("velodyne", frame), rendered.points)
    write_depth(paths.file("depth_2", frame), rendered.depth)


def _copy_object(root: Path, raw: RawPaths, frame: RawFrame, object_id: str) -> None:
    for kind in ("image_2", "velodyne", "depth_2"):
        target = raw.file(kind, frame)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KittiPaths(root).file(kind, object_id), target)


def write_raw_drives(root: str | Path, train_ids: list[str], val_ids: list[str], seed: int, width: int,
                     height: int, drives: int, fresh: int, val_drives: int = 1, workers: int = 1) -> DrivePlan:
    """Write the raw drives of a SynthKITTI whose object frames are already under ``root``
    (see the module docstring); returns the plan."""
    root = Path(root)
    plan = plan_drives(train_ids, val_ids, drives, fresh, val_drives)
    raw = RawPaths(root / RAW_DIR)
    write_raw_calib(raw.date_dir(DATE), make_calibration(width, height), (width, height))
    jobs = []
    for d, frame, object_id in plan.frames():
        if object_id is not None:
            _copy_object(root, raw, frame, object_id)
        else:
            jobs.append((raw.root, frame, d, int(frame.frame), seed, width, height))
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            list(pool.imap_unordered(_write_fresh, jobs, chunksize=1))
    else:
        for job in jobs:
            _write_fresh(job)
    frames = plan.frames()
    write_raw_split(raw.split("all"), [f for _, f, _ in frames])
    write_raw_split(raw.split("unlabeled"), [f for d, f, slot in frames if slot is None and d >= plan.val_drives])
    where = {slot: f for _, f, slot in frames if slot is not None}
    object_ids = sorted(where)
    rand = (np.random.default_rng([int(seed), RAW_STREAM]).permutation(len(object_ids)) + 1).tolist()
    write_mapping(root / MAPPING_DIR, [where[i] for i in object_ids], rand)
    return plan
