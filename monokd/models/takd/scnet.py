"""SCNET, the self-calibrated convolution stack the released MonoTAKD student runs on its BEV
feature before the BEV backbone (``DOMAIN_ADAPTATION: SCNET`` of hoiliu-0801/MonoTAKD; blocks
of SCNet, Liu et al., CVPR 2020, "Improving Convolutional Networks with Self-Calibrated
Convolutions").

One SCBottleneck on x (B, C, H, W), half width h = C / 2:

    a = ReLU(BN(3x3(ReLU(BN(1x1_a(x))))))                   the plain half
    u = ReLU(BN(1x1_b(x)))
    s = BN(3x3_4(BN(3x3_3(u)) * sigmoid(u + up(BN(3x3_2(avgpool_r(u)))))))   self-calibration
    y = ReLU(BN(1x1([a, ReLU(s)])) + x)                     (up: nearest, r = 4)

The released NUM_BLOCKS: 5 builds ``range(1, 5)``: four blocks. Shapes: (B, C, H, W) ->
(B, C, H, W); at C = 128 the four blocks hold 726,016 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias), nn.BatchNorm2d(cout))


class SelfCalibratedConv(nn.Module):
    """The calibrated half: k3(u) gated by sigmoid(u + up(k2(avgpool_r(u)))), then k4."""

    def __init__(self, channels: int, pooling: int = 4):
        super().__init__()
        self.pooling = pooling
        self.k2 = _conv_bn(channels, channels, 3, bias=True)
        self.k3 = _conv_bn(channels, channels, 3, bias=True)
        self.k4 = _conv_bn(channels, channels, 3, bias=True)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        context = self.k2(F.avg_pool2d(u, self.pooling, self.pooling))
        gate = torch.sigmoid(u + F.interpolate(context, u.shape[-2:]) + 1e-8)
        return self.k4(self.k3(u) * gate)


class SCBottleneck(nn.Module):
    """A residual block of a plain 3x3 half and a self-calibrated half (module docstring)."""

    def __init__(self, channels: int, pooling: int = 4):
        super().__init__()
        half = channels // 2
        self.reduce_a = _conv_bn(channels, half, 1, bias=False)
        self.reduce_b = _conv_bn(channels, half, 1, bias=False)
        self.k1 = _conv_bn(half, half, 3, bias=True)
        self.calibrated = SelfCalibratedConv(half, pooling)
        self.expand = _conv_bn(2 * half, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.k1(F.relu(self.reduce_a(x))))
        b = F.relu(self.calibrated(F.relu(self.reduce_b(x))))
        return F.relu(self.expand(torch.cat([a, b], dim=1)) + x)


class SCNet(nn.Module):
    """``blocks`` SCBottlenecks at constant width: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, blocks: int = 4, pooling: int = 4):
        super().__init__()
        if channels % 2 or blocks < 1:
            raise ValueError(f"SCNet: channels must be even and blocks >= 1 (got {channels}, {blocks})")
        self.layers = nn.Sequential(*[SCBottleneck(channels, pooling) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
