"""The plain adapters of ADD's ablations (Table 4 rows F and R without +SA / +CA).

- F: a 1x1 convolution on each student feature level (FitNets-style hint adapter).
- R: a two-layer MLP on each decoder layer's student query states.
Both have the same signature as their attention counterparts so the distiller can swap them.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.distill.add.cross_attention import mlp


class ConvAdapter(nn.Module):
    """(B, C, H, W) student feature -> (B, C, H, W); the depth map is ignored."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, feature: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(feature)


class MLPAdapter(nn.Module):
    """(B, Q, C) student queries -> (B, Q, C); the teacher queries are ignored."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = mlp(dim)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(student)
