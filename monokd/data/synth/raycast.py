"""Vectorised ray casting against oriented primitives, a ground plane and the sky.

A primitive is a box (centre, half extents, yaw about the rect y axis) holding one of three
solids: the box itself, a cylinder along its local z axis (wheels, poles) or the inscribed
ellipsoid (heads, tree crowns). Each ray is intersected in the primitive's local frame
(slab test / quadratic); the nearest hit per ray wins (a z-buffer over t), so occlusion is
exact. Only the rays inside each primitive's conservative grid rectangle are tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monokd.geometry.boxes import corners_3d
from monokd.geometry.calib import project

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
GROUND = -2  # prim index of ground-plane hits
SKY = -1


def yaw_matrix(yaw: float) -> np.ndarray:
    """(3, 3) local -> rect rotation about y (KITTI's rotation_y convention, as corners_3d)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass
class Primitives:
    """P primitives. ``owner`` is the scene-object index (-1 = scenery)."""

    center: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3) rect
    half: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3) half extents
    yaw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,)
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # BOX/CYLINDER/ELLIPSOID
    material: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (P,)
    color: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3) albedo 0..1
    color2: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3) secondary albedo
    owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (P,)

    def __len__(self) -> int:
        return len(self.yaw)

    @staticmethod
    def concat(parts: list["Primitives"]) -> "Primitives":
        if not parts:
            return Primitives()
        return Primitives(*(np.concatenate([getattr(p, k) for p in parts])
                            for k in Primitives.__dataclass_fields__))

    def corners(self) -> np.ndarray:
        """(P, 8, 3) rect corners of each primitive's box."""
        dims = np.stack([2 * self.half[:, 1], 2 * self.half[:, 2], 2 * self.half[:, 0]], axis=1)
        bottom = self.center + np.stack([0 * self.yaw, self.half[:, 1], 0 * self.yaw], axis=1)
        return corners_3d(dims, bottom, self.yaw)


@dataclass
class Hits:
    """Nearest hit per ray: ray parameter ``t`` (inf = none), primitive index (-1 none),
    local unit normal and local hit point normalised by the half extents (both (R, C, 3))."""

    t: np.ndarray
    prim: np.ndarray
    normal_local: np.ndarray
    point_local: np.ndarray
    silhouettes: np.ndarray | None = None  # (num_owners, R, C) bool: owner hit, occluded or not


def _intersect(kind: int, o: np.ndarray, d: np.ndarray, half: np.ndarray):
    """Entry t (inf for a miss) of rays o + t d (d: (n, 3), local frame) with a solid, and
    what :func:`_normal` needs to find the entry face of the rays that turn out nearest."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == ELLIPSOID:
            os_, ds = o / half, d / half
            a = np.einsum("ij,ij->i", ds, ds)
            b = 2 * (ds @ os_)
            c = os_ @ os_ - 1.0
            disc = b * b - 4 * a * c
            t = (-b - np.sqrt(disc)) / (2 * a)
            return np.where((disc >= 0) & (t > 1e-6), t, np.inf), None
        inv = 1.0 / d
        t1, t2 = (-half - o) * inv, (half - o) * inv
        tn = np.minimum(t1, t2)
        tf = np.maximum(t1, t2)
        if kind == CYLINDER:
            # The side x^2/a^2 + y^2/b^2 = 1 replaces the x and y slabs.
            os_, ds = o[:2] / half[:2], d[:, :2] / half[:2]
            a = np.einsum("ij,ij->i", ds, ds)
            b = 2 * (ds @ os_)
            c = os_ @ os_ - 1.0
            disc = b * b - 4 * a * c
            root = np.sqrt(np.maximum(disc, 0.0))
            c_in, c_out = (-b - root) / (2 * a), (-b + root) / (2 * a)
            inside = c <= 0  # origin between the side walls (rays parallel to the axis)
            c_in = np.where(a > 0, c_in, -np.inf if inside else np.inf)
            c_out = np.where(a > 0, c_out, np.inf if inside else -np.inf)
            c_in = np.where(disc >= 0, c_in, np.inf)
            t_near = np.maximum(c_in, tn[:, 2])
            t_far = np.minimum(c_out, tf[:, 2])
            t = np.where((t_near <= t_far) & (t_near > 1e-6), t_near, np.inf)
            return t, c_in >= tn[:, 2]
        t_near, t_far = tn.max(-1), tf.min(-1)
        return np.where((t_near <= t_far) & (t_near > 1e-6), t_near, np.inf), tn


def _normal(kind: int, o: np.ndarray, d: np.ndarray, half: np.ndarray, t: np.ndarray, aux) -> np.ndarray:
    """Local outward normals (n, 3), not unit, at the entry points of rays that hit."""
    if kind == BOX:
        normal = np.zeros_like(d)
        rows = np.arange(len(d))
        axis = aux.argmax(-1)
        normal[rows, axis] = -np.sign(d[rows, axis])
        return normal
    p = (o + t[:, None] * d) / half
    if kind == ELLIPSOID:
        return p / half
    normal = np.zeros_like(d)
    normal[:, :2] = np.where(aux[:, None], p[:, :2] / half[:2], 0.0)
    normal[:, 2] = np.where(aux, 0.0, -np.sign(d[:, 2]))
    return normal


def cast(origin: np.ndarray, directions: np.ndarray, prims: Primitives, bounds: np.ndarray,
         num_owners: int = 0) -> Hits:
    """Nearest primitive hit of every ray of a grid.

    Args:
        origin: (3,) rect. directions: (R, C, 3) rect. bounds: (P, 4) int rows [r0, r1),
            cols [c0, c1) of the rays each primitive may hit (conservative).
        num_owners: when > 0, also the silhouette of each owner (scene object) alone.
    """
    R, C, _ = directions.shape
    t_buf = np.full((R, C), np.inf)
    prim = np.full((R, C), SKY, dtype=np.int64)
    normal = np.zeros((R, C, 3))
    sil = np.zeros((num_owners, R, C), dtype=bool) if num_owners else None
    for k in range(len(prims)):
        r0, r1, c0, c1 = bounds[k]
        if r1 <= r0 or c1 <= c0:
            continue
        rot = yaw_matrix(prims.yaw[k])
        kind = int(prims.kind[k])
        d = directions[r0:r1, c0:c1].reshape(-1, 3) @ rot  # rows are (R^T d)^T
        o = rot.T @ (origin - prims.center[k])
        t, aux = _intersect(kind, o, d, prims.half[k])
        t = t.reshape(r1 - r0, c1 - c0)
        if sil is not None and prims.owner[k] >= 0:
            sil[prims.owner[k], r0:r1, c0:c1] |= np.isfinite(t)
        closer = t < t_buf[r0:r1, c0:c1]
        if not closer.any():
            continue
        flat = closer.reshape(-1)
        t_buf[r0:r1, c0:c1][closer] = t[closer]
        prim[r0:r1, c0:c1][closer] = k
        normal[r0:r1, c0:c1][closer] = _normal(kind, o, d[flat], prims.half[k], t[closer],
                                               None if aux is None else aux[flat])
    point = np.zeros((R, C, 3))
    hit = prim >= 0
    if hit.any():
        k = prim[hit]
        world = origin + t_buf[hit][:, None] * directions[hit]
        rel = world - prims.center[k]
        c, s = np.cos(prims.yaw[k]), np.sin(prims.yaw[k])
        # local = R^T rel with R = yaw_matrix: x = c*rx - s*rz, z = s*rx + c*rz
        local = np.stack([c * rel[:, 0] - s * rel[:, 2], rel[:, 1], s * rel[:, 0] + c * rel[:, 2]], axis=1)
        point[hit] = local / prims.half[k]
    return Hits(t_buf, prim, normal, point, sil)


def add_ground(hits: Hits, origin: np.ndarray, directions: np.ndarray, ground_y: float,
               depth_of, max_depth: float) -> None:
    """Let the plane y = ground_y take every ray that reaches it before any primitive, and
    drop hits farther than ``max_depth`` (``depth_of(t)`` -> rect z) to the sky."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (ground_y - origin[1]) / directions[..., 1]
    ground = (directions[..., 1] > 0) & (t_ground < hits.t)
    hits.t[ground] = t_ground[ground]
    hits.prim[ground] = GROUND
    hits.normal_local[ground] = (0.0, -1.0, 0.0)
    far = np.isfinite(hits.t) & (depth_of(hits.t) > max_depth)
    hits.t[far] = np.inf
    hits.prim[far] = SKY


def world_normals(hits: Hits, prims: Primitives) -> np.ndarray:
    """(R, C, 3) unit rect normals of the hits (ground: up = -y)."""
    out = np.zeros_like(hits.normal_local)
    out[hits.prim == GROUND] = (0.0, -1.0, 0.0)
    hit = hits.prim >= 0
    if hit.any():
        k = hits.prim[hit]
        n = hits.normal_local[hit]
        c, s = np.cos(prims.yaw[k]), np.sin(prims.yaw[k])
        w = np.stack([c * n[:, 0] + s * n[:, 2], n[:, 1], -s * n[:, 0] + c * n[:, 2]], axis=1)
        out[hit] = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return out


def camera_bounds(prims: Primitives, P: np.ndarray, width: int, height: int) -> np.ndarray:
    """(P, 4) pixel rectangles holding each primitive's projection (pixel centres at integers).

    The projection of a box in front of the camera lies inside the hull of its projected
    corners. An axis-aligned box crossing the near plane is first cut to its part in front
    (the rest is never seen); a rotated one gets the whole image; one behind it none.
    """
    near = 0.1
    z_lo = prims.center[:, 2] - prims.half[:, 2]
    z_hi = prims.center[:, 2] + prims.half[:, 2]
    cut = (prims.yaw == 0) & (z_lo < near) & (z_hi > near)
    if cut.any():
        prims = Primitives(**{k: getattr(prims, k).copy() for k in Primitives.__dataclass_fields__})
        prims.center[cut, 2] = (near + z_hi[cut]) / 2
        prims.half[cut, 2] = (z_hi[cut] - near) / 2
    corners = prims.corners()
    uv, z = project(corners, P)
    out = np.zeros((len(prims), 4), dtype=np.int64)
    front = (z > near / 2).all(1)
    behind = (z <= near / 2).all(1)
    lo, hi = uv.min(1), uv.max(1)
    out[:, 0] = np.clip(np.floor(lo[:, 1]) - 1, 0, height)
    out[:, 1] = np.clip(np.ceil(hi[:, 1]) + 2, 0, height)
    out[:, 2] = np.clip(np.floor(lo[:, 0]) - 1, 0, width)
    out[:, 3] = np.clip(np.ceil(hi[:, 0]) + 2, 0, width)
    out[~front & ~behind] = (0, height, 0, width)
    out[behind] = 0
    return out


def lidar_bounds(prims: Primitives, to_lidar: np.ndarray, elevations: np.ndarray,
                 azimuths: np.ndarray) -> np.ndarray:
    """(P, 4) beam rows and azimuth columns that may hit each primitive.

    Azimuth along a straight edge is monotonic, so the corners bound a box's azimuth span
    (unless its footprint surrounds the LiDAR); elevation is bounded by the extreme heights
    over the nearest / farthest horizontal distance of the footprint.
    """
    corners = prims.corners()
    p = corners @ to_lidar[:3, :3].T + to_lidar[:3, 3]  # (P, 8, 3) LiDAR frame
    centre = p[:, :, :2].mean(1)
    radius = np.linalg.norm(p[:, :, :2] - centre[:, None], axis=-1).max(1)
    dist = np.linalg.norm(centre, axis=1)
    d_min, d_max = np.maximum(dist - radius, 0.0), dist + radius
    z_lo, z_hi = p[:, :, 2].min(1), p[:, :, 2].max(1)
    el_hi = np.arctan2(z_hi, np.where(z_hi > 0, d_min, d_max))
    el_lo = np.arctan2(z_lo, np.where(z_lo < 0, d_min, d_max))
    az = np.arctan2(p[:, :, 1], p[:, :, 0])
    ref = az[:, :1]
    rel = (az - ref + np.pi) % (2 * np.pi) - np.pi
    az_lo, az_hi = ref[:, 0] + rel.min(1), ref[:, 0] + rel.max(1)
    wide = (rel.max(1) - rel.min(1) > np.pi * 0.9) | (d_min <= 0.0)
    el_step = elevations[0] - elevations[1]
    az_step = azimuths[1] - azimuths[0]
    R, C = len(elevations), len(azimuths)
    out = np.zeros((len(prims), 4), dtype=np.int64)
    out[:, 0] = np.clip(np.floor((elevations[0] - el_hi) / el_step) - 1, 0, R)
    out[:, 1] = np.clip(np.ceil((elevations[0] - el_lo) / el_step) + 2, 0, R)
    # Azimuth may wrap across +-pi; such boxes (behind the sensor) are tested on every column.
    c0 = np.floor((az_lo - azimuths[0]) / az_step) - 1
    c1 = np.ceil((az_hi - azimuths[0]) / az_step) + 2
    wraps = (az_lo < -np.pi) | (az_hi > np.pi)
    out[:, 2] = np.clip(c0, 0, C)
    out[:, 3] = np.clip(c1, 0, C)
    out[wide | wraps, 2:] = (0, C)
    out[wide, :2] = (0, R)
    return out
