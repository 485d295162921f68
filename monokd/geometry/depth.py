"""Depth discretisation and depth maps.

- Linear-increasing discretisation (LID, as in CaDDN and MonoDETR): bin widths grow linearly
  with depth, so near depths, where monocular cues are reliable, get fine bins.
- Object-wise depth maps: each object's 2-D box filled with its depth, nearer objects drawn
  over farther ones (MonoDETR's foreground depth target; ADD's object-wise teacher input).
- Pixel-wise sparse depth from a LiDAR sweep (CaDDN / PatchNet style).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from monokd.geometry.calib import lidar_to_rect, project


def lid_bin_size(num_bins: int, depth_min: float, depth_max: float) -> float:
    """Width of the first LID bin; bin i is (i + 1) times as wide."""
    return 2.0 * (depth_max - depth_min) / (num_bins * (num_bins + 1))


def lid_bin_centers(num_bins: int, depth_min: float, depth_max: float) -> torch.Tensor:
    """(num_bins + 1,) depth of each bin, the last entry (background) being ``depth_max``.

    MonoDETR's definition: centre_i = (i + 0.5)^2 * bw / 2 - bw / 8 + depth_min.
    """
    bw = lid_bin_size(num_bins, depth_min, depth_max)
    i = torch.arange(num_bins, dtype=torch.float32)
    centres = (i + 0.5) ** 2 * bw / 2 - bw / 8 + depth_min
    return torch.cat([centres, centres.new_tensor([depth_max])])


def depth_to_lid_index(depth: torch.Tensor, num_bins: int, depth_min: float, depth_max: float) -> torch.Tensor:
    """Continuous LID index of ``depth`` (inverse of the bin edges d_i = dmin + bw*i*(i+1)/2)."""
    bw = lid_bin_size(num_bins, depth_min, depth_max)
    return -0.5 + 0.5 * torch.sqrt(1 + 8 * (depth - depth_min) / bw)


def depth_to_lid_bin(depth: torch.Tensor, num_bins: int, depth_min: float, depth_max: float) -> torch.Tensor:
    """Integer LID bin of ``depth``; non-finite, out-of-range or <= 0 depths -> ``num_bins``
    (the background class), so a bad value can never become a foreground target."""
    depth = depth.float()
    index = depth_to_lid_index(depth.clamp(min=depth_min), num_bins, depth_min, depth_max)
    valid = torch.isfinite(depth) & (depth >= depth_min) & (depth <= depth_max) & (depth > 0)
    index = torch.where(valid, index, torch.full_like(index, float(num_bins)))
    return index.floor().long().clamp(0, num_bins)


def object_depth_map(boxes_2d: torch.Tensor, depth: torch.Tensor, map_size: tuple[int, int],
                     stride: int, background: float = 0.0) -> torch.Tensor:
    """Object-wise depth map.

    Args:
        boxes_2d: (N, 4) x1, y1, x2, y2 in input pixels.
        depth: (N,) object depth (m).
        map_size: (H_map, W_map) of the output grid.
        stride: input pixels per map cell.
        background: value of cells covered by no box.
    Returns:
        (H_map, W_map) map; a box covers cells floor(x1/s) .. ceil(x2/s) (exclusive end), and
        where boxes overlap the nearer object wins.
    """
    height, width = map_size
    out = torch.full((height, width), float(background), dtype=torch.float32, device=depth.device)
    if boxes_2d.numel() == 0:
        return out
    order = torch.argsort(depth, descending=True)  # far first, so near overwrites
    cells = boxes_2d.detach().float() / stride
    for k in order.tolist():
        x1 = max(int(math.floor(cells[k, 0])), 0)
        y1 = max(int(math.floor(cells[k, 1])), 0)
        x2 = min(int(math.ceil(cells[k, 2])), width)
        y2 = min(int(math.ceil(cells[k, 3])), height)
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = depth[k].float()
    return out


def foreground_mask(boxes_2d: torch.Tensor, map_size: tuple[int, int], stride: int) -> torch.Tensor:
    """(H_map, W_map) bool: the cells covered by any 2-D box (same cell rule as above)."""
    ones = torch.ones(boxes_2d.shape[0], device=boxes_2d.device)
    return object_depth_map(boxes_2d, ones, map_size, stride, background=0.0) > 0


def lidar_depth_map(points: np.ndarray, calib, image_size: tuple[int, int]) -> np.ndarray:
    """Sparse pixel-wise depth from a LiDAR sweep.

    Args:
        points: (N, >=3) LiDAR points.  calib: a Calibration.  image_size: (width, height).
    Returns:
        (height, width) float32 rectified depth z; 0 where no point lands; where several
        points land in one pixel the nearest is kept.
    """
    width, height = image_size
    rect = lidar_to_rect(points[:, :3], calib)
    rect = rect[rect[:, 2] > 0.1]
    uv, z = project(rect, calib.P2)
    u = np.floor(uv[:, 0]).astype(np.int64)
    v = np.floor(uv[:, 1]).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, z = u[inside], v[inside], z[inside]
    depth = np.zeros((height, width), dtype=np.float32)
    order = np.argsort(-z)  # far first, near written last wins
    depth[v[order], u[order]] = z[order]
    return depth


def downsample_depth(depth: np.ndarray, factor: int) -> np.ndarray:
    """Mean of the valid (> 0) depths in each factor x factor block (0 where none)."""
    height, width = depth.shape[0] // factor * factor, depth.shape[1] // factor * factor
    blocks = depth[:height, :width].reshape(height // factor, factor, width // factor, factor)
    valid = blocks > 0
    count = valid.sum(axis=(1, 3))
    total = np.where(valid, blocks, 0).sum(axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), 0).astype(np.float32)
