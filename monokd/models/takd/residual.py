"""The student's residual branch (MonoTAKD's CMRD prediction path, Liu et al. 2025, Eq. 4-5).

A second projection of the student's camera features, parallel to its BEV feature F_S, learns
to predict the residual F_res = F_T - F_TA (the LiDAR-only spatial cues, see
monokd/distill/takd/cmrd.py) through the spatial alignment module:

    input (B, C_in, NY, NX) -> 1x1 conv, BN, ReLU -> (B, C, NY, NX) -> SAM -> F_res' (B, C, NY, NX)

C_in is the flattened voxel volume C_vox * NZ (the released code's second collapse,
``model.takd.residual.input: voxels``) or the BEV feature F_S itself (``input: bev``).
Without SAM (an ablation) the projection is followed by one plain 3x3 convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.models.takd.sam import SAM, conv_bn_relu


class ResidualBranch(nn.Module):
    """(B, C_in, NY, NX) -> predicted residual (B, C, NY, NX)."""

    def __init__(self, in_channels: int, channels: int, sam: dict | None):
        super().__init__()
        self.project = conv_bn_relu(in_channels, channels, 1)
        self.align = SAM(channels, **sam) if sam is not None else nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.align(self.project(x))
