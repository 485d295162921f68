"""Overlap of boxes: image boxes, rotated bird's-eye-view rectangles and 3-D boxes (KITTI).

The one definition used by the evaluation and by anyone else. Conventions (the devkit's,
evaluate_object.cpp):

* image box: (..., 4) x1, y1, x2, y2 in pixels; areas are (x2 - x1) * (y2 - y1), no "+1".
* 3-D box: (..., 7) x, y, z, h, w, l, rotation_y in rectified camera coordinates, with
  (x, y, z) the *bottom* centre (the box spans y - h .. y, since y points down).
* bird's-eye view: the box's footprint in the x-z plane, a rectangle of length l and width
  w rotated by rotation_y (corners from :func:`monokd.geometry.boxes.corners_3d`).

Intersections of rotated rectangles are exact (convex polygon clipping), so identical,
touching, nested and degenerate boxes are well defined: identical boxes give 1, touching
or disjoint boxes 0, a box of zero area or volume 0.
"""

from __future__ import annotations

import numba
import numpy as np

from monokd.geometry._backend import is_torch, lib
from monokd.geometry.boxes import corners_3d

_MAX_VERTICES = 16  # a quadrilateral clipped by 4 half-planes has at most 8 vertices


def box2d_overlap(a, b, criterion: str = "union"):
    """Overlap of image boxes, elementwise with broadcasting (numpy or torch).

    Args:
        a, b: (..., 4) x1, y1, x2, y2.
        criterion: ``"union"`` for IoU; ``"a"`` for intersection / area of ``a`` (the
            devkit's overlap of a detection with a DontCare region).
    Returns:
        (...) overlap in [0, 1]; 0 where the boxes do not overlap with positive area.
    """
    xp = lib(a)
    iw = xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0])
    ih = xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1])
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    if criterion == "union":
        area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        denom = area_a + area_b - inter
    elif criterion == "a":
        denom = area_a
    else:
        raise ValueError(f"criterion must be 'union' or 'a', got {criterion!r}")
    valid = (iw > 0) & (ih > 0)
    # where there is no overlap the devkit returns 0 before dividing; keep the division safe
    safe = xp.where(valid, denom, xp.ones_like(denom))
    return xp.where(valid, inter / safe, xp.zeros_like(inter))


def iou_2d(a, b, criterion: str = "union"):
    """Pairwise image-box overlap: (N, 4), (M, 4) -> (N, M)."""
    return box2d_overlap(a[:, None, :], b[None, :, :], criterion)


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 7) 3-D boxes -> (N, 4, 2) footprint corners (x, z), the bottom face's order."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    dims = boxes[:, [3, 4, 5]]
    corners = corners_3d(dims, boxes[:, :3], boxes[:, 6])
    return np.ascontiguousarray(corners[:, :4][:, :, [0, 2]])


@numba.njit(cache=True)
def _signed_area(px, py, n):
    s = 0.0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        s += px[i] * py[j] - px[j] * py[i]
    return 0.5 * s


@numba.njit(cache=True)
def _convex_intersection_area(pa, pb, work):
    """Area of the intersection of two convex quadrilaterals (4, 2), any orientation.

    Sutherland-Hodgman: clip ``pa`` by each edge of ``pb``. Points on an edge count as
    inside, so identical and touching polygons need no special case. ``work`` is (6, 16)
    scratch (plain loops and no allocation keep numba's compile time short).
    """
    ox, oy, nx, ny, cx, cy = work[0], work[1], work[2], work[3], work[4], work[5]
    # coordinates relative to a vertex of pb: far from the origin, the shoelace sum would
    # lose digits to cancellation
    rx, ry = pb[0, 0], pb[0, 1]
    for i in range(4):
        ox[i] = pa[i, 0] - rx
        oy[i] = pa[i, 1] - ry
        cx[i] = pb[i, 0] - rx
        cy[i] = pb[i, 1] - ry
    n = 4
    if _signed_area(ox, oy, 4) == 0.0:
        return 0.0
    orient = _signed_area(cx, cy, 4)
    if orient == 0.0:
        return 0.0
    sign = 1.0 if orient > 0 else -1.0  # inside = left of each edge for a CCW clip polygon
    for e in range(4):
        f = e + 1 if e < 3 else 0
        ex0, ey0 = cx[e], cy[e]
        dx, dy = cx[f] - ex0, cy[f] - ey0
        m = 0
        for i in range(n):
            j = i + 1 if i + 1 < n else 0
            di = sign * (dx * (oy[i] - ey0) - dy * (ox[i] - ex0))
            dj = sign * (dx * (oy[j] - ey0) - dy * (ox[j] - ex0))
            if di >= 0.0:
                nx[m] = ox[i]
                ny[m] = oy[i]
                m += 1
            if (di >= 0.0) != (dj >= 0.0):
                t = di / (di - dj)
                nx[m] = ox[i] + t * (ox[j] - ox[i])
                ny[m] = oy[i] + t * (oy[j] - oy[i])
                m += 1
        n = m
        if n < 3:
            return 0.0
        for i in range(n):
            ox[i] = nx[i]
            oy[i] = ny[i]
    area = _signed_area(ox, oy, n)
    return area if area > 0 else -area


@numba.njit(cache=True)
def _pair_intersection_areas(corners_a, corners_b, index_a, index_b, out, work):
    for p in range(index_a.shape[0]):
        out[p] = _convex_intersection_area(corners_a[index_a[p]], corners_b[index_b[p]], work)


def bev_intersection_pairs(corners_a: np.ndarray, corners_b: np.ndarray,
                           index_a: np.ndarray, index_b: np.ndarray) -> np.ndarray:
    """Footprint intersection areas of the pairs (corners_a[index_a[p]], corners_b[index_b[p]]).

    Args:
        corners_a: (N, 4, 2), corners_b: (M, 4, 2) convex quadrilaterals (:func:`bev_corners`).
        index_a, index_b: (P,) integer indices.
    Returns:
        (P,) exact areas. Pairs whose circumscribed circles are apart are 0 without clipping.
    """
    index_a = np.asarray(index_a, dtype=np.int64)
    index_b = np.asarray(index_b, dtype=np.int64)
    out = np.zeros(index_a.shape[0], dtype=np.float64)
    if out.size == 0:
        return out
    centre_a, centre_b = corners_a.mean(axis=1), corners_b.mean(axis=1)
    radius_a = np.linalg.norm(corners_a[:, 0] - centre_a, axis=1)
    radius_b = np.linalg.norm(corners_b[:, 0] - centre_b, axis=1)
    gap = np.linalg.norm(centre_a[index_a] - centre_b[index_b], axis=1)
    near = np.flatnonzero(gap < radius_a[index_a] + radius_b[index_b])
    if near.size:
        found = np.empty(near.size, dtype=np.float64)
        _pair_intersection_areas(np.ascontiguousarray(corners_a, dtype=np.float64),
                                 np.ascontiguousarray(corners_b, dtype=np.float64),
                                 index_a[near], index_b[near], found, np.empty((6, _MAX_VERTICES)))
        out[near] = found
    return out


def _ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """inter / union, 0 where the union is empty (degenerate boxes)."""
    positive = union > 0
    return np.where(positive, inter / np.where(positive, union, 1.0), 0.0)


def footprint_intersections(a: np.ndarray, b: np.ndarray, index_a, index_b) -> np.ndarray:
    """(P,) footprint intersection areas of the pairs (a[index_a[p]], b[index_b[p]]) of
    (·, 7) 3-D boxes; pass it as ``inter_area`` to share it between BEV and 3-D overlaps."""
    a, b = _as_boxes(a), _as_boxes(b)
    return bev_intersection_pairs(bev_corners(a), bev_corners(b), index_a, index_b)


def bev_overlap_pairs(a: np.ndarray, b: np.ndarray, index_a, index_b, criterion: str = "union",
                      inter_area: np.ndarray | None = None):
    """BEV overlap of the pairs (a[index_a[p]], b[index_b[p]]) of (·, 7) 3-D boxes -> (P,)."""
    a, b = _as_boxes(a), _as_boxes(b)
    index_a = np.asarray(index_a, dtype=np.int64)
    index_b = np.asarray(index_b, dtype=np.int64)
    area_a = np.abs(a[:, 4] * a[:, 5])[index_a]
    area_b = np.abs(b[:, 4] * b[:, 5])[index_b]
    inter = footprint_intersections(a, b, index_a, index_b) if inter_area is None else inter_area
    inter = np.minimum(inter, np.minimum(area_a, area_b))  # rounding must not exceed either box
    if criterion == "a":
        return _ratio(inter, area_a)
    return _ratio(inter, area_a + area_b - inter)


def iou_3d_pairs(a: np.ndarray, b: np.ndarray, index_a, index_b, criterion: str = "union",
                 inter_area: np.ndarray | None = None):
    """3-D overlap of the pairs (a[index_a[p]], b[index_b[p]]) of (·, 7) 3-D boxes -> (P,).

    Intersection volume = footprint intersection x overlap of the y spans (y - h .. y).
    """
    a, b = _as_boxes(a), _as_boxes(b)
    index_a = np.asarray(index_a, dtype=np.int64)
    index_b = np.asarray(index_b, dtype=np.int64)
    pa, pb = a[index_a], b[index_b]
    area_a, area_b = np.abs(pa[:, 4] * pa[:, 5]), np.abs(pb[:, 4] * pb[:, 5])
    if inter_area is None:
        inter_area = footprint_intersections(a, b, index_a, index_b)
    inter_area = np.minimum(inter_area, np.minimum(area_a, area_b))
    y_top = np.maximum(pa[:, 1] - pa[:, 3], pb[:, 1] - pb[:, 3])
    y_bottom = np.minimum(pa[:, 1], pb[:, 1])
    height_a, height_b = np.abs(pa[:, 3]), np.abs(pb[:, 3])
    overlap_y = np.clip(y_bottom - y_top, 0.0, np.minimum(height_a, height_b))
    inter = inter_area * overlap_y
    vol_a, vol_b = area_a * height_a, area_b * height_b
    if criterion == "a":
        return _ratio(inter, vol_a)
    return _ratio(inter, vol_a + vol_b - inter)


def _as_boxes(boxes) -> np.ndarray:
    if is_torch(boxes):
        boxes = boxes.detach().cpu().numpy()
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 7:
        raise ValueError(f"3-D boxes must be (N, 7) x, y, z, h, w, l, rotation_y; got {boxes.shape}")
    return boxes


def _all_pairs(n: int, m: int):
    return np.repeat(np.arange(n), m), np.tile(np.arange(m), n)


def iou_bev(a, b, criterion: str = "union") -> np.ndarray:
    """Pairwise bird's-eye-view IoU of 3-D boxes: (N, 7), (M, 7) -> (N, M) numpy."""
    a, b = _as_boxes(a), _as_boxes(b)
    ia, ib = _all_pairs(len(a), len(b))
    return bev_overlap_pairs(a, b, ia, ib, criterion).reshape(len(a), len(b))


def iou_3d(a, b, criterion: str = "union") -> np.ndarray:
    """Pairwise 3-D IoU: (N, 7), (M, 7) -> (N, M) numpy."""
    a, b = _as_boxes(a), _as_boxes(b)
    ia, ib = _all_pairs(len(a), len(b))
    return iou_3d_pairs(a, b, ia, ib, criterion).reshape(len(a), len(b))


def polygon_intersection_area(poly_a: np.ndarray, poly_b: np.ndarray) -> float:
    """Exact intersection area of two convex quadrilaterals given as (4, 2) vertex lists."""
    area = np.zeros(1)
    _pair_intersection_areas(np.asarray(poly_a, dtype=np.float64).reshape(1, 4, 2),
                             np.asarray(poly_b, dtype=np.float64).reshape(1, 4, 2),
                             np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), area,
                             np.empty((6, _MAX_VERTICES)))
    return float(area[0])


# --- LiDAR-frame boxes (the BEV detectors': anchor assignment, NMS) ----------------------------
# A LiDAR 7-D box is (x, y, z, dx, dy, dz, heading), x, y, z its centre (monokd.geometry.boxes);
# its footprint is the dx x dy rectangle in the x-y plane rotated by heading. The overlap is the
# same exact clipping as above, only the corners differ.


def lidar_bev_corners(boxes) -> np.ndarray:
    """(N, >=7) LiDAR boxes -> (N, 4, 2) footprint corners (x, y), counter-clockwise."""
    boxes = _as_lidar_boxes(boxes)
    half = 0.5 * boxes[:, None, 3:5] * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = c * half[..., 0] - s * half[..., 1] + boxes[:, None, 0]
    y = s * half[..., 0] + c * half[..., 1] + boxes[:, None, 1]
    return np.ascontiguousarray(np.stack([x, y], axis=-1))


def iou_bev_lidar(a, b, criterion: str = "union") -> np.ndarray:
    """Pairwise rotated BEV IoU of LiDAR boxes: (N, 7), (M, 7) -> (N, M) numpy (float64).

    Exact for any headings (the clipping above). Only the pairs whose footprints'
    circumscribed circles meet are clipped, found with one broadcast distance test, so
    100k anchors x 20 boxes cost little more than N x M distances.

    Args:
        criterion: ``"union"`` for IoU; ``"a"`` for intersection / area of ``a``.
    """
    a, b = _as_lidar_boxes(a), _as_lidar_boxes(b)
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    if out.size == 0:
        return out
    corners_a, corners_b = lidar_bev_corners(a), lidar_bev_corners(b)
    radius_a = 0.5 * np.hypot(a[:, 3], a[:, 4])
    radius_b = 0.5 * np.hypot(b[:, 3], b[:, 4])
    gap = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    index_a, index_b = np.nonzero(gap < radius_a[:, None] + radius_b[None, :])
    if index_a.size == 0:
        return out
    area_a = np.abs(a[index_a, 3] * a[index_a, 4])
    area_b = np.abs(b[index_b, 3] * b[index_b, 4])
    inter = bev_intersection_pairs(corners_a, corners_b, index_a, index_b)
    inter = np.minimum(inter, np.minimum(area_a, area_b))  # rounding must not exceed either box
    out[index_a, index_b] = _ratio(inter, area_a) if criterion == "a" else _ratio(inter, area_a + area_b - inter)
    return out


def _as_lidar_boxes(boxes) -> np.ndarray:
    if is_torch(boxes):
        boxes = boxes.detach().cpu().numpy()
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f"LiDAR boxes must be (N, 7) x, y, z, dx, dy, dz, heading; got {boxes.shape}")
    return boxes
