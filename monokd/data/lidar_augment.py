"""World augmentations of a LiDAR scene (OpenPCDet's ``random_world_flip``,
``random_world_rotation`` and ``random_world_scaling``, the released MonoTAKD / SECOND teacher's
KITTI recipe).

Points (M, >=3) and 7-D LiDAR boxes (N, 7) x, y, z (geometric centre), dx, dy, dz, heading
(monokd.geometry.boxes) move together, so every box keeps exactly the points it held:

    flip along x:            y -> -y (points and centres),       heading -> -heading
    rotation by a about +z:  p -> R_z(a) p,  centre -> R_z(a) centre,  heading -> heading + a
    scaling by s:            p -> s p,       centre, dx, dy, dz -> s x

The recipe flips with probability 0.5 and draws a ~ U(-pi/4, pi/4) and s ~ U(0.95, 1.05) per
frame. Reflectance (column 3 on) is kept. Inputs are not modified.

The dataset applies them (``data.augment.{gt_sampling, world_flip, world_rotation,
world_scaling}``, each None for off) with :func:`augment_scene`: GT sampling, flip, rotation,
scaling, in OpenPCDet's order, in the LiDAR frame of the original sweep, before the image flip
(``flip_prob`` mirrors the image and the camera frame, never the LiDAR scene, so it does not
augment a LiDAR teacher; monokd.data.dataset). The boxes go back to label_2 objects of the
frame's camera, so the targets, the teacher's LiDAR boxes and the points stay one scene; the
image does not follow (a LiDAR-only recipe: the image-side depth inputs are refused).
"""

from __future__ import annotations

import numpy as np

from monokd.errors import ConfigError
from monokd.geometry.boxes import wrap_angle


def flip_scene(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both mirrored along the LiDAR's x axis (y -> -y; OpenPCDet's ``random_world_flip`` 'x')."""
    points, boxes = np.array(points, copy=True), np.array(boxes, dtype=np.float64, copy=True)
    points[:, 1] = -points[:, 1]
    boxes[:, 1] = -boxes[:, 1]
    boxes[:, 6] = wrap_angle(-boxes[:, 6])
    return points, boxes


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


# --- the scene augmentation of a dataset item ------------------------------------------------

SCENE_KEYS = ("gt_sampling", "world_flip", "world_rotation", "world_scaling")


def scene_augmented(augment_cfg: dict) -> bool:
    """Whether ``data.augment`` asks for any LiDAR scene augmentation."""
    return any(augment_cfg.get(key) is not None for key in SCENE_KEYS)


def check_scene_options(data_cfg: dict) -> None:
    """``data.augment.{gt_sampling, world_flip, world_rotation, world_scaling}``: a {KITTI class:
    group size >= 0} mapping, a probability and two [low, high] ranges (scaling > 0), each None
    for off; any of them
    needs ``data.load_points`` and excludes the image-side depth inputs (``depth_maps``,
    ``depth_pred_dir``, ``proposals``), which the scene's motion would leave behind.

    Raises:
        ConfigError naming the key.
    """
    from monokd.data.checks import check_classes

    augment = data_cfg["augment"]
    groups = augment.get("gt_sampling")
    if groups is not None:
        if not isinstance(groups, dict) or not groups:
            raise ConfigError(f"data.augment.gt_sampling: expected {{class: group size}}, got {groups!r}")
        check_classes(list(groups), "data.augment.gt_sampling")
        if any(not isinstance(g, int) or isinstance(g, bool) or g < 0 for g in groups.values()):
            raise ConfigError(f"data.augment.gt_sampling: group sizes must be integers >= 0, got {groups}")
    flip = augment.get("world_flip")
    if flip is not None and (isinstance(flip, bool) or not isinstance(flip, (int, float)) or not 0 <= flip <= 1):
        raise ConfigError(f"data.augment.world_flip: expected a probability in [0, 1], got {flip!r}")
    for key, positive in (("world_rotation", False), ("world_scaling", True)):
        span = augment.get(key)
        if span is None:
            continue
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span)
                or span[0] > span[1] or (positive and span[0] <= 0)):
            raise ConfigError(f"data.augment.{key}: expected [low, high] with low <= high"
                              f"{' and low > 0' if positive else ''}, got {span!r}")
    if not scene_augmented(augment):
        return
    if not data_cfg.get("load_points"):
        raise ConfigError("data.augment: gt_sampling / world_rotation / world_scaling move a LiDAR scene; "
                          "set data.load_points: true")
    image_side = [k for k in ("depth_maps", "depth_pred_dir", "proposals") if data_cfg.get(k)]
    if image_side:
        raise ConfigError(f"data.augment: gt_sampling / world_rotation / world_scaling move the scene but not "
                          f"the image; data.{image_side[0]} would no longer match it (a LiDAR-only recipe)")


def objects_to_boxes(objects, calib) -> np.ndarray:
    """KITTI objects (Object3D) -> LiDAR boxes (N, 7) through the frame's own calibration."""
    from monokd.geometry.boxes import rect_to_lidar_boxes
    from monokd.geometry.calib import velo_to_rect_matrix

    if not objects:
        return np.zeros((0, 7))
    dims = np.stack([o.dims for o in objects])
    location = np.stack([np.asarray(o.location, dtype=np.float64) for o in objects])
    rotation_y = np.array([o.rotation_y for o in objects], dtype=np.float64)
    return rect_to_lidar_boxes(dims, location, rotation_y, velo_to_rect_matrix(calib))


def boxes_to_objects(boxes: np.ndarray, like: list, calib, image_size) -> list:
    """LiDAR boxes (N, 7) back to KITTI objects in the frame's rectified camera: ``like`` gives
    each one's type, truncation and occlusion (Object3D or {class, truncated, occluded}); alpha
    follows from rotation_y and the location, the 2-D box is the projected 3-D box clipped to
    the image (``image_size`` (W, H))."""
    from monokd.data.kitti import Object3D
    from monokd.geometry.boxes import alpha_from_rotation_y, lidar_to_rect_boxes, project_boxes
    from monokd.geometry.calib import velo_to_rect_matrix

    if not len(boxes):
        return []
    dims, location, rotation_y = lidar_to_rect_boxes(np.asarray(boxes, dtype=np.float64), velo_to_rect_matrix(calib))
    box2d = project_boxes(dims, location, rotation_y, np.asarray(calib.P2, dtype=np.float64), image_size)
    alpha = alpha_from_rotation_y(rotation_y, location[:, 0], location[:, 2])
    out = []
    for k, source in enumerate(like):
        kind = source.type if isinstance(source, Object3D) else source["class"]
        truncated = source.truncated if isinstance(source, Object3D) else float(source.get("truncated", 0.0))
        occluded = source.occluded if isinstance(source, Object3D) else int(source.get("occluded", 0))
        out.append(Object3D(type=kind, truncated=float(truncated), occluded=int(occluded), alpha=float(alpha[k]),
                            box2d=box2d[k], h=float(dims[k, 0]), w=float(dims[k, 1]), l=float(dims[k, 2]),
                            location=location[k], rotation_y=float(rotation_y[k])))
    return out


def augment_scene(points: np.ndarray, objects: list, calib, image_size, rng: np.random.Generator,
                  augment_cfg: dict, records: list[dict] | None) -> tuple[np.ndarray, list]:
    """The LiDAR scene of one frame augmented in OpenPCDet's order: GT sampling
    (monokd.data.gt_database, from ``records``), a flip along x with probability ``world_flip``,
    a world rotation, a world scaling.

    Args:
        points: (M, 4) LiDAR-frame sweep.  objects: the frame's label_2 objects (DontCare is
            dropped; every other type, supervised or not, takes part in the overlap test).
        calib: the frame's Calibration.  image_size: (W, H) of the original image.
        rng: the item's generator.  augment_cfg: ``data.augment``.
        records: the usable database records (None: no GT sampling).
    Returns:
        (points (M', 4) LiDAR frame, objects in the frame's rectified camera, the pasted ones
        appended). The image is not changed.
    """
    from monokd.data import gt_database

    objects = [o for o in objects if o.type != "DontCare"]
    boxes = objects_to_boxes(objects, calib)
    like: list = list(objects)
    if augment_cfg.get("gt_sampling") is not None and records:
        chosen = gt_database.sample(records, boxes, [o.type for o in objects], augment_cfg["gt_sampling"], rng)
        points, boxes, _ = gt_database.paste(points, boxes, [o.type for o in objects], chosen)
        like += chosen
    if augment_cfg.get("world_flip") is not None and rng.uniform() < float(augment_cfg["world_flip"]):
        points, boxes = flip_scene(points, boxes)
    points, boxes = random_world(points, boxes, rng, augment_cfg.get("world_rotation"),
                                 augment_cfg.get("world_scaling"))
    return points.astype(np.float32), boxes_to_objects(boxes, like, calib, image_size)
