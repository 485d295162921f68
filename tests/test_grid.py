"""The BEV / voxel grid (monokd.geometry.grid) and the batch's ``lidar_to_rect``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monokd.data import kitti
from monokd.data.dataset import KittiDataset, collate
from monokd.errors import ConfigError
from monokd.geometry.calib import lidar_to_image, velo_to_rect_matrix
from monokd.geometry.grid import BEVGrid
from tests.helpers import kitti_symlink_root

CADDN = {"point_cloud_range": [2, -30.08, -3, 46.8, 30.08, 1], "voxel_size": [0.16, 0.16, 0.16]}


def test_caddn_grid_sizes():
    grid = BEVGrid.from_config(CADDN)
    assert grid.grid_size == (280, 376, 25)
    assert grid.bev_shape() == (376, 280) and grid.bev_shape(8) == (47, 35)
    grid.check_strides([1, 2, 4, 8], "model.bev_backbone")  # divides: no error
    assert BEVGrid.from_config({"point_cloud_range": CADDN["point_cloud_range"],
                                "voxel_size": [0.32, 0.32, 0.4]}).grid_size == (140, 188, 10)


def test_cells_and_metres_by_hand():
    grid = BEVGrid((0, -4, -2, 8, 4, 2), (1.0, 0.5, 2.0))  # NX 8, NY 16, NZ 2
    assert grid.grid_size == (8, 16, 2)
    centres = grid.voxel_centres()
    assert centres.shape == (2, 16, 8, 3)
    # voxel (z=1, y=3, x=5): x = 0 + 5.5 * 1, y = -4 + 3.5 * 0.5, z = -2 + 1.5 * 2
    np.testing.assert_allclose(centres[1, 3, 5].numpy(), [5.5, -2.25, 1.0])
    cells = grid.cell_centres(stride=2)
    assert cells.shape == (8, 4, 2)
    # stride 2: cells of 2 m x 1 m; cell (j=1, i=2) centred at x = 5, y = -4 + 1.5 = -2.5
    np.testing.assert_allclose(cells[1, 2].numpy(), [5.0, -2.5])
    xy = np.array([[5.0, -2.5], [0.0, -4.0], [7.9, 3.9]])
    np.testing.assert_allclose(grid.metres_to_cell(xy, stride=2), [[2.5, 1.5], [0.0, 0.0], [3.95, 7.9]])
    np.testing.assert_allclose(grid.metres_to_cell(xy), [[5.0, 3.0], [0.0, 0.0], [7.9, 15.8]])
    back = grid.cell_to_metres(grid.metres_to_cell(torch.tensor(xy), stride=4), stride=4)
    np.testing.assert_allclose(back.numpy(), xy)
    # every cell centre maps to its own index + 0.5
    ij = grid.metres_to_cell(grid.cell_centres())
    np.testing.assert_allclose(ij[..., 0].numpy(), np.tile(np.arange(8) + 0.5, (16, 1)), atol=1e-5)
    np.testing.assert_allclose(ij[..., 1].numpy(), np.tile(np.arange(16)[:, None] + 0.5, (1, 8)), atol=1e-5)


def test_range_not_divisible_names_both_numbers():
    with pytest.raises(ConfigError) as err:
        BEVGrid.from_config({"point_cloud_range": [2, -30, -3, 46.8, 30.1, 1], "voxel_size": [0.16, 0.16, 0.16]},
                            key="model.grid")
    message = str(err.value)
    assert "model.grid" in message and "60.1" in message and "0.16" in message and " y " in message
    with pytest.raises(ConfigError, match="voxel_size is missing"):
        BEVGrid.from_config({"point_cloud_range": [0, 0, 0, 1, 1, 1]})
    with pytest.raises(ConfigError, match="positive"):
        BEVGrid((0, 0, 0, 1, 1, 1), (0.5, 0.0, 0.5))


def test_stride_that_does_not_divide_names_both_numbers():
    grid = BEVGrid.from_config(CADDN)  # 280 x 376
    with pytest.raises(ConfigError) as err:
        grid.check_strides([2, 4, 8, 16], "model.bev_backbone.strides")
    message = str(err.value)
    assert "model.bev_backbone.strides" in message and "16" in message and "376" in message
    with pytest.raises(ConfigError, match="stride 3 does not divide the grid's NX = 280"):
        grid.check_strides([3], "k")


# --- the batch's lidar_to_rect -------------------------------------------------------------

VELODYNE_FRAMES = ["000000", "000001", "000002", "000003", "000004"]


@pytest.mark.parametrize("flip", [False, True])
def test_lidar_to_rect_projects_real_velodyne_points(kitti_samples, tmp_path, flip):
    root = kitti_symlink_root(kitti_samples, tmp_path, VELODYNE_FRAMES)
    for frame in VELODYNE_FRAMES:
        image = kitti.read_image(root / "training" / "image_2" / f"{frame}.png")
        height, width = image.shape[:2]
        cfg = {"data": {"input_size": [width, height],  # identity affine: input pixels = original
                        "augment": {"photometric": False, "flip_prob": float(flip), "scale_prob": 0.0}}}
        dataset = KittiDataset(root, "val", cfg, augment=True)
        batch = collate([dataset[dataset.ids.index(frame)]])
        assert batch["lidar_to_rect"].shape == (1, 4, 4) and batch["lidar_to_rect"].dtype == torch.float32
        assert bool(batch["flipped"][0]) == flip
        calib = kitti.read_calib(root / "training" / "calib" / f"{frame}.txt")
        points = kitti.read_velodyne(root / "training" / "velodyne" / f"{frame}.bin")[::50, :3].astype(np.float64)
        uv, depth = lidar_to_image(points, calib)  # the existing calib path, original image
        front = depth > 2.0
        expected = uv[front]
        if flip:
            expected[:, 0] = width - 1 - expected[:, 0]  # the mirrored image
        matrix = batch["P2"][0].double() @ batch["lidar_to_rect"][0].double()
        homogeneous = torch.from_numpy(np.concatenate([points[front], np.ones((front.sum(), 1))], 1))
        uvw = homogeneous @ matrix.T
        got = (uvw[:, :2] / uvw[:, 2:]).numpy()
        assert front.sum() > 500
        np.testing.assert_allclose(got, expected, atol=2e-3)  # float32 matrices, pixels
        # depth stays the rectified z (a flip mirrors x only)
        np.testing.assert_allclose(uvw[:, 2].numpy() - batch["P2"][0, 2, 3].item(), depth[front], atol=1e-4)


def test_lidar_to_rect_of_prediction_images_and_images_only_frames(kitti_samples, tmp_path):
    from monokd.data.image_folder import ImageFolder

    training = kitti_samples / "training"
    images = tmp_path / "images"
    images.mkdir()
    (images / "000003.png").symlink_to(training / "image_2" / "000003.png")
    cfg = {"data": {"input_size": [640, 192]}}
    calib = kitti.read_calib(training / "calib" / "000003.txt")
    item = ImageFolder(images, training / "calib", cfg)[0]
    np.testing.assert_allclose(item["lidar_to_rect"].numpy(), velo_to_rect_matrix(calib), atol=1e-6)
    # a calib file with only P2: the camera's axes re-ordered (LiDAR x forward = camera z, ...)
    p2_only = tmp_path / "p2.txt"
    p2_only.write_text("P2: " + " ".join(str(v) for v in calib.P2.ravel()) + "\n")
    axes = ImageFolder(images, p2_only, cfg)[0]["lidar_to_rect"]
    forward_left_up = axes[:3, :3] @ torch.eye(3)
    np.testing.assert_allclose(forward_left_up.numpy(), [[0, -1, 0], [0, 0, -1], [1, 0, 0]])
    # the dataset's images-only frames (default_P2) get the same axes
    only = tmp_path / "only"
    (only / "training" / "image_2").mkdir(parents=True)
    (only / "training" / "image_2" / "000003.png").symlink_to(training / "image_2" / "000003.png")
    frame = KittiDataset(only, None, {"data": {"input_size": [640, 192], "default_P2": calib.P2.tolist()}})[0]
    np.testing.assert_allclose(frame["lidar_to_rect"].numpy(), axes.numpy())
