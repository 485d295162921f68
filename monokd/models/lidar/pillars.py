"""PointPillars' pillar encoder (Lang et al., CVPR 2019, Sec. 2.1) with a dense scatter onto a
:class:`monokd.geometry.grid.BEVGrid`: the LiDAR teacher sees the same BEV cells as the
camera models.

    points (M, 4) rect. camera frame of the augmented frame (x, y, z, reflectance), per image
      -> inverse(lidar_to_rect) -> LiDAR frame (x forward, y left, z up)
      -> keep the points inside the grid's range; pillar = the (j along y, i along x) cell
      -> 9 features: x, y, z, r, offsets to the pillar's point mean (3), to its centre (x, y)
      -> Linear -> BatchNorm -> ReLU (per point) -> max over the pillar's points
    BEV pseudo-image (B, C, NY, NX); empty pillars are 0

No cap on points per pillar and no pillar sampling: the max runs over all points of a pillar
with ``scatter_reduce`` (what a dense CPU implementation affords; PointPillars caps at 32
points and 12000 pillars). The z extent of the grid bounds the points kept, as it bounds the
camera models' voxels.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.geometry.grid import BEVGrid

NUM_POINT_FEATURES = 9


def points_to_lidar(points: torch.Tensor, lidar_to_rect: torch.Tensor) -> torch.Tensor:
    """(M, 4+) rect. camera xyz (+ extras) -> the same with xyz in the LiDAR frame."""
    rect_to_lidar = torch.linalg.inv(lidar_to_rect.double())
    xyz = points[:, :3].double() @ rect_to_lidar[:3, :3].T + rect_to_lidar[:3, 3]
    return torch.cat([xyz.to(points.dtype), points[:, 3:]], dim=1)


def pillar_indices(points_lidar: torch.Tensor, grid: BEVGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep (M,) bool, flat pillar index j * NX + i (K,) of the kept points)."""
    x_min, y_min, z_min, x_max, y_max, z_max = grid.point_cloud_range
    nx, ny, _ = grid.grid_size
    xyz = points_lidar[:, :3]
    keep = torch.isfinite(xyz).all(1)
    keep &= (xyz[:, 0] >= x_min) & (xyz[:, 0] < x_max) & (xyz[:, 1] >= y_min) & (xyz[:, 1] < y_max)
    keep &= (xyz[:, 2] >= z_min) & (xyz[:, 2] < z_max)
    ij = grid.metres_to_cell(xyz[keep, :2]).floor().long()
    i, j = ij[:, 0].clamp(0, nx - 1), ij[:, 1].clamp(0, ny - 1)  # rounding at the far edge
    return keep, j * nx + i


class PillarEncoder(nn.Module):
    """Per-image point lists -> BEV pseudo-image (B, C, NY, NX) on ``grid``.

    Args:
        grid: the shared BEV grid. channels: C.
    """

    def __init__(self, grid: BEVGrid, channels: int = 64):
        super().__init__()
        self.grid = grid
        self.channels = channels
        self.linear = nn.Linear(NUM_POINT_FEATURES, channels, bias=False)
        self.norm = nn.BatchNorm1d(channels)

    def point_features(self, points_lidar: torch.Tensor, pillar: torch.Tensor, num_pillars: int) -> torch.Tensor:
        """(K, 9): xyz, r, offsets to the pillar's point mean and to the pillar centre (x, y)."""
        xyz = points_lidar[:, :3]
        reflectance = points_lidar[:, 3:4] if points_lidar.shape[1] > 3 else torch.zeros_like(xyz[:, :1])
        counts = torch.zeros(num_pillars, device=xyz.device, dtype=xyz.dtype).index_add_(
            0, pillar, torch.ones_like(xyz[:, 0]))
        sums = torch.zeros(num_pillars, 3, device=xyz.device, dtype=xyz.dtype).index_add_(0, pillar, xyz)
        mean = sums[pillar] / counts[pillar, None]
        nx = self.grid.grid_size[0]
        cell = torch.stack([pillar % nx, pillar // nx], dim=1).to(xyz.dtype) + 0.5
        centre = self.grid.cell_to_metres(cell)
        return torch.cat([xyz, reflectance, xyz - mean, xyz[:, :2] - centre], dim=1)

    def forward(self, points: list[torch.Tensor], lidar_to_rect: torch.Tensor) -> torch.Tensor:
        """points: B tensors (M_b, 4) in the rect. camera frame; lidar_to_rect (B, 4, 4)."""
        nx, ny, _ = self.grid.grid_size
        device = self.linear.weight.device
        features, flat = [], []
        for b, cloud in enumerate(points):
            lidar = points_to_lidar(cloud.to(device=device, dtype=torch.float32), lidar_to_rect[b].to(device))
            keep, pillar = pillar_indices(lidar, self.grid)
            features.append(self.point_features(lidar[keep], pillar, nx * ny))
            flat.append(pillar + b * nx * ny)
        feats, flat = torch.cat(features), torch.cat(flat)
        encoded = self.linear(feats)
        if len(feats) > 1 or not self.training:  # batch statistics need two points
            encoded = self.norm(encoded)
        encoded = torch.relu(encoded)
        bev = encoded.new_zeros(len(points) * ny * nx, self.channels)
        bev = bev.scatter_reduce(0, flat[:, None].expand(-1, self.channels), encoded, reduce="amax", include_self=False)
        return bev.view(len(points), ny, nx, self.channels).permute(0, 3, 1, 2).contiguous()
