"""Random road scenes: road and lanes, kerbs and pavements, buildings, poles, trees and signs,
the lighting, and the labelled objects (Car, Van, Pedestrian, Cyclist) placed in lanes, along
kerbs and on pavements without collisions.

Every labelled quantity (dims, location, rotation_y) is rounded to KITTI's 2 decimals
*before* the shapes are built, so the rendered object is exactly the labelled box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monokd.data.synth import materials as M
from monokd.data.synth.camera import CAMERA_HEIGHT
from monokd.data.synth.raycast import BOX, ELLIPSOID, Primitives
from monokd.data.synth.shapes import object_primitives
from monokd.geometry.boxes import box_center, wrap_angle
from monokd.geometry.calib import project

# KITTI training-set size statistics (mean, std) of h, w, l in metres (notes/kitti.md).
SIZE_STATS = {
    "Car": ((1.53, 1.63, 3.88), (0.14, 0.10, 0.43)),
    "Van": ((2.21, 1.90, 5.08), (0.20, 0.12, 0.40)),
    "Pedestrian": ((1.76, 0.66, 0.84), (0.11, 0.14, 0.23)),
    "Cyclist": ((1.74, 0.60, 1.76), (0.09, 0.12, 0.18)),
}
CLASS_P = {"Car": 0.56, "Van": 0.10, "Pedestrian": 0.21, "Cyclist": 0.13}
DEPTH_RANGE = (4.0, 60.0)  # m, z of the labelled objects' bottom centres
OBJECTS_PER_FRAME = (3, 10)
MIN_NEAR = 3.0  # m, the nearest point of an object's footprint ahead of the camera
MAX_DEPTH = 200.0  # m: farther surfaces are drawn as sky (depth 0)
STREET = (-40.0, 240.0)  # z extent of the modelled street

FACADES = np.array([[0.80, 0.74, 0.62], [0.62, 0.32, 0.24], [0.88, 0.87, 0.84], [0.55, 0.55, 0.55],
                    [0.78, 0.62, 0.40], [0.70, 0.72, 0.66], [0.45, 0.38, 0.33], [0.86, 0.80, 0.70]])


@dataclass
class SceneObject:
    """A labelled object; values already rounded to 2 decimals."""

    kind: str
    dims: np.ndarray  # (3,) h, w, l
    location: np.ndarray  # (3,) bottom centre, rect
    rotation_y: float


@dataclass
class Lighting:
    sun: np.ndarray  # (3,) unit vector towards the sun, rect (y down)
    sun_color: np.ndarray  # (3,)
    ambient: np.ndarray  # (3,)
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    fog_distance: float
    exposure: float
    clouds: float  # cloud cover 0..1
    seed: int


@dataclass
class Scene:
    road: M.Road
    ground_y: float
    kerb: float
    objects: list[SceneObject]
    primitives: Primitives  # scenery then objects (owner = object index)
    lighting: Lighting


def _r2(x):
    return np.round(np.asarray(x, dtype=np.float64), 2)


def _box(lo, hi, material, color, color2=None, kind=BOX, yaw=0.0) -> Primitives:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    color = np.asarray(color, dtype=np.float64)
    return Primitives(center=((lo + hi) / 2)[None], half=((hi - lo) / 2)[None], yaw=np.array([yaw]),
                      kind=np.array([kind]), material=np.array([material]), color=color[None],
                      color2=np.asarray(color if color2 is None else color2, dtype=np.float64)[None],
                      owner=np.array([-1]))


# ----------------------------------------------------------------------------- collisions
def _rect_corners(x, z, length, width, yaw):
    """(4, 2) BEV corners (x, z) of a footprint (length along the heading, KITTI yaw)."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * (length / 2, width / 2)
    return np.stack([x + c * local[:, 0] + s * local[:, 1], z - s * local[:, 0] + c * local[:, 1]], 1)


def bev_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex BEV polygons (4, 2)."""
    for poly in (a, b):
        for i in range(len(poly)):
            edge = poly[(i + 1) % len(poly)] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


# ----------------------------------------------------------------------------- the street
def sample_road(rng) -> tuple[M.Road, dict]:
    lane_w = rng.uniform(3.2, 3.8)
    n_lanes = int(rng.choice([2, 3, 4], p=[0.4, 0.35, 0.25]))
    ego = int(rng.integers(n_lanes))
    x_left = -(ego + 0.5) * lane_w + rng.uniform(-0.5, 0.5)
    x_right = x_left + n_lanes * lane_w
    streets = []
    if rng.random() < 0.45:
        z0 = rng.uniform(10, 50)
        streets.append((z0, z0 + rng.uniform(7, 12)))
    road = M.Road(x_left, x_right, x_left + lane_w * np.arange(1, n_lanes), rng.uniform(0, 9),
                  rng.uniform(0.22, 0.4), np.array(streets).reshape(-1, 2))
    layout = {"lane_w": lane_w, "n_lanes": n_lanes, "ego": ego,
              "side_street_sides": [bool(rng.random() < 0.75), bool(rng.random() < 0.75)] if streets else [False, False]}
    if streets and not any(layout["side_street_sides"]):
        layout["side_street_sides"][int(rng.integers(2))] = True
    return road, layout


def _intervals_without(z0, z1, gaps):
    """[z0, z1] minus the gap intervals."""
    out, start = [], z0
    for g0, g1 in sorted(map(tuple, gaps)):
        if g0 > start:
            out.append((start, g0))
        start = max(start, g1)
    if start < z1:
        out.append((start, z1))
    return out


def sample_scenery(rng, road: M.Road, layout: dict, ground_y: float, kerb: float):
    """Pavements, verges, buildings, poles, trees, signs. Returns primitives, the BEV
    footprints that objects must avoid, and per side the pavement (x_inner, x_outer)."""
    parts, footprints, pavements = [], [], []
    top = ground_y - kerb
    for side, kerb_x in ((-1, road.x_left), (1, road.x_right)):
        gaps = road.side_streets if layout["side_street_sides"][(side + 1) // 2] else np.zeros((0, 2))
        paved = rng.uniform(1.8, 4.0)
        style = rng.choice(["urban", "suburban", "open"], p=[0.55, 0.3, 0.15])
        setback = {"urban": rng.uniform(0, 0.5), "suburban": rng.uniform(3, 8), "open": rng.uniform(4, 12)}[style]
        x_pave = kerb_x + side * paved
        x_far = x_pave + side * (setback + 40.0)
        pavements.append((kerb_x, x_pave))
        stone = np.array([0.62, 0.62, 0.6]) * rng.uniform(0.8, 1.15)
        grass = np.array([0.28, 0.42, 0.16]) * rng.uniform(0.7, 1.2)
        for z0, z1 in _intervals_without(*STREET, gaps):
            x0, x1 = sorted((kerb_x, x_pave))
            parts.append(_box((x0, top, z0), (x1, ground_y + 0.5, z1), M.PAVING, stone * 0.95, stone * 1.15))
            xa, xb = sorted((x_pave, x_far))
            parts.append(_box((xa, top, z0), (xb, ground_y + 0.5, z1), M.GRASS, grass))
        # buildings along the street, beyond the setback
        x_front = x_pave + side * setback
        z = rng.uniform(-30, -5)
        while z < STREET[1] - 20:
            length = rng.uniform(8, 30) if style == "urban" else rng.uniform(8, 14)
            gap = rng.uniform(0, 5) if style == "urban" else rng.uniform(6, 20)
            blocked = any(z < g1 + 1 and z + length > g0 - 1 for g0, g1 in gaps)
            if style != "open" and not blocked:
                depth = rng.uniform(8, 16)
                height = rng.uniform(6, 20) if style == "urban" else rng.uniform(4, 8)
                facade = np.clip(FACADES[rng.integers(len(FACADES))] * rng.uniform(0.8, 1.1), 0, 1)
                glass = np.array([0.12, 0.15, 0.2]) * rng.uniform(0.6, 1.6)
                xa, xb = sorted((x_front, x_front + side * depth))
                parts.append(_box((xa, top - height, z), (xb, top, z + length), M.BUILDING, facade, glass))
            z += length + gap
        # street lights at the kerb, trees on the verge or pavement, a few signs
        z = rng.uniform(-10, 15)
        spacing = rng.uniform(18, 35)
        x_pole = kerb_x + side * 0.45
        while z < 120:
            if not any(g0 - 1 < z < g1 + 1 for g0, g1 in gaps):
                h = rng.uniform(6, 8.5)
                parts.append(_box((x_pole - 0.08, top - h, z - 0.08), (x_pole + 0.08, top, z + 0.08), M.METAL,
                                  (0.45, 0.46, 0.48)))
                arm_x = x_pole - side * 1.6
                xa, xb = sorted((x_pole, arm_x))
                parts.append(_box((xa, top - h, z - 0.06), (xb, top - h + 0.12, z + 0.06), M.METAL, (0.45, 0.46, 0.48)))
                footprints.append(_rect_corners(x_pole, z, 0.5, 0.5, 0.0))
            z += spacing
        tree_x = x_pave + side * (setback * 0.5 if style != "urban" else -0.9)
        z = rng.uniform(-10, 10)
        if style != "urban" or rng.random() < 0.4:
            while z < 150:
                z += rng.uniform(6, 18)
                if any(g0 - 2 < z < g1 + 2 for g0, g1 in gaps):
                    continue
                tx = tree_x + side * rng.uniform(0, 1.0)
                trunk_h, crown = rng.uniform(1.8, 3.2), rng.uniform(1.2, 2.6)
                parts.append(_box((tx - 0.14, top - trunk_h - 0.5, z - 0.14), (tx + 0.14, top, z + 0.14),
                                  M.BARK, np.array([0.3, 0.22, 0.15]) * rng.uniform(0.7, 1.2)))
                cy = top - trunk_h - crown * 0.8
                leaf = np.array([0.16, 0.32, 0.1]) * rng.uniform(0.6, 1.4)
                parts.append(_box((tx - crown, cy - crown * 0.9, z - crown), (tx + crown, cy + crown * 0.9, z + crown),
                                  M.FOLIAGE, leaf, kind=ELLIPSOID))
                footprints.append(_rect_corners(tx, z, 0.8, 0.8, 0.0))
        if rng.random() < 0.5:  # a traffic sign facing the traffic
            z = rng.uniform(8, 60)
            sx = kerb_x + side * 0.9
            plate = [(0.1, 0.25, 0.7), (0.85, 0.85, 0.85), (0.8, 0.1, 0.1), (0.9, 0.75, 0.1)][rng.integers(4)]
            parts.append(_box((sx - 0.04, top - 2.6, z - 0.04), (sx + 0.04, top, z + 0.04), M.METAL, (0.5, 0.5, 0.5)))
            parts.append(_box((sx - 0.3, top - 3.2, z - 0.03), (sx + 0.3, top - 2.6, z + 0.03), M.SIGN, plate))
            footprints.append(_rect_corners(sx, z, 0.5, 0.5, 0.0))
    return Primitives.concat(parts), footprints, pavements


def sample_lighting(rng) -> Lighting:
    overcast = rng.random() < 0.3
    el = math.radians(rng.uniform(15, 70))
    az = rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(el) * math.sin(az), -math.sin(el), math.cos(el) * math.cos(az)])
    warm = np.array([1.0, 0.9, 0.75]) if el < math.radians(28) else np.array([1.0, 0.97, 0.92])
    if overcast:
        sun_color, ambient = warm * rng.uniform(0.15, 0.3), np.array([0.75, 0.77, 0.8]) * rng.uniform(0.75, 1.0)
        top, horizon = np.array([0.62, 0.64, 0.68]), np.array([0.8, 0.81, 0.83])
    else:
        sun_color, ambient = warm * rng.uniform(0.75, 1.0), np.array([0.42, 0.47, 0.58]) * rng.uniform(0.8, 1.1)
        top, horizon = np.array([0.25, 0.45, 0.8]), np.array([0.72, 0.8, 0.9])
    tint = rng.uniform(0.93, 1.07, 3)
    return Lighting(sun, sun_color * tint, ambient * tint, top * rng.uniform(0.85, 1.1, 3).clip(0, 1), horizon,
                    float(rng.uniform(150, 500)), float(rng.uniform(0.85, 1.2)),
                    float(rng.uniform(0.6, 1.0) if overcast else rng.uniform(0.0, 0.5)), int(rng.integers(1 << 30)))


# ----------------------------------------------------------------------------- the objects
def sample_dims(rng, kind: str) -> np.ndarray:
    mean, std = (np.array(v) for v in SIZE_STATS[kind])
    return _r2(mean + std * np.clip(rng.standard_normal(3), -2, 2))


def _placement(rng, kind, dims, road, layout, pavements, ground_y, kerb, z):
    """(x, y, rotation_y) for an object at depth z, or None."""
    h, w, l = dims
    lane_w, n_lanes, ego = layout["lane_w"], layout["n_lanes"], layout["ego"]
    along, oncoming = -math.pi / 2, math.pi / 2  # heading +z (away) / -z (towards the camera)
    y = ground_y
    mode = rng.random()
    if kind in ("Car", "Van"):
        if mode < 0.72:
            lane = int(rng.integers(n_lanes))
            x = road.x_left + (lane + 0.5) * lane_w + rng.normal(0, 0.25)
            ry = (along if lane >= ego else oncoming) + rng.normal(0, 0.04)
            if rng.random() < 0.08:
                ry += math.pi
        elif mode < 0.87:  # parked along a kerb
            side = rng.choice([-1, 1])
            x = (road.x_right - w / 2 - 0.25) if side > 0 else (road.x_left + w / 2 + 0.25)
            ry = rng.choice([along, oncoming]) + rng.normal(0, 0.03)
        else:  # turning or crossing: any heading
            ry = rng.uniform(-math.pi, math.pi)
            x = rng.uniform(road.x_left + 1.5, road.x_right - 1.5)
            for z0, z1 in road.side_streets:
                if z0 + l / 2 < z < z1 - l / 2 and rng.random() < 0.6:
                    x = rng.uniform(road.x_left - 12, road.x_right + 12)
                    ry = rng.choice([0.0, math.pi]) + rng.normal(0, 0.1)
    elif kind == "Pedestrian":
        if mode < 0.6:  # on a pavement
            x_in, x_out = pavements[int(rng.integers(2))]
            lo, hi = sorted((x_in, x_out))
            if hi - lo < 1.2:
                return None
            x = rng.uniform(lo + 0.5, hi - 0.5)
            y = ground_y - kerb
            ry = rng.choice([along, oncoming]) + rng.normal(0, 0.3) if rng.random() < 0.6 else rng.uniform(-math.pi, math.pi)
        else:  # crossing the road or walking at its edge
            x = rng.uniform(road.x_left + 0.5, road.x_right - 0.5)
            ry = rng.choice([0.0, math.pi]) + rng.normal(0, 0.3) if rng.random() < 0.7 else rng.uniform(-math.pi, math.pi)
    else:  # Cyclist
        if mode < 0.75:  # near the kerb of the outer lanes, with the traffic
            if rng.random() < 0.7:
                x, ry = road.x_right - rng.uniform(0.6, 1.6), along
            else:
                x, ry = road.x_left + rng.uniform(0.6, 1.6), oncoming
            ry += rng.normal(0, 0.06)
        else:
            x = rng.uniform(road.x_left + 0.8, road.x_right - 0.8)
            ry = rng.uniform(-math.pi, math.pi)
    return x, y, float(wrap_angle(ry))


def _on_one_surface(corners, road, layout, pavements, on_pavement: bool) -> bool:
    """The footprint lies on the asphalt (the road or an open side street), or wholly on one
    pavement; never across a kerb."""
    xs, zs = corners[:, 0], corners[:, 1]
    if on_pavement:
        return any(min(a, b) + 0.05 < xs.min() and xs.max() < max(a, b) - 0.05 for a, b in pavements)
    left_ok = xs.min() > road.x_left + 0.05
    right_ok = xs.max() < road.x_right - 0.05
    if any(zs.min() > z0 + 0.1 and zs.max() < z1 - 0.1 for z0, z1 in road.side_streets):
        left_open, right_open = layout["side_street_sides"]
        left_ok, right_ok = left_ok or left_open, right_ok or right_open
    return left_ok and right_ok


def sample_objects(rng, road, layout, pavements, footprints, ground_y, kerb, P, width, height):
    """The labelled objects, placed in view, apart from each other and from the scenery."""
    kinds, probs = list(CLASS_P), np.array(list(CLASS_P.values()))
    count = int(rng.integers(OBJECTS_PER_FRAME[0], OBJECTS_PER_FRAME[1] + 1))
    objects, taken = [], list(footprints)
    for _ in range(count):
        kind = kinds[rng.choice(len(kinds), p=probs / probs.sum())]
        for _attempt in range(25):
            dims = sample_dims(rng, kind)
            # Depth density falls with distance so that many objects are big enough to learn.
            z = DEPTH_RANGE[0] + (DEPTH_RANGE[1] - DEPTH_RANGE[0]) * rng.random() ** 1.35
            placed = _placement(rng, kind, dims, road, layout, pavements, ground_y, kerb, z)
            if placed is None:
                continue
            x, y, ry = placed
            location, ry = _r2([x, y, z]), float(_r2(ry))
            centre = box_center(dims, location)
            uv, _ = project(centre[None], P)
            if not (-0.05 * width < uv[0, 0] < 1.05 * width):
                continue
            corners = _rect_corners(location[0], location[2], dims[2], dims[1], ry)
            if corners[:, 1].min() < MIN_NEAR:
                continue
            if not _on_one_surface(corners, road, layout, pavements, on_pavement=y < ground_y - 1e-6):
                continue
            grown = _rect_corners(location[0], location[2], dims[2] + 0.6, dims[1] + 0.6, ry)
            if any(bev_overlap(grown, other) for other in taken):
                continue
            taken.append(corners)
            objects.append(SceneObject(kind, dims, location, ry))
            break
    return objects


def sample_scene(rng, P: np.ndarray, width: int, height: int) -> Scene:
    ground_y = CAMERA_HEIGHT
    kerb = float(rng.choice([0.10, 0.12, 0.15]))
    road, layout = sample_road(rng)
    scenery, footprints, pavements = sample_scenery(rng, road, layout, ground_y, kerb)
    objects = sample_objects(rng, road, layout, pavements, footprints, ground_y, kerb, P, width, height)
    prims = [scenery] + [object_primitives(o.kind, o.dims, o.location, o.rotation_y, k, rng)
                         for k, o in enumerate(objects)]
    return Scene(road, ground_y, kerb, objects, Primitives.concat(prims), sample_lighting(rng))
