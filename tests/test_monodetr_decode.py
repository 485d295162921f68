import math

import numpy as np
import pytest
import torch

from monokd.geometry.boxes import alpha_from_rotation_y, project_boxes
from monokd.models.monodetr.decode import decode_detections
from tests.helpers import (DECODE_CLASSES as CLASSES, DECODE_GT as GT, DECODE_ORIGINAL_SIZE as ORIGINAL_SIZE,
                           DECODE_P2_ORIGINAL as P2_ORIGINAL, decode_batch as _batch,
                           perfect_outputs as _perfect_outputs)


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
