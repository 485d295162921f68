import math

import pytest
import torch

from monokd.models.monodetr.box_coding import encode_boxes
from monokd.models.monodetr.matcher import HungarianMatcher, assign

INPUT_SIZE = (1280.0, 384.0)


def _target(boxes_2d, centers, labels):
    return {"boxes_2d": torch.tensor(boxes_2d, dtype=torch.float32).reshape(-1, 4),
            "centers_3d_proj": torch.tensor(centers, dtype=torch.float32).reshape(-1, 2),
            "labels": torch.tensor(labels, dtype=torch.long)}


def test_assign_hand_made_cost_beats_greedy():
    # Image 0 owns columns 0-1, image 1 column 2. Greedy on image 0 would take (0, 0) = 1 and
    # then (1, 1) = 100; the optimum is (0, 1) + (1, 0) = 4.
    cost = torch.tensor([[[1.0, 2.0, 50.0], [2.0, 100.0, 50.0], [5.0, 5.0, 50.0]],
                         [[0.0, 0.0, 9.0], [0.0, 0.0, 3.0], [0.0, 0.0, 7.0]]])
    (rows0, cols0), (rows1, cols1) = assign(cost, [2, 1])
    assert rows0.tolist() == [0, 1] and cols0.tolist() == [1, 0]
    assert rows1.tolist() == [1] and cols1.tolist() == [0]
    assert rows0.dtype == torch.long and cols1.dtype == torch.long


def test_assign_survives_nan_cost():
    cost = torch.tensor([[[float("nan"), 1.0], [2.0, float("inf")], [0.5, 3.0]]])
    (rows, cols), = assign(cost, [2])
    # Non-finite entries count as prohibitive: the optimum is (0, 1) + (2, 0) = 1.5.
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 0]


def _perfect_outputs(targets, queries, permutations, num_classes=3):
    """Queries predicting the targets exactly, target n at query permutations[b][n]."""
    logits = torch.full((len(targets), queries, num_classes), -6.0)
    boxes = torch.full((len(targets), queries, 6), 0.5)
    for b, (t, perm) in enumerate(zip(targets, permutations)):
        encoded = encode_boxes(t["boxes_2d"], t["centers_3d_proj"], INPUT_SIZE)
        for n, q in enumerate(perm):
            logits[b, q, t["labels"][n]] = 6.0
            boxes[b, q] = encoded[n]
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_matcher_recovers_permutation_and_handles_empty_frames():
    targets = [_target([[100, 100, 200, 180], [600, 150, 700, 250], [900, 120, 1000, 200]],
                       [[150, 140], [640, 200], [960, 160]], [0, 1, 0]),
               _target([], [], []),
               _target([[10, 10, 50, 60]], [[30, 40]], [2])]
    outputs = _perfect_outputs(targets, queries=6, permutations=[[4, 0, 2], [], [5]])
    indices = HungarianMatcher()(outputs, targets, INPUT_SIZE)
    assert len(indices) == 3
    pairs0 = dict(zip(indices[0][1].tolist(), indices[0][0].tolist()))
    assert pairs0 == {0: 4, 1: 0, 2: 2}
    assert indices[1][0].numel() == 0 and indices[1][1].numel() == 0
    assert indices[1][0].dtype == torch.long
    assert indices[2][0].tolist() == [5] and indices[2][1].tolist() == [0]


def test_matcher_all_frames_empty():
    targets = [_target([], [], []), _target([], [], [])]
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_boxes": torch.rand(2, 4, 6)}
    for rows, cols in HungarianMatcher()(outputs, targets, INPUT_SIZE):
        assert rows.numel() == 0 and cols.numel() == 0


def test_cost_terms_hand_computed():
    target = [_target([[0, 0, 128, 38.4]], [[64, 19.2]], [0])]  # normalised: 0.05 0.05 0.05 0.05 0.05 0.05
    boxes = torch.tensor([[0.25, 0.05, 0.05, 0.05, 0.05, 0.05]])  # centre shifted right by 0.2
    logits = torch.zeros(1, 2)  # p = 0.5 for both classes
    only = dict(cost_class=0.0, cost_center=0.0, cost_box=0.0, cost_giou=0.0)

    center = HungarianMatcher(**{**only, "cost_center": 10.0}).cost_matrix(logits, boxes, target, INPUT_SIZE)
    assert center.item() == pytest.approx(10 * 0.2, abs=1e-6)
    box = HungarianMatcher(**{**only, "cost_box": 5.0}).cost_matrix(logits, boxes, target, INPUT_SIZE)
    assert box.item() == pytest.approx(0.0, abs=1e-6)
    # Boxes [0.2, 0.3] x [0, 0.1] and [0, 0.1] x [0, 0.1]: IoU 0, union 0.02, enclosing 0.03,
    # so GIoU = -1/3 and the cost is +2/3.
    giou = HungarianMatcher(**{**only, "cost_giou": 2.0}).cost_matrix(logits, boxes, target, INPUT_SIZE)
    assert giou.item() == pytest.approx(2 / 3, abs=1e-5)
    cls = HungarianMatcher(**{**only, "cost_class": 2.0}).cost_matrix(logits, boxes, target, INPUT_SIZE)
    # p = 0.5: pos - neg = (0.25 - 0.75) * 0.25 * ln 2
    assert cls.item() == pytest.approx(2 * (0.25 - 0.75) * 0.25 * math.log(2), abs=1e-6)


def test_cost_giou_of_overlapping_boxes():
    target = [_target([[0, 0, 128, 38.4]], [[64, 19.2]], [0])]
    boxes = torch.tensor([[0.1, 0.05, 0.05, 0.05, 0.05, 0.05]])  # [0.05, 0.15] x [0, 0.1]: half overlap
    matcher = HungarianMatcher(cost_class=0.0, cost_center=0.0, cost_box=0.0, cost_giou=1.0)
    # IoU = 0.005 / 0.015 = 1/3; enclosing [0, 0.15] x [0, 0.1] = union, so GIoU = 1/3.
    assert matcher.cost_matrix(torch.zeros(1, 1), boxes, target, INPUT_SIZE).item() == pytest.approx(-1 / 3, abs=1e-5)
