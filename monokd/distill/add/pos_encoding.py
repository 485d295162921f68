"""ADD's 3D-aware positional encoding (Eq. 3).

    F_d   = resize(G_A(D))        1x1-conv MLP on the depth map -> C_d channels, bilinear to (H_k, W_k)
    index = argmax_c F_d          (B, H_k, W_k) depth positional index in [0, C_d)
    F_emb = MLP(G_pe(index))      Embedding(C_d, C_dim), then an MLP to the feature width C

The argmax passes no gradient, so G_A is never trained: its initial weights *are* the
function. A random init would map all depths to a handful of indices, so G_A is initialised
to quantise [0, depth_max] into C_d uniform bins and frozen: with x = C_d * d / depth_max,
index = clamp(ceil(x) - 1, 0, C_d - 1), i.e. floor(x) except at exact bin edges, which go to
the bin below (x = 1 -> 0; d = 0 -> 0; d >= depth_max -> C_d - 1). The embedding and the
output MLP learn what each bin means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DepthQuantizer(nn.Module):
    """G_A: depth (B, 1, h, w) -> C_d bin scores whose channel argmax is the uniform depth bin.

    Two 1x1 convs: hidden unit 0 carries x = C_d * d / depth_max (depths are >= 0, so the
    ReLU keeps it); output c scores c*x - c(c+1)/2, whose successive differences x - c are
    positive exactly while c < x, so argmax_c = clamp(ceil(x) - 1, 0, C_d - 1).
    """

    def __init__(self, depth_channels: int, depth_max: float, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, depth_channels, 1))
        with torch.no_grad():
            first, second = self.mlp[0], self.mlp[2]
            first.weight.zero_()
            first.bias.zero_()
            first.weight[0, 0] = depth_channels / depth_max
            c = torch.arange(depth_channels, dtype=torch.float32)
            second.weight.zero_()
            second.weight[:, 0, 0, 0] = c
            second.bias.copy_(-c * (c + 1) / 2)
        self.requires_grad_(False)  # behind an argmax: no gradient could ever reach it

    def forward(self, depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """depth (B, 1, h, w) metres -> (B, C_d, H_k, W_k) scores."""
        scores = self.mlp(depth.clamp(min=0))
        if scores.shape[-2:] != tuple(size):
            scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
        return scores


class DepthPositionalEncoding(nn.Module):
    """F_emb of Eq. 3: (B, 1, h, w) depth -> (B, H_k*W_k, C) encodings for level k."""

    def __init__(self, channels: int, depth_channels: int = 64, embed_dim: int = 128,
                 depth_max: float = 60.0):
        super().__init__()
        self.quantizer = DepthQuantizer(depth_channels, depth_max)
        self.embedding = nn.Embedding(depth_channels, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, channels), nn.ReLU(), nn.Linear(channels, channels))

    def index(self, depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 1, h, w) metres -> (B, H_k, W_k) long depth positional index."""
        return self.quantizer(depth, size).argmax(dim=1)

    def forward(self, depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 1, h, w) metres -> (B, H_k*W_k, C)."""
        return self.mlp(self.embedding(self.index(depth, size).flatten(1)))
