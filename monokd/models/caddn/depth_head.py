"""CaDDN's depth distribution network: a DeepLabV3 head (Chen et al. 2017) on the image
trunk's last stage.

    C5 (B, C_in, H/s, W/s)
      -> ASPP: 1x1 conv | three 3x3 atrous convs (rates r1, r2, r3) | image pooling + 1x1 conv
         (each -> C_aspp, BN, ReLU; the pooling branch's norm: see below)
      -> concat (5 C_aspp) -> 1x1 conv, BN, ReLU, dropout
      -> 3x3 conv, BN, ReLU -> 1x1 conv -> depth logits (B, D + 1, H/s, W/s)
      -> bilinear upsampling to the image features' resolution (B, D + 1, H/4, W/4)

The D + 1 classes are the D LID bins of ``monokd.geometry.depth`` and one "beyond range" bin.

The image-pooling branch (``pooling_norm``):

* True: torchvision's DeepLabHead (what CaDDN builds and initialises from COCO): 1x1 conv
  without bias, BatchNorm, ReLU, so torchvision's ``classifier.0.convs.4.{1,2}`` load. Its map
  is 1 x 1, so a training batch of one image gives one value per channel, which BatchNorm
  cannot normalise (PyTorch raises); for that case only, the running statistics are used and
  not updated (:class:`PooledBatchNorm2d`). Batches of two or more images (the official 4)
  normalise over the batch as torchvision does.
* False: a biased 1x1 conv and ReLU, no norm (works at any batch size; no torchvision keys).

Module names (for weights; torchvision DeepLabV3 -> monokd in monokd.models.caddn.weights):
``aspp.branches.{0..3}.{0,1}`` (conv, BN), ``aspp.pooling.{1,2}``, ``aspp.project.0.{0,1}``,
``head.{0,1}``, ``classifier``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises a single value per channel (a batch of one
    1 x 1 map) with its running statistics instead of raising; otherwise nn.BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: (B, C_in, h, w) -> (B, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, rates=(12, 24, 36), dropout: float = 0.5,
                 pooling_norm: bool = False):
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_relu(in_channels, out_channels)] +
                                      [_conv_bn_relu(in_channels, out_channels, 3, int(r)) for r in rates])
        if pooling_norm:
            self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                         PooledBatchNorm2d(out_channels), nn.ReLU(inplace=True))
        else:
            self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1),
                                         nn.ReLU(inplace=True))
        self.project = nn.Sequential(_conv_bn_relu((len(rates) + 2) * out_channels, out_channels),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pooling(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class DepthHead(nn.Module):
    """DeepLabV3 head -> (B, num_bins + 1, *size) depth logits."""

    def __init__(self, in_channels: int, num_bins: int, channels: int = 256, rates=(12, 24, 36),
                 dropout: float = 0.5, pooling_norm: bool = False):
        super().__init__()
        self.aspp = ASPP(in_channels, channels, rates, dropout, pooling_norm)
        self.head = _conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_bins + 1, 1)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """features (B, C_in, h, w) -> logits (B, D + 1, size[0], size[1])."""
        logits = self.classifier(self.head(self.aspp(features)))
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits
