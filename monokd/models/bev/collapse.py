"""Voxel features -> BEV features: CaDDN's collapse (Reading et al., CVPR 2021, Sec. 3.3).

    voxels (B, C, NZ, NY, NX) -> stack the height into channels (B, C * NZ, NY, NX)
        -> 1x1 conv (no bias) -> BatchNorm -> ReLU -> BEV (B, C_bev, NY, NX)

Channel c * NZ + z of the stacked map is channel c at height z, so the 1x1 convolution learns
one weight per (channel, height) pair: the height is not pooled away.

The batch norm's ``eps`` / ``momentum``: OpenPCDet's Conv2DCollapse (a BasicBlock2D) keeps
PyTorch's defaults, 1e-5 / 0.1; 1e-3 / 0.01 (the BEV backbone's) are this module's defaults.
"""

from __future__ import annotations

import torch
from torch import nn


class BEVCollapse(nn.Module):
    """Args: in_channels C and num_z NZ of the voxel features; out_channels C_bev; the batch
    norm's eps and momentum."""

    def __init__(self, in_channels: int, num_z: int, out_channels: int, eps: float = 1e-3,
                 momentum: float = 0.01):
        super().__init__()
        self.in_channels, self.num_z, self.out_channels = in_channels, num_z, out_channels
        self.block = nn.Sequential(nn.Conv2d(in_channels * num_z, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
                                   nn.ReLU(inplace=True))

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        """(B, C, NZ, NY, NX) -> (B, C_bev, NY, NX)."""
        batch, channels, num_z, ny, nx = voxels.shape
        if (channels, num_z) != (self.in_channels, self.num_z):
            raise ValueError(f"BEVCollapse: expected (B, {self.in_channels}, {self.num_z}, NY, NX) voxels; "
                             f"got {tuple(voxels.shape)}")
        return self.block(voxels.reshape(batch, channels * num_z, ny, nx))
