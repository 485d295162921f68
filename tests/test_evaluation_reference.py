"""The fast evaluation against a literal, frame-by-frame transcription of the devkit's
cleanData / computeStatistics / getThresholds / eval_class on random scenes that exercise
every rule (neighbour classes, DontCare, heights at the limits, occlusion, truncation,
short detections of other classes, duplicates, tied scores)."""

import math

import numpy as np
import pytest

from monokd.data.kitti import Object3D
from monokd.evaluation import evaluate
from monokd.geometry.iou import iou_2d, iou_3d, iou_bev

MIN_HEIGHT, MAX_OCC, MAX_TRUNC = (40, 25, 25), (0, 1, 2), (0.15, 0.3, 0.5)
OVERLAP = {"Car": ((0.7, 0.7, 0.7), (0.7, 0.5, 0.5)), "Pedestrian": ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
           "Cyclist": ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25))}
NO_DETECTION = -10000000


# ------------------------------------------------------------------ the reference
def clean_data(cls, gt, det, difficulty):
    ignored_gt, ignored_det, dc, n_gt = [], [], [], 0
    for g in gt:
        height = g.box2d[3] - g.box2d[1]
        t = g.type.lower()
        if t == cls.lower():
            valid = 1
        elif cls.lower() == "pedestrian" and t == "person_sitting":
            valid = 0
        elif cls.lower() == "car" and t == "van":
            valid = 0
        else:
            valid = -1
        ignore = (g.occluded > MAX_OCC[difficulty] or g.truncated > MAX_TRUNC[difficulty]
                  or height <= MIN_HEIGHT[difficulty])
        if valid == 1 and not ignore:
            ignored_gt.append(0)
            n_gt += 1
        elif valid == 0 or (ignore and valid == 1):
            ignored_gt.append(1)
        else:
            ignored_gt.append(-1)
    dc = [g for g in gt if g.type.lower() == "dontcare"]
    for d in det:
        valid = 1 if d.type.lower() == cls.lower() else -1
        height = int(abs(d.box2d[1] - d.box2d[3]))
        ignored_det.append(1 if height < MIN_HEIGHT[difficulty] else (0 if valid == 1 else -1))
    return ignored_gt, ignored_det, dc, n_gt


def statistics(gt, det, dc, ig, idet, ov, ov_dc, min_overlap, compute_fp, compute_aos=False, thresh=0.0):
    assigned = [False] * len(det)
    below = [compute_fp and d.score < thresh for d in det]
    tp = fp = fn = 0
    v, delta = [], []
    for i in range(len(gt)):
        if ig[i] == -1:
            continue
        det_idx, valid, max_overlap, assigned_ignored = -1, NO_DETECTION, 0.0, False
        for j in range(len(det)):
            if idet[j] == -1 or assigned[j] or below[j]:
                continue
            o = ov[i, j]
            if not compute_fp and o > min_overlap and det[j].score > valid:
                det_idx, valid = j, det[j].score
            elif compute_fp and o > min_overlap and (o > max_overlap or assigned_ignored) and idet[j] == 0:
                max_overlap, det_idx, valid, assigned_ignored = o, j, 1, False
            elif compute_fp and o > min_overlap and valid == NO_DETECTION and idet[j] == 1:
                det_idx, valid, assigned_ignored = j, 1, True
        if valid == NO_DETECTION and ig[i] == 0:
            fn += 1
        elif valid != NO_DETECTION and (ig[i] == 1 or idet[det_idx] == 1):
            assigned[det_idx] = True
        elif valid != NO_DETECTION:
            tp += 1
            v.append(det[det_idx].score)
            if compute_aos:
                delta.append(gt[i].alpha - det[det_idx].alpha)
            assigned[det_idx] = True
    similarity = 0.0
    if compute_fp:
        fp = sum(1 for j in range(len(det)) if not (assigned[j] or idet[j] != 0 or below[j]))
        stuff = 0
        for k in range(len(dc)):
            for j in range(len(det)):
                if assigned[j] or idet[j] != 0 or below[j]:
                    continue
                if ov_dc[j, k] > min_overlap:
                    assigned[j] = True
                    stuff += 1
        fp -= stuff
        if compute_aos:
            similarity = sum((1.0 + math.cos(d)) / 2.0 for d in delta) if (tp > 0 or fp > 0) else -1
    return tp, fp, fn, similarity, v


def get_thresholds(v, n_gt):
    v = sorted(v, reverse=True)
    out, current = [], 0.0
    for i, s in enumerate(v):
        left = (i + 1) / n_gt
        right = (i + 2) / n_gt if i < len(v) - 1 else left
        if (right - current) < (current - left) and i < len(v) - 1:
            continue
        out.append(s)
        current += 1.0 / 40.0
    return out


def overlaps(gt, det, metric):
    if not gt or not det:
        return np.zeros((len(gt), len(det)))
    if metric == "bbox":
        return iou_2d(np.array([g.box2d for g in gt]), np.array([d.box2d for d in det]))
    boxes = [np.array([[*o.location, o.h, o.w, o.l, o.rotation_y] for o in objs]) for objs in (gt, det)]
    return (iou_bev if metric == "bev" else iou_3d)(*boxes)


def eval_class(frames, cls, difficulty, metric, min_overlap, compute_aos):
    data = []
    v, n_gt = [], 0
    for gt, det in frames:
        ig, idet, dc, n = clean_data(cls, gt, det, difficulty)
        n_gt += n
        ov = overlaps(gt, det, metric)
        ov_dc = np.zeros((len(det), len(dc)))
        if metric == "bbox" and det and dc:
            ov_dc = iou_2d(np.array([d.box2d for d in det]), np.array([g.box2d for g in dc]), criterion="a")
        data.append((gt, det, dc, ig, idet, ov, ov_dc))
        v += statistics(gt, det, dc, ig, idet, ov, ov_dc, min_overlap, False)[4]
    thresholds = get_thresholds(v, n_gt)
    pr = np.zeros((len(thresholds), 4))
    for gt, det, dc, ig, idet, ov, ov_dc in data:
        for t, thresh in enumerate(thresholds):
            tp, fp, fn, sim, _ = statistics(gt, det, dc, ig, idet, ov, ov_dc, min_overlap, True,
                                            compute_aos, thresh)
            pr[t] += (tp, fp, fn, 0 if sim == -1 else sim)
    precision, aos = np.zeros(41), np.zeros(41)
    for i in range(len(thresholds)):
        precision[i] = pr[i, 0] / (pr[i, 0] + pr[i, 1])
        aos[i] = pr[i, 3] / (pr[i, 0] + pr[i, 1])
    for i in range(len(thresholds)):
        precision[i] = precision[i:].max()
        aos[i] = aos[i:].max()
    return precision, aos


def reference_flat(frames, classes):
    out = {}
    for cls in classes:
        for setting in OVERLAP[cls]:
            for m, metric in enumerate(("bbox", "bev", "3d")):
                for d, diff in enumerate(("easy", "moderate", "hard")):
                    precision, aos = eval_class(frames, cls, d, metric, setting[m], metric == "bbox")
                    curves = [(metric, precision)] + ([("aos", aos)] if metric == "bbox" else [])
                    for name, curve in curves:
                        out[f"{cls}/{name}/{diff}/R11@{setting[m]:.2f}"] = sum(curve[0::4]) / 11 * 100
                        out[f"{cls}/{name}/{diff}/R40@{setting[m]:.2f}"] = sum(curve[1:]) / 40 * 100
    return out


# ------------------------------------------------------------------ random scenes
KINDS = ["Car", "Car", "Car", "Van", "Truck", "Pedestrian", "Pedestrian", "Person_sitting", "Cyclist", "DontCare"]


def random_object(rng, kind=None):
    kind = kind or KINDS[rng.integers(len(KINDS))]
    x1, y1 = rng.uniform(0, 1100), rng.uniform(100, 250)
    height = rng.choice([rng.uniform(15, 120), 40.0, 25.0, 24.9])
    width = rng.uniform(20, 150)
    dims = {"Pedestrian": (1.76, 0.66, 0.84), "Person_sitting": (1.2, 0.6, 0.8),
            "Cyclist": (1.74, 0.6, 1.76)}.get(kind, (1.53, 1.63, 3.88))
    return Object3D(kind, float(rng.choice([0.0, 0.1, 0.2, 0.4, 0.6])), int(rng.integers(0, 4)),
                    float(rng.uniform(-math.pi, math.pi)), np.array([x1, y1, x1 + width, y1 + height]),
                    *dims, np.array([rng.uniform(-15, 15), rng.uniform(1.4, 1.8), rng.uniform(5, 50)]),
                    float(rng.uniform(-math.pi, math.pi)))


def noisy_copy(rng, g):
    box = g.box2d + rng.normal(0, 4, 4)
    kinds = [g.type] * 6 + ["Car", "Pedestrian", "Cyclist"]
    kind = kinds[rng.integers(len(kinds))]
    return Object3D(kind, 0.0, 0, g.alpha + rng.normal(0, 0.5), box, g.h * rng.uniform(0.9, 1.1),
                    g.w * rng.uniform(0.9, 1.1), g.l * rng.uniform(0.9, 1.1),
                    g.location + rng.normal(0, 0.3, 3), g.rotation_y + rng.normal(0, 0.2),
                    round(float(rng.uniform(0, 1)), 1))  # coarse scores: many ties


def random_scene(seed, n_frames):
    rng = np.random.default_rng(seed)
    gts, dts = {}, {}
    for f in range(n_frames):
        gt = [random_object(rng) for _ in range(rng.integers(0, 7))]
        det = []
        for g in gt:
            if g.type != "DontCare" and rng.uniform() < 0.8:
                det.append(noisy_copy(rng, g))
                if rng.uniform() < 0.15:
                    det.append(noisy_copy(rng, g))  # duplicate
        for _ in range(rng.integers(0, 3)):
            fp = random_object(rng, kind=["Car", "Pedestrian", "Cyclist"][rng.integers(3)])
            fp.score = round(float(rng.uniform(0, 1)), 1)
            det.append(fp)
        order = rng.permutation(len(det))
        gts[f"{f:06d}"] = gt
        dts[f"{f:06d}"] = [det[i] for i in order]
    return gts, dts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_literal_devkit_transcription(seed):
    gt, dt = random_scene(seed, n_frames=14)
    classes = ("Car", "Pedestrian", "Cyclist")
    fast = evaluate(gt, dt, classes).flat
    ref = reference_flat([(gt[f], dt[f]) for f in gt], classes)
    assert set(fast) == set(ref)
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], abs=1e-9), key
    assert any(0 < v < 100 for v in ref.values())  # the scenes are not trivial
