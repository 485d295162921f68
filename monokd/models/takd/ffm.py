"""FFM, MonoTAKD's feature fusion module (Liu et al. 2025, Sec. 3.4, Fig. 2).

The student's own BEV feature F_S (camera cues, imitating the TA) and its predicted residual
F_res' (LiDAR-only cues, imitating F_T - F_TA) are fused into the feature the detection
backbone reads:

    F_fused = conv3x3(conv1x1(conv3x3(F_S + F_res')))      each conv: BN, ReLU
    (B, C, NY, NX) x 2 -> (B, C, NY, NX)

FFM is part of the student at inference (the paper's Fig. 2; the released code comments it
out and detects from F_S alone). Without FFM the residual branch is a training-only auxiliary.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.models.takd.sam import conv_bn_relu


class FFM(nn.Module):
    """F_S, F_res' (B, C, NY, NX) -> fused (B, C, NY, NX)."""

    def __init__(self, channels: int):
        super().__init__()
        self.fuse = nn.Sequential(conv_bn_relu(channels, channels, 3), conv_bn_relu(channels, channels, 1),
                                  conv_bn_relu(channels, channels, 3))

    def forward(self, bev: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.fuse(bev + residual)
