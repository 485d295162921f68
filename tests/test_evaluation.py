"""KITTI AP of constructed cases with hand-computed answers (devkit rules).

Every frame holds one object unless said otherwise: a 60 px tall image box and a 3-D box,
so a detection equal to its ground truth overlaps it with IoU 1 in every metric.
"""

import math

import numpy as np
import pytest

from monokd.data.kitti import Object3D
from monokd.evaluation import evaluate
from monokd.evaluation.kitti_ap import get_thresholds


def obj(kind="Car", score=None, x=0.0, z=20.0, box=(100.0, 100.0, 200.0, 160.0), alpha=0.0,
        truncated=0.0, occluded=0):
    return Object3D(kind, truncated, occluded, alpha, np.array(box, dtype=np.float64), 1.5, 1.6, 3.9,
                    np.array([x, 1.6, z]), 0.0, score)


def frames(n):
    return [f"{i:06d}" for i in range(n)]


def perfect(n, kind="Car", score=0.9):
    gt = {f: [obj(kind)] for f in frames(n)}
    dt = {f: [obj(kind, score=score)] for f in frames(n)}
    return gt, dt


def ap(result, key):
    return result.flat[key]


def test_perfect_detections_give_100_with_more_than_40_objects():
    gt, dt = perfect(50)
    r = evaluate(gt, dt, classes=("Car",))
    for metric in ("bbox", "bev", "3d", "aos"):
        for difficulty in ("easy", "moderate", "hard"):
            assert ap(r, f"Car/{metric}/{difficulty}/R40@0.70") == pytest.approx(100.0)
            assert ap(r, f"Car/{metric}/{difficulty}/R11@0.70") == pytest.approx(100.0)
    assert ap(r, "Car/bev/easy/R11@0.50") == pytest.approx(100.0)


def test_few_objects_cannot_reach_100():
    # 10 ground truths: each TP is one of the 41 sample points, points 10..40 stay 0
    gt, dt = perfect(10)
    r = evaluate(gt, dt, classes=("Car",))
    assert ap(r, "Car/3d/moderate/R40@0.70") == pytest.approx(100 * 9 / 40)
    assert ap(r, "Car/3d/moderate/R11@0.70") == pytest.approx(100 * 3 / 11)


def test_half_recall():
    # 80 ground truths, 40 found: get_thresholds keeps TP ranks 1, 2, 4, 6, ..., 40
    # (21 points, recall up to 0.5) -> R40 = 20/40, R11 = points 0,4,...,20 = 6/11
    gt = {f: [obj()] for f in frames(80)}
    dt = {f: [obj(score=0.9)] for f in frames(40)}
    r = evaluate(gt, dt, classes=("Car",))
    assert ap(r, "Car/bbox/moderate/R40@0.70") == pytest.approx(50.0)
    assert ap(r, "Car/3d/moderate/R40@0.70") == pytest.approx(50.0)
    assert ap(r, "Car/3d/moderate/R11@0.70") == pytest.approx(600 / 11)


def test_get_thresholds_hand_values():
    np.testing.assert_array_equal(get_thresholds(np.full(40, 0.9), 80), np.full(21, 0.9))
    # descending order; with n_gt = 2 both scores are kept
    np.testing.assert_array_equal(get_thresholds(np.array([0.2, 0.7]), 2), [0.7, 0.2])


def test_score_order_of_false_positives():
    # 40 TPs plus one far-away FP per frame
    gt = {f: [obj()] for f in frames(40)}
    tp_scores = np.linspace(0.5, 0.89, 40)

    def detections(fp_score):
        return {f: [obj(score=s), obj(score=fp_score, x=30.0, box=(600, 100, 700, 160))]
                for f, s in zip(frames(40), tp_scores)}

    low = evaluate(gt, detections(0.1), classes=("Car",))
    assert ap(low, "Car/bbox/moderate/R40@0.70") == pytest.approx(100 * 39 / 40)  # point 40 empty
    high = evaluate(gt, detections(0.95), classes=("Car",))
    # all 40 FPs outrank every TP: precision k / (k + 40), maximal (0.5) at full recall
    assert ap(high, "Car/bbox/moderate/R40@0.70") == pytest.approx(100 * 0.5 * 39 / 40)
    assert ap(high, "Car/3d/moderate/R11@0.70") == pytest.approx(100 * 0.5 * 10 / 11)


def _with_extra_frame(gt_extra, dt_extra, n=50):
    gt, dt = perfect(n, score=0.5)
    gt["extra"] = gt_extra
    dt["extra"] = dt_extra
    return gt, dt


ONE_FP = 100 * 50 / 51  # a single FP above all 50 TPs: every sample point has precision 50/51


def test_dontcare_region_absorbs_a_false_positive_in_bbox_only():
    fp = obj(score=0.9, box=(400, 100, 500, 160), x=-10.0)
    dontcare = Object3D("DontCare", -1, -1, -10, np.array([390.0, 90, 520, 170]), -1, -1, -1,
                        np.array([-1000.0, -1000, -1000]), -10)
    r = evaluate(*_with_extra_frame([dontcare], [fp]), classes=("Car",))
    assert ap(r, "Car/bbox/moderate/R40@0.70") == pytest.approx(100.0)
    assert ap(r, "Car/bev/moderate/R40@0.70") == pytest.approx(ONE_FP)  # no 3-D DontCare box
    without = evaluate(*_with_extra_frame([], [fp]), classes=("Car",))
    assert ap(without, "Car/bbox/moderate/R40@0.70") == pytest.approx(ONE_FP)


def test_neighbour_class_is_ignored_not_false():
    det = [obj(score=0.9)]
    van = evaluate(*_with_extra_frame([obj("Van")], det), classes=("Car",))
    assert ap(van, "Car/3d/moderate/R40@0.70") == pytest.approx(100.0)
    truck = evaluate(*_with_extra_frame([obj("Truck")], det), classes=("Car",))
    assert ap(truck, "Car/3d/moderate/R40@0.70") == pytest.approx(ONE_FP)
    # Person_sitting for Pedestrian, case-insensitive as in the devkit
    gt, dt = perfect(50, kind="Pedestrian", score=0.5)
    gt["extra"], dt["extra"] = [obj("person_sitting")], [obj("Pedestrian", score=0.9)]
    r = evaluate(gt, dt, classes=("Pedestrian",))
    assert ap(r, "Pedestrian/3d/moderate/R40@0.50") == pytest.approx(100.0)


def test_min_height_of_ground_truth():
    # a 40 px tall car is not "easy" (the devkit requires height > 40) but is moderate
    short = obj(box=(100, 100, 200, 140))
    r = evaluate(*_with_extra_frame([short], []), classes=("Car",))
    assert ap(r, "Car/bbox/easy/R40@0.70") == pytest.approx(100.0)
    assert ap(r, "Car/bbox/moderate/R40@0.70") < 100.0
    # detected, it is a TP in moderate and an ignored match (not an FP) in easy
    r = evaluate(*_with_extra_frame([short], [obj(score=0.9, box=(100, 100, 200, 140))]), classes=("Car",))
    assert ap(r, "Car/bbox/easy/R40@0.70") == pytest.approx(100.0)
    assert ap(r, "Car/bbox/moderate/R40@0.70") == pytest.approx(100.0)


def test_short_detection_is_ignored():
    # 20 px tall detection matching nothing: below every minimum height, so not an FP
    r = evaluate(*_with_extra_frame([], [obj(score=0.9, x=-10.0, box=(400, 100, 500, 120))]),
                 classes=("Car",))
    assert ap(r, "Car/bbox/hard/R40@0.70") == pytest.approx(100.0)


def test_occlusion_and_truncation_levels():
    # 50 found cars plus 10 undetected with occlusion 1 and 10 with truncation 0.4:
    # easy ignores all 20, moderate counts the occluded (recall 50/60), hard all (50/70).
    # Recall 50/60 reaches sample point 33 (0.825), 50/70 point 29 (0.725).
    extra = [obj(occluded=1)] * 10 + [obj(truncated=0.4)] * 10
    r = evaluate(*_with_extra_frame(extra, []), classes=("Car",))
    assert ap(r, "Car/bbox/easy/R40@0.70") == pytest.approx(100.0)
    assert ap(r, "Car/bbox/moderate/R40@0.70") == pytest.approx(100 * 33 / 40)
    assert ap(r, "Car/bbox/hard/R40@0.70") == pytest.approx(100 * 29 / 40)


def test_duplicate_detection_is_a_false_positive():
    # frame 0 holds the TP (0.9) and a duplicate (0.85): at thresholds <= 0.85 one is an FP
    gt, dt = perfect(50, score=0.8)
    dt["000000"] = [obj(score=0.9), obj(score=0.85)]
    r = evaluate(gt, dt, classes=("Car",))
    # point 0 (threshold 0.9) has precision 1, the other 40 points 50/51
    assert ap(r, "Car/3d/moderate/R40@0.70") == pytest.approx(ONE_FP)
    assert ap(r, "Car/3d/moderate/R11@0.70") == pytest.approx(100 * (1 + 10 * 50 / 51) / 11)


def test_aos_with_flipped_and_quarter_headings():
    gt, dt = perfect(50)
    for f in dt:
        dt[f][0].alpha = math.pi
    r = evaluate(gt, dt, classes=("Car",))
    assert ap(r, "Car/bbox/moderate/R40@0.70") == pytest.approx(100.0)
    assert ap(r, "Car/aos/moderate/R40@0.70") == pytest.approx(0.0, abs=1e-9)
    for f in dt:
        dt[f][0].alpha = math.pi / 2
    r = evaluate(gt, dt, classes=("Car",))
    assert ap(r, "Car/aos/moderate/R40@0.70") == pytest.approx(50.0)
    assert ap(r, "Car/aos/moderate/R11@0.70") == pytest.approx(50.0)


def test_invalid_alpha_disables_aos():
    gt, dt = perfect(5)
    dt["000000"][0].alpha = -10
    r = evaluate(gt, dt, classes=("Car",))
    assert not r.compute_aos
    assert not any("/aos/" in k for k in r.flat)
    assert "aos" not in r.report()


def test_missing_frames_and_other_classes():
    gt, dt = perfect(50)
    del dt["000003"]  # no detections for that frame
    r = evaluate(gt, dt)
    assert ap(r, "Car/bbox/moderate/R40@0.70") < 100.0
    assert ap(r, "Pedestrian/3d/hard/R40@0.25") == 0.0  # no pedestrians at all
    assert ap(r, "Cyclist/bev/easy/R11@0.25") == 0.0


def test_int_and_string_frame_ids_are_one_frame():
    gt, dt = perfect(50)
    dt = {int(f): objs for f, objs in dt.items()}
    assert evaluate(gt, dt, classes=("Car",)).flat["Car/3d/easy/R40@0.70"] == pytest.approx(100.0)


def test_flat_keys_and_report_format():
    gt, dt = perfect(3)
    r = evaluate(gt, dt)
    for key in ("Car/3d/moderate/R40@0.70", "Car/bev/easy/R11@0.50", "Pedestrian/3d/hard/R40@0.25",
                "Cyclist/aos/hard/R11@0.50", "Car/bbox/easy/R40@0.70"):
        assert key in r.flat
    # 3 classes x 2 settings x 4 metrics x 3 difficulties x 2 recalls, minus the shared bbox/aos keys
    assert len(r.flat) == 3 * (2 * 2 * 3 * 2 + 2 * 3 * 2)
    lines = r.report().splitlines()
    assert lines[0] == "Car AP@0.70, 0.70, 0.70:"
    assert lines[1].startswith("bbox AP:") and lines[2].startswith("bev  AP:")
    assert lines[3].startswith("3d   AP:") and lines[4].startswith("aos  AP:")
    assert lines[5] == "Car AP_R40@0.70, 0.70, 0.70:"
    assert "Car AP@0.70, 0.50, 0.50:" in lines
    assert "Pedestrian AP_R40@0.50, 0.25, 0.25:" in lines


def test_unknown_class_needs_thresholds():
    gt, dt = perfect(3, kind="Bus")
    with pytest.raises(ValueError, match="Bus"):
        evaluate(gt, dt, classes=("Bus",))
    r = evaluate(gt, dt, classes=("Bus",), min_overlaps={"Bus": ((0.7, 0.7, 0.7), (0.5, 0.5, 0.5))})
    assert "Bus/3d/easy/R40@0.50" in r.flat


def test_kernels_compile_once():
    # every call must hit the same numba specialisation: each extra one is seconds of JIT
    from monokd.evaluation import kitti_ap
    from monokd.geometry import iou

    kitti_ap.compile_kernels()
    evaluate({}, {})
    evaluate(*perfect(3), classes=("Car", "Pedestrian"))
    gt, dt = perfect(3)
    dt["000000"] = []
    evaluate(gt, dt)
    assert len(kitti_ap._accumulate.signatures) == 1
    assert len(iou._pair_intersection_areas.signatures) == 1


def test_min_height_scale_moves_the_difficulty_threshold():
    """A 20 px car is below the moderate 25 px minimum (ignored: no AP) but counts once the
    minimum heights are scaled to a 128-row image (25 * 128/375 = 8.5 px)."""
    from monokd.data.kitti import Object3D
    from monokd.evaluation import evaluate

    def car(score=None):
        return Object3D("Car", 0.0, 0, 0.0, np.array([100.0, 50.0, 130.0, 70.0]), 1.5, 1.6, 3.9,
                        np.array([0.0, 1.6, 20.0]), 0.0, score)

    gt = {f: [car()] for f in range(50)}
    dt = {f: [car(0.9)] for f in range(50)}
    official = evaluate(gt, dt, classes=["Car"]).flat["Car/3d/moderate/R40@0.70"]
    scaled = evaluate(gt, dt, classes=["Car"], min_height_scale=128 / 375).flat["Car/3d/moderate/R40@0.70"]
    assert official == 0.0
    assert scaled == pytest.approx(100.0)
    with pytest.raises(ValueError, match="min_height_scale"):
        evaluate(gt, dt, classes=["Car"], min_height_scale=0)
