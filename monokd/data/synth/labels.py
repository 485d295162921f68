"""KITTI labels measured on the rendering.

- 2-D box: the extent of the object's *visible* pixels in the id buffer (pixel edges, so a
  pixel centred at u spans u - 0.5 .. u + 0.5), clipped to [0, W-1] x [0, H-1] as in KITTI.
- truncation: the fraction of the area of the projected 3-D box's 2-D extent outside the image.
- occlusion: from the visible fraction f = visible pixels / pixels of the object rendered
  alone (in the image): 0 if f >= 0.97, 1 if f >= 0.6, else 2.
- DontCare: an object with visible 2-D height under ``min_height`` (default 15 px at KITTI's
  375 rows, scaled to the image height: 5.1 px at 128 rows) or f < 0.1; its line keeps only
  the visible 2-D box. Objects with no visible pixel get no line.
- alpha: monokd.geometry.boxes.alpha_from_rotation_y of the (rounded) rotation_y and location.
"""

from __future__ import annotations

import numpy as np

from monokd.data.kitti import Object3D
from monokd.geometry.boxes import alpha_from_rotation_y, project_boxes

OCCLUSION_THRESHOLDS = (0.97, 0.6)  # visible fraction for levels 0 and 1
DONTCARE_MIN_HEIGHT_KITTI = 15.0  # px at 375 rows
DONTCARE_MIN_VISIBLE = 0.1


def visible_box(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """(4,) x1, y1, x2, y2 of the pixels of ``mask`` (H, W), outer pixel edges, clipped."""
    rows, cols = np.nonzero(mask)
    box = np.array([cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5])
    box[0::2] = box[0::2].clip(0, width - 1)
    box[1::2] = box[1::2].clip(0, height - 1)
    return box


def truncation(dims, location, rotation_y, P, width: int, height: int) -> float:
    """Fraction of the projected 3-D box's 2-D extent lying outside the image."""
    full = project_boxes(dims[None], location[None], np.array([rotation_y]), P)[0]
    inside = full.copy()
    inside[0::2] = inside[0::2].clip(0, width - 1)
    inside[1::2] = inside[1::2].clip(0, height - 1)
    area = lambda b: max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)  # noqa: E731
    total = area(full)
    return 0.0 if total <= 0 else float(np.clip(1.0 - area(inside) / total, 0.0, 1.0))


def occlusion_level(visible_fraction: float) -> int:
    if visible_fraction >= OCCLUSION_THRESHOLDS[0]:
        return 0
    return 1 if visible_fraction >= OCCLUSION_THRESHOLDS[1] else 2


def dontcare(box2d: np.ndarray) -> Object3D:
    return Object3D("DontCare", -1.0, -1, -10.0, box2d, -1.0, -1.0, -1.0,
                    np.array([-1000.0, -1000.0, -1000.0]), -10.0)


def make_labels(scene_objects, instance: np.ndarray, silhouettes: np.ndarray, P: np.ndarray,
                min_height: float | None = None) -> tuple[list[Object3D], np.ndarray]:
    """Labels of the scene objects.

    Args:
        scene_objects: list of SceneObject (rounded geometry).
        instance: (H, W) scene-object index of each pixel's visible surface (-1 none).
        silhouettes: (N, H, W) bool, each object rendered alone.
    Returns:
        label_2 objects (labelled ones first, DontCare last) and (N,) the label index of each
        scene object (-1: no line).
    """
    height, width = instance.shape
    if min_height is None:
        min_height = DONTCARE_MIN_HEIGHT_KITTI * height / 375.0
    labelled, ignored, order = [], [], np.full(len(scene_objects), -1)
    for k, obj in enumerate(scene_objects):
        visible = instance == k
        n_visible = int(visible.sum())
        if n_visible == 0:
            continue
        fraction = n_visible / max(int(silhouettes[k].sum()), 1)
        box = visible_box(visible, width, height)
        if box[3] - box[1] < min_height or fraction < DONTCARE_MIN_VISIBLE:
            ignored.append((k, dontcare(box)))
            continue
        h, w, l = obj.dims
        x, _, z = obj.location
        labelled.append((k, Object3D(
            obj.kind, truncation(obj.dims, obj.location, obj.rotation_y, P, width, height),
            occlusion_level(fraction), float(alpha_from_rotation_y(obj.rotation_y, x, z)), box,
            float(h), float(w), float(l), obj.location.copy(), float(obj.rotation_y))))
    for index, (k, _) in enumerate(labelled + ignored):
        order[k] = index
    return [o for _, o in labelled + ignored], order
