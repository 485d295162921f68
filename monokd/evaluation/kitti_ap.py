"""The KITTI object benchmark's matching and average precision (devkit evaluate_object.cpp).

For each class, difficulty, metric (bbox / bev / 3d) and overlap threshold:

1. clean_data: which ground truth counts (0), is ignored but may absorb a detection (1) or
   is not looked at (-1); the same for detections; the DontCare regions.
2. statistics without false positives: the score of every true positive (greedy matching,
   ground truth in file order, each taking the highest-scoring free detection above the
   overlap threshold).
3. get_thresholds: at most 41 scores that spread recall over 0, 1/40, ..., 1.
4. statistics at each score threshold (each ground truth now takes the free detection of
   largest overlap): TP, FP, FN and the orientation similarity; precision and AOS, each
   replaced by its maximum to the right; AP_R11 averages points 0, 4, ..., 40, AP_R40
   points 1..40.

The kernels take every frame at once as flat arrays (one call per configuration), and
reuse a frame's statistics while the set of detections above the score threshold is
unchanged, which is exact because the thresholds are non-increasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numba
import numpy as np

from monokd.data.kitti import Object3D
from monokd.errors import ConfigError
from monokd.evaluation.report import DIFFICULTIES, METRICS, N_SAMPLE_PTS, EvalResult
from monokd.evaluation.tables import ObjectTable, frame_id, table_from_objects
from monokd.geometry.iou import bev_overlap_pairs, box2d_overlap, footprint_intersections, iou_3d_pairs

# devkit parameters (easy, moderate, hard)
MIN_HEIGHT = (40, 25, 25)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
# a neighbouring class is ignored rather than counted as a false positive
NEIGHBOURS = {"car": "van", "pedestrian": "person_sitting"}
DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")
# (bbox, bev, 3d) thresholds: strict, loose (the python port's two settings; the devkit's
# MIN_OVERLAP is the strict one)
_RIGID = ((0.7, 0.7, 0.7), (0.7, 0.5, 0.5))
_SMALL = ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25))
MIN_OVERLAPS = {"car": _RIGID, "van": _RIGID, "truck": _RIGID, "tram": _RIGID, "misc": _RIGID,
                "pedestrian": _SMALL, "person_sitting": _SMALL, "cyclist": _SMALL}
_NO_DETECTION = -10000000.0


# --------------------------------------------------------------------------- clean_data
def ignored_ground_truth(gt: ObjectTable, cls: str, difficulty: int,
                         min_height_scale: float = 1.0) -> np.ndarray:
    """(n,) int64: 0 counted, 1 ignored (neighbour class or outside the difficulty), -1 other.

    The 2-D height is y2 - y1 and must be *above* the minimum (the devkit's ``<=`` test).
    ``min_height_scale`` multiplies the minimum heights (1 = the benchmark; see
    :func:`evaluate`).
    """
    cls = cls.lower()
    valid = np.where(gt.names == cls, 1, -1)
    if cls in NEIGHBOURS:
        valid = np.where(gt.names == NEIGHBOURS[cls], 0, valid)
    height = gt.box2d[:, 3] - gt.box2d[:, 1]
    ignore = ((gt.occluded > MAX_OCCLUSION[difficulty]) | (gt.truncated > MAX_TRUNCATION[difficulty])
              | (height <= MIN_HEIGHT[difficulty] * min_height_scale))
    return np.where((valid == 1) & ~ignore, 0,
                    np.where((valid == 0) | ((valid == 1) & ignore), 1, -1)).astype(np.int64)


def ignored_detections(dt: ObjectTable, cls: str, difficulty: int,
                       min_height_scale: float = 1.0) -> np.ndarray:
    """(n,) int64: 1 too short (of *any* class, as in the devkit), else 0 of the class, -1 other.

    The devkit truncates |y1 - y2| to an integer before comparing with the minimum.
    """
    height = np.trunc(np.abs(dt.box2d[:, 1] - dt.box2d[:, 3]))
    return np.where(height < MIN_HEIGHT[difficulty] * min_height_scale, 1,
                    np.where(dt.names == cls.lower(), 0, -1)).astype(np.int64)


# --------------------------------------------------------------------------- overlaps
@dataclass
class FrameOverlaps:
    """Per-frame overlap blocks of one metric.

    values[offsets[f] + i * n_det_f + j] = overlap of ground truth i and detection j of frame f.
    """

    offsets: np.ndarray
    values: np.ndarray


def _frame_pairs(rows_a: np.ndarray, rows_b: np.ndarray):
    """All (a, b) row pairs within each frame, row-major per frame.

    Args: rows_a, rows_b: (F + 1,) offsets of two tables over the same frames.
    Returns: index_a, index_b (P,), block offsets (F + 1,).
    """
    na, nb = np.diff(rows_a), np.diff(rows_b)
    sizes = na * nb
    block = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    frame = np.repeat(np.arange(len(na)), sizes)
    k = np.arange(block[-1]) - block[frame]
    index_a = rows_a[frame] + k // np.maximum(nb[frame], 1)
    index_b = rows_b[frame] + k % np.maximum(nb[frame], 1)
    return index_a, index_b, block


def frame_overlaps(gt: ObjectTable, dt: ObjectTable) -> dict[str, FrameOverlaps]:
    """Overlap of every ground truth with every detection of its frame, for each metric
    (devkit criterion -1: intersection over union)."""
    ig, jd, block = _frame_pairs(gt.offsets, dt.offsets)
    inter = footprint_intersections(gt.box3d, dt.box3d, ig, jd)  # shared by bev and 3d
    values = {"bbox": box2d_overlap(gt.box2d[ig], dt.box2d[jd]),
              "bev": bev_overlap_pairs(gt.box3d, dt.box3d, ig, jd, inter_area=inter),
              "3d": iou_3d_pairs(gt.box3d, dt.box3d, ig, jd, inter_area=inter)}
    return {m: FrameOverlaps(block, np.ascontiguousarray(v, dtype=np.float64)) for m, v in values.items()}


def dontcare_overlaps(dt: ObjectTable, dc: ObjectTable) -> FrameOverlaps:
    """Intersection / detection area of every detection with every DontCare box of its frame.

    values[offsets[f] + j * n_dc_f + k]. Only the image-box metric uses these: the devkit's
    DontCare lines carry no 3-D box (location -1000), so in BEV and 3-D nothing overlaps them.
    """
    jd, kc, block = _frame_pairs(dt.offsets, dc.offsets)
    values = box2d_overlap(dt.box2d[jd], dc.box2d[kc], criterion="a")
    return FrameOverlaps(block, np.ascontiguousarray(values, dtype=np.float64))


# --------------------------------------------------------------------------- kernels
# Plain loops only: numba compiles these in about a second, while library calls (np.sort,
# np.any, array expressions) would each add seconds of JIT time to every cold start.
@numba.njit(cache=True)
def _frame_statistics(g0, g1, d0, d1, ov, ov0, dc_ov, dc_ov0, n_dc, ignored_gt, ignored_det,
                      scores, gt_alpha, det_alpha, min_overlap, thresh, compute_fp, compute_aos,
                      assigned, tp_scores):
    """computeStatistics of one frame (ground truth rows g0:g1, detections d0:d1).

    ov[ov0 + i * n_det + j]: overlap of ground truth i and detection j of the frame;
    dc_ov[dc_ov0 + j * n_dc + k]: detection j over DontCare region k.
    Returns tp, fp, fn, similarity (-1 when there is neither a TP nor an FP, as the devkit);
    the scores of the TPs go to tp_scores[:tp].
    """
    n_det = d1 - d0
    for j in range(n_det):
        assigned[j] = False
    tp = 0
    fp = 0
    fn = 0
    similarity = 0.0
    for i in range(g1 - g0):
        ig = ignored_gt[g0 + i]
        if ig == -1:
            continue
        det_idx = -1
        valid = _NO_DETECTION
        max_overlap = 0.0
        assigned_ignored = False
        for j in range(n_det):
            idet = ignored_det[d0 + j]
            if idet == -1 or assigned[j]:
                continue
            score = scores[d0 + j]
            if compute_fp and score < thresh:
                continue
            overlap = ov[ov0 + i * n_det + j]
            if not overlap > min_overlap:
                continue
            if not compute_fp:
                # recall thresholds: the highest-scoring candidate
                if score > valid:
                    det_idx = j
                    valid = score
            elif (overlap > max_overlap or assigned_ignored) and idet == 0:
                # precision: the candidate of largest overlap, preferring counted detections
                max_overlap = overlap
                det_idx = j
                valid = 1.0
                assigned_ignored = False
            elif valid == _NO_DETECTION and idet == 1:
                det_idx = j
                valid = 1.0
                assigned_ignored = True
        if valid == _NO_DETECTION:
            if ig == 0:
                fn += 1
        elif ig == 1 or ignored_det[d0 + det_idx] == 1:
            assigned[det_idx] = True
        else:
            tp_scores[tp] = scores[d0 + det_idx]
            tp += 1
            if compute_aos:
                similarity += (1.0 + math.cos(gt_alpha[g0 + i] - det_alpha[d0 + det_idx])) / 2.0
            assigned[det_idx] = True
    if compute_fp:
        for j in range(n_det):
            if not (assigned[j] or ignored_det[d0 + j] != 0 or scores[d0 + j] < thresh):
                fp += 1
        n_stuff = 0
        for k in range(n_dc):
            for j in range(n_det):
                if assigned[j] or ignored_det[d0 + j] != 0 or scores[d0 + j] < thresh:
                    continue
                if dc_ov[dc_ov0 + j * n_dc + k] > min_overlap:
                    assigned[j] = True
                    n_stuff += 1
        fp -= n_stuff
        if compute_aos and tp == 0 and fp == 0:
            similarity = -1.0
    return tp, fp, fn, similarity


@numba.njit(cache=True)
def _accumulate(gt_off, det_off, ov_off, ov, dc_off, dc_ov_off, dc_ov, ignored_gt, ignored_det,
                scores, gt_alpha, det_alpha, thresholds, min_overlap, compute_fp, compute_aos,
                pr, tp_out, assigned, buf):
    """Statistics of all frames at each score threshold.

    With compute_fp: adds tp, fp, fn, similarity at each of the T thresholds to pr (T, 4)
    and returns 0. Without (the devkit's first pass; pass one threshold): writes the TP
    scores to tp_out and returns their number. assigned (max detections a frame) and buf
    (max ground truth a frame) are scratch. (One call site of _frame_statistics: each
    extra one costs a second of JIT time.)
    """
    n_tp = 0
    for f in range(gt_off.shape[0] - 1):
        g0, g1, d0, d1 = gt_off[f], gt_off[f + 1], det_off[f], det_off[f + 1]
        busy = False  # can anything here be a TP, FP or FN?
        for i in range(g0, g1):
            if ignored_gt[i] != -1:
                busy = True
        for j in range(d0, d1):
            if ignored_det[j] == 0:
                busy = True
        if not busy:
            continue
        n_dc = dc_off[f + 1] - dc_off[f]
        last_count = -1
        tp, fp, fn, sim = 0, 0, 0, 0.0
        for t in range(thresholds.shape[0]):
            count = 0
            for j in range(d0, d1):
                if ignored_det[j] != -1 and scores[j] >= thresholds[t]:
                    count += 1
            # same detections above the threshold -> same statistics
            if count != last_count or not compute_fp:
                tp, fp, fn, sim = _frame_statistics(
                    g0, g1, d0, d1, ov, ov_off[f], dc_ov, dc_ov_off[f], n_dc, ignored_gt,
                    ignored_det, scores, gt_alpha, det_alpha, min_overlap, thresholds[t],
                    compute_fp, compute_aos, assigned, buf)
                last_count = count
            if not compute_fp:
                for k in range(tp):
                    tp_out[n_tp + k] = buf[k]
                n_tp += tp
                continue
            pr[t, 0] += tp
            pr[t, 1] += fp
            pr[t, 2] += fn
            if sim != -1.0:
                pr[t, 3] += sim
    return n_tp


def get_thresholds(tp_scores: np.ndarray, n_gt: int) -> np.ndarray:
    """The devkit's getThresholds: the scores (descending) at which recall reaches the next
    of the 41 sample points.

    The devkit walks every score; a score is kept unless the next one is closer to the
    current sample point. Jumping from kept score to kept score gives the same list with
    the same floating-point comparisons.
    """
    v = np.sort(np.asarray(tp_scores, dtype=np.float64))[::-1]
    n = v.shape[0]
    if n == 0:
        return np.zeros(0)
    i_all = np.arange(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = (i_all + 1) / n_gt
        right = np.where(i_all < n - 1, (i_all + 2) / n_gt, left)
    kept = []
    current_recall = 0.0
    i = 0
    while i < n:
        skip = ((right[i:] - current_recall) < (current_recall - left[i:])) & (i_all[i:] < n - 1)
        i += int(np.argmin(skip))  # the first score not skipped (the last one never is)
        kept.append(v[i])
        current_recall += 1.0 / (N_SAMPLE_PTS - 1.0)
        i += 1
    return np.array(kept)


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the kernels on a tiny input, e.g. in a thread
    while files are read: LLVM's share of the work runs without the GIL."""
    one = np.zeros(1)
    offsets = np.array([0, 1], dtype=np.int64)
    none = np.zeros(2, dtype=np.int64)
    ignored = np.zeros(1, dtype=np.int64)
    _accumulate(offsets, offsets, offsets, one, none, none, np.zeros(0), ignored, ignored, one, one,
                one, one, 0.5, True, True, np.zeros((1, 4)), np.zeros(1), np.zeros(1, dtype=np.bool_), one)
    box = np.array([[0.0, 1.0, 10.0, 1.5, 1.6, 3.9, 0.0]])
    footprint_intersections(box, box, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))


# --------------------------------------------------------------------------- one curve
@dataclass
class _Context:
    gt: ObjectTable
    dt: ObjectTable
    dc: ObjectTable
    overlaps: dict
    dc_overlaps: FrameOverlaps
    no_dc: FrameOverlaps


def precision_curve(ctx: _Context, ignored_gt, ignored_det, metric: str, min_overlap: float,
                    compute_aos: bool):
    """(41,) precision and (41,) orientation similarity (zeros without AOS), right-maxed."""
    ov = ctx.overlaps[metric]
    gt, dt = ctx.gt, ctx.dt
    n_gt = int(np.count_nonzero(ignored_gt == 0))
    assigned = np.zeros(max(1, int(dt.counts.max(initial=0))), dtype=np.bool_)
    buf = np.empty(max(1, int(gt.counts.max(initial=0))))
    dc = ctx.dc_overlaps if metric == "bbox" else ctx.no_dc
    dc_off = ctx.dc.offsets if metric == "bbox" else np.zeros_like(ctx.dc.offsets)
    args = (gt.offsets, dt.offsets, ov.offsets, ov.values, dc_off, dc.offsets, dc.values,
            ignored_gt, ignored_det, dt.score, gt.alpha, dt.alpha)
    tp_scores = np.empty(len(ignored_gt))
    n_tp = _accumulate(*args, np.zeros(1), float(min_overlap), False, False, np.zeros((1, 4)),
                       tp_scores, assigned, buf)
    thresholds = get_thresholds(tp_scores[:n_tp], n_gt)
    pr = np.zeros((len(thresholds), 4))
    _accumulate(*args, thresholds, float(min_overlap), True, bool(compute_aos), pr, tp_scores,
                assigned, buf)
    precision = np.zeros(N_SAMPLE_PTS)
    aos = np.zeros(N_SAMPLE_PTS)
    detected = pr[:, 0] + pr[:, 1]
    # 0/0 (no counted detection at a threshold) is 0 here; the devkit would produce NaN
    safe = np.where(detected > 0, detected, 1.0)
    precision[:len(thresholds)] = np.where(detected > 0, pr[:, 0] / safe, 0.0)
    if compute_aos:
        aos[:len(thresholds)] = np.where(detected > 0, pr[:, 3] / safe, 0.0)
    precision = np.maximum.accumulate(precision[::-1])[::-1].copy()
    aos = np.maximum.accumulate(aos[::-1])[::-1].copy()
    return precision, aos


# --------------------------------------------------------------------------- public API
def min_overlaps_for(cls: str, overrides: Mapping | None = None):
    """((bbox, bev, 3d) strict, (bbox, bev, 3d) loose) thresholds of a class."""
    if overrides and cls in overrides:
        strict, loose = overrides[cls]
        return tuple(float(v) for v in strict), tuple(float(v) for v in loose)
    try:
        return MIN_OVERLAPS[cls.lower()]
    except KeyError:
        raise ConfigError(f"classes: no default overlap thresholds for class {cls!r} (known: "
                          f"{', '.join(sorted(MIN_OVERLAPS))}); pass "
                          f"min_overlaps={{{cls!r}: ((bbox, bev, 3d), (bbox, bev, 3d))}}") from None


def evaluate_tables(gt: ObjectTable, dt: ObjectTable, classes: Sequence[str] = DEFAULT_CLASSES,
                    compute_aos: bool | None = None, min_overlaps: Mapping | None = None,
                    min_height_scale: float = 1.0) -> EvalResult:
    """KITTI AP of detections ``dt`` against ground truth ``gt`` (same frames, same order)."""
    if not min_height_scale > 0:
        raise ConfigError(f"min_height_scale: must be positive, got {min_height_scale}")
    if gt.num_frames != dt.num_frames:
        raise ValueError(f"{gt.num_frames} ground-truth frames but {dt.num_frames} detection frames")
    if np.isnan(dt.score).any():
        raise ValueError("every detection needs a score")
    if compute_aos is None:  # the devkit: alpha = -10 anywhere marks orientations as invalid
        compute_aos = not bool(np.any(dt.alpha == -10))
    relevant = {c.lower() for c in classes} | {NEIGHBOURS[c.lower()] for c in classes
                                                if c.lower() in NEIGHBOURS}
    gt_rel = gt.select(np.isin(gt.names, sorted(relevant)))  # the others are never looked at
    dc = gt.select(gt.names == "dontcare")
    overlaps = frame_overlaps(gt_rel, dt)
    no_dc = FrameOverlaps(np.zeros(gt.num_frames + 1, dtype=np.int64), np.zeros(0))
    ctx = _Context(gt_rel, dt, dc, overlaps, dontcare_overlaps(dt, dc), no_dc)

    thresholds = {c: min_overlaps_for(c, min_overlaps) for c in classes}
    result = EvalResult(classes=tuple(classes), thresholds=thresholds, compute_aos=compute_aos,
                        num_frames=gt.num_frames)
    for cls in classes:
        needed = {(m, thr[k]) for thr in thresholds[cls] for k, m in enumerate(METRICS)}
        for d, difficulty in enumerate(DIFFICULTIES):
            ignored_gt = ignored_ground_truth(gt_rel, cls, d, min_height_scale)
            ignored_det = ignored_detections(dt, cls, d, min_height_scale)
            for metric, thr in sorted(needed):
                with_aos = compute_aos and metric == "bbox"
                precision, aos = precision_curve(ctx, ignored_gt, ignored_det, metric, thr, with_aos)
                result.add_curve(cls, metric, difficulty, thr, precision)
                if with_aos:
                    result.add_curve(cls, "aos", difficulty, thr, aos)
    return result


def evaluate(gt_annos: Mapping[str, Sequence[Object3D]], dt_annos: Mapping[str, Sequence[Object3D]],
             classes: Sequence[str] = DEFAULT_CLASSES, compute_aos: bool | None = None,
             min_overlaps: Mapping | None = None, min_height_scale: float = 1.0) -> EvalResult:
    """KITTI AP (devkit rules) of detections against ground truth.

    Args:
        gt_annos: frame id -> the frame's label_2 objects (DontCare lines included).
        dt_annos: frame id -> detections (each with a score); a frame missing here has
            none; frames not in ``gt_annos`` are not evaluated. Ids may be ints or
            strings (7 and "000007" are the same frame).
        classes: the evaluated classes (Car, Pedestrian, Cyclist by default).
        compute_aos: None = the devkit's rule (unless some detection has alpha = -10).
        min_overlaps: optional {class: ((bbox, bev, 3d) strict, (bbox, bev, 3d) loose)}.
        min_height_scale: multiplies the devkit's minimum 2-D heights (40/25/25 px). Keep 1
            on KITTI; for images of another height (SynthKITTI's 128 rows) the difficulty
            levels keep their meaning with image height / 375 (the SynthKITTI recipes set it).
    Returns:
        :class:`EvalResult` with ``.flat`` ({"Car/3d/moderate/R40@0.70": AP%, ...}) and ``.report()``.
    """
    gt_annos = {frame_id(k): v for k, v in gt_annos.items()}  # 7 and "000007" are one frame
    dt_annos = {frame_id(k): v for k, v in dt_annos.items()}
    frames = list(gt_annos)
    return evaluate_tables(table_from_objects(frames, gt_annos), table_from_objects(frames, dt_annos),
                           classes, compute_aos, min_overlaps, min_height_scale)
