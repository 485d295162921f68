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

from monokd.config import merge
from monokd.errors import ConfigError
from monokd.models.backbones.resnet import build_resnet
from monokd.schema import Section
from monokd.models.depth.losses import silog_loss, valid_depth
from monokd.models.depth.metrics import average, image_metrics

DEFAULTS = {
    "name": "depth_resnet",
    "backbone": {"depth": 18, "weights": None, "frozen_stages": -1, "norm": "auto",
                 "widths": [64, 128, 256, 512]},
    "decoder_channels": [256, 128, 64, 64],  # after C5+C4, +C3, +C2, and the last upsampling
    "min_depth": 1.0,
    "max_depth": 80.0,
}
LOSS_DEFAULTS = {"silog_lambda": 0.85, "silog_alpha": 10.0}  # the config's ``loss`` section
# The data the front-end trains and validates on: its target, the depth_2 maps; no scale or
# crop augmentation, which would make objects look nearer or farther than their depth (flip
# and photometric noise stay on).
TRAIN_DATA = {"depth_maps": "depth_2", "augment": {"scale_prob": 0.0, "shift": 0.0}}


SECTION = Section("model", DEFAULTS, typed=True, paths=("backbone.weights",))
LOSS_SECTION = Section("loss", LOSS_DEFAULTS)  # monokd.models.depth.losses


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
    """See the module docstring. Trained like a detector (``monokd.training.fit``):
    ``forward(batch)``, ``losses(outputs, batch)``; validated by its depth metrics
    (``score_batch`` per frame, ``summarise_scores`` over the split) instead of detection AP."""

    def __init__(self, cfg: dict | None = None, loss: dict | None = None):
        super().__init__()
        cfg = model_config(cfg)
        self.cfg = cfg
        self.min_depth, self.max_depth = float(cfg["min_depth"]), float(cfg["max_depth"])
        loss = {**LOSS_DEFAULTS, **(loss or {})}
        self.silog_lambda, self.silog_alpha = float(loss["silog_lambda"]), float(loss["silog_alpha"])
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

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, 1, H, W) depth in metres, in [min_depth, max_depth]."""
        c2, c3, c4, c5 = self.encode(images)
        x = self.up1(self.up2(self.up3(self.up4(c5, c4), c3), c2))
        s = torch.sigmoid(self.head(x))
        log_min, log_max = math.log(self.min_depth), math.log(self.max_depth)
        depth = torch.exp(log_min + s * (log_max - log_min))
        return F.interpolate(depth, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, batch: dict) -> dict:
        """``{"depth": (B, 1, H, W)}`` of ``batch["images"]`` (metres)."""
        return {"depth": self.predict(batch["images"])}

    def losses(self, outputs: dict, batch: dict) -> dict:
        """``{"loss": SILog}`` against ``batch["depth_maps"]`` (B, 1, H, W) over its valid
        pixels (:func:`valid_depth`); a batch without depth maps is a ConfigError."""
        gt = batch.get("depth_maps")
        if gt is None:
            raise ConfigError("data.depth_maps: the depth front-end trains on ground-truth depth maps "
                              f"(`monokd depth train` sets {TRAIN_DATA['depth_maps']!r}); the batch has none")
        pred = outputs["depth"]
        return {"loss": silog_loss(pred, gt, valid_depth(gt, self.min_depth, self.max_depth),
                                   self.silog_lambda, self.silog_alpha)}

    @torch.no_grad()
    def score_batch(self, batch: dict) -> dict[str, dict]:
        """Validation: {frame id: its AbsRel / RMSE / delta1} (frames without a valid GT pixel
        are left out), at the input size."""
        per_frame = {}
        for frame, pred, gt in zip(batch["frame_ids"], self(batch)["depth"], batch["depth_maps"]):
            scores = image_metrics(pred[None], gt[None], self.min_depth, self.max_depth)
            if scores:
                per_frame[frame] = scores[0]
        return per_frame

    @staticmethod
    def summarise_scores(per_frame: dict[str, dict]) -> dict[str, float]:
        """The validation's flat metrics: each metric's mean over frames, and ``images``."""
        return {k: float(v) for k, v in average([per_frame[f] for f in sorted(per_frame)]).items()}


def build_depth_net(cfg: dict) -> DepthNet:
    """From the whole config (reads ``model`` and ``loss``)."""
    return DepthNet(cfg.get("model"), cfg.get("loss"))


def training_config(cfg: dict) -> dict:
    """``cfg`` with the data the depth front-end trains and validates on (:data:`TRAIN_DATA`)."""
    return {**cfg, "data": merge(cfg.get("data") or {}, TRAIN_DATA)}
