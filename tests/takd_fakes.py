"""Tiny stand-ins for MonoTAKD's three models (camera BEV detector, LiDAR teacher), with the
interfaces monokd/models/takd and monokd/distill/takd rely on: ``bev_features`` /
``detect_from_bev`` (camera), the ``bev`` distillation signal and channels-last anchor-head
outputs (both). BEV grid 6 x 5 cells, 8 channels, 2 anchors x 2 classes per cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monokd.models.contract import Detector, attach_signals, signal_set

C, NY, NX, A, K = 8, 6, 5, 2, 2


class FakeHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(C, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        self.cls = nn.Conv2d(C, A * K, 1)
        self.box = nn.Conv2d(C, A * 7, 1)
        self.dir = nn.Conv2d(C, A * 2, 1)

    def forward(self, bev):
        x = self.backbone(bev)
        return {"pred_cls": self.cls(x).permute(0, 2, 3, 1), "pred_boxes": self.box(x).permute(0, 2, 3, 1),
                "pred_dir": self.dir(x).permute(0, 2, 3, 1)}


class FakeCamera(Detector):
    """images (+ depth_maps when ``gt_pixel``) -> BEV (B, C, NY, NX) -> head."""

    bev_channels = C

    def __init__(self, gt_pixel: bool = False):
        super().__init__()
        self.gt_pixel = gt_pixel
        self.stem = nn.Conv2d(4 if gt_pixel else 3, C, 3, padding=1)
        self.norm = nn.BatchNorm2d(C)
        self.depth = nn.Conv2d(C, 4, 1)
        self.head = FakeHead()

    def bev_features(self, batch):
        x = batch["images"]
        if self.gt_pixel:
            x = torch.cat([x, batch["depth_maps"] / 10], dim=1)
        f = F.relu(self.norm(self.stem(x)))
        return {"bev": F.adaptive_avg_pool2d(f, (NY, NX)), "depth_logits": self.depth(f)}

    def detect_from_bev(self, bev, batch, signals=()):
        return attach_signals(self.head(bev), signal_set(signals), bev=bev)

    def forward(self, batch, signals=()):
        features = self.bev_features(batch)
        outputs = self.detect_from_bev(features["bev"], batch, signals)
        outputs["pred_depth_logits"] = features["depth_logits"]
        return outputs

    def losses(self, outputs, batch):
        target = batch["depth_maps"]
        terms = {"loss_cls": outputs["pred_cls"].sigmoid().mean(),
                 "loss_depth": (outputs["pred_depth_logits"].mean(1, keepdim=True) - target).abs().mean()}
        terms["loss"] = terms["loss_cls"] + terms["loss_depth"]
        return terms

    def decode(self, outputs, batch):
        return [[] for _ in batch["frame_ids"]]


class FakeLidar(Detector):
    """``points`` -> occupancy-like BEV -> head (the teacher)."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(1, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        self.head = FakeHead()

    def forward(self, batch, signals=()):
        occupancy = torch.stack([torch.histc(p[:, 0], bins=NY * NX, min=-1, max=1).view(1, NY, NX)
                                 for p in batch["points"]])
        bev = self.encode(occupancy)
        return attach_signals(self.head(bev), signal_set(signals), bev=bev)


def build_fake_camera(cfg):
    return FakeCamera(gt_pixel=(cfg["model"].get("depth_input") == "gt_pixel"))


def fake_batch(batch_size: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(batch_size, 3, 12, 16, generator=g),
            "depth_maps": 10 * torch.rand(batch_size, 1, 12, 16, generator=g),
            "points": [2 * torch.rand(50, 4, generator=g) - 1 for _ in range(batch_size)],
            "frame_ids": [f"{i:06d}" for i in range(batch_size)]}


def build_fake_lidar(cfg):
    return FakeLidar()
