"""Voxelisation of LiDAR points and SECOND's mean voxel feature (OpenPCDet's
``transform_points_to_voxels`` and ``MeanVFE``), in plain PyTorch.

    points (M, 4) LiDAR frame (x, y, z, reflectance)
      -> voxel (k, j, i) = floor((p - range_min) / voxel_size) along (z, y, x); points outside
         the range are dropped
      -> the first ``max_points`` points of each voxel in point order, the first ``max_voxels``
         voxels in order of their first point (OpenPCDet's PointToVoxel; the rest dropped)
      -> feature = the mean of the voxel's kept points (x, y, z, reflectance)     (V, 4)
    coordinates (V, 4) int32: batch index, k (z), j (y), i (x)  (spconv's index order)

The voxel grid subdivides the BEV grid (``model.grid``): same range, cells 8 x finer in x and y
for SECOND, so its stride-8 output lands on the BEV cells.
"""

from __future__ import annotations

import torch

from monokd.geometry.grid import BEVGrid


def voxelize(points: torch.Tensor, voxels: BEVGrid, max_points: int, max_voxels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (V, C), coordinates (V, 3) long (k, j, i)) of one LiDAR-frame cloud (M, C >= 3)
    on the grid ``voxels`` (module docstring)."""
    nx, ny, nz = voxels.grid_size
    low = points.new_tensor(voxels.point_cloud_range[:3])
    size = points.new_tensor(voxels.voxel_size)
    ijk = torch.floor((points[:, :3] - low) / size).long()
    inside = torch.isfinite(points[:, :3]).all(1) & (ijk >= 0).all(1)
    inside &= (ijk[:, 0] < nx) & (ijk[:, 1] < ny) & (ijk[:, 2] < nz)
    points, ijk = points[inside], ijk[inside]
    flat = (ijk[:, 2] * ny + ijk[:, 1]) * nx + ijk[:, 0]
    keys, voxel = torch.unique(flat, return_inverse=True)
    order = torch.arange(len(flat), device=flat.device)
    first = torch.full((len(keys),), len(flat), device=flat.device).scatter_reduce(0, voxel, order, "amin")
    rank = torch.empty_like(first)  # voxels numbered by their first point
    rank[first.argsort()] = torch.arange(len(keys), device=flat.device)
    voxel = rank[voxel]
    slot = _rank_within(voxel)  # the point's place among its voxel's points, in point order
    keep = (slot < max_points) & (voxel < max_voxels)
    count = min(len(keys), max_voxels)
    sums = points.new_zeros(count, points.shape[1]).index_add_(0, voxel[keep], points[keep])
    num = points.new_zeros(count).index_add_(0, voxel[keep], points.new_ones(int(keep.sum())))
    flat_kept = flat.new_empty(count)
    flat_kept[voxel[keep]] = flat[keep]
    coords = torch.stack([flat_kept // (nx * ny), (flat_kept // nx) % ny, flat_kept % nx], dim=1)
    return sums / num.clamp(min=1)[:, None], coords


def _rank_within(group: torch.Tensor) -> torch.Tensor:
    """For each element, how many earlier elements share its group (0, 1, 2, ...)."""
    order = torch.sort(group, stable=True).indices
    sorted_group = group[order]
    starts = torch.ones_like(sorted_group, dtype=torch.bool)
    starts[1:] = sorted_group[1:] != sorted_group[:-1]
    index = torch.arange(len(group), device=group.device)
    start_of = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=0).values
    rank = torch.empty_like(group)
    rank[order] = index - start_of
    return rank


def batch_voxels(clouds: list[torch.Tensor], voxels: BEVGrid, max_points: int,
                 max_voxels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B LiDAR-frame clouds -> (features (V, C), coordinates (V, 4) int32 (b, k, j, i))."""
    features, coords = [], []
    for b, cloud in enumerate(clouds):
        feats, kji = voxelize(cloud, voxels, max_points, max_voxels)
        features.append(feats)
        coords.append(torch.cat([kji.new_full((len(kji), 1), b), kji], dim=1))
    return torch.cat(features), torch.cat(coords).int()
