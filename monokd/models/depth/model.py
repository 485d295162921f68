"""The monocular depth front-end: a ResNet encoder-decoder that predicts metric depth per pixel.

    images (B, 3, H, W)
      -> ResNet stem + layer1 .. layer4 (monokd.models.backbones.resnet): C2..C5, strides 4..32
      -> decoder: from C5, four times [2x bilinear upsample, concat the skip C4 / C3 / C2,
         3x3 conv + BN + ReLU twice]  (a U-Net / Monodepth-style decoder), stride 4, 64 ch
      -> 3x3 conv -> sigmoid s -> depth = exp(log d_min + s * (log d_max - log d_min))
      -> bilinear to (H, W)                                     (B, 1, H, W) metres

The output is bounded in [d_min, d_max] and uniform in log-depth, the space the
scale-invariant log loss (monokd.models.depth.losses) measures errors in. PatchNet's paper
uses DORN's precomputed maps; this front-end is the "standard architecture of the field"
that stands in for it (BTS, AdaBins and Monodepth2 share this encoder-decoder shape).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from monokd.errors import ConfigError
from monokd.models.backbones.resnet import build_resnet
from monokd.schema import Section

DEFAULTS = {
    "name": "depth_resnet",
    "backbone": {"depth": 18, "weights": None, "frozen_stages": -1, "norm": "auto"},
    "decoder_channels": [256, 128, 64, 64],  # after C5+C4, +C3, +C2, and the last upsampling
    "min_depth": 1.0,
    "max_depth": 80.0,
}


SECTION = Section("model", DEFAULTS, typed=True, paths=("backbone.weights",))
LOSS_SECTION = Section("loss", {"silog_lambda": 0.85, "silog_alpha": 10.0})  # monokd.models.depth.losses


def model_config(cfg: dict | None) -> dict:
    """``cfg["model"]`` over DEFAULTS; unknown keys raise ConfigError naming them."""
    out = SECTION.resolve(cfg)
    if out["name"] != "depth_resnet":
        raise ConfigError(f"model.name: {out['name']!r}: the depth front-end is 'depth_resnet'")
    if not 0 < float(out["min_depth"]) < float(out["max_depth"]):
        raise ConfigError(f"model.min_depth / max_depth: need 0 < {out['min_depth']} < {out['max_depth']}")
    if len(out["decoder_channels"]) != 4:
        raise ConfigError("model.decoder_channels: four widths (after C4, C3, C2, and the last stage)")
    return out


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """2x bilinear upsampling, concat a skip (if any), two 3x3 conv + BN + ReLU."""

    def __init__(self, cin: int, skip: int, cout: int):
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(cin + skip, cout), _conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.convs(x if skip is None else torch.cat([x, skip], 1))


class DepthNet(nn.Module):
    """See the module docstring. ``forward(images) -> (B, 1, H, W)`` depth in metres."""

    def __init__(self, cfg: dict | None = None):
        super().__init__()
        cfg = model_config(cfg)
        self.cfg = cfg
        self.min_depth, self.max_depth = float(cfg["min_depth"]), float(cfg["max_depth"])
        self.encoder = build_resnet(cfg["backbone"])
        c3, c4, c5 = self.encoder.num_channels
        c2 = c3 // 2
        w = list(cfg["decoder_channels"])
        self.up4 = UpBlock(c5, c4, w[0])
        self.up3 = UpBlock(w[0], c3, w[1])
        self.up2 = UpBlock(w[1], c2, w[2])
        self.up1 = UpBlock(w[2], 0, w[3])  # stride 2
        self.head = nn.Conv2d(w[3], 1, 3, padding=1)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[C2, C3, C4, C5] (strides 4, 8, 16, 32); C2 is layer1, which ResNet.forward skips."""
        e = self.encoder
        c2 = e.layer1(e.maxpool(e.relu(e.bn1(e.conv1(images)))))
        c3 = e.layer2(c2)
        c4 = e.layer3(c3)
        return [c2, c3, c4, e.layer4(c4)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c2, c3, c4, c5 = self.encode(images)
        x = self.up1(self.up2(self.up3(self.up4(c5, c4), c3), c2))
        s = torch.sigmoid(self.head(x))
        log_min, log_max = math.log(self.min_depth), math.log(self.max_depth)
        depth = torch.exp(log_min + s * (log_max - log_min))
        return F.interpolate(depth, size=images.shape[-2:], mode="bilinear", align_corners=False)


def build_depth_net(cfg: dict) -> DepthNet:
    """From the whole config (reads ``model``)."""
    return DepthNet(cfg.get("model"))
