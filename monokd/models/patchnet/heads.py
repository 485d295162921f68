"""PatchNet's networks on a patch (Ma et al. 2020, Fig. 4; F-PointNet's T-Net and box net).

- :class:`CenterRegressor`: 1x1 convs [128, 128, 256] (+BN+ReLU) -> masked max-pool ->
  concat the class one-hot -> MLP 256 -> 128 -> 3: the centre's offset from the masked mean.
- :class:`BoxBackbone`: an SE-ResNet-18 variant on the 32 x 32 patch (stem 3x3 conv, four
  stages of two SE basic blocks, widths 64..512, strides 1, 2, 2, 2): its four stage outputs
  are also the features ADD distils.
- :class:`DistanceHeads`: three MLPs [512, 256] on (masked max-pool of the last stage ++
  one-hot), chosen per patch by the stage-1 centre's z: < 30 m, 30-50 m, > 50 m. Each outputs
  F-PointNet's vector: centre residual (3), heading scores and normalised residuals (2 x 12),
  size scores (8) and normalised residuals (8 x 3).

The MLPs use LayerNorm where the paper has BatchNorm1d: a batch may hold a single box, which
BatchNorm1d cannot normalise in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_max_pool(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C): the max over the cells that hold a masked pixel.

    ``mask`` (N, S, S) bool at the patch resolution; a cell of an h x w map counts when any
    of its S/h x S/w pixels is masked (adaptive max-pool). A patch with an empty mask pools
    over all cells (never -inf)."""
    cells = cell_mask(mask, tuple(features.shape[-2:]))
    cells = cells | ~cells.flatten(1).any(1)[:, None, None]
    masked = features.masked_fill(~cells[:, None], float("-inf"))
    return masked.flatten(2).max(-1).values


def cell_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, S, S) bool -> (N, h, w) bool: cells holding any masked pixel."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.adaptive_max_pool2d(mask[:, None].float(), size)[:, 0] > 0


def _mlp(cin: int, hidden: list[int], cout: int, dropout: float) -> nn.Sequential:
    layers, width = [], cin
    for i, h in enumerate(hidden):
        layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(inplace=True)]
        if i == 0 and dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers, nn.Linear(width, cout))


class CenterRegressor(nn.Module):
    def __init__(self, channels: list[int], num_classes: int, hidden: list[int], dropout: float):
        super().__init__()
        layers, cin = [], 3
        for c in channels:
            layers += [nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.convs = nn.Sequential(*layers)
        self.mlp = _mlp(cin + num_classes, hidden, 3, dropout)

    def forward(self, patches: torch.Tensor, mask: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) mean-removed patches -> (N, 3) centre offset (m)."""
        return self.mlp(torch.cat([masked_max_pool(self.convs(patches), mask), one_hot], 1))


class SEBasicBlock(nn.Module):
    """ResNet basic block with squeeze-and-excitation (Hu et al. 2018) before the residual sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1, reduction: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        squeeze = max(cout // reduction, 4)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cout, squeeze, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(squeeze, cout, 1), nn.Sigmoid())
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out * self.se(out) + self.shortcut(x), inplace=True)


class BoxBackbone(nn.Module):
    """(N, 3, S, S) -> [(N, w_k, S / s_k, S / s_k)] for the stages k (strides 1, 2, 4, 8)."""

    def __init__(self, widths: list[int], blocks: list[int], reduction: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for k, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if k == 0 else 2
            stage = [SEBasicBlock(cin, width, stride, reduction)]
            stage += [SEBasicBlock(width, width, 1, reduction) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.channels = list(widths)
        self.strides = [2 ** k for k in range(len(widths))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class DistanceHeads(nn.Module):
    """Three F-PointNet box heads; patch i uses head j = number of ``edges`` <= its z."""

    def __init__(self, cin: int, hidden: list[int], cout: int, dropout: float, edges: list[float]):
        super().__init__()
        self.edges = [float(e) for e in edges]
        self.heads = nn.ModuleList(_mlp(cin, hidden, cout, dropout) for _ in range(len(edges) + 1))

    def forward(self, features: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """(N, cin), (N,) metres -> (N, cout)."""
        which = torch.bucketize(distance.detach().contiguous(), torch.tensor(self.edges, device=distance.device), right=True)
        outs = torch.stack([head(features) for head in self.heads], 0)  # (H, N, cout)
        return outs.gather(0, which[None, :, None].expand(1, -1, outs.shape[-1]))[0]
