"""Boxes on images, and the picture of a frame (image + bird's-eye view).

Colours: ground truth green, predictions red (with their score). A 3-D box is drawn edge by
edge, each edge clipped to the part in front of the camera, with its front face (the
heading) filled translucent and crossed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from monokd.data.augment import crop_affine
from monokd.data.kitti import KittiPaths, Object3D, read_calib, read_image, read_label, read_velodyne
from monokd.geometry.boxes import EDGES, FRONT_FACE, corners_3d
from monokd.geometry.calib import lidar_to_rect, project, transform_intrinsics
from monokd.viz.bev import GT_COLOR, PRED_COLOR, draw_bev

NEAR = 0.1  # m: edges are clipped to z >= NEAR before projection


def _clip_segment(a: np.ndarray, b: np.ndarray, near: float = NEAR):
    """The part of segment a-b with z >= near, or None."""
    if a[2] < near and b[2] < near:
        return None
    if a[2] < near or b[2] < near:
        t = (near - a[2]) / (b[2] - a[2])
        cut = a + t * (b - a)
        a, b = (cut, b) if a[2] < near else (a, cut)
    return a, b


def _pixel(point: np.ndarray, P2: np.ndarray) -> tuple[int, int]:
    uv, _ = project(point[None], P2)
    u, v = np.clip(uv[0], -1e5, 1e5)
    return int(round(u)), int(round(v))


def draw_boxes_3d(image: np.ndarray, objects: list[Object3D], P2: np.ndarray, color=GT_COLOR,
                  thickness: int = 2, front_alpha: float = 0.3, show_score: bool = True) -> np.ndarray:
    """Projected 3-D boxes on a copy of ``image`` (H, W, 3) uint8 RGB.

    ``P2`` (3, 4) must belong to this image (e.g. the batch's P2 for a network input).
    """
    import cv2

    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    boxes = [(obj, corners_3d(obj.dims, obj.location, np.asarray(obj.rotation_y)))
             for obj in objects if obj.type != "DontCare"]
    # Front faces first, blended where they are, so that the edges drawn after stay crisp.
    mask = np.zeros(out.shape[:2], np.uint8)
    for _, corners in boxes:
        front = corners[list(FRONT_FACE)]
        if front_alpha > 0 and (front[:, 2] >= NEAR).all():
            cv2.fillPoly(mask, [np.array([_pixel(p, P2) for p in front], dtype=np.int32)], 1)
    tinted = out * (1.0 - front_alpha) + np.asarray(color, dtype=np.float64) * front_alpha
    out = np.where(mask[..., None] > 0, tinted.astype(np.uint8), out)
    for obj, corners in boxes:
        for i, j in (*EDGES, (FRONT_FACE[0], FRONT_FACE[2]), (FRONT_FACE[1], FRONT_FACE[3])):
            segment = _clip_segment(corners[i], corners[j])
            if segment is not None:
                width = thickness if (i, j) in EDGES else 1  # the front face's cross is thin
                cv2.line(out, _pixel(segment[0], P2), _pixel(segment[1], P2), color, width, cv2.LINE_AA)
        if show_score and obj.score is not None and (corners[:, 2] >= NEAR).all():
            u, v = _pixel(corners[np.argmin(corners[:, 1])], P2)
            cv2.putText(out, f"{obj.score:.2f}", (u, v - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


def draw_boxes_2d(image: np.ndarray, objects: list[Object3D], color=GT_COLOR, thickness: int = 1) -> np.ndarray:
    """The objects' 2-D boxes (label pixels) on a copy of ``image``."""
    import cv2

    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    for obj in objects:
        if obj.type == "DontCare":
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in obj.box2d)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    return out


def panel(image: np.ndarray, P2: np.ndarray, gt: list[Object3D], preds: list[Object3D] | None = None,
          points: np.ndarray | None = None, bev_height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image with 2-D and 3-D boxes, bird's-eye view) of one frame; ``points`` (N, >=3) in
    rectified camera coordinates."""
    drawn = draw_boxes_2d(image, gt, GT_COLOR)
    drawn = draw_boxes_3d(drawn, gt, P2, GT_COLOR)
    if preds:
        drawn = draw_boxes_2d(drawn, preds, PRED_COLOR)
        drawn = draw_boxes_3d(drawn, preds, P2, PRED_COLOR)
    half = bev_half_width(gt, preds)
    bev = draw_bev(points, gt, preds, x_range=(-half, half), z_range=(0.0, bev_depth(gt, preds)),
                   height=bev_height or max(image.shape[0], 360))
    return drawn, bev


def bev_half_width(*groups, least: float = 20.0, most: float = 40.0) -> float:
    """Half the width of the bird's-eye view: 20 m, or past the box farthest to a side (up to 40 m)."""
    side = [abs(o.location[0]) + 3.0 for group in groups for o in group or [] if o.type != "DontCare"]
    return float(np.clip(np.ceil(max(side, default=least) / 5.0) * 5.0, least, most))


def bev_depth(*groups, least: float = 60.0, most: float = 90.0) -> float:
    """How far the bird's-eye view reaches: 60 m, or past the farthest box (up to 90 m)."""
    far = [o.location[2] + 5.0 for group in groups for o in group or [] if o.type != "DontCare"]
    return float(np.clip(np.ceil(max(far, default=least) / 10.0) * 10.0, least, most))


def _scale_boxes_2d(objects: list[Object3D], factor: int) -> list[Object3D]:
    """The objects with their 2-D boxes in an image enlarged ``factor`` times."""
    return [replace(o, box2d=(np.asarray(o.box2d) + 0.5) * factor - 0.5) for o in objects]


def legend_entries(gt: list[Object3D] | None, preds: list[Object3D] | None) -> list[tuple[str, tuple]]:
    """(name, colour) of each legend entry: "ground truth" only when there is a GT box to draw
    (not for images without labels), "prediction" whenever predictions are given (even none)."""
    return ([("ground truth", GT_COLOR)] if gt else []) + ([("prediction", PRED_COLOR)] if preds is not None else [])


def render_frame_picture(image: np.ndarray, P2: np.ndarray, gt: list[Object3D] | None,
                         preds: list[Object3D] | None = None, points: np.ndarray | None = None,
                         title: str | None = None) -> np.ndarray:
    """One picture of a frame: the image with its boxes on the left, the bird's-eye view on the
    right, a legend below the image (:func:`legend_entries`). ``gt`` None or empty: no labels
    drawn. (H', W + W_bev, 3) uint8 RGB."""
    import cv2

    gt = list(gt or [])

    factor = int(np.ceil(250 / image.shape[0]))  # small renders are drawn enlarged, lines stay thin
    if factor > 1:
        size = (image.shape[1] * factor, image.shape[0] * factor)
        P2 = transform_intrinsics(P2, crop_affine((image.shape[1] / 2, image.shape[0] / 2), image.shape[1::-1], size))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        gt, preds = _scale_boxes_2d(gt, factor), None if preds is None else _scale_boxes_2d(preds, factor)
    drawn, bev = panel(image, P2, gt, preds, points, bev_height=max(image.shape[0] + 40, 360))
    height = max(drawn.shape[0] + 40, bev.shape[0])
    canvas = np.full((height, drawn.shape[1] + bev.shape[1], 3), 255, dtype=np.uint8)
    canvas[:drawn.shape[0], :drawn.shape[1]] = drawn
    canvas[:bev.shape[0], drawn.shape[1]:] = bev
    row = drawn.shape[0] + 24
    text = legend_entries(gt, preds)
    x = 10
    if title:
        cv2.putText(canvas, title, (x, row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += 12 * len(title) + 20
    for name, color in text:
        cv2.rectangle(canvas, (x, row - 11), (x + 14, row + 1), color, -1)
        cv2.putText(canvas, name, (x + 20, row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += 20 + 12 * len(name) + 20
    hint = "front face: filled + crossed; BEV: heading line"
    if x + 8 * len(hint) < drawn.shape[1]:
        cv2.putText(canvas, hint, (x, row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    return canvas


def frame_picture(paths: KittiPaths, frame: str, pred_dir: Path | None = None,
                  score_threshold: float = 0.0) -> np.ndarray:
    """The picture of one frame (image + BEV), with predictions when ``pred_dir`` is given."""
    image = read_image(paths.file("image_2", frame))
    calib = read_calib(paths.file("calib", frame))
    label = paths.file("label_2", frame)
    gt = read_label(label) if label.is_file() else []
    preds = None
    if pred_dir is not None:
        found = Path(pred_dir) / f"{frame}.txt"
        preds = [o for o in (read_label(found) if found.is_file() else [])
                 if o.score is None or o.score >= score_threshold]
    velo = paths.file("velodyne", frame)
    points = lidar_to_rect(read_velodyne(velo)[:, :3], calib) if velo.is_file() else None
    return render_frame_picture(image, calib.P2, gt, preds, points, title=f"{paths.part} {frame}")
