"""The GT-sampling database (build from real KITTI sweeps and labels, sample, paste without
overlap) and the world rotation / scaling of a LiDAR scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monokd.data.gt_database import INDEX, build_database, database_dir, frame_objects, load_database, paste, sample
from monokd.data.kitti import read_calib, read_label, read_velodyne
from monokd.data.lidar_augment import rotate_scene, scale_scene
from monokd.geometry.boxes import points_in_boxes, points_in_lidar_boxes
from monokd.geometry.calib import lidar_to_rect
from monokd.geometry.iou import iou_bev_lidar


@pytest.fixture(scope="module")
def kitti_root(kitti_samples, tmp_path_factory):
    """A KITTI root over the real sample frames with a sweep (linked, never copied) and a train split."""
    root = tmp_path_factory.mktemp("kitti")
    (root / "training").symlink_to(kitti_samples / "training")
    frames = sorted(p.stem for p in (kitti_samples / "training" / "velodyne").glob("*.bin"))
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("\n".join(frames) + "\n")
    return root


def test_database_holds_each_objects_points_at_its_centre(kitti_root):
    counts = build_database(kitti_root, "train")
    folder = database_dir(kitti_root, "train")
    records = json.loads((folder / INDEX).read_text())["objects"]
    assert counts == {c: sum(r["class"] == c for r in records) for c in counts} and sum(counts.values()) > 3
    for record in records:
        root = kitti_root / "training"
        sweep = read_velodyne(root / "velodyne" / f"{record['frame']}.bin")
        calib = read_calib(root / "calib" / f"{record['frame']}.txt")
        obj = [o for o in read_label(root / "label_2" / f"{record['frame']}.txt")
               if o.type in ("Car", "Pedestrian", "Cyclist")][int(record["path"].split("_")[-1][:-4])]
        # the same object's points counted in the camera frame, by the label's own box
        rect = lidar_to_rect(sweep[:, :3], calib)
        inside = points_in_boxes(rect, obj.dims[None], np.asarray(obj.location, dtype=np.float64)[None],
                                 np.array([obj.rotation_y]))[:, 0]
        # the rect frame's y axis is tilted from the LiDAR's z by a fraction of a degree, so a few
        # ground points at the floor face may fall either way (OpenPCDet counts in the LiDAR frame)
        assert abs(int(inside.sum()) - record["num_points"]) <= max(2, 0.02 * record["num_points"])
        local = read_velodyne(folder / record["path"])
        assert len(local) == record["num_points"]
        if len(local):
            box = np.array(record["box_lidar"])
            assert points_in_lidar_boxes(local[:, :3], np.r_[0, 0, 0, box[3:]][None]).all()
    usable = load_database(folder, min_points=5)
    assert all(r["difficulty"] >= 0 and r["num_points"] >= 5 for r in usable) and len(usable) < len(records)


def test_pasting_never_overlaps_and_moves_the_points(kitti_root):
    build_database(kitti_root, "train")
    records = load_database(database_dir(kitti_root, "train"), min_points=1)
    points, boxes, objects = frame_objects(kitti_root, "000003", ("Car", "Pedestrian", "Cyclist"))
    names = [o.type for o in objects]
    # a record sitting on the frame's own object overlaps it and must never be pasted
    assert any(r["frame"] == "000003" for r in records)
    for seed in range(5):
        groups = {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
        chosen = sample(records, boxes, names, groups, np.random.default_rng(seed))
        assert all(r["frame"] != "000003" for r in chosen)
        new_points, new_boxes, new_names = paste(points, boxes, names, chosen)
        assert len(new_boxes) == len(boxes) + len(chosen) == len(new_names)
        iou = iou_bev_lidar(new_boxes, new_boxes)
        np.fill_diagonal(iou, 0.0)
        assert iou.max() == 0.0  # no two boxes of the scene overlap
        inside = points_in_lidar_boxes(new_points[:, :3], new_boxes[len(boxes):])
        for k, record in enumerate(chosen):  # each pasted box holds exactly its object's points
            assert inside[:, k].sum() >= record["num_points"]


def test_sampling_counts_the_scene_towards_the_group():
    records = [{"class": "Car", "box_lidar": [10.0 * i, 50.0, 0, 4, 2, 1.5, 0], "num_points": 9, "path": ""}
               for i in range(6)]
    existing = np.array([[0.0, 0.0, 0, 4, 2, 1.5, 0]] * 1)
    chosen = sample(records, existing, ["Car"], {"Car": 4}, np.random.default_rng(0))
    assert len(chosen) == 3  # 4 wanted minus the scene's one Car; these records overlap nothing


def test_world_rotation_and_scaling_keep_points_in_their_boxes():
    rng = np.random.default_rng(0)
    box = np.array([[10.0, 2.0, -1.0, 4.0, 1.6, 1.5, 0.3]])
    local = rng.uniform(-0.5, 0.5, (50, 3)) * box[0, 3:6]
    c, s = np.cos(0.3), np.sin(0.3)
    points = np.c_[local @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + box[0, :3], rng.uniform(size=50)]
    points = np.r_[points, [[30.0, -5.0, 0.0, 0.2]]]
    for angle, scale in ((0.7, 1.0), (-0.5, 1.05), (0.0, 0.95)):
        p, b = scale_scene(*rotate_scene(points, box, angle), scale)
        inside = points_in_lidar_boxes(p[:, :3], b)[:, 0]
        assert inside[:50].all() and not inside[50]
        assert b[0, 6] == pytest.approx(0.3 + angle)
        assert np.hypot(*b[0, :2]) == pytest.approx(scale * np.hypot(10, 2))
        np.testing.assert_allclose(p[:, 3], points[:, 3])
    rotated, _ = rotate_scene(points, box, np.pi / 2)
    np.testing.assert_allclose(rotated[-1, :3], [5.0, 30.0, 0.0], atol=1e-9)  # +x turns towards +y
