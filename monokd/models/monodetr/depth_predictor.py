"""MonoDETR's foreground depth predictor (stride 16).

The three projected levels are brought to stride 16 (stride 8 by a 3x3 stride-2 conv, stride
16 by a 1x1 conv, stride 32 upsampled then a 1x1 conv, each with GroupNorm) and averaged; two
3x3 conv blocks give the depth features, and a 1x1 conv the logits of K LID bins plus one
background class. The depth encoder (one transformer layer) turns the depth features into
the depth embedding that the decoder's depth cross-attention reads, with the depth positional
encoding of the predicted (or, for ADD's teacher, ground-truth) depth added.

The stride-32 level is upsampled ``nearest`` (MonoDETR's 2022 code, which the ADD paper used:
``F.interpolate`` without a mode) or ``bilinear`` (the repository's later code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monokd.geometry.depth import lid_bin_centers


def _conv_gn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.GroupNorm(32, cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


UPSAMPLE_MODES = ("nearest", "bilinear")


def _resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DepthPredictor(nn.Module):
    """Forward: features [(B, C, H/8, W/8), (B, C, H/16, W/16), (B, C, H/32, W/32), ...] ->
    depth logits (B, K+1, H/16, W/16), depth features (B, C, H/16, W/16) and weighted depth
    (B, H/16, W/16) = softmax-weighted sum of the bin centres (background counts as max)."""

    def __init__(self, channels: int, num_bins: int = 80, depth_min: float = 1e-3, depth_max: float = 60.0,
                 upsample: str = "bilinear"):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"depth predictor upsample: {upsample!r} is not one of {UPSAMPLE_MODES}")
        self.num_bins = num_bins
        self.upsample_mode = upsample
        self.register_buffer("bin_centers", lid_bin_centers(num_bins, depth_min, depth_max), persistent=False)
        self.downsample = _conv_gn(channels, channels, 3, stride=2)
        self.proj = _conv_gn(channels, channels, 1)
        self.upsample = _conv_gn(channels, channels, 1)
        self.depth_head = nn.Sequential(_conv_gn(channels, channels, 3, relu=True),
                                        _conv_gn(channels, channels, 3, relu=True))
        self.depth_classifier = nn.Conv2d(channels, num_bins + 1, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src_16 = self.proj(features[1])
        size = src_16.shape[-2:]
        src_32 = self.upsample(_resize(features[2], size, self.upsample_mode))
        src_8 = self.downsample(features[0])
        if src_8.shape[-2:] != size:  # odd map sizes: stride-2 conv rounds up like the backbone
            src_8 = F.interpolate(src_8, size=size, mode="bilinear", align_corners=False)
        depth_features = self.depth_head((src_8 + src_16 + src_32) / 3)
        logits = self.depth_classifier(depth_features)
        weighted_depth = (logits.softmax(dim=1) * self.bin_centers[None, :, None, None]).sum(dim=1)
        return logits, depth_features, weighted_depth
