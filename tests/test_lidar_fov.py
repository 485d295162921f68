"""The camera field-of-view crop of LiDAR sweeps (OpenPCDet's FOV_POINTS_ONLY) on real KITTI frames."""

from __future__ import annotations

import numpy as np
import pytest

from monokd.data.dataset import KittiDataset
from monokd.data.kitti import read_calib, read_image, read_velodyne
from monokd.geometry.calib import in_camera_view, lidar_to_rect

FRAMES = ["000000", "000003", "000004"]


def _pixels(points_lidar: np.ndarray, calib) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and depth by the textbook formula P2 @ R0 @ Tr @ [x; 1], independent of project()."""
    tr = np.vstack([calib.Tr_velo_to_cam, [0, 0, 0, 1]])
    r0 = np.eye(4)
    r0[:3, :3] = calib.R0_rect
    hom = np.c_[points_lidar[:, :3].astype(np.float64), np.ones(len(points_lidar))]
    cam = hom @ (r0 @ tr).T
    uvw = cam @ calib.P2.T
    return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


@pytest.mark.parametrize("frame", FRAMES)
def test_fov_crop_on_a_real_sweep(kitti_samples, frame):
    root = kitti_samples / "training"
    sweep = read_velodyne(root / "velodyne" / f"{frame}.bin")
    calib = read_calib(root / "calib" / f"{frame}.txt")
    height, width = read_image(root / "image_2" / f"{frame}.png").shape[:2]
    keep = in_camera_view(lidar_to_rect(sweep[:, :3], calib), calib.P2, (width, height))
    uv, depth = _pixels(sweep, calib)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height) & (depth >= 0)
    # every kept point projects inside the image, every dropped one outside (or behind the camera)
    assert inside[keep].all() and not inside[~keep].any()
    assert 0.1 * len(sweep) < keep.sum() < 0.6 * len(sweep)  # a real sweep: most of it lies outside the image


def test_dataset_keeps_only_the_field_of_view(kitti_samples):
    cfg = {"input_size": [640, 192], "load_points": True, "augment": {"enabled": False}}
    full = KittiDataset(kitti_samples, None, {"data": {**cfg, "part": "training"}})
    cropped = KittiDataset(kitti_samples, None, {"data": {**cfg, "part": "training", "fov_points_only": True}})
    index = full.ids.index(FRAMES[0])
    all_points, fov_points = full[index]["points"].numpy(), cropped[index]["points"].numpy()
    root = kitti_samples / "training"
    calib = read_calib(root / "calib" / f"{FRAMES[0]}.txt")
    height, width = read_image(root / "image_2" / f"{FRAMES[0]}.png").shape[:2]
    keep = in_camera_view(all_points[:, :3], calib.P2, (width, height))
    np.testing.assert_array_equal(fov_points, all_points[keep])
    assert 0 < len(fov_points) < len(all_points)
