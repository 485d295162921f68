"""3-D boxes in the KITTI convention.

A box is (h, w, l) dimensions, a location at the *bottom centre* in rectified camera
coordinates and a yaw ``rotation_y`` about the camera y axis. At rotation_y = 0 the box's
length runs along +x; its front face (the heading) is at local x = +l/2.
"""

from __future__ import annotations

import math

import numpy as np

from monokd.geometry._backend import atan2, cat, lib, stack
from monokd.geometry.calib import project

# Corner order: 0-3 bottom face, 4-7 top face; 0, 1, 5, 4 is the front face (+x local).
_CORNER_X = (0.5, 0.5, -0.5, -0.5, 0.5, 0.5, -0.5, -0.5)
_CORNER_Y = (0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0)
_CORNER_Z = (0.5, -0.5, -0.5, 0.5, 0.5, -0.5, -0.5, 0.5)
FRONT_FACE = (0, 1, 5, 4)
EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
         (0, 4), (1, 5), (2, 6), (3, 7))


def wrap_angle(angle):
    """Wrap to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def alpha_from_rotation_y(rotation_y, x, z):
    """Observation angle: alpha = rotation_y - atan2(x, z), wrapped."""
    return wrap_angle(rotation_y - atan2(x, z))


def rotation_y_from_alpha(alpha, x, z):
    return wrap_angle(alpha + atan2(x, z))


def corners_3d(dims, location, rotation_y):
    """Corners of boxes.

    Args:
        dims: (..., 3) h, w, l.  location: (..., 3) bottom centre.  rotation_y: (...).
    Returns:
        (..., 8, 3) corners in rectified camera coordinates (order: see FRONT_FACE).
    """
    xp = lib(dims)
    h, w, l = dims[..., 0:1], dims[..., 1:2], dims[..., 2:3]
    unit = [xp.asarray(c, dtype=dims.dtype) if xp is np else xp.tensor(c, dtype=dims.dtype, device=dims.device)
            for c in (_CORNER_X, _CORNER_Y, _CORNER_Z)]
    x, y, z = l * unit[0], h * unit[1], w * unit[2]  # (..., 8)
    c, s = xp.cos(rotation_y)[..., None], xp.sin(rotation_y)[..., None]
    xr = c * x + s * z
    zr = -s * x + c * z
    corners = stack([xr, y, zr], axis=-1)
    return corners + location[..., None, :]


def box_center(dims, location):
    """(..., 3) geometric centre (the location is the bottom centre; y points down)."""
    offset = cat([0 * dims[..., :1], -0.5 * dims[..., :1], 0 * dims[..., :1]], axis=-1)
    return location + offset


def project_boxes(dims, location, rotation_y, P, image_size=None):
    """2-D extent of projected 3-D boxes.

    Args:
        dims, location, rotation_y: as for :func:`corners_3d`, (N, ...) boxes.
        P: (3, 4) projection matrix.
        image_size: optional (width, height) to clip the boxes to the image.
    Returns:
        (N, 4) x1, y1, x2, y2. Boxes with a corner behind the camera (z <= 0.1 m) are
        clipped to the near plane first, so they stay finite.
    """
    corners = corners_3d(dims, location, rotation_y)
    corners = _clip_near_plane(corners)
    uv, _ = project(corners, P)
    xp = lib(uv)
    if xp is np:
        boxes = np.concatenate([uv.min(axis=-2), uv.max(axis=-2)], axis=-1)
    else:
        boxes = xp.cat([uv.min(dim=-2).values, uv.max(dim=-2).values], dim=-1)
    if image_size is not None:
        width, height = image_size
        boxes[..., 0::2] = boxes[..., 0::2].clip(0, width - 1)
        boxes[..., 1::2] = boxes[..., 1::2].clip(0, height - 1)
    return boxes


def _clip_near_plane(corners, near: float = 0.1):
    """Replace corners behind the near plane by points on the box edges that cross it."""
    if not (corners[..., 2] < near).any():
        return corners
    corners = np.asarray(corners, dtype=np.float64).copy()
    out = []
    for box in corners.reshape(-1, 8, 3):
        kept = [p for p in box if p[2] >= near]
        for i, j in EDGES:
            a, b = box[i], box[j]
            if (a[2] - near) * (b[2] - near) < 0:
                t = (near - a[2]) / (b[2] - a[2])
                kept.append(a + t * (b - a))
        if not kept:
            kept = [np.array([0.0, 0.0, near])]
        kept += [kept[-1]] * (8 - len(kept)) if len(kept) < 8 else []
        out.append(np.array(kept[:8]) if len(kept) <= 8 else _hull_extremes(np.array(kept)))
    return np.stack(out).reshape(corners.shape)


def _hull_extremes(points):
    """8 points whose projection spans the same 2-D extent as ``points`` (all at z >= near)."""
    u = points[:, 0] / points[:, 2]
    v = points[:, 1] / points[:, 2]
    picks = [u.argmin(), u.argmax(), v.argmin(), v.argmax()]
    return points[picks + picks]
