"""Frustum features -> voxel features: CaDDN's lifting (Reading et al., CVPR 2021, Sec. 3.2).

    frustum (B, C, D, Hf, Wf)  image features x depth distribution, D LID bins
        voxel centres (NZ, NY, NX, 3) LiDAR metres           (monokd.geometry.grid)
        -> lidar_to_rect (B, 4, 4) -> rectified camera        (the batch's, after augmentation)
        -> P2 (B, 3, 4) -> (u, v) input pixels, depth z (m)
        -> (u, v, LID index of z) normalised to [-1, 1]
        -> one trilinear grid_sample of the frustum (zero padding)
    voxels (B, C, NZ, NY, NX)

Sampling conventions (pixel centres at integers, as in monokd.data.augment):

* image: the feature map covers the input image edge to edge (Wf * stride = W), so an input
  pixel u maps to x_norm = 2 (u + 0.5) / W - 1 (``align_corners=False``); the same for v.
* depth: LID bin k covers the depths [d_k, d_{k+1}), i.e. continuous indices [k, k + 1)
  (:func:`monokd.geometry.depth.depth_to_lid_index`); its feature sits at the bin's middle,
  index k + 0.5, so z_norm = 2 index / D - 1. (CaDDN puts bin k at index k, its near edge d_k.)
* a voxel centre whose coordinates are not finite (behind the camera, depth below the LID
  range's square-root domain, a degenerate matrix) is sent far outside: its features are 0.
  Centres near the frustum's border get the zero-padded blend of grid_sample.

The sampling grid depends only on the calibration, so it is built without gradient; the
frustum features get theirs through grid_sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monokd.geometry.depth import depth_to_lid_index
from monokd.geometry.grid import BEVGrid

_OUTSIDE = -2.0  # a normalised coordinate one whole image/depth range beyond the border


def _bins(depth_bins) -> tuple[float, float, int]:
    """(depth_min, depth_max, num_bins) from a tuple or an object with those attributes."""
    if isinstance(depth_bins, (tuple, list)):
        depth_min, depth_max, num_bins = depth_bins
    else:
        depth_min, depth_max, num_bins = depth_bins.depth_min, depth_bins.depth_max, depth_bins.num_bins
    return float(depth_min), float(depth_max), int(num_bins)


class FrustumToVoxel(nn.Module):
    """Sample a frustum feature volume at the grid's voxel centres.

    Args:
        grid: the voxel grid (LiDAR frame).
        depth_bins: (depth_min, depth_max, num_bins) of the frustum's LID bins (the
            "beyond range" bin already dropped), or an object with those attributes.
    """

    def __init__(self, grid: BEVGrid, depth_bins):
        super().__init__()
        self.grid = grid
        self.depth_min, self.depth_max, self.num_bins = _bins(depth_bins)
        centres = grid.voxel_centres()  # (NZ, NY, NX, 3)
        homogeneous = torch.cat([centres, torch.ones_like(centres[..., :1])], dim=-1)
        self.register_buffer("voxel_centres", homogeneous, persistent=False)  # (NZ, NY, NX, 4)

    @torch.no_grad()
    def sampling_grid(self, lidar_to_rect: torch.Tensor, P2: torch.Tensor, image_size) -> torch.Tensor:
        """(B, NZ, NY, NX, 3) grid_sample coordinates (u, v, depth) in [-1, 1]; far outside
        (-2) where not finite.

        Args:
            lidar_to_rect: (B, 4, 4).  P2: (B, 3, 4) at the input resolution.
            image_size: (H, W) of the network input.
        """
        height, width = (float(s) for s in image_size)
        centres = self.voxel_centres.flatten(0, 2)  # (N, 4)
        rect = centres @ lidar_to_rect.to(centres).transpose(-1, -2)  # (B, N, 4) rectified, homogeneous
        uvw = rect @ P2.to(centres).transpose(-1, -2)  # (B, N, 3)
        u, v = uvw[..., 0] / uvw[..., 2], uvw[..., 1] / uvw[..., 2]
        depth = rect[..., 2]
        index = depth_to_lid_index(depth, self.num_bins, self.depth_min, self.depth_max)
        coords = torch.stack([2 * (u + 0.5) / width - 1, 2 * (v + 0.5) / height - 1,
                              2 * index / self.num_bins - 1], dim=-1)
        valid = torch.isfinite(coords).all(dim=-1, keepdim=True) & (depth > 0)[..., None]
        coords = torch.where(valid, coords, torch.full_like(coords, _OUTSIDE))
        return coords.reshape(coords.shape[0], *self.voxel_centres.shape[:3], 3)

    def forward(self, frustum: torch.Tensor, lidar_to_rect: torch.Tensor, P2: torch.Tensor,
                image_size) -> torch.Tensor:
        """(B, C, D, Hf, Wf) frustum features -> (B, C, NZ, NY, NX) voxel features."""
        if frustum.dim() != 5 or frustum.shape[2] != self.num_bins:
            raise ValueError(f"FrustumToVoxel: frustum must be (B, C, {self.num_bins}, Hf, Wf); "
                             f"got {tuple(frustum.shape)}")
        grid = self.sampling_grid(lidar_to_rect, P2, image_size).to(frustum.dtype)
        return F.grid_sample(frustum, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
