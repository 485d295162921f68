"""PatchNet's networks on a patch (Ma et al. 2020, Fig. 4; F-PointNet's T-Net and box net).

- :class:`CenterRegressor`: 1x1 convs [128, 128, 256] (+BN+ReLU) -> masked max-pool ->
  concat the class one-hot -> MLP 256 -> 128 -> 3: the centre's offset from the masked mean.
- :class:`BoxBackbone`: an SE-ResNet-18 variant on the 32 x 32 patch (stem 3x3 conv, four
  stages of two SE basic blocks, widths 64..512, stage strides ``strides``: PatchNet's
  official network keeps the patch resolution, [1, 1, 1, 1], so that its last 512-channel map
  is 32 x 32 and max-pooled under the pixel mask; monokd's own [1, 2, 2, 2] ends at 4 x 4
  cells): its four stage outputs are also the features ADD distils.
- :class:`DistanceHeads`: three MLPs [512, 256] on (masked max-pool of the last stage ++
  one-hot), chosen per patch by the stage-1 centre's z: < 30 m, 30-50 m, > 50 m. Each outputs
  F-PointNet's vector: centre residual (3), heading scores and normalised residuals (2 x 12),
  size scores (8) and normalised residuals (8 x 3).

The MLPs' normalisation is ``norm``: ``batch`` (BatchNorm1d, PatchNet's; a training batch of
a single box is normalised with the running statistics, which BatchNorm1d cannot do itself)
or ``layer`` (LayerNorm, monokd's own: independent of the batch). :func:`xavier_init` is
PatchNet's initialisation (xavier-uniform weights, zero biases of every conv and linear
layer) and :func:`bn_momentum` its BatchNorm momentum schedule.
"""

from __future__ import annotations

import math

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


NORMS = ("layer", "batch")


class BoxBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over boxes; a training batch of one box uses (and keeps) the running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _norm(kind: str, width: int) -> nn.Module:
    return BoxBatchNorm1d(width) if kind == "batch" else nn.LayerNorm(width)


def _mlp(cin: int, hidden: list[int], cout: int, dropout: float, norm: str = "layer") -> nn.Sequential:
    """Linear-norm-ReLU blocks (dropout after the first), then a Linear: PatchNet's head layout,
    so that the module indices are the official code's (0 Linear, 1 norm, 2 ReLU, 3 Dropout, 4 ...)."""
    layers, width = [], cin
    for i, h in enumerate(hidden):
        layers += [nn.Linear(width, h), _norm(norm, h), nn.ReLU(inplace=True)]
        if i == 0 and dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers, nn.Linear(width, cout))


def xavier_init(module: nn.Module) -> None:
    """PatchNet's ``init_weights(net, 'xavier')``: xavier-uniform weights and zero biases of
    every conv and linear layer (norm layers keep PyTorch's)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def bn_momentum(epoch: int, schedule: dict) -> float:
    """PatchNet's BatchNorm momentum at ``epoch`` (0-based): ``initial`` x ``gamma`` per
    milestone passed, never below ``min`` (official: 0.5, x0.1 at epochs 10 and 20, min 0.01)."""
    value = float(schedule["initial"])
    for milestone in schedule["milestones"]:
        if epoch >= milestone:
            value *= float(schedule["gamma"])
    return max(value, float(schedule["min"]))


class CenterRegressor(nn.Module):
    def __init__(self, channels: list[int], num_classes: int, hidden: list[int], dropout: float,
                 norm: str = "layer", conv_bias: bool = False):
        super().__init__()
        layers, cin = [], 3
        for c in channels:
            layers += [nn.Conv2d(cin, c, 1, bias=conv_bias), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.convs = nn.Sequential(*layers)
        self.mlp = _mlp(cin + num_classes, hidden, 3, dropout, norm)

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
    """(N, 3, S, S) -> [(N, w_k, S / s_k, S / s_k)] for the stages k; s_k is the product of
    the stage strides up to k (monokd's [1, 2, 2, 2]: 1, 2, 4, 8; PatchNet's [1, 1, 1, 1]: all 1)."""

    def __init__(self, widths: list[int], blocks: list[int], reduction: int = 16, strides: list[int] | None = None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        strides = list(strides) if strides is not None else [1] + [2] * (len(widths) - 1)
        stages, cin = [], widths[0]
        for width, count, stride in zip(widths, blocks, strides):
            stage = [SEBasicBlock(cin, width, stride, reduction)]
            stage += [SEBasicBlock(width, width, 1, reduction) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.channels = list(widths)
        self.strides = [math.prod(strides[:k + 1]) for k in range(len(widths))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class DistanceHeads(nn.Module):
    """Three F-PointNet box heads; patch i uses head j = number of ``edges`` <= its z."""

    def __init__(self, cin: int, hidden: list[int], cout: int, dropout: float, edges: list[float],
                 norm: str = "layer"):
        super().__init__()
        self.edges = [float(e) for e in edges]
        self.heads = nn.ModuleList(_mlp(cin, hidden, cout, dropout, norm) for _ in range(len(edges) + 1))

    def forward(self, features: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """(N, cin), (N,) metres -> (N, cout)."""
        which = torch.bucketize(distance.detach().contiguous(), torch.tensor(self.edges, device=distance.device), right=True)
        outs = torch.stack([head(features) for head in self.heads], 0)  # (H, N, cout)
        return outs.gather(0, which[None, :, None].expand(1, -1, outs.shape[-1]))[0]
