"""The SynthKITTI sensor rig: KITTI's calibration scaled to the rendered size, and the rays
of the colour camera (image_2) and of the 64-beam LiDAR.

The world is the rectified camera frame (x right, y down, z forward). The road is the plane
y = CAMERA_HEIGHT, so the camera sits 1.65 m above it; the LiDAR pose follows from
R0_rect @ Tr_velo_to_cam (about 1.73 m above the road, 0.33 m behind the camera), as in KITTI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monokd.data.kitti import Calibration
from monokd.geometry.calib import rect_to_lidar, transform_intrinsics, velo_to_rect_matrix

KITTI_SIZE = (1242, 375)  # (width, height) of the template calibration
CAMERA_HEIGHT = 1.65  # m, camera above the road (y of the road plane in rect coordinates)

# A real KITTI calibration (a 2011_09_26 drive), except the LiDAR height: Tr_velo_to_cam's
# y translation is -0.08 m so the LiDAR is 1.73 m above the road, as in the KITTI setup paper.
_TEMPLATE = {
    "P0": [707.0493, 0.0, 604.0814, 0.0, 0.0, 707.0493, 180.5066, 0.0, 0.0, 0.0, 1.0, 0.0],
    "P1": [707.0493, 0.0, 604.0814, -379.7842, 0.0, 707.0493, 180.5066, 0.0, 0.0, 0.0, 1.0, 0.0],
    "P2": [707.0493, 0.0, 604.0814, 45.75831, 0.0, 707.0493, 180.5066, -0.3454157,
           0.0, 0.0, 1.0, 0.004981016],
    "P3": [707.0493, 0.0, 604.0814, -334.1081, 0.0, 707.0493, 180.5066, 2.33066,
           0.0, 0.0, 1.0, 0.003201153],
    "R0_rect": [0.9999128, 0.01009263, -0.008511932, -0.01012729, 0.9999406, -0.004037671,
                0.008470675, 0.004123522, 0.9999556],
    "Tr_velo_to_cam": [0.006927964, -0.9999722, -0.002757829, -0.02457729,
                       -0.001162982, 0.002749836, -0.9999955, -0.08,
                       0.9999753, 0.006931141, -0.001143899, -0.3321029],
    "Tr_imu_to_velo": [0.9999976, 0.0007553071, -0.002035826, -0.8086759,
                       -0.0007854027, 0.9998898, -0.01482298, 0.3195559,
                       0.002024406, 0.01482454, 0.9998881, -0.7997231],
}

# HDL-64E: 64 beams from +2 deg to -24.8 deg.
LIDAR_ELEVATION = (2.0, -24.8)  # degrees, top and bottom beam
LIDAR_BEAMS = 64
LIDAR_MAX_RANGE = 120.0  # m


def make_calibration(width: int, height: int) -> Calibration:
    """KITTI's calibration with P0..P3 scaled from 1242x375 to ``width`` x ``height``
    (the same map as resizing a KITTI image: u' = u * W / 1242, v' = v * H / 375)."""
    sx, sy = width / KITTI_SIZE[0], height / KITTI_SIZE[1]
    resize = np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]])
    mats = {k: np.array(v, dtype=np.float64).reshape(3, -1) for k, v in _TEMPLATE.items()}
    for key in ("P0", "P1", "P2", "P3"):
        mats[key] = transform_intrinsics(mats[key], resize)
    return Calibration(**mats)


def camera_center(P: np.ndarray) -> np.ndarray:
    """(3,) rectified position of the camera of P (its null space): P @ [C; 1] = 0."""
    return -np.linalg.solve(P[:, :3], P[:, 3])


@dataclass
class RayGrid:
    """Rays from one origin arranged on a (rows, cols) grid.

    ``directions`` (R, C, 3) in rect coordinates; for the camera their z is 1, so the ray
    parameter t is the rectified depth minus the origin's z.
    """

    origin: np.ndarray  # (3,)
    directions: np.ndarray  # (R, C, 3)


def camera_rays(calib: Calibration, width: int, height: int) -> RayGrid:
    """One ray through each pixel centre (u = column, v = row) of image_2.

    Every point origin + t * d of the ray of (u, v) projects to (u, v) through P2 exactly.
    """
    P = calib.P2
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    directions = pix @ np.linalg.inv(P[:, :3]).T
    return RayGrid(camera_center(P), directions / directions[..., 2:3])


@dataclass
class LidarPattern:
    """Beam elevations (rows, descending) and azimuths (cols, ascending), radians, LiDAR frame."""

    elevations: np.ndarray  # (R,)
    azimuths: np.ndarray  # (C,)


def lidar_pattern(azimuth_step_deg: float = 0.25, azimuth_range_deg: float = 60.0) -> LidarPattern:
    """64 beams over KITTI's vertical field of view; azimuths within +-``azimuth_range_deg``
    of the forward axis (+x in the LiDAR frame), 180 = a full sweep."""
    top, bottom = LIDAR_ELEVATION
    elevations = np.deg2rad(np.linspace(top, bottom, LIDAR_BEAMS))
    count = int(round(2 * azimuth_range_deg / azimuth_step_deg))
    azimuths = np.deg2rad(-azimuth_range_deg + azimuth_step_deg * np.arange(count))
    return LidarPattern(elevations, azimuths)


def lidar_rays(calib: Calibration, pattern: LidarPattern) -> RayGrid:
    """Unit rays of the LiDAR (range = t), expressed in rect coordinates."""
    el, az = np.meshgrid(pattern.elevations, pattern.azimuths, indexing="ij")
    local = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    to_rect = velo_to_rect_matrix(calib)
    directions = local @ to_rect[:3, :3].T
    return RayGrid(to_rect[:3, 3].copy(), directions)


def lidar_origin(calib: Calibration) -> np.ndarray:
    """(3,) the LiDAR's position in rect coordinates."""
    return velo_to_rect_matrix(calib)[:3, 3].copy()


def to_lidar_angles(points_rect: np.ndarray, calib: Calibration):
    """Azimuth, elevation and horizontal range (each (N,)) of rect points seen from the LiDAR."""
    p = rect_to_lidar(points_rect, calib)
    horizontal = np.hypot(p[:, 0], p[:, 1])
    return np.arctan2(p[:, 1], p[:, 0]), np.arctan2(p[:, 2], horizontal), horizontal, p


def degrees(x: float) -> float:
    return x * 180.0 / math.pi
