"""The ground-truth sampling database of a LiDAR detector's training (OpenPCDet's
``create_groundtruth_database`` and ``DataBaseSampler``; SECOND, Yan et al. 2018, Sec. 3.3),
which the released MonoTAKD teacher trains with.

Build (``monokd gt-database``): for every frame of the training split and every labelled object
of the classes, the sweep's points inside its 7-D LiDAR box (monokd.geometry.boxes), moved to
the box's centre, are written as ``<frame>_<class>_<k>.bin`` (velodyne format) under
``<root>/gt_database/<split>/``, with ``index.json``: one record per object (frame, class,
path, box_lidar, num_points, difficulty, truncated, occluded). The folder is written whole or not at all.

Sample and paste, per frame: for each class with a group size G, G minus the frame's objects
of that class are drawn at random among the records (difficulty known, >= ``min_points``
points); a draw is dropped when its BEV footprint meets any box already in the scene or another
draw (rotated BEV IoU > 0, monokd.geometry.iou), and the kept draws join the scene before the
next class (OpenPCDet's LIMIT_WHOLE_SCENE). The scene's points inside a pasted box are removed,
then the objects' points are added at their boxes. The released recipe: Car 20, Pedestrian 15,
Cyclist 15, at least 5 points.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from monokd.data.kitti import (KittiFormatError, KittiPaths, difficulty, read_calib, read_label, read_split,
                               read_velodyne, write_velodyne)
from monokd.geometry.boxes import points_in_lidar_boxes, rect_to_lidar_boxes
from monokd.geometry.calib import velo_to_rect_matrix
from monokd.geometry.iou import iou_bev_lidar

INDEX = "index.json"
RELEASED_GROUPS = {"Car": 20, "Pedestrian": 15, "Cyclist": 15}


def database_dir(root: str | Path, split: str) -> Path:
    return Path(root) / "gt_database" / split


def frame_objects(root: str | Path, frame: str, classes) -> tuple[np.ndarray, np.ndarray, list]:
    """The sweep (M, 4) and the frame's labelled objects of ``classes`` as LiDAR boxes (N, 7)
    with their label_2 objects."""
    paths = KittiPaths(root, "training")
    points = read_velodyne(paths.file("velodyne", frame))
    calib = read_calib(paths.file("calib", frame))
    objects = [o for o in read_label(paths.file("label_2", frame)) if o.type in classes]
    if not objects:
        return points, np.zeros((0, 7)), []
    dims = np.stack([o.dims for o in objects])
    location = np.stack([np.asarray(o.location, dtype=np.float64) for o in objects])
    rotation_y = np.array([o.rotation_y for o in objects], dtype=np.float64)
    return points, rect_to_lidar_boxes(dims, location, rotation_y, velo_to_rect_matrix(calib)), objects


def build_database(root: str | Path, split: str, classes=tuple(RELEASED_GROUPS)) -> dict:
    """Write ``<root>/gt_database/<split>/`` (module docstring); returns {class: objects}."""
    frames = read_split(Path(root) / "ImageSets" / f"{split}.txt")
    target = database_dir(root, split)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{split}.", dir=target.parent))
    try:
        records = []
        for frame in frames:
            points, boxes, objects = frame_objects(root, frame, classes)
            inside = points_in_lidar_boxes(points[:, :3], boxes)
            levels = difficulty([o.height_2d for o in objects], [o.occluded for o in objects],
                                [o.truncated for o in objects]) if objects else []
            for k, (obj, box) in enumerate(zip(objects, boxes)):
                local = points[inside[:, k]].copy()
                local[:, :3] -= box[:3]
                name = f"{frame}_{obj.type}_{k}.bin"
                write_velodyne(staging / name, local)
                records.append({"frame": frame, "class": obj.type, "path": name, "box_lidar": box.tolist(),
                                "num_points": int(len(local)), "difficulty": int(levels[k]),
                                "truncated": float(obj.truncated), "occluded": int(obj.occluded)})
        (staging / INDEX).write_text(json.dumps({"split": split, "objects": records}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts: dict[str, int] = {}
    for record in records:
        counts[record["class"]] = counts.get(record["class"], 0) + 1
    return counts


def load_database(folder: str | Path, min_points: int = 5) -> list[dict]:
    """The usable records of a built database: difficulty known, >= ``min_points`` points."""
    index = Path(folder) / INDEX
    if not index.is_file():
        raise KittiFormatError(index, None, None, "GT database index not found (run `monokd gt-database`)")
    records = json.loads(index.read_text())["objects"]
    return [dict(r, path=str(Path(folder) / r["path"])) for r in records
            if r["difficulty"] >= 0 and r["num_points"] >= min_points]


def sample(records: list[dict], boxes: np.ndarray, names, groups: dict, rng: np.random.Generator) -> list[dict]:
    """Records to paste into a scene with LiDAR boxes (N, 7) of classes ``names`` (module docstring)."""
    scene = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    names = list(names)
    chosen: list[dict] = []
    for cls, group in groups.items():
        pool = [r for r in records if r["class"] == cls]
        wanted = min(int(group) - names.count(cls), len(pool))
        if wanted <= 0:
            continue
        draws = [pool[i] for i in rng.choice(len(pool), size=wanted, replace=False)]
        drawn = np.array([d["box_lidar"] for d in draws], dtype=np.float64)
        among = iou_bev_lidar(drawn, drawn)
        np.fill_diagonal(among, 0.0)
        with_scene = iou_bev_lidar(drawn, scene) if len(scene) else np.zeros((len(draws), 1))
        keep = (among.max(1) + with_scene.max(1)) == 0
        chosen += [d for d, k in zip(draws, keep) if k]
        scene = np.concatenate([scene, drawn[keep]])
    return chosen


def paste(points: np.ndarray, boxes: np.ndarray, names, chosen: list[dict]) -> tuple[np.ndarray, np.ndarray, list]:
    """The scene with ``chosen`` pasted: (points, boxes (N + K, 7), names)."""
    if not chosen:
        return points, np.asarray(boxes, dtype=np.float64).reshape(-1, 7), list(names)
    pasted = np.array([c["box_lidar"] for c in chosen], dtype=np.float64)
    objects = []
    for record, box in zip(chosen, pasted):
        local = read_velodyne(record["path"]).copy()
        local[:, :3] += box[:3]
        objects.append(local)
    kept = points[~points_in_lidar_boxes(points[:, :3], pasted).any(1)]
    return (np.concatenate([kept, *objects]).astype(np.float32),
            np.concatenate([np.asarray(boxes, dtype=np.float64).reshape(-1, 7), pasted]),
            list(names) + [c["class"] for c in chosen])
