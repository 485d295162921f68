import math

import numpy as np
import pytest
import torch

from monokd.geometry.boxes import alpha_from_rotation_y, box_center, project_boxes
from monokd.geometry.calib import project, transform_intrinsics
from monokd.models.monodetr.box_coding import angle_to_bin, encode_boxes
from monokd.models.monodetr.decode import decode_detections

# KITTI training frame 000000's P2 and image size.
P2_ORIGINAL = np.array([[721.5377, 0.0, 609.5593, 44.85728],
                        [0.0, 721.5377, 172.854, 0.2163791],
                        [0.0, 0.0, 1.0, 0.002745884]])
ORIGINAL_SIZE = (1242, 375)
W, H = 1280, 384
RESIZE = np.array([[W / ORIGINAL_SIZE[0], 0.0, 0.0], [0.0, H / ORIGINAL_SIZE[1], 0.0]])
P2_INPUT = transform_intrinsics(P2_ORIGINAL, RESIZE)
CLASSES = ("Car", "Pedestrian")

# Ground truth: bottom centre location, dims h w l, rotation_y.
GT = [((-3.2, 1.65, 14.0), (1.52, 1.63, 3.88), 1.57, "Car"),
      ((4.1, 1.70, 33.5), (1.48, 1.60, 4.10), -3.1, "Car"),
      ((-8.0, 1.60, 45.0), (1.75, 0.60, 0.80), 3.13, "Pedestrian")]


def _batch(flipped=False):
    to_original = np.array([[ORIGINAL_SIZE[0] / W, 0.0, 0.0], [0.0, ORIGINAL_SIZE[1] / H, 0.0]])
    return {"images": torch.zeros(1, 3, H, W),
            "P2": torch.tensor(P2_INPUT, dtype=torch.float32)[None],
            "input_to_original": torch.tensor(to_original, dtype=torch.float32)[None],
            "image_sizes": torch.tensor([ORIGINAL_SIZE]),
            "flipped": torch.tensor([flipped])}


def _perfect_outputs(logvar=0.0):
    """Float32 outputs that encode GT exactly (query 3 is a low-scoring extra)."""
    queries = len(GT) + 1
    out = {"pred_logits": torch.full((1, queries, 2), -5.0), "pred_boxes": torch.full((1, queries, 6), 0.1),
           "pred_dims": torch.ones(1, queries, 3), "pred_angle": torch.zeros(1, queries, 24),
           "pred_depth": torch.tensor([[[20.0, logvar]] * queries])}
    for q, (location, dims, ry, kind) in enumerate(GT):
        location, dims = np.array(location), np.array(dims)
        centre = box_center(dims, location)
        uv, depth = project(centre[None], P2_INPUT)
        box = project_boxes(dims[None], location[None], np.array([ry]), P2_INPUT)
        alpha = alpha_from_rotation_y(ry, centre[0], centre[2])
        heading_bin, residual = angle_to_bin(torch.tensor([alpha], dtype=torch.float64))
        out["pred_logits"][0, q, CLASSES.index(kind)] = 3.0
        out["pred_boxes"][0, q] = encode_boxes(torch.tensor(box), torch.tensor(uv), (W, H)).float()[0]
        out["pred_dims"][0, q] = torch.tensor(dims)
        out["pred_angle"][0, q, heading_bin] = 10.0
        out["pred_angle"][0, q, 12 + heading_bin] = residual.float()
        out["pred_depth"][0, q, 0] = float(depth[0])
    return out


def _angle_diff(a, b):
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def test_perfect_prediction_decodes_to_ground_truth():
    (objects,) = decode_detections(_perfect_outputs(), _batch(), CLASSES)
    assert len(objects) == len(GT)  # the extra query (p = 0.007) is below the threshold
    prob = 1 / (1 + math.exp(-3.0))
    by_depth = sorted(objects, key=lambda o: o.location[2])
    for obj, (location, dims, ry, kind) in zip(by_depth, GT):
        assert obj.type == kind and obj.truncated == 0 and obj.occluded == 0
        np.testing.assert_allclose(obj.location, location, atol=1e-4)
        np.testing.assert_allclose(obj.dims, dims, atol=1e-4)
        assert _angle_diff(obj.rotation_y, ry) < 1e-4
        assert -math.pi <= obj.rotation_y < math.pi
        assert _angle_diff(obj.alpha, alpha_from_rotation_y(ry, location[0], location[2])) < 1e-4
        expected_box = project_boxes(np.array([dims]), np.array([location]), np.array([ry]), P2_ORIGINAL,
                                     image_size=ORIGINAL_SIZE)[0]
        np.testing.assert_allclose(obj.box2d, expected_box, atol=2e-3)
        assert obj.score == pytest.approx(prob, rel=1e-6)  # logvar 0: the score is the probability


def test_score_is_probability_times_depth_confidence():
    (objects,) = decode_detections(_perfect_outputs(logvar=0.5), _batch(), CLASSES)
    prob = 1 / (1 + math.exp(-3.0))
    assert [o.score for o in objects] == pytest.approx([prob * math.exp(-0.5)] * 3, rel=1e-6)


def test_topk_over_queries_and_classes_and_threshold():
    outputs = _perfect_outputs()
    outputs["pred_logits"][0, 0] = torch.tensor([2.0, 1.5])  # one query, two classes, both kept
    outputs["pred_logits"][0, 1] = torch.tensor([-1.0, -2.0])  # p = 0.27 and 0.12
    (objects,) = decode_detections(outputs, _batch(), CLASSES, topk=4, threshold=0.2)
    probs = sorted([1 / (1 + math.exp(-x)) for x in (2.0, 1.5, 3.0, -1.0)], reverse=True)
    assert [o.score for o in objects] == pytest.approx(probs, rel=1e-6)
    assert sorted(o.type for o in objects[:3]) == ["Car", "Pedestrian", "Pedestrian"]
    (few,) = decode_detections(outputs, _batch(), CLASSES, topk=2, threshold=0.2)
    assert [o.score for o in few] == pytest.approx(probs[:2], rel=1e-6)  # the two best of all
    (strict,) = decode_detections(outputs, _batch(), CLASSES, topk=50, threshold=0.96)
    assert strict == []


def test_boxes_clipped_to_original_image():
    outputs = _perfect_outputs()
    outputs["pred_boxes"][0, 0] = torch.tensor([0.02, 0.5, 0.3, 0.5, 0.2, 0.9])  # spills left and down
    (objects,) = decode_detections(outputs, _batch(), CLASSES)
    box = next(o.box2d for o in objects if o.location[2] < 20)
    x_centre = 0.02 * ORIGINAL_SIZE[0]  # the affine is a pure scale
    assert box[0] == 0.0 and box[3] == ORIGINAL_SIZE[1] - 1
    assert box[2] == pytest.approx(x_centre + 0.5 * ORIGINAL_SIZE[0], rel=1e-5)


def test_flipped_batch_is_refused():
    with pytest.raises(ValueError, match="flipped"):
        decode_detections(_perfect_outputs(), _batch(flipped=True), CLASSES)
