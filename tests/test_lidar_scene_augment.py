"""The LiDAR scene augmentation applied by the dataset (GT sampling, world flip, rotation and
scaling, OpenPCDet's order) on real KITTI frames: pasted objects overlap nothing, boxes keep
their points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monokd.data.dataset import KittiDataset, collate
from monokd.data.gt_database import build_database, database_dir, load_database
from monokd.errors import ConfigError, KittiFormatError
from monokd.geometry.boxes import points_in_lidar_boxes
from monokd.geometry.iou import iou_bev_lidar
from monokd.models.bev.detections import gt_boxes_lidar
from monokd.models.lidar.pillars import points_to_lidar

CLASSES = ["Car", "Pedestrian", "Cyclist"]
# the LiDAR KITTI recipe's target rule: every labelled object of the classes
NO_FILTER = {"min_depth": 0.0, "max_depth": 1000.0, "max_truncation": 1.0, "max_occlusion": 3,
             "center_in_image": False, "center_in_box": False}


@pytest.fixture(scope="module")
def kitti_root(kitti_samples, tmp_path_factory):
    """The real frames with a sweep (linked, never copied), a train split and its GT database."""
    root = tmp_path_factory.mktemp("kitti")
    (root / "training").symlink_to(kitti_samples / "training")
    frames = sorted(p.stem for p in (kitti_samples / "training" / "velodyne").glob("*.bin"))
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("\n".join(frames) + "\n")
    build_database(root, "train")
    return root


def _data(**augment) -> dict:
    return {"data": {"classes": CLASSES, "input_size": [640, 192], "load_points": True, "fov_points_only": True,
                     "filter": NO_FILTER, "seed": 3,
                     "augment": {"enabled": True, "photometric": False, "flip_prob": 0.0, "scale_prob": 0.0,
                                 "shift": 0.0, **augment}}}


def _scene(item: dict) -> tuple[np.ndarray, np.ndarray]:
    """(LiDAR points (M, 4), LiDAR boxes (N, 7)) of an item, as the LiDAR teacher reads them."""
    batch = collate([item])
    boxes, _ = gt_boxes_lidar(batch)
    points = points_to_lidar(batch["points"][0].double(), batch["lidar_to_rect"][0].double())
    return points.numpy(), boxes[0].double().numpy()


def test_gt_sampling_through_the_dataset_pastes_without_overlap(kitti_root):
    records = {tuple(np.round(r["box_lidar"][:3], 3)): r for r in load_database(database_dir(kitti_root, "train"))}
    plain = KittiDataset(kitti_root, "train", _data(), augment=False)
    sampled = KittiDataset(kitti_root, "train", _data(gt_sampling={"Car": 20, "Pedestrian": 15, "Cyclist": 15}))
    pasted_total = 0
    for index in range(len(plain)):
        points0, boxes0 = _scene(plain[index])
        points, boxes = _scene(sampled[index])
        pasted = boxes[len(boxes0):]
        # the frame's own objects stay (the heading to 1e-3 rad: rect y is tilted from LiDAR z)
        np.testing.assert_allclose(boxes[:len(boxes0)], boxes0, atol=1e-3)
        iou = iou_bev_lidar(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        assert iou.max() == 0.0  # no two objects of the scene overlap in BEV
        inside = points_in_lidar_boxes(points[:, :3], pasted)
        for k, box in enumerate(pasted):  # each pasted box holds exactly its database object's points
            record = records[tuple(np.round(box[:3], 3))]
            assert record["frame"] != sampled.ids[index] and record["num_points"] >= 5
            assert inside[:, k].sum() == record["num_points"]
        untouched = ~points_in_lidar_boxes(points0[:, :3], pasted).any(1)  # the scene outside the pasted boxes
        assert len(points) == untouched.sum() + sum(records[tuple(np.round(b[:3], 3))]["num_points"] for b in pasted)
        pasted_total += len(pasted)
    assert pasted_total > 0


def test_world_rotation_and_scaling_move_boxes_and_points_together(kitti_root):
    plain = KittiDataset(kitti_root, "train", _data(), augment=False)
    moved = KittiDataset(kitti_root, "train", _data(flip_prob=1.0, world_rotation=[-0.78539816, 0.78539816],
                                                    world_scaling=[0.95, 1.05]))
    for index in range(len(plain)):
        points0, boxes0 = _scene(plain[index])
        points, boxes = _scene(moved[index])
        assert len(points) == len(points0) and len(boxes) == len(boxes0) > 0
        # one rotation about z and one scale: every distance to the origin in BEV scales by s
        radii0, radii = np.hypot(*points0[:, :2].T), np.hypot(*points[:, :2].T)
        scale = np.median(radii / radii0)
        assert 0.95 <= scale <= 1.05 and np.allclose(radii, scale * radii0, atol=1e-4)
        np.testing.assert_allclose(boxes[:, 3:6], scale * boxes0[:, 3:6], rtol=1e-5)
        assert not np.allclose(boxes[:, :2], boxes0[:, :2], atol=1e-2)  # the scene did move
        # every box holds the same points after the motion as before it
        before = points_in_lidar_boxes(points0[:, :3], boxes0).sum(0)
        after = points_in_lidar_boxes(points[:, :3], boxes).sum(0)
        assert np.abs(after - before).max() <= 1 and before.sum() > 0  # a point on a face may go either way


def test_world_flip_mirrors_the_scene_not_only_the_camera(kitti_root):
    plain = KittiDataset(kitti_root, "train", _data(), augment=False)
    flipped = KittiDataset(kitti_root, "train", _data(world_flip=1.0))
    camera_only = KittiDataset(kitti_root, "train", _data(flip_prob=1.0))
    points0, boxes0 = _scene(plain[0])
    points, boxes = _scene(flipped[0])
    np.testing.assert_allclose(points[:, :3], points0[:, :3] * [1, -1, 1], atol=1e-4)  # y -> -y
    np.testing.assert_allclose(boxes[:, :6], boxes0[:, :6] * [1, -1, 1, 1, 1, 1], atol=1e-4)
    np.testing.assert_allclose(np.cos(boxes[:, 6]), np.cos(-boxes0[:, 6]), atol=1e-3)  # heading -> -heading
    np.testing.assert_allclose(np.sin(boxes[:, 6]), np.sin(-boxes0[:, 6]), atol=1e-3)
    same, _ = _scene(camera_only[0])  # the image flip leaves the LiDAR scene as it was
    np.testing.assert_allclose(same[:, :3], points0[:, :3], atol=1e-4)


def test_scene_draws_follow_the_seed(kitti_root):
    augment = {"gt_sampling": {"Car": 20}, "world_rotation": [-0.5, 0.5], "world_scaling": [0.9, 1.1]}
    torch.manual_seed(0)
    first = KittiDataset(kitti_root, "train", _data(**augment))[1]
    torch.manual_seed(0)
    again = KittiDataset(kitti_root, "train", _data(**augment))[1]
    torch.manual_seed(1)  # another epoch or worker
    other = KittiDataset(kitti_root, "train", _data(**augment))[1]
    assert torch.equal(first["points"], again["points"])
    assert not torch.equal(first["points"], other["points"])


def test_scene_options_are_checked(kitti_root, tmp_path):
    with pytest.raises(ConfigError, match="data.load_points"):
        KittiDataset(kitti_root, "train", {"data": {**_data(world_scaling=[0.95, 1.05])["data"], "load_points": False}})
    with pytest.raises(ConfigError, match="data.augment.gt_sampling"):
        KittiDataset(kitti_root, "train", _data(gt_sampling={"Truck": 3, "Lorry": 2}))
    with pytest.raises(ConfigError, match="data.augment.world_scaling"):
        KittiDataset(kitti_root, "train", _data(world_scaling=[1.05, 0.95]))
    with pytest.raises(ConfigError, match="data.augment.world_flip"):
        KittiDataset(kitti_root, "train", _data(world_flip=1.5))
    with pytest.raises(ConfigError, match="data.depth_maps"):
        KittiDataset(kitti_root, "train", {"data": {**_data(world_rotation=[-0.1, 0.1])["data"], "depth_maps": "lidar"}})
    (tmp_path / "training").symlink_to(kitti_root / "training")
    (tmp_path / "ImageSets").symlink_to(kitti_root / "ImageSets")
    with pytest.raises(KittiFormatError, match="monokd gt-database"):
        KittiDataset(tmp_path, "train", _data(gt_sampling={"Car": 20}))
    # evaluation frames are never augmented: no database needed
    assert KittiDataset(tmp_path, "train", _data(gt_sampling={"Car": 20}), augment=False).gt_records is None


def test_kitti_lidar_recipe_is_the_released_teachers():
    from monokd.config import load_config

    data = load_config("configs/takd_lidar_kitti.yaml")["data"]
    assert data["augment"]["gt_sampling"] == {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
    assert data["augment"]["gt_min_points"] == 5 and data["fov_points_only"] is True
    assert data["augment"]["world_flip"] == 0.5 and data["augment"]["flip_prob"] == 0.0
    assert data["augment"]["world_rotation"] == pytest.approx([-np.pi / 4, np.pi / 4])
    assert data["augment"]["world_scaling"] == [0.95, 1.05]
    synth = load_config("configs/takd_lidar_synth.yaml")["data"]
    assert all((synth.get("augment") or {}).get(k) is None
               for k in ("gt_sampling", "world_flip", "world_rotation", "world_scaling"))
