"""The LiDAR teacher (lidar_pillars) from its synth recipe on a real SynthKITTI batch."""

from __future__ import annotations

import math

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


def test_lidar_teacher_decodes_a_hand_placed_anchor(teacher_and_batch):
    """One confident anchor a frame with zero box residuals decodes to that anchor's box in
    the camera frame: the cell centred 19.6 m ahead and 0.32 m left, KITTI's car anchor
    (3.9 x 1.6 x 1.56 m, centre 1.0 m below the LiDAR, heading 0); direction bin 1 keeps the heading,
    bin 0 turns it by pi (sector [pi/4, 5pi/4) of the 0.785 rad offset)."""
    teacher, batch, _ = teacher_and_batch
    teacher.eval()
    with torch.no_grad():
        outputs = teacher(batch)
    # channels-last on the (y, x) cells of the 0.64 m grid from (2, -30.08): 94 x 70 cells
    assert outputs["pred_cls"].shape == (2, 94, 70, 2)  # 2 anchors (0, pi/2) x 1 class
    j, i = 47, 27  # y = -30.08 + 47.5 * 0.64 = 0.32 m, x = 2 + 27.5 * 0.64 = 19.6 m
    outputs["pred_cls"] = torch.full_like(outputs["pred_cls"], -10.0)  # sigmoid 4.5e-5: dropped
    outputs["pred_cls"][:, j, i, 0] = 3.0  # anchor 0 of that cell, both frames
    outputs["pred_boxes"] = torch.zeros_like(outputs["pred_boxes"])
    outputs["pred_dir"] = torch.zeros_like(outputs["pred_dir"])
    outputs["pred_dir"][0, j, i, 1] = 5.0  # anchor 0's bins are channels 0, 1
    outputs["pred_dir"][1, j, i, 0] = 5.0
    detections = teacher.decode(outputs, batch)
    assert [len(found) for found in detections] == [1, 1]
    for b, heading in ((0, 0.0), (1, math.pi)):
        car = detections[b][0]
        # KITTI's location: the box centre in the camera frame, lowered by h / 2 along its y (down)
        centre = batch["lidar_to_rect"][b].double() @ torch.tensor([19.6, 0.32, -1.0, 1.0], dtype=torch.float64)
        bottom = centre[:3] + torch.tensor([0.0, 1.56 / 2, 0.0], dtype=torch.float64)
        assert car.type == "Car" and car.score == pytest.approx(1 / (1 + math.exp(-3.0)))
        assert (car.h, car.w, car.l) == pytest.approx((1.56, 1.6, 3.9))
        assert car.location == pytest.approx(bottom.numpy(), abs=1e-5)
        # the heading's direction in the camera frame, (cos ry, ., -sin ry): ry = -heading - pi/2
        # for a camera exactly along the LiDAR's axes
        dx, _, dz = (batch["lidar_to_rect"][b, :3, :3].double()
                     @ torch.tensor([math.cos(heading), math.sin(heading), 0.0], dtype=torch.float64)).tolist()
        assert math.remainder(car.rotation_y - math.atan2(-dz, dx), 2 * math.pi) == pytest.approx(0, abs=1e-6)
        assert math.remainder(car.rotation_y + heading + math.pi / 2, 2 * math.pi) == pytest.approx(0, abs=0.01)
        viewing = math.atan2(bottom[0].item(), bottom[2].item())  # alpha = ry - the ray's angle
        assert math.remainder(car.alpha - car.rotation_y + viewing, 2 * math.pi) == pytest.approx(0, abs=1e-6)
        u, v, w = (batch["P2"][b].double() @ torch.cat([bottom, bottom.new_ones(1)])).tolist()
        x1, y1, x2, y2 = car.box2d
        assert x1 < u / w < x2 and y1 < v / w <= y2 + 1e-6  # the bottom centre lies in the 2-D box


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
