"""The 2-D BEV backbone (SECOND / PointPillars; OpenPCDet's BaseBEVBackbone), sizes from the config.

    BEV (B, C_in, NY, NX)
      stage k: 3x3 conv stride s_k (C -> F_k) + layer_nums[k] x 3x3 conv (F_k -> F_k),
               each conv + BatchNorm + ReLU                   -> (B, F_k, NY / S_k, NX / S_k)
               S_k = s_1 * ... * s_k (the stage's stride in grid cells)
      upsample k: ConvTranspose u_k x u_k stride u_k (u_k >= 1), or a u_k^-1 x u_k^-1 conv of
               stride 1 / u_k (u_k < 1); F_k -> U_k, + BatchNorm + ReLU
                                                              -> (B, U_k, NY / T, NX / T)
    concat over k                                             -> (B, sum U_k, NY / T, NX / T)

with T = S_k / u_k, the same for every stage (checked). Without ``upsample_strides`` the
output is the last stage's. Config (``model.bev_backbone``, OpenPCDet's names)::

    layer_nums: [10, 10, 10]            # CaDDN (KITTI)
    layer_strides: [2, 2, 2]
    num_filters: [64, 128, 256]
    upsample_strides: [1, 2, 4]
    num_upsample_filters: [128, 128, 128]

Given the grid, every stage stride S_k must divide NX and NY (a ConfigError naming both,
:meth:`monokd.geometry.grid.BEVGrid.check_strides`), so the upsampled maps concatenate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from monokd.errors import ConfigError, did_you_mean
from monokd.geometry.grid import BEVGrid

KEYS = ("layer_nums", "layer_strides", "num_filters", "upsample_strides", "num_upsample_filters")


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True)]


def _upsample(in_channels: int, out_channels: int, stride: float) -> nn.Sequential:
    if stride >= 1:
        conv = nn.ConvTranspose2d(in_channels, out_channels, int(stride), stride=int(stride), bias=False)
    else:
        step = int(round(1 / stride))
        conv = nn.Conv2d(in_channels, out_channels, step, stride=step, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True))


def backbone_config(cfg: dict, key: str) -> dict:
    """Check the section's keys and list lengths; returns it with the upsampling lists defaulted."""
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown keys {unknown} ({did_you_mean(unknown[0], KEYS)}known: {', '.join(KEYS)})")
    for name in KEYS[:3]:
        if name not in cfg:
            raise ConfigError(f"{key}.{name} is missing")
    out = {name: list(cfg.get(name) or []) for name in KEYS}
    stages = len(out["layer_nums"])
    for name in KEYS[1:3]:
        if len(out[name]) != stages:
            raise ConfigError(f"{key}.{name} has {len(out[name])} entries for {stages} stages (layer_nums)")
    if len(out["upsample_strides"]) != len(out["num_upsample_filters"]) or \
            len(out["upsample_strides"]) not in (0, stages):
        raise ConfigError(f"{key}: upsample_strides and num_upsample_filters need one entry per stage "
                          f"({stages}) or none; got {len(out['upsample_strides'])} and "
                          f"{len(out['num_upsample_filters'])}")
    return out


class BEVBackbone(nn.Module):
    """Multi-stage 2-D BEV backbone.

    Args:
        cfg: the ``model.bev_backbone`` section (see the module docstring).
        in_channels: channels of the input BEV map.
        grid: the BEV grid; when given, the stage strides are checked against it.
        key: the config key, named in errors.
    Attributes:
        stage_channels: F_k.  stage_strides: S_k in grid cells.  out_channels: sum U_k (or
        F_last without upsampling).  out_stride: T in grid cells.
    """

    def __init__(self, cfg: dict, in_channels: int, grid: BEVGrid | None = None, key: str = "model.bev_backbone"):
        super().__init__()
        cfg = backbone_config(cfg, key)
        self.stage_channels = [int(f) for f in cfg["num_filters"]]
        self.stage_strides = [int(s) for s in _cumulative(cfg["layer_strides"], f"{key}.layer_strides")]
        if grid is not None:
            grid.check_strides(self.stage_strides, f"{key}.layer_strides")
        self.stages = nn.ModuleList()
        channels = in_channels
        for num, stride, filters in zip(cfg["layer_nums"], cfg["layer_strides"], self.stage_channels):
            layers = _conv_bn_relu(channels, filters, int(stride))
            for _ in range(int(num)):
                layers += _conv_bn_relu(filters, filters)
            self.stages.append(nn.Sequential(*layers))
            channels = filters
        self.upsamples = nn.ModuleList(
            _upsample(f, int(u_f), float(u)) for f, u, u_f in
            zip(self.stage_channels, cfg["upsample_strides"], cfg["num_upsample_filters"]))
        if self.upsamples:
            outs = {s / float(u) for s, u in zip(self.stage_strides, cfg["upsample_strides"])}
            if len(outs) != 1:
                raise ConfigError(f"{key}: the stages end at strides {self.stage_strides} and are upsampled by "
                                  f"{cfg['upsample_strides']}, giving different resolutions {sorted(outs)}; "
                                  "their maps cannot be concatenated")
            self.out_stride = outs.pop()
            self.out_channels = sum(int(u_f) for u_f in cfg["num_upsample_filters"])
        else:
            self.out_stride = float(self.stage_strides[-1])
            self.out_channels = self.stage_channels[-1]

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C_in, NY, NX) -> (B, out_channels, NY / T, NX / T) and the stage outputs
        [(B, F_k, NY / S_k, NX / S_k)]."""
        stage_outputs, upsampled = [], []
        x = bev
        for k, stage in enumerate(self.stages):
            x = stage(x)
            stage_outputs.append(x)
            if self.upsamples:
                upsampled.append(self.upsamples[k](x))
        features = torch.cat(upsampled, dim=1) if upsampled else x
        return features, stage_outputs


def _cumulative(strides, key: str) -> list[int]:
    for s in strides:
        if s != int(s) or int(s) < 1:
            raise ConfigError(f"{key}: {s} is not a positive integer stride")
    return [math.prod(int(s) for s in strides[:k + 1]) for k in range(len(strides))]
