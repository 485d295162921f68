"""World augmentations of a LiDAR scene (OpenPCDet's ``random_world_rotation`` and
``random_world_scaling``, the released MonoTAKD / SECOND teacher's KITTI recipe).

Points (M, >=3) and 7-D LiDAR boxes (N, 7) x, y, z (geometric centre), dx, dy, dz, heading
(monokd.geometry.boxes) move together, so every box keeps exactly the points it held:

    rotation by a about +z:  p -> R_z(a) p,  centre -> R_z(a) centre,  heading -> heading + a
    scaling by s:            p -> s p,       centre, dx, dy, dz -> s x

The recipe draws a ~ U(-pi/4, pi/4) and s ~ U(0.95, 1.05) per frame. Reflectance (column 3 on)
is kept. Inputs are not modified.
"""

from __future__ import annotations

import numpy as np

from monokd.geometry.boxes import wrap_angle


def rotate_scene(points: np.ndarray, boxes: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Both rotated by ``angle`` (radians) about the LiDAR's +z axis (x towards y)."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    points, boxes = np.array(points, copy=True), np.array(boxes, dtype=np.float64, copy=True)
    points[:, :2] = points[:, :2] @ rotation.T
    boxes[:, :2] = boxes[:, :2] @ rotation.T
    boxes[:, 6] = wrap_angle(boxes[:, 6] + angle)
    return points, boxes


def scale_scene(points: np.ndarray, boxes: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Both scaled by ``scale`` about the LiDAR origin (positions and box sizes)."""
    points, boxes = np.array(points, copy=True), np.array(boxes, dtype=np.float64, copy=True)
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    return points, boxes


def random_world(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                 rotation=(-np.pi / 4, np.pi / 4), scaling=(0.95, 1.05)) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation then a random scaling (OpenPCDet's order); None skips either."""
    if rotation is not None:
        points, boxes = rotate_scene(points, boxes, rng.uniform(*rotation))
    if scaling is not None:
        points, boxes = scale_scene(points, boxes, rng.uniform(*scaling))
    return points, boxes
