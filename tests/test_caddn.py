"""CaDDN: the GT-depth teacher's one-hot distribution, the depth loss, the depth head, the
frustum, and (with monokd.models.bev) the whole detector."""

from __future__ import annotations

import math

import pytest
import torch

from monokd.geometry.depth import depth_to_lid_bin
from monokd.models.caddn.depth_head import DepthHead
from monokd.models.caddn.frustum import block_mean_depth, frustum_features, gt_pixel_distribution
from monokd.models.caddn.losses import depth_loss, focal_loss

torch.set_num_threads(1)
BINS = {"num_bins": 8, "min": 2.0, "max": 46.8}


def test_gt_pixel_distribution_with_zeros_and_nans():
    depth = torch.zeros(1, 1, 4, 8)
    depth[0, 0, :2, :2] = torch.tensor([[10.0, 0.0], [float("nan"), 20.0]])  # block 0: mean of 10 and 20 only
    depth[0, 0, :2, 2:4] = float("nan")                                    # block 1: no valid pixel
    depth[0, 0, :2, 4:6] = 60.0                                            # block 2: beyond the range
    depth[0, 0, :2, 6:8] = torch.tensor([[3.0, -1.0], [float("inf"), 0.0]])  # block 3: only the 3 m pixel
    depth[0, 0, 2:, :2] = 2.0                                              # block 4: the range's first depth
    mean = block_mean_depth(depth, (2, 4))
    assert mean[0, 0, 0].tolist() == [15.0, 0.0, 60.0, 3.0] and mean[0, 0, 1, 0] == 2.0
    dist = gt_pixel_distribution(depth, (2, 4), **{"num_bins": 8, "depth_min": 2.0, "depth_max": 46.8})
    assert dist.shape == (1, 9, 2, 4) and torch.isfinite(dist).all()
    assert torch.equal(dist.sum(dim=1), torch.ones(1, 2, 4))  # one-hot everywhere
    bins = dist.argmax(dim=1)[0]
    expected_15 = int(depth_to_lid_bin(torch.tensor(15.0), 8, 2.0, 46.8))
    # LID edges for 8 bins over [2, 46.8]: d_i = 2 + 1.2444 i (i + 1) / 2 -> 15 m lies in bin 4 (14.4 .. 20.7)
    assert expected_15 == 4 and bins[0].tolist() == [4, 8, 8, 0]
    assert bins[1].tolist() == [0, 8, 8, 8]  # 2 m -> bin 0; empty blocks -> the dropped bin
    with pytest.raises(ValueError, match="whole number"):
        gt_pixel_distribution(depth, (3, 4), 8, 2.0, 46.8)


def test_frustum_drops_the_last_bin():
    features = torch.randn(2, 3, 4, 5)
    dist = torch.softmax(torch.randn(2, 7, 4, 5), dim=1)
    frustum = frustum_features(features, dist)
    assert frustum.shape == (2, 3, 6, 4, 5)
    assert torch.allclose(frustum[1, 2, 5, 3, 4], features[1, 2, 3, 4] * dist[1, 5, 3, 4])
    assert torch.allclose(frustum.sum(dim=2), features * (1 - dist[:, None, -1]), atol=1e-6)


def test_focal_loss_and_foreground_weighting():
    logits = torch.zeros(1, 4, 2, 2)  # uniform: p = 1/4 for every class
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    expected = -0.25 * 0.75 ** 2 * math.log(0.25)
    assert torch.allclose(focal_loss(logits, target, 0.25, 2.0), torch.full((1, 2, 2), expected))
    depth = torch.full((1, 1, 8, 8), 2.5)  # bin 0 of 3 bins over [2, 46.8] everywhere
    targets = [{"boxes_2d": torch.tensor([[0.0, 0.0, 4.0, 4.0]])}]  # covers feature cell (0, 0) at stride 4
    bins = {"num_bins": 3, "min": 2.0, "max": 46.8}
    loss = depth_loss(logits, depth, targets, 4, bins, {"weight": 1.0, "fg_weight": 13.0, "bg_weight": 1.0})
    assert loss.item() == pytest.approx(expected * (13 + 3) / 4)
    perfect = torch.full((1, 4, 2, 2), -20.0)
    perfect[:, 0] = 20.0
    assert depth_loss(perfect, depth, targets, 4, bins).item() < 1e-6


def test_depth_head_shapes_and_batch_of_one():
    head = DepthHead(32, num_bins=8, channels=16, rates=(1, 2, 3)).train()
    logits = head(torch.randn(1, 32, 4, 13), (16, 52))  # a batch of one trains (no BN on the pooled map)
    assert logits.shape == (1, 9, 16, 52)
    logits.sum().backward()
    assert head.aspp.pooling[1].weight.grad is not None
