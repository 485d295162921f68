"""The 64-beam LiDAR sweep, cast against the same scene as the camera.

Returns KITTI .bin points: x, y, z in the LiDAR frame and a reflectance in [0, 1] from the
hit material. Each return's range carries a small noise (|noise| <= 2 cm) and a few returns
drop out (more on dark surfaces), as on a real sensor.
"""

from __future__ import annotations

import numpy as np

from monokd.data.kitti import Calibration
from monokd.data.synth import materials as M
from monokd.data.synth.camera import LIDAR_MAX_RANGE, LidarPattern, lidar_pattern, lidar_rays
from monokd.data.synth.raycast import GROUND, add_ground, cast, lidar_bounds
from monokd.geometry.calib import rect_to_lidar, velo_to_rect_matrix

RANGE_NOISE = 0.008  # m, std; clipped at 2.5 sigma
DROPOUT = 0.03


def scan(scene, calib: Calibration, rng, pattern: LidarPattern | None = None):
    """Points (N, 4) float32 in the LiDAR frame and (N,) scene-object index (-1 scenery)."""
    pattern = pattern or lidar_pattern()
    rays = lidar_rays(calib, pattern)
    prims = scene.primitives
    to_lidar = np.linalg.inv(velo_to_rect_matrix(calib))
    bounds = lidar_bounds(prims, to_lidar, pattern.elevations, pattern.azimuths)
    hits = cast(rays.origin, rays.directions, prims, bounds)
    add_ground(hits, rays.origin, rays.directions, scene.ground_y,
               lambda t: rays.origin[2] + t * rays.directions[..., 2], max_depth=np.inf)
    keep = np.isfinite(hits.t) & (hits.t <= LIDAR_MAX_RANGE)
    t = hits.t[keep]
    prim = hits.prim[keep]
    t = t + np.clip(rng.normal(0.0, RANGE_NOISE, t.shape), -2.5 * RANGE_NOISE, 2.5 * RANGE_NOISE)
    world = rays.origin + t[:, None] * rays.directions[keep]
    reflectance = np.zeros(len(t))
    ground = prim == GROUND
    _, reflectance[ground] = M.asphalt(world[ground], scene.road)
    on_prim = ~ground
    if on_prim.any():
        k = prim[on_prim]
        q = hits.point_local[keep][on_prim]
        n = hits.normal_local[keep][on_prim]
        _, reflectance[on_prim] = M.albedo(prims.material[k], prims.color[k], prims.color2[k], q, n,
                                           world[on_prim], prims.half[k])
    returned = rng.random(len(t)) > DROPOUT * (1.5 - reflectance)
    owner = np.where(ground, -1, prims.owner[np.maximum(prim, 0)])
    points = np.concatenate([rect_to_lidar(world, calib), reflectance[:, None]], axis=1)
    return points[returned].astype(np.float32), owner[returned]
