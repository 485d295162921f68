"""The LiDAR teacher's pillar encoder scatters onto the shared BEVGrid (shape and metric cells)."""

from __future__ import annotations

import torch

from monokd.geometry.grid import BEVGrid
from monokd.models.lidar.pillars import PillarEncoder, points_to_lidar

KITTI_GRID = BEVGrid((2.0, -30.08, -3.0, 46.8, 30.08, 1.0), (0.32, 0.32, 0.4))
# KITTI-like velodyne -> rect: x_rect = -y_lidar, y_rect = -z_lidar, z_rect = x_lidar, plus an offset
VELO_TO_RECT = torch.tensor([[0.0, -1.0, 0.0, 0.02], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27],
                             [0.0, 0.0, 0.0, 1.0]])
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))  # the flip, on the camera side


def _rect(lidar_xyz: torch.Tensor, lidar_to_rect: torch.Tensor, reflectance: float = 0.5) -> torch.Tensor:
    rect = lidar_xyz @ lidar_to_rect[:3, :3].T + lidar_to_rect[:3, 3]
    return torch.cat([rect, torch.full((len(rect), 1), reflectance)], dim=1)


def test_bev_has_the_grid_shape_and_a_point_lands_in_its_metric_cell():
    encoder = PillarEncoder(KITTI_GRID, channels=8).eval()
    point = torch.tensor([[10.0, -5.0, 0.0]])
    batch_matrices = torch.stack([VELO_TO_RECT, MIRROR @ VELO_TO_RECT])
    # the same LiDAR point, seen by a plain and a flipped frame (points mirrored like the targets)
    clouds = [_rect(point, VELO_TO_RECT), _rect(point, MIRROR @ VELO_TO_RECT)]
    bev = encoder(clouds, batch_matrices)
    assert bev.shape == (2, 8, *KITTI_GRID.bev_shape()) == (2, 8, 188, 140)
    centres = KITTI_GRID.cell_centres()
    for b in range(2):
        occupied = bev[b].abs().sum(0).nonzero()
        assert len(occupied) == 1
        j, i = occupied[0].tolist()
        assert torch.allclose(centres[j, i], point[0, :2], atol=0.16 + 1e-5)
        assert torch.equal(torch.tensor([j, i]), (KITTI_GRID.metres_to_cell(point[0, :2]).floor().long().flip(0)))


def test_points_to_lidar_inverts_the_batch_matrix():
    xyz = torch.tensor([[5.0, 1.0, -1.0], [30.0, -12.0, 0.5]])
    for matrix in (VELO_TO_RECT, MIRROR @ VELO_TO_RECT):
        assert torch.allclose(points_to_lidar(_rect(xyz, matrix), matrix)[:, :3], xyz, atol=1e-5)


def test_out_of_range_and_nan_points_are_dropped():
    encoder = PillarEncoder(KITTI_GRID, channels=4).eval()
    outside = torch.tensor([[1.0, 0.0, 0.0], [50.0, 0.0, 0.0], [10.0, 31.0, 0.0], [10.0, 0.0, 1.5],
                            [float("nan"), 0.0, 0.0]])
    bev = encoder([_rect(outside, VELO_TO_RECT)], VELO_TO_RECT[None])
    assert torch.isfinite(bev).all() and bev.abs().sum() == 0


def test_pillar_feature_is_a_max_over_its_points_only():
    torch.manual_seed(0)
    encoder = PillarEncoder(KITTI_GRID, channels=6).eval()
    a = torch.tensor([[10.01, -5.01, 0.0], [10.2, -4.9, -0.5]])  # one pillar
    b = torch.tensor([[20.0, 3.0, 0.2]])  # another pillar
    alone = encoder([_rect(a, VELO_TO_RECT)], VELO_TO_RECT[None])
    both = encoder([_rect(torch.cat([b, a.flip(0)]), VELO_TO_RECT)], VELO_TO_RECT[None])
    j, i = KITTI_GRID.metres_to_cell(a[0, :2]).floor().long().flip(0).tolist()
    assert torch.allclose(alone[0, :, j, i], both[0, :, j, i], atol=1e-6)  # order- and neighbour-free
    assert (both[0].abs().sum(0) > 0).sum() == 2
    # the training step reaches the encoder's weights
    encoder.train()
    encoder([_rect(torch.cat([a, b]), VELO_TO_RECT)], VELO_TO_RECT[None]).sum().backward()
    assert encoder.linear.weight.grad.abs().sum() > 0


def test_real_kitti_points_map_back_to_the_sweep_and_a_flip_leaves_the_bev_unchanged(kitti_samples):
    """The batch's points (rect. camera frame of the augmented frame) -> inverse(lidar_to_rect)
    -> the velodyne file's own coordinates, with and without the horizontal flip; so the LiDAR
    teacher sees the same scene, on the same cells, in a flipped frame."""
    from monokd.data.dataset import KittiDataset, collate
    from monokd.data.kitti import read_velodyne

    base = {"classes": ["Car"], "load_points": True, "input_size": [640, 192]}
    flip = {"enabled": True, "photometric": False, "flip_prob": 1.0, "scale_prob": 0.0, "shift": 0.0}
    plain = KittiDataset(kitti_samples, None, {"data": base}, augment=False)
    flipped = KittiDataset(kitti_samples, None, {"data": {**base, "augment": flip}}, augment=True)
    index = plain.ids.index("000003")
    items = [plain[index], flipped[index]]
    assert not items[0]["flipped"] and items[1]["flipped"]
    raw = torch.as_tensor(read_velodyne(kitti_samples / "training" / "velodyne" / "000003.bin"))
    for item in items:
        back = points_to_lidar(item["points"], item["lidar_to_rect"])
        assert torch.allclose(back[:, :3], raw[:, :3], atol=2e-3) and torch.equal(back[:, 3], raw[:, 3])
    batch = collate(items)
    bev = PillarEncoder(KITTI_GRID, channels=4).eval()(batch["points"], batch["lidar_to_rect"])
    occupied = bev.abs().sum(1) > 0
    assert occupied[0].sum() > 1000  # a real sweep fills many pillars of the 0.32 m grid
    assert torch.equal(occupied[0], occupied[1])
    assert torch.allclose(bev[0], bev[1], atol=1e-4)
