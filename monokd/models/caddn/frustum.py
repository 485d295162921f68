"""CaDDN's frustum features (Reading et al., CVPR 2021, Sec. 3.1) and the pixel-wise GT-depth
distribution of ADD's CaDDN teacher.

    depth logits (B, D + 1, h, w) -> softmax over the D + 1 classes = P       (predicted), or
    depth map (B, 1, H, W) metres -> mean of the valid pixels of each s x s block
                               -> LID bin -> one-hot over D + 1 = P             (gt_pixel)
    frustum G (B, C, D, h, w) = F (B, C, h, w) (x) P[:, :D]    (Eq. 1: the outer product; the
                                "beyond range" class is dropped, so its mass lifts nowhere)

The GT distribution never averages across depth discontinuities by interpolation and never
produces NaN: a pixel with 0, a negative or a non-finite depth is "no depth"; a block with no
valid pixel, or whose mean depth is outside the LID range, goes to the dropped bin D (it lifts
nothing, exactly like the sky). The bins are monokd.geometry.depth's, the one LID definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monokd.geometry.depth import depth_to_lid_bin


def frustum_features(features: torch.Tensor, distribution: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) image features, (B, D + 1, h, w) depth distribution -> (B, C, D, h, w)."""
    if features.shape[-2:] != distribution.shape[-2:]:
        raise ValueError(f"frustum: features {tuple(features.shape)} and depth distribution "
                         f"{tuple(distribution.shape)} differ in size")
    return features.unsqueeze(2) * distribution[:, None, :-1]


def block_mean_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) metres -> (B, 1, h, w) mean of the valid (finite, > 0) depths of each
    (H/h) x (W/w) block; 0 where a block has none. H and W must be multiples of h and w."""
    height, width = depth.shape[-2:]
    if height % size[0] or width % size[1]:
        raise ValueError(f"depth map {height}x{width} is not a whole number of {size[0]}x{size[1]} blocks")
    kernel = (height // size[0], width // size[1])
    valid = torch.isfinite(depth) & (depth > 0)
    values = torch.where(valid, depth, torch.zeros_like(depth))
    total = F.avg_pool2d(values, kernel, kernel)
    count = F.avg_pool2d(valid.to(depth.dtype), kernel, kernel)
    return torch.where(count > 0, total / count.clamp(min=1e-12), torch.zeros_like(total))


def depth_bin_targets(depth: torch.Tensor, size: tuple[int, int], num_bins: int, depth_min: float,
                      depth_max: float) -> torch.Tensor:
    """(B, 1, H, W) metres -> (B, h, w) long LID bin of each block's valid mean; D = none /
    beyond range. The depth loss's target and the teacher's one-hot both come from here."""
    return depth_to_lid_bin(block_mean_depth(depth.float(), size)[:, 0], num_bins, depth_min, depth_max)


def gt_pixel_distribution(depth: torch.Tensor, size: tuple[int, int], num_bins: int, depth_min: float,
                          depth_max: float) -> torch.Tensor:
    """(B, 1, H, W) metres -> (B, D + 1, h, w) one-hot depth distribution (float)."""
    bins = depth_bin_targets(depth, size, num_bins, depth_min, depth_max)
    return F.one_hot(bins, num_bins + 1).permute(0, 3, 1, 2).to(torch.float32)
