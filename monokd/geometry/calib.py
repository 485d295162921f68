"""LiDAR <-> rectified camera <-> image.

Rectified camera frame: x right, y down, z forward. The image of a rectified point X is
P2 @ [X; 1]; a LiDAR point L maps to the rectified frame by R0_rect @ Tr_velo_to_cam @ [L; 1].
P2 carries an offset (P2[:, 3] != 0), so these formulas keep all of its terms, which makes
`unproject` the exact inverse of `project`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from monokd.geometry._backend import cat, ones_like, swap_last


# The LiDAR axes (x forward, y left, z up) in the rectified camera frame (x right, y down,
# z forward), without offset: the LiDAR -> camera map assumed for a frame that has a P2 but no
# Tr_velo_to_cam (images only), so that a BEV grid still means forward / left / up. KITTI's
# real Tr_velo_to_cam differs from it by a few centimetres and a fraction of a degree.
AXES_VELO_TO_CAM = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


@dataclass
class Calibration:
    """The matrices of one KITTI calib file (float64). R0_rect is 3x3, the Tr_* are 3x4.

    monokd.data.kitti reads and writes them (``read_calib``, ``write_calib``)."""

    P0: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    P3: np.ndarray
    R0_rect: np.ndarray = field(default_factory=lambda: np.eye(3))
    Tr_velo_to_cam: np.ndarray = field(default_factory=lambda: np.eye(3, 4))
    Tr_imu_to_velo: np.ndarray = field(default_factory=lambda: np.eye(3, 4))

    def copy(self) -> "Calibration":
        return Calibration(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


def _homogeneous(points):
    return cat([points, ones_like(points[..., :1])], axis=-1)


def velo_to_rect_matrix(calib: Calibration) -> np.ndarray:
    """(4, 4) matrix mapping homogeneous LiDAR points to the rectified camera frame."""
    r0 = np.eye(4)
    r0[:3, :3] = calib.R0_rect
    tr = np.eye(4)
    tr[:3, :4] = calib.Tr_velo_to_cam
    return r0 @ tr


def lidar_to_rect(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """(N, 3) LiDAR points -> (N, 3) rectified camera coordinates."""
    return (_homogeneous(np.asarray(points, dtype=np.float64)[:, :3]) @ velo_to_rect_matrix(calib).T)[:, :3]


def rect_to_lidar(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """(N, 3) rectified camera points -> (N, 3) LiDAR coordinates."""
    inv = np.linalg.inv(velo_to_rect_matrix(calib))
    return (_homogeneous(np.asarray(points, dtype=np.float64)) @ inv.T)[:, :3]


def project(points, P):
    """Rectified points (..., N, 3) -> image points (..., N, 2) and depth z (..., N).

    ``P`` is (3, 4) or batched (..., 3, 4); numpy or torch.
    """
    uvw = _homogeneous(points) @ swap_last(P)
    w = uvw[..., 2:3]
    return uvw[..., :2] / w, points[..., 2]


def unproject(uv, depth, P):
    """Image points (..., N, 2) with rectified depth z (..., N) -> rectified points (..., N, 3).

    Exact inverse of :func:`project` for any P of the form [[fu, 0, cu, a], [0, fv, cv, b],
    [0, 0, 1, c]].
    """
    fu, fv = P[..., 0:1, 0], P[..., 1:2, 1]
    cu, cv = P[..., 0:1, 2], P[..., 1:2, 2]
    a, b, c = P[..., 0:1, 3], P[..., 1:2, 3], P[..., 2:3, 3]
    w = depth + c
    x = (uv[..., 0] * w - cu * depth - a) / fu
    y = (uv[..., 1] * w - cv * depth - b) / fv
    return cat([x[..., None], y[..., None], depth[..., None]], axis=-1)


def lidar_to_image(points: np.ndarray, calib: Calibration):
    """(N, 3) LiDAR points -> (N, 2) pixels in image_2 and (N,) depth."""
    return project(lidar_to_rect(points, calib), calib.P2)


def in_camera_view(points: np.ndarray, P: np.ndarray, image_size) -> np.ndarray:
    """(N,) bool: the rectified points (N, 3) in front of the camera (z >= 0) whose image under
    ``P`` (3, 4) lies in the image, 0 <= u < W and 0 <= v < H for ``image_size`` (W, H)
    (OpenPCDet's ``get_fov_flag``, its FOV_POINTS_ONLY crop)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    width, height = image_size
    with np.errstate(divide="ignore", invalid="ignore"):
        uv, depth = project(points, np.asarray(P, dtype=np.float64))
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    return inside & (depth >= 0)


def transform_intrinsics(P, affine):
    """P after an image-plane affine map ``affine`` (2, 3) (resize, crop, shift):
    new pixel = affine @ [u, v, 1]. Returns the new (3, 4) projection matrix."""
    A = np.eye(3)
    A[:2, :] = affine
    return A @ np.asarray(P, dtype=np.float64)
