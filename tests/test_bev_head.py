"""The BEV core's detection half: LiDAR <-> KITTI boxes, rotated BEV IoU, box coder, anchors,
target assignment, rotated NMS, the anchor head, and decoding to KITTI objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monokd.data import kitti
from monokd.data.dataset import KittiDataset, collate
from monokd.errors import ConfigError
from monokd.geometry.boxes import lidar_to_rect_boxes, rect_to_lidar_boxes, wrap_angle
from monokd.geometry.calib import velo_to_rect_matrix
from monokd.geometry.grid import BEVGrid
from monokd.geometry.iou import iou_bev, iou_bev_lidar, lidar_bev_corners, polygon_intersection_area
from monokd.models.bev import box_coder
from monokd.models.bev.anchor_head import AnchorHead
from monokd.models.bev.anchors import make_anchors
from monokd.models.bev.detections import gt_boxes_lidar, to_objects
from monokd.models.bev.nms import rotated_nms
from monokd.models.bev.target_assigner import assign_targets
from tests.helpers import kitti_symlink_root

# LiDAR x forward = rect z, LiDAR y left = -rect x, LiDAR z up = -rect y (KITTI's axes, no offsets)
PERMUTATION = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])


def random_lidar_boxes(rng, n, spread=10.0):
    return np.stack([rng.uniform(0, spread, n), rng.uniform(-spread / 2, spread / 2, n), rng.uniform(-2, 0, n),
                     rng.uniform(0.5, 5, n), rng.uniform(0.5, 2.5, n), rng.uniform(1, 2, n),
                     rng.uniform(-math.pi, math.pi, n)], axis=1)


# --- LiDAR <-> KITTI boxes --------------------------------------------------------------------

def test_rect_to_lidar_box_by_hand_and_round_trip():
    dims, location, ry = np.array([[1.5, 1.6, 3.9]]), np.array([[2.0, 1.6, 12.0]]), np.array([0.3])
    box = rect_to_lidar_boxes(dims, location, ry, PERMUTATION)
    # geometric centre (2, 1.6 - 0.75, 12) rect -> LiDAR (12, -2, -0.85); heading -(pi/2 + ry)
    np.testing.assert_allclose(box, [[12.0, -2.0, -0.85, 3.9, 1.6, 1.5, -(math.pi / 2 + 0.3)]], atol=1e-12)
    back = lidar_to_rect_boxes(box, PERMUTATION)
    for got, want in zip(back, (dims, location, ry)):
        np.testing.assert_allclose(got, want, atol=1e-12)
    # torch agrees, and a mirrored frame (target and camera mirrored) gives the same LiDAR box
    mirror = np.diag([-1.0, 1, 1, 1])
    mirrored = rect_to_lidar_boxes(torch.tensor(dims), torch.tensor(location * [-1, 1, 1]),
                                   torch.tensor(math.pi - ry), torch.tensor(mirror @ PERMUTATION))
    np.testing.assert_allclose(mirrored.numpy()[:, :6], box[:, :6], atol=1e-12)
    assert wrap_angle(mirrored[0, 6].item() - box[0, 6]) == pytest.approx(0.0, abs=1e-12)


def test_real_calib_round_trip_and_one_bev_iou(kitti_samples):
    calib = kitti.read_calib(kitti_samples / "training" / "calib" / "000003.txt")
    matrix = velo_to_rect_matrix(calib)
    objects = [o for o in kitti.read_label(kitti_samples / "training" / "label_2" / "000003.txt") if o.type != "DontCare"]
    dims = np.stack([o.dims for o in objects])
    location = np.stack([o.location for o in objects])
    ry = np.array([o.rotation_y for o in objects])
    box = rect_to_lidar_boxes(dims, location, ry, matrix)
    d2, l2, r2 = lidar_to_rect_boxes(box, matrix)
    np.testing.assert_allclose(d2, dims, atol=1e-9)
    np.testing.assert_allclose(l2, location, atol=1e-9)
    np.testing.assert_allclose(wrap_angle(r2 - ry), 0, atol=1e-3)  # the calibration's tilt is tiny
    # one BEV IoU: the LiDAR-frame IoU of converted boxes is the rect-frame IoU of the originals
    rng = np.random.default_rng(0)
    rect = np.concatenate([location, dims, ry[:, None]], 1)  # x, y, z, h, w, l, ry
    a = rect + rng.normal(0, 0.5, rect.shape) * [1, 0, 1, 0, 0, 0, 0.3]
    lidar_a = rect_to_lidar_boxes(a[:, 3:6], a[:, :3], a[:, 6], PERMUTATION)
    lidar_b = rect_to_lidar_boxes(rect[:, 3:6], rect[:, :3], rect[:, 6], PERMUTATION)
    np.testing.assert_allclose(iou_bev_lidar(lidar_a, lidar_b), iou_bev(a, rect), atol=1e-9)


def test_lidar_bev_iou_by_hand_and_by_sampling():
    box = np.array([[0, 0, 0, 4, 2, 1.5, 0.0]])
    others = np.array([[1, 0, 0, 4, 2, 1.5, 0.0],            # 3 x 2 overlap: 6 / 10
                       [0, 0, 5, 4, 2, 1.5, math.pi / 2],    # a cross, 2 x 2: 4 / 12 (z is ignored)
                       [4, 0, 0, 4, 2, 1.5, 0.0],            # touching: 0
                       [0, 0, 0, 4, 2, 1.5, math.pi]])       # the reverse box: 1
    np.testing.assert_allclose(iou_bev_lidar(box, others), [[0.6, 1 / 3, 0.0, 1.0]], atol=1e-12)
    rng = np.random.default_rng(1)
    a, b = random_lidar_boxes(rng, 12, spread=3.0), random_lidar_boxes(rng, 12, spread=3.0)
    ious = iou_bev_lidar(a, b)
    xs, ys = np.meshgrid(np.linspace(-6, 10, 400), np.linspace(-8, 8, 400))
    points = np.stack([xs.ravel(), ys.ravel()], 1)
    cell = (16 / 399) ** 2

    def inside(box):  # points inside a rotated rectangle, directly
        c, s = math.cos(box[6]), math.sin(box[6])
        local = (points - box[:2]) @ np.array([[c, -s], [s, c]])
        return (np.abs(local[:, 0]) <= box[3] / 2) & (np.abs(local[:, 1]) <= box[4] / 2)

    for i in range(12):
        ina, inb = inside(a[i]), inside(b[i])
        inter = (ina & inb).sum() * cell
        sampled = inter / (a[i, 3] * a[i, 4] + b[i, 3] * b[i, 4] - inter)
        assert ious[i, i] == pytest.approx(sampled, abs=0.02)
    assert (ious > 0).sum() > 10  # the scene has real overlaps


# --- box coder ----------------------------------------------------------------------------------

def test_box_coder_round_trip_and_direction():
    rng = np.random.default_rng(2)
    boxes = torch.tensor(random_lidar_boxes(rng, 200))
    anchors = torch.tensor(random_lidar_boxes(rng, 200))
    codes = box_coder.encode(boxes, anchors)
    np.testing.assert_allclose(box_coder.decode(codes, anchors).numpy(), boxes.numpy(), atol=1e-12)
    # by hand: anchor diagonal sqrt(3.9^2 + 1.6^2)
    anchor = torch.tensor([10.0, 1.0, -1.0, 3.9, 1.6, 1.56, 0.0])
    box = torch.tensor([11.0, 0.5, -0.8, 4.2, 1.7, 1.5, 0.4])
    d = math.hypot(3.9, 1.6)
    np.testing.assert_allclose(box_coder.encode(box, anchor).numpy(),
                               [1 / d, -0.5 / d, 0.2 / 1.56, math.log(4.2 / 3.9), math.log(1.7 / 1.6),
                                math.log(1.5 / 1.56), 0.4], rtol=1e-6)
    # a heading known only modulo pi comes back whole with its direction bin
    heading = torch.tensor(rng.uniform(-3 * math.pi, 3 * math.pi, 500))
    bins = box_coder.direction_target(heading)
    assert set(bins.tolist()) == {0, 1}
    ambiguous = heading + math.pi * torch.tensor(rng.integers(-3, 4, 500), dtype=torch.float64)
    restored = box_coder.apply_direction(ambiguous, bins)
    np.testing.assert_allclose(wrap_angle(restored - heading).numpy(), 0, atol=1e-9)
    # bins by hand: offset pi/4, two half-turn sectors
    np.testing.assert_array_equal(box_coder.direction_target(torch.tensor([0.0, 1.0, math.pi, -math.pi / 2])).numpy(),
                                  [1, 0, 0, 1])


# --- anchors and target assignment ------------------------------------------------------------

SCENE_GRID = BEVGrid((0, -5, -3, 20, 5, 1), (1.0, 1.0, 4.0))  # 1 m cells: 20 x 10
SPECS = [{"sizes": [[4.0, 2.0, 1.5]], "bottom_heights": [-1.75], "rotations": [0.0, math.pi / 2],
          "matched_threshold": 0.6, "unmatched_threshold": 0.45},
         {"sizes": [[4.0, 2.0, 1.5]], "bottom_heights": [-1.75], "rotations": [0.0, math.pi / 2],
          "matched_threshold": 0.5, "unmatched_threshold": 0.35}]


def test_anchor_layout():
    anchors, classes = make_anchors(SCENE_GRID, 1, SPECS)
    assert anchors.shape == (10, 20, 4, 7) and classes.tolist() == [0, 0, 1, 1]
    # cell (y=2, x=7) centre: x = 7.5, y = -5 + 2.5; slot 1 = class 0 rotated; z = -1.75 + 0.75
    np.testing.assert_allclose(anchors[2, 7, 1].numpy(), [7.5, -2.5, -1.0, 4, 2, 1.5, math.pi / 2], rtol=1e-6)
    coarse, _ = make_anchors(SCENE_GRID, 2, SPECS)
    assert coarse.shape == (5, 10, 4, 7)
    np.testing.assert_allclose(coarse[0, 0, 0, :2].numpy(), [1.0, -4.0])


def test_target_assignment_on_a_hand_made_scene():
    anchors, classes = make_anchors(SCENE_GRID, 1, SPECS)
    flat, slot_classes = anchors.reshape(-1, 7), classes.repeat(200)
    # class 0 at x = 7.75 (0.25 m ahead of the centre of cell x = 7), y = 0.5 (centre of row 5);
    # class 1 the same, 10 m further ahead (4 x 2 boxes at heading 0); a narrow 1 x 3 class-0
    # box at the centre of cell (y=2, x=2)
    gt = torch.tensor([[7.75, 0.5, -1.0, 4, 2, 1.5, 0.0], [17.75, 0.5, -1.0, 4, 2, 1.5, 0.0],
                       [2.5, -2.5, -1.0, 1, 3, 1.5, 0.0]])
    out = assign_targets(flat, slot_classes, gt, torch.tensor([0, 1, 0]), [0.6, 0.5], [0.45, 0.35])
    labels = out["labels"].reshape(10, 20, 4)
    # Along row 5 the heading-0 anchors of a 4 x 2 box offset by d m along x have IoU
    # (4 - d) 2 / (16 - (4 - d) 2): d = 0.25: .882, 0.75: .684, 1.25: .524, 1.75: .391, 2.25: .28
    row = labels[5]
    assert row[7, 0] == 1 and row[8, 0] == 1           # >= 0.6: positive
    assert row[6, 0] == -1                              # 0.524 in [0.45, 0.6): ignored
    assert row[9, 0] == 0 and row[5, 0] == 0            # 0.391, 0.28 < 0.45: negative
    assert row[7, 1] == 0                               # rotated anchor: 4 / 12 = 0.333
    # class 1 thresholds 0.5 / 0.35: the 0.524 anchor is positive, the 0.391 one ignored
    assert row[17, 2] == 2 and row[18, 2] == 2 and row[16, 2] == 2
    assert row[19, 2] == -1 and row[15, 2] == 0
    # class-0 anchors never match the class-1 box, nor class-1 anchors the class-0 box
    assert row[17, 0] == 0 and row[7, 2] == 0
    # the narrow box overlaps no anchor by 0.45 (best: the rotated anchor on it, 3 / 8 = 0.375;
    # the heading-0 one 2 / 9) but still gets its best anchor as a positive
    assert labels[2, 2, 1] == 1 and labels[2, 2, 0] == 0
    assert (labels[..., :2] == 1).sum() == 3 and (labels[..., 2:] == 2).sum() == 3
    assert (labels == -1).sum() == 2
    matched = out["matched_gt"].reshape(10, 20, 4)
    assert matched[5, 7, 0] == 0 and matched[5, 17, 2] == 1 and matched[2, 2, 1] == 2 and matched[5, 9, 0] == -1
    np.testing.assert_allclose(box_coder.decode(out["box_targets"], flat).reshape(10, 20, 4, 7)[5, 8, 0].numpy(),
                               gt[0].numpy(), atol=1e-6)
    assert out["box_targets"].reshape(10, 20, 4, 7)[5, 9, 0].abs().sum() == 0
    # no box of a class: every anchor of it is negative
    none = assign_targets(flat, slot_classes, gt[:1], torch.tensor([0]), [0.6, 0.5], [0.45, 0.35])
    assert (none["labels"].reshape(10, 20, 4)[..., 2:] == 0).all()


# --- rotated NMS -------------------------------------------------------------------------------

def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    corners = lidar_bev_corners(boxes)
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        ok = True
        for k in kept:
            inter = polygon_intersection_area(corners[i], corners[k])
            union = boxes[i, 3] * boxes[i, 4] + boxes[k, 3] * boxes[k, 4] - inter
            ok &= inter / union <= threshold
        if ok:
            kept.append(i)
    return kept


@pytest.mark.parametrize("threshold", [0.01, 0.1, 0.5])
def test_rotated_nms_equals_a_brute_force_loop(threshold):
    rng = np.random.default_rng(int(threshold * 100))
    boxes = random_lidar_boxes(rng, 150, spread=12.0)
    scores = rng.uniform(0, 1, 150)
    keep = rotated_nms(torch.tensor(boxes), torch.tensor(scores), threshold)
    expected = brute_force_nms(boxes, scores, threshold)
    assert keep.tolist() == expected
    assert 5 < len(expected) < 150  # the scene suppresses something and keeps something
    assert rotated_nms(torch.tensor(boxes), torch.tensor(scores), threshold, post_max=3).tolist() == expected[:3]
    # a non-finite box is dropped, not kept and not suppressing
    bad = torch.tensor(boxes).clone()
    bad[expected[0], 0] = float("nan")
    assert expected[0] not in rotated_nms(bad, torch.tensor(scores), threshold).tolist()


# --- anchor head --------------------------------------------------------------------------------

def test_anchor_head_learns_a_box_and_decodes_it():
    torch.manual_seed(0)
    head = AnchorHead({"anchors": {"Car": SPECS[0]}, "score_threshold": 0.3}, SCENE_GRID, 8, ["Car"])
    features = torch.randn(1, 8, 5, 10)  # stride 2
    gt = [torch.tensor([[8.3, 0.7, -1.0, 4.2, 1.8, 1.5, 2.8]])]
    labels = [torch.tensor([0])]
    preds = head(features)
    assert preds["pred_cls"].shape == (1, 5, 10, 2) and preds["pred_boxes"].shape == (1, 5, 10, 14)
    assert preds["pred_dir"].shape == (1, 5, 10, 4)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        terms = head.losses(head(features), gt, labels)
        first = first if first is not None else {k: v.item() for k, v in terms.items()}
        optimiser.zero_grad()
        terms["loss"].backward()
        optimiser.step()
    assert set(terms) == {"loss_cls", "loss_box", "loss_dir", "loss"}
    assert terms["loss"].item() < 0.2 * first["loss"]
    boxes, scores, classes = head.decode(head(features))[0]
    assert len(boxes) >= 1 and classes[0] == 0 and scores[0] > 0.5
    assert iou_bev_lidar(boxes[:1], gt[0])[0, 0] > 0.7
    assert wrap_angle(boxes[0, 6] - 2.8).abs() < 0.2  # the direction classifier picked the right half-turn


def test_anchor_head_config_errors():
    with pytest.raises(ConfigError, match="model.anchor_head.nms_thresh: unknown key"):
        AnchorHead({"nms_thresh": 0.1}, SCENE_GRID, 8, ["Car"])
    with pytest.raises(ConfigError, match="not in data.classes"):
        AnchorHead({"anchors": {"Truck": SPECS[0]}}, SCENE_GRID, 8, ["Car"])
    with pytest.raises(ConfigError, match="no anchors configured"):
        AnchorHead({}, SCENE_GRID, 8, ["Van"])
    with pytest.raises(ConfigError, match="above"):
        AnchorHead({"anchors": {"Car": dict(SPECS[0], unmatched_threshold=0.7)}}, SCENE_GRID, 8, ["Car"])
    with pytest.raises(ValueError, match="integer stride"):
        AnchorHead({}, SCENE_GRID, 8, ["Car"]).anchors((3, 7))  # the 10 x 20 grid at no stride


# --- to KITTI objects ---------------------------------------------------------------------------

def test_gt_boxes_through_lidar_decode_to_the_labels(kitti_samples, tmp_path):
    frames = ["000003", "000008"]
    root = kitti_symlink_root(kitti_samples, tmp_path, frames)
    dataset = KittiDataset(root, "val", {"data": {"input_size": [640, 192], "classes": ["Car"]}})
    batch = collate([dataset[0], dataset[1]])
    boxes, labels = gt_boxes_lidar(batch)
    for b, frame in enumerate(frames):
        objects = to_objects(boxes[b], torch.ones(len(boxes[b])), labels[b], ["Car"], batch, b)
        target = batch["targets"][b]
        assert len(objects) == len(target["labels"]) > 0
        np.testing.assert_allclose(np.stack([o.location for o in objects]), target["location"].numpy(), atol=1e-4)
        np.testing.assert_allclose([o.rotation_y for o in objects], target["rotation_y"].numpy(), atol=2e-3)
        np.testing.assert_allclose([o.alpha for o in objects], target["alpha"].numpy(), atol=1e-2)  # labels: 2 decimals
        labelled = {tuple(np.round(o.location, 2)): o for o in kitti.read_label(
            root / "training" / "label_2" / f"{frame}.txt")}
        for o in objects:  # the 2-D box is the label's (KITTI's boxes fit the projection to a few px)
            truth = labelled[tuple(np.round(o.location, 2))]
            if truth.truncated == 0 and truth.occluded == 0:
                assert np.abs(o.box2d - truth.box2d).max() < 4.0
    flipped = dict(batch, flipped=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="flipped"):
        to_objects(boxes[0], torch.ones(len(boxes[0])), labels[0], ["Car"], flipped, 0)
