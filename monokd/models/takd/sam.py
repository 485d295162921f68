"""SAM, MonoTAKD's spatial alignment module (Liu et al. 2025, Sec. 3.4, Fig. 3).

The student's residual branch must predict the LiDAR-only cues F_res at the right BEV cells
although its camera features are misplaced in depth; SAM widens and bends its receptive field.
Three forms (``model.takd.sam.mode``):

    cascade (the paper, Fig. 3):  x -> ASPP -> SE -> deformable 3x3 -> refine
    parallel:                     refine(SE(ASPP(x)) + deformable(x))
    released (the released code): refine_r(x * sigmoid(MLP(avgpool(ASPP(x)))) + D(D(x)))

    ASPP:     [1x1, 3x3 dil d1, 3x3 dil d2, image pooling] C -> C/2 each, concat -> 1x1 -> C
    SE:       y * sigmoid(MLP(avgpool(y))), MLP C -> C/r -> C    (Hu et al. 2018)
    refine:   3x3 C -> 2C, BN, ReLU, 3x3 2C -> C                 (linear: a signed residual is allowed)

released (GCnet.SAM of hoiliu-0801/MonoTAKD): the attention is computed from the ASPP's output
but multiplies x itself; its MLP is three bias-free layers C -> C -> C -> C (ReLU, ReLU,
sigmoid), no reduction; D is ONE DCNv1 3x3 (bias-free, its bias-free offset convolution keeps
``nn.Conv2d``'s initialisation) applied twice; refine_r is 3x3 C -> 2C, ReLU, 3x3 2C -> C, ReLU,
bias-free and without BatchNorm (a non-negative output, the released absolute-difference target).
The released ASPP's image-pooling branch has a BatchNorm, which fails at batch 1 in training;
monokd's has none, in every mode.

Shapes: (B, C, NY, NX) -> (B, C, NY, NX). The deformable convolution is
monokd.models.ops.deform_conv (pure PyTorch; DCNv1 unless ``modulated``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monokd.models.ops.deform_conv import DeformConv2d

MODES = ("cascade", "parallel", "released")


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    """Conv (same padding, no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): four parallel views of the map, fused by a 1x1."""

    def __init__(self, channels: int, dilations=(6, 12), branch_channels: int | None = None):
        super().__init__()
        mid = branch_channels or channels // 2
        self.branches = nn.ModuleList([conv_bn_relu(channels, mid, 1)]
                                      + [conv_bn_relu(channels, mid, 3, d) for d in dilations])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, mid, 1, bias=False), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(mid * (len(dilations) + 2), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [branch(x) for branch in self.branches]
        views.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(views, dim=1))


class SqueezeExcitation(nn.Module):
    """Channel attention: each channel scaled by a weight in (0, 1) computed from all channels' means."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x * weights[:, :, None, None]


class ContextAttention(nn.Module):
    """The released channel attention: x * sigmoid(MLP(avgpool(ASPP(x)))), MLP C -> C -> C -> C
    bias-free with ReLUs (no reduction)."""

    def __init__(self, channels: int, dilations=(6, 12)):
        super().__init__()
        self.aspp = ASPP(channels, dilations)
        self.fc = nn.Sequential(nn.Linear(channels, channels, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels, channels, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(F.adaptive_avg_pool2d(self.aspp(x), 1).flatten(1))
        return x * weights[:, :, None, None]


class SAM(nn.Module):
    """Spatial alignment module (see the module docstring).

    Args:
        channels: C of the BEV feature. mode: "cascade" (paper), "parallel" or "released".
        dilations: the ASPP's atrous rates (in BEV cells). se_reduction: SE bottleneck ratio
            (not read by "released", whose MLP keeps C). modulated: DCNv2 instead of DCNv1.
    """

    def __init__(self, channels: int, mode: str = "cascade", dilations=(6, 12), se_reduction: int = 4,
                 modulated: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"SAM: mode {mode!r} is not one of {MODES}")
        self.mode = mode
        if mode == "released":
            self.attention = ContextAttention(channels, dilations)
            self.deform = DeformConv2d(channels, channels, 3, padding=1, bias=False, modulated=modulated,
                                       zero_offsets=False, offset_bias=False)
            self.refine = nn.Sequential(
                nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False), nn.ReLU(inplace=True))
            return
        self.aspp = ASPP(channels, dilations)
        self.se = SqueezeExcitation(channels, se_reduction)
        self.deform = DeformConv2d(channels, channels, 3, padding=1, bias=False, modulated=modulated)
        self.refine = nn.Sequential(conv_bn_relu(channels, 2 * channels, 3),
                                    nn.Conv2d(2 * channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "released":
            return self.refine(self.attention(x) + self.deform(self.deform(x)))
        context = self.se(self.aspp(x))
        if self.mode == "cascade":
            aligned = self.deform(context)
        else:
            aligned = context + self.deform(x)
        return self.refine(aligned)
