"""The LiDAR teacher (lidar_pillars) from its synth recipe on a real SynthKITTI batch."""

from __future__ import annotations

import pytest
import torch

from monokd.config import load_config
from monokd.data.dataset import KittiDataset, collate
from monokd.errors import ConfigError
from monokd.models import build_detector
from monokd.models.contract import SIGNALS


@pytest.fixture(scope="module")
def teacher_and_batch(synth_root):
    cfg = load_config("configs/takd_lidar_synth.yaml", [f"data.root={synth_root}"])
    torch.manual_seed(0)
    dataset = KittiDataset(synth_root, "val", cfg)
    return build_detector(cfg), collate([dataset[0], dataset[1]]), cfg


def test_lidar_teacher_trains_and_decodes(teacher_and_batch):
    teacher, batch, _ = teacher_and_batch
    teacher.train()
    outputs = teacher(batch, signals={"bev"})
    assert outputs[SIGNALS].bev.shape == (2, 32, *teacher.grid.bev_shape())
    assert outputs[SIGNALS].bev.abs().sum() > 0  # the sweep is in range
    terms = teacher.losses(outputs, batch)
    assert {"loss", "loss_cls", "loss_box"} <= set(terms) and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert teacher.pillars.linear.weight.grad.abs().sum() > 0
    teacher.eval()
    with torch.no_grad():
        detections = teacher.decode(teacher(batch), batch)
    assert len(detections) == 2


def test_lidar_teacher_needs_points(teacher_and_batch):
    teacher, batch, cfg = teacher_and_batch
    with pytest.raises(ConfigError, match="points"):
        teacher({k: v for k, v in batch.items() if k != "points"})
    cfg = {**cfg, "data": {**cfg["data"], "load_points": False}}
    with pytest.raises(ConfigError, match="data.load_points"):
        build_detector(cfg)


@pytest.mark.slow
def test_lidar_teacher_overfits_two_frames_and_finds_their_cars(teacher_and_batch):
    """25 AdamW steps on 2 frames: the loss falls 10x and every in-range GT car is decoded
    within 0.5 m (the sweep, the grid, the anchors, the coder and the decoding agree)."""
    _, batch, cfg = teacher_and_batch
    torch.manual_seed(0)
    teacher = build_detector(cfg)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        teacher.train()
        loss = teacher.losses(teacher(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    teacher.eval()
    with torch.no_grad():
        detections = teacher.decode(teacher(batch), batch)
    x_max = teacher.grid.point_cloud_range[3]
    for found, target in zip(detections, batch["targets"]):
        for location in target["location"]:
            if location[2] < x_max - 2:  # rect z = LiDAR x (forward)
                gaps = [((torch.tensor(o.location) - location)[[0, 2]]).norm() for o in found]
                assert gaps and min(gaps) < 0.5, (location, [o.location for o in found])
