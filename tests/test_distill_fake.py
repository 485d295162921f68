"""A tiny detector that implements monokd.models.contract, for the distillation tests.

Two feature levels (strides 4 and 8, 16 channels), a 2-layer "decoder" over 6 queries, heads
that sample the stride-8 map with grid_sample (as MonoDETR's depth does), and an optional
GT-depth input channel that makes it a teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monokd.geometry.depth import object_depth_map
from monokd.models.contract import SIGNALS, Detector, DistillSpec, attach_signals, signal_set

CHANNELS, QUERIES, LAYERS = 16, 6, 2


class FakeDetector(Detector):
    def __init__(self, depth_input: bool = False, estimated_depth: bool = True):
        super().__init__()
        self.depth_input = depth_input
        self.stem = nn.Conv2d(4 if depth_input else 3, CHANNELS, 3, stride=4, padding=1)
        self.down = nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1)
        self.query_embed = nn.Embedding(QUERIES, CHANNELS)
        self.layers = nn.ModuleList(nn.Linear(2 * CHANNELS, CHANNELS) for _ in range(LAYERS))
        self.cls_head = nn.Linear(CHANNELS, 3)
        self.box_head = nn.Linear(CHANNELS, 6)
        self.depth_head = nn.Conv2d(CHANNELS, 1, 1)
        self.spec = DistillSpec([CHANNELS, CHANNELS], [4, 8], CHANNELS, LAYERS)
        self.estimated_depth = estimated_depth

    @property
    def distill_spec(self) -> DistillSpec:
        return self.spec

    @distill_spec.setter
    def distill_spec(self, spec: DistillSpec) -> None:
        self.spec = spec

    def forward(self, batch: dict, signals=()) -> dict:
        images = batch["images"]
        if self.depth_input:
            height, width = images.shape[-2:]
            depth = torch.stack([object_depth_map(t["boxes_2d"], t["depth"], (height, width), 1)
                                 for t in batch["targets"]]).unsqueeze(1).to(images)
            images = torch.cat([images, depth / 60.0], dim=1)
        f4 = F.relu(self.stem(images))
        f8 = F.relu(self.down(f4))
        pooled = f8.mean(dim=(2, 3))  # (B, C)
        query = self.query_embed.weight.unsqueeze(0).expand(images.shape[0], -1, -1)
        states = []
        for layer in self.layers:
            query = query + torch.tanh(layer(torch.cat([query, pooled[:, None].expand_as(query)], dim=-1)))
            states.append(query)
        boxes = self.box_head(query).sigmoid()
        grid = boxes[:, :, None, :2] * 2 - 1  # (B, Q, 1, 2)
        depth_map = F.softplus(self.depth_head(f8)) * 10
        sampled = F.grid_sample(depth_map, grid, align_corners=False)[:, 0, :, 0]  # (B, Q)
        sampled = sampled * batch["P2"][:, 1, 1, None] / 50.0  # reads the focal length, as MonoDETR does
        outputs = {
            "pred_logits": self.cls_head(query),
            "pred_boxes": boxes,
            "pred_depth": torch.stack([sampled, torch.zeros_like(sampled)], dim=-1),
        }
        return attach_signals(outputs, signal_set(signals), features=[f4, f8], queries=torch.stack(states),
                              estimated_depth=depth_map.detach() if self.estimated_depth else None)

    def losses(self, outputs: dict, batch: dict) -> dict:
        terms = {"loss_cls": outputs["pred_logits"].pow(2).mean(),
                 "loss_box": (outputs["pred_boxes"] - 0.5).abs().mean()}
        terms["loss"] = terms["loss_cls"] + terms["loss_box"]
        return terms

    def decode(self, outputs: dict, batch: dict) -> list:
        return [[] for _ in batch["targets"]]

    def match_foreground(self, outputs: dict, batch: dict):
        """Target j <-> query j (a fixed matching is enough to test the mask plumbing)."""
        out = []
        for target in batch["targets"]:
            n = min(len(target["depth"]), QUERIES)
            out.append((torch.arange(n), torch.arange(n)))
        return out


def make_batch(batch_size: int = 2, height: int = 32, width: int = 64, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for b in range(batch_size):
        boxes = torch.tensor([[4.0, 4.0, 20.0, 16.0], [30.0, 10.0, 50.0, 30.0]])[: b + 1]
        targets.append({"boxes_2d": boxes, "depth": torch.tensor([12.0, 35.0])[: b + 1],
                        "labels": torch.zeros(b + 1, dtype=torch.long)})
    P2 = torch.tensor([[50.0, 0, 32, 0], [0, 50.0, 16, 0], [0, 0, 1, 0]]).expand(batch_size, 3, 4).clone()
    return {"images": torch.randn(batch_size, 3, height, width, generator=gen), "P2": P2, "targets": targets}


def test_forward_gives_exactly_the_signals_asked_for():
    model = FakeDetector()
    batch = make_batch()
    assert SIGNALS not in model(batch)  # nothing asked, nothing computed
    signals = model(batch, signals={"features", "queries"})[SIGNALS]
    assert [tuple(f.shape) for f in signals.features] == [(2, CHANNELS, 8, 16), (2, CHANNELS, 4, 8)]
    assert signals.queries.shape == (LAYERS, 2, QUERIES, CHANNELS)
    assert signals.estimated_depth is None and signals.bev is None  # not asked for
    assert model(batch, signals={"estimated_depth"})[SIGNALS].estimated_depth.shape == (2, 1, 4, 8)
