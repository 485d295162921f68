"""3-D boxes in the KITTI convention.

A box is (h, w, l) dimensions, a location at the *bottom centre* in rectified camera
coordinates and a yaw ``rotation_y`` about the camera y axis. At rotation_y = 0 the box's
length runs along +x; its front face (the heading) is at local x = +l/2.
"""

from __future__ import annotations

import math

import numpy as np

from monokd.geometry._backend import atan2, cat, is_torch, lib, stack
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
        P: (3, 4) projection matrix (or batched (..., 3, 4) matching the boxes' batch axes).
        image_size: optional (width, height) to clip the boxes to the image.
    Returns:
        (N, 4) x1, y1, x2, y2. Only the part of a box in front of the near plane
        (z >= 0.1 m) is projected, so boxes reaching behind the camera stay finite.
    """
    points = _clip_near_plane(corners_3d(dims, location, rotation_y))
    if is_torch(P) and P.dim() > 2:
        P = P[..., None, :, :]  # one matrix per box, shared by its points
    uv, _ = project(points, P)
    if is_torch(uv):
        low, high = uv.min(dim=-2).values, uv.max(dim=-2).values
    else:
        low, high = uv.min(axis=-2), uv.max(axis=-2)
    if image_size is not None:
        width, height = image_size
        low = stack([low[..., 0].clip(0, width - 1), low[..., 1].clip(0, height - 1)], axis=-1)
        high = stack([high[..., 0].clip(0, width - 1), high[..., 1].clip(0, height - 1)], axis=-1)
    return cat([low, high], axis=-1)


_EDGE_START = [i for i, _ in EDGES]
_EDGE_END = [j for _, j in EDGES]


def _clip_near_plane(corners, near: float = 0.1):
    """Points whose projection spans the visible part of each box.

    The part of a box in front of the plane z = ``near`` is convex; its vertices are the
    corners with z >= near and the points where edges cross the plane, so the 2-D extent of
    its projection is that of these points.

    Args:
        corners: (..., 8, 3) box corners (numpy or torch).
    Returns:
        (..., 20, 3): the 8 corners, then the 12 edge crossings. A corner behind the plane, or
        an edge that does not cross it, is replaced by the box's farthest corner (itself a
        visible vertex, so the extent is unchanged). A box wholly behind the plane collapses
        to its farthest corner moved onto the plane: a finite, degenerate box.
    """
    xp = lib(corners)
    start, end = corners[..., _EDGE_START, :], corners[..., _EDGE_END, :]  # (..., 12, 3)
    z0, z1 = start[..., 2], end[..., 2]
    crosses = (z0 - near) * (z1 - near) < 0
    t = (near - z0) / xp.where(crosses, z1 - z0, xp.ones_like(z0))
    crossings = start + t[..., None] * (end - start)
    points = cat([corners, crossings], axis=-2)
    visible = cat([corners[..., 2] >= near, crosses], axis=-1)
    farthest = _farthest_corner(corners)
    farthest = cat([farthest[..., :2], farthest[..., 2:].clip(min=near)], axis=-1)
    return xp.where(visible[..., None], points, farthest)


def _farthest_corner(corners):
    """(..., 1, 3) the corner of largest z of each box."""
    if is_torch(corners):
        index = corners[..., 2].argmax(dim=-1)[..., None, None].expand(*corners.shape[:-2], 1, 3)
        return corners.gather(-2, index)
    index = corners[..., 2].argmax(axis=-1)[..., None, None]
    return np.take_along_axis(corners, np.repeat(index, 3, axis=-1), axis=-2)


def points_in_boxes(points, dims, location, rotation_y):
    """Which points lie inside which boxes.

    Args:
        points: (M, 3) rectified camera coordinates.  dims, location, rotation_y: (N, 3),
            (N, 3), (N,) boxes.
    Returns:
        (M, N) bool.
    """
    xp = lib(points)
    offset = points[:, None, :] - location[None, :, :]  # (M, N, 3)
    c, s = xp.cos(rotation_y)[None, :], xp.sin(rotation_y)[None, :]
    # Undo corners_3d's rotation: local x along the length, local z along the width.
    local_x = c * offset[..., 0] - s * offset[..., 2]
    local_z = s * offset[..., 0] + c * offset[..., 2]
    h, w, l = dims[None, :, 0], dims[None, :, 1], dims[None, :, 2]
    return ((abs(local_x) <= l / 2) & (abs(local_z) <= w / 2)
            & (offset[..., 1] <= 0) & (offset[..., 1] >= -h))


# --- LiDAR-frame 7-D boxes (OpenPCDet's convention) -----------------------------------------
# (x, y, z, dx, dy, dz, heading): x, y, z the *geometric* centre in the LiDAR frame (x forward,
# y left, z up), dx = l along the heading, dy = w, dz = h, heading about +z from +x towards +y.
# The map to and from a KITTI box goes through a frame's ``lidar_to_rect`` (4, 4) (the batch's,
# mirror included), so it holds for any calibration: the centre is transformed as a point, the
# heading as the direction of the box's length axis, (cos ry, 0, -sin ry) in the rect frame.


def _matrix_like(matrix, like, invert: bool = False):
    """``matrix`` (4, 4) (or its inverse, computed in float64) in the type, dtype and device of ``like``."""
    if is_torch(like):
        import torch

        matrix = torch.as_tensor(matrix).double()
        return (torch.linalg.inv(matrix) if invert else matrix).to(like)
    if is_torch(matrix):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix, dtype=np.float64)
    return (np.linalg.inv(matrix) if invert else matrix).astype(like.dtype)


def rect_to_lidar_boxes(dims, location, rotation_y, lidar_to_rect):
    """KITTI boxes -> LiDAR 7-D boxes.

    Args:
        dims: (N, 3) h, w, l.  location: (N, 3) rect bottom centre.  rotation_y: (N,).
        lidar_to_rect: (4, 4) LiDAR -> rectified camera of the frame (numpy or torch).
    Returns:
        (N, 7) x, y, z (geometric centre), dx = l, dy = w, dz = h, heading.
    """
    xp = lib(dims)
    inverse = _matrix_like(lidar_to_rect, dims, invert=True)
    rotation, translation = inverse[:3, :3], inverse[:3, 3]
    centre = box_center(dims, location) @ rotation.T + translation
    axis = stack([xp.cos(rotation_y), 0 * rotation_y, -xp.sin(rotation_y)], axis=-1) @ rotation.T
    heading = atan2(axis[..., 1], axis[..., 0])
    return cat([centre, dims[..., 2:3], dims[..., 1:2], dims[..., 0:1], heading[..., None]], axis=-1)


def points_in_lidar_boxes(points, boxes):
    """Which LiDAR points (M, >=3) lie inside which LiDAR boxes (N, 7) (faces included): (M, N) bool."""
    xp = lib(points)
    offset = points[:, None, :3] - boxes[None, :, :3]  # (M, N, 3)
    c, s = xp.cos(boxes[None, :, 6]), xp.sin(boxes[None, :, 6])
    local_x = c * offset[..., 0] + s * offset[..., 1]  # the offset rotated by -heading
    local_y = -s * offset[..., 0] + c * offset[..., 1]
    return ((abs(local_x) <= boxes[None, :, 3] / 2) & (abs(local_y) <= boxes[None, :, 4] / 2)
            & (abs(offset[..., 2]) <= boxes[None, :, 5] / 2))


def lidar_to_rect_boxes(boxes, lidar_to_rect):
    """LiDAR 7-D boxes -> KITTI boxes; the inverse of :func:`rect_to_lidar_boxes`.

    Args:
        boxes: (N, 7) x, y, z, dx, dy, dz, heading.  lidar_to_rect: (4, 4).
    Returns:
        dims (N, 3) h, w, l; location (N, 3) rect bottom centre; rotation_y (N,) in [-pi, pi).
    """
    xp = lib(boxes)
    matrix = _matrix_like(lidar_to_rect, boxes)
    rotation, translation = matrix[:3, :3], matrix[:3, 3]
    centre = boxes[..., :3] @ rotation.T + translation
    dims = cat([boxes[..., 5:6], boxes[..., 4:5], boxes[..., 3:4]], axis=-1)
    location = centre + cat([0 * dims[..., :1], 0.5 * dims[..., :1], 0 * dims[..., :1]], axis=-1)
    heading = boxes[..., 6]
    axis = stack([xp.cos(heading), xp.sin(heading), 0 * heading], axis=-1) @ rotation.T
    return dims, location, wrap_angle(atan2(-axis[..., 2], axis[..., 0]))
