"""Frustum features -> voxel features: CaDDN's lifting (Reading et al., CVPR 2021, Sec. 3.2).

    frustum (B, C, D, Hf, Wf)  image features x depth distribution, D LID bins
        voxel centres (NZ, NY, NX, 3) LiDAR metres           (monokd.geometry.grid)
        -> lidar_to_rect (B, 4, 4) -> rectified camera        (the batch's, after augmentation)
        -> P2 (B, 3, 4) -> (u, v) input pixels, depth z (m)
        -> (u, v, LID index of z) normalised to [-1, 1]
        -> one trilinear grid_sample of the frustum (zero padding)
    voxels (B, C, NZ, NY, NX)

Sampling conventions (``convention``; pixel centres at integers, as in monokd.data.augment;
t = the continuous LID index of a depth, :func:`monokd.geometry.depth.depth_to_lid_index`, so
bin k covers t in [k, k + 1)):

* ``monokd``: the feature map covers the input image edge to edge (Wf * stride = W), so an
  input pixel u maps to x_norm = 2 (u + 0.5) / W - 1 (``align_corners=False``), the same for
  v; bin k's feature sits at the bin's middle, t = k + 0.5: z_norm = 2 t / D - 1.
* ``openpcdet`` (OpenPCDet's CaDDN): x_norm = 2 u / (W - 1) - 1, y_norm = 2 v / (H - 1) - 1,
  z_norm = 2 t / (D - 1) - 1 with ``align_corners=True``: feature column u (Wf - 1) / (W - 1),
  and bin k at t = k, its near edge d_k (features half a bin farther than monokd's: 0.24 m
  at 10 m, 0.51 m at 40 m for CaDDN's 80 bins).
* ``trailab`` (TRAILab/CaDDN, torch 1.4): the same normalisation with ``align_corners=False``:
  bin k at t = (k + 0.5) (D - 1) / D, column (u / (W - 1)) Wf - 0.5.
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
CONVENTIONS = ("monokd", "openpcdet", "trailab")


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
        convention: one of :data:`CONVENTIONS` (see the module docstring).
    """

    def __init__(self, grid: BEVGrid, depth_bins, convention: str = "monokd"):
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"FrustumToVoxel: sampling convention {convention!r} is not one of {CONVENTIONS}")
        self.grid = grid
        self.convention = convention
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
        if self.convention == "monokd":
            coords = torch.stack([2 * (u + 0.5) / width - 1, 2 * (v + 0.5) / height - 1,
                                  2 * index / self.num_bins - 1], dim=-1)
        else:
            coords = torch.stack([2 * u / (width - 1) - 1, 2 * v / (height - 1) - 1,
                                  2 * index / (self.num_bins - 1) - 1], dim=-1)
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
        return F.grid_sample(frustum, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=self.convention == "openpcdet")
