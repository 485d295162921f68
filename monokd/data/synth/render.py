"""Render one SynthKITTI frame: image, dense depth, labels, calibration and LiDAR sweep.

One ray per pixel is cast against the scene (z-buffered, so occlusion is exact); the same
hits give the colour image, the depth image (rect z of the visible surface, 0 = sky) and the
id buffer from which the labels are measured. The LiDAR is cast against the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monokd.data.kitti import Calibration, Object3D
from monokd.data.synth import materials as M
from monokd.data.synth.camera import camera_rays, make_calibration
from monokd.data.synth.labels import make_labels
from monokd.data.synth.lidar import scan
from monokd.data.synth.raycast import GROUND, add_ground, camera_bounds, cast, world_normals
from monokd.data.synth.scene import MAX_DEPTH, Scene, sample_scene
from monokd.geometry.boxes import corners_3d

DEFAULT_SIZE = (416, 128)  # (width, height): KITTI's aspect, divisible by 32


@dataclass
class Frame:
    """One rendered frame.

    image (H, W, 3) uint8 RGB; depth (H, W) float32 rect z in metres, 0 = sky; objects:
    the label_2 lines; calib; points (N, 4) float32 LiDAR x, y, z, reflectance.
    scene_objects / instance / point_instance let tests relate pixels and points to objects:
    instance (H, W) and point_instance (N,) hold scene-object indices (-1 none), and
    label_index[k] is the line of scene object k in ``objects`` (-1 when it has none).
    """

    image: np.ndarray
    depth: np.ndarray
    objects: list[Object3D]
    calib: Calibration
    points: np.ndarray
    scene_objects: list
    instance: np.ndarray
    point_instance: np.ndarray
    label_index: np.ndarray


def as_generator(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def render_frame(rng_or_seed, width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1],
                 lidar: bool = True) -> Frame:
    """Render a random frame from a Generator, or from a seed (int or sequence of ints)."""
    rng = as_generator(rng_or_seed)
    calib = make_calibration(width, height)
    scene = sample_scene(rng, calib.P2, width, height)
    rays = camera_rays(calib, width, height)
    prims = scene.primitives
    hits = cast(rays.origin, rays.directions, prims, camera_bounds(prims, calib.P2, width, height),
                num_owners=len(scene.objects))
    add_ground(hits, rays.origin, rays.directions, scene.ground_y, lambda t: rays.origin[2] + t, MAX_DEPTH)
    hit = np.isfinite(hits.t)
    depth = np.where(hit, rays.origin[2] + np.where(hit, hits.t, 0.0), 0.0).astype(np.float32)
    instance = np.where(hits.prim >= 0, prims.owner[np.maximum(hits.prim, 0)], -1)
    objects, label_index = make_labels(scene.objects, instance, hits.silhouettes, calib.P2)
    image = shade(scene, hits, rays, rng)
    if lidar:
        points, point_instance = scan(scene, calib, rng)
    else:
        points, point_instance = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    return Frame(image, depth, objects, calib, points, scene.objects, instance, point_instance, label_index)


# ----------------------------------------------------------------------------- shading
def _inside_convex(points: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """(N,) whether BEV points (N, 2) lie in the counter-clockwise convex polygon (K, 2)."""
    inside = np.ones(len(points), dtype=bool)
    for i in range(len(hull)):
        a, b = hull[i], hull[(i + 1) % len(hull)]
        inside &= (b[0] - a[0]) * (points[:, 1] - a[1]) - (b[1] - a[1]) * (points[:, 0] - a[0]) >= 0
    return inside


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise hull (monotone chain) of BEV points (N, 2)."""
    pts = sorted(map(tuple, np.round(points, 6)))
    cross = lambda o, a, b: (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])  # noqa: E731
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def shadow_factor(scene: Scene, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) sun and (N,) sky visibility (0..1) of upward-facing points: each object's box casts its shadow
    (the hull of its footprint and its top corners projected along the sun) on the surface it
    stands on; a softer contact shadow darkens the footprint itself."""
    sun = scene.lighting.sun
    light = np.ones(len(world))
    ambient = np.ones(len(world))
    for obj in scene.objects:
        corners = corners_3d(obj.dims, obj.location, obj.rotation_y)  # (8, 3)
        floor = obj.location[1]
        near = np.abs(world[:, 1] - floor) < 0.02
        if not near.any():
            continue
        s = (floor - corners[:, 1]) / -sun[1]
        cast_pts = corners + s[:, None] * -sun
        bev = world[near][:, [0, 2]]
        hull = _convex_hull(cast_pts[:, [0, 2]])
        in_shadow = _inside_convex(bev, hull) if len(hull) >= 3 else np.zeros(len(bev), bool)
        foot = _convex_hull(corners[:4, [0, 2]])
        centre = foot.mean(0)
        grown = centre + (foot - centre) * 1.12
        in_foot = _inside_convex(bev, grown)
        idx = np.nonzero(near)[0]
        light[idx[in_shadow]] = 0.0
        ambient[idx[in_foot]] = np.minimum(ambient[idx[in_foot]], 0.55)
    return light, ambient


def _sky(directions: np.ndarray, lighting) -> np.ndarray:
    d = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    up = np.clip(-d[..., 1], 0.0, 1.0)
    mix = np.clip(up * 3.0, 0, 1)[..., None] ** 0.7
    sky = lighting.sky_horizon * (1 - mix) + lighting.sky_top * mix
    u = d[..., 0] / np.maximum(up, 0.02)
    v = d[..., 2] / np.maximum(up, 0.02)
    cloud = M.value_noise(u, v, 0.6, lighting.seed) * 0.7 + M.value_noise(u, v, 0.15, lighting.seed + 1) * 0.3
    cover = np.clip((cloud - (1 - lighting.clouds)) * 3, 0, 1) * np.clip(up * 8, 0, 1)
    return sky * (1 - cover[..., None]) + np.array([0.92, 0.92, 0.93]) * cover[..., None]


def shade(scene: Scene, hits, rays, rng) -> np.ndarray:
    """(H, W, 3) uint8 image of the hits under the frame's lighting."""
    light = scene.lighting
    prims = scene.primitives
    H, W = hits.t.shape
    world = rays.origin + np.where(np.isfinite(hits.t), hits.t, 0.0)[..., None] * rays.directions
    normals = world_normals(hits, prims)
    color = np.zeros((H, W, 3))
    albedo = np.zeros((H, W, 3))
    ground = hits.prim == GROUND
    if ground.any():
        albedo[ground], _ = M.asphalt(world[ground], scene.road)
    on_prim = hits.prim >= 0
    k = hits.prim[on_prim]
    if len(k):
        albedo[on_prim], _ = M.albedo(prims.material[k], prims.color[k], prims.color2[k],
                                      hits.point_local[on_prim], hits.normal_local[on_prim],
                                      world[on_prim], prims.half[k])
    hit = ground | on_prim
    # surfaces facing up at ground or pavement level receive the objects' shadows
    flat = hit & (normals[..., 1] < -0.9) & (world[..., 1] > scene.ground_y - 0.2)
    sun_vis, amb_vis = np.ones((H, W)), np.ones((H, W))
    if flat.any() and scene.objects:
        sun_vis[flat], amb_vis[flat] = shadow_factor(scene, world[flat])
    # normals point out of the surface; light.sun points towards the sun
    lambert = np.clip((normals * light.sun).sum(-1), 0.0, 1.0) * sun_vis
    sky_fill = 0.75 + 0.25 * np.clip(-normals[..., 1], 0, 1)  # upward faces see more sky
    irradiance = light.ambient * (amb_vis * sky_fill)[..., None] + light.sun_color * lambert[..., None]
    color[hit] = albedo[hit] * irradiance[hit]
    glossy = on_prim.copy()
    glossy[on_prim] = np.isin(prims.material[k], M.GLOSSY)
    if glossy.any():  # a faint sky reflection on paint and glass
        color[glossy] += 0.12 * light.sky_horizon
    sky = _sky(rays.directions, light)
    dist = np.linalg.norm(world - rays.origin, axis=-1)
    fog = (1.0 - np.exp(-dist / light.fog_distance))[..., None]
    color = np.where(hit[..., None], color * (1 - fog) + light.sky_horizon * fog, sky)
    color = color * light.exposure
    # a camera: slight blur, vignetting, sensor noise, 8-bit sRGB-like output
    import cv2

    color = cv2.GaussianBlur(color.astype(np.float32), (3, 3), 0.5)
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (W / 2)) ** 2
    color *= (1 - 0.15 * r2)[..., None]
    color += rng.normal(0, 0.012, color.shape)
    return (np.clip(color, 0, 1) ** (1 / 1.15) * 255 + 0.5).astype(np.uint8)
