"""Materials: the albedo (colour before lighting) and LiDAR reflectance of every hit.

Textures are procedural, functions of the hit's normalised local coordinates (which face of a
car, where on the face: headlights, windows) or of its rect position (asphalt grain, lane
markings, facade windows), so the camera and the LiDAR see the same surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

(PAINT, CABIN, VAN_BODY, TYRE, UNDER, SKIN, HEAD, CLOTH, SHOE, METAL, LAMP, REFLECTOR, BIKE_WHEEL,
 PAVING, GRASS, KERB, BUILDING, BARK, FOLIAGE, SIGN, WALL) = range(21)
ASPHALT = -2  # the ground plane

GLASS_REFLECTANCE = 0.05
RETRO_REFLECTANCE = 0.92  # lamps, reflectors, signs, lane paint: retro-reflective in the NIR


@dataclass
class Road:
    """The road on the ground plane: asphalt between x_left and x_right (rect x), lane
    boundaries at ``lanes`` (dashed), solid edge lines, side streets over z-intervals."""

    x_left: float
    x_right: float
    lanes: np.ndarray  # (K,) x of the dashed lane boundaries
    dash_phase: float
    tone: float  # asphalt brightness
    side_streets: np.ndarray  # (S, 2) z-intervals where asphalt runs sideways


def hash01(ix, iy, seed: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
    h = (np.asarray(ix, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B1)
         ^ np.asarray(iy, dtype=np.int64).astype(np.uint64) * np.uint64(0x85EBCA77)
         ^ np.uint64(seed * 0xC2B2AE3D & 0xFFFFFFFF))
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0x1000000)


def value_noise(x, y, scale: float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1) with features of size ``scale`` (bilinear value noise)."""
    x, y = np.asarray(x) / scale, np.asarray(y) / scale
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = hash01(ix, iy, seed), hash01(ix + 1, iy, seed)
    c, d = hash01(ix, iy + 1, seed), hash01(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _luminance(rgb):
    return rgb @ np.array([0.3, 0.59, 0.11])


def _box(q, axis, lo, hi):
    return (q[:, axis] >= lo) & (q[:, axis] <= hi)


def _paint(c, c2, q, n, world, half):
    """Car lower body: headlights and grille in front, tail lights and plate behind."""
    out, refl = c.copy(), np.full(len(c), np.nan)
    az = np.abs(q[:, 2])
    front, back = n[:, 0] > 0.5, n[:, 0] < -0.5
    lamp = front & (az > 0.5) & (az < 0.9) & (q[:, 1] < -0.15)
    grille = front & (az < 0.4) & (q[:, 1] > -0.5) & (q[:, 1] < 0.3)
    tail = back & (az > 0.55) & (az < 0.95) & (q[:, 1] < -0.1)
    plate = back & (az < 0.25) & (q[:, 1] > -0.1) & (q[:, 1] < 0.45)
    bumper = (front | back) & (q[:, 1] > 0.55)
    out[bumper] = out[bumper] * 0.5 + 0.05
    out[grille] = (0.05, 0.05, 0.05)
    out[lamp] = (1.0, 0.97, 0.85)
    out[tail] = (0.85, 0.04, 0.03)
    out[plate] = (0.92, 0.92, 0.85)
    refl[lamp | tail | plate] = RETRO_REFLECTANCE
    side = np.abs(n[:, 2]) > 0.5  # a dark door seam
    seam = side & (np.abs(q[:, 0] - 0.1) < 0.012)
    out[seam] *= 0.4
    return out, refl


def _glass(out, refl, mask, c2):
    out[mask] = c2[mask]
    refl[mask] = GLASS_REFLECTANCE


def _cabin(c, c2, q, n, world, half):
    """Car cabin: painted roof and pillars, dark windows all round."""
    out, refl = c.copy(), np.full(len(c), np.nan)
    side, ends = np.abs(n[:, 2]) > 0.5, np.abs(n[:, 0]) > 0.5
    window = side & (q[:, 1] < 0.8) & (q[:, 1] > -0.85) & (np.abs(q[:, 0]) < 0.9) & (np.abs(q[:, 0] - 0.05) > 0.06)
    window |= ends & (np.abs(q[:, 2]) < 0.88) & (q[:, 1] < 0.85) & (q[:, 1] > -0.85)
    _glass(out, refl, window, c2)
    return out, refl


def _van_body(c, c2, q, n, world, half):
    """Van box: windscreen and cab side windows in front, rear doors with windows behind."""
    out, refl = c.copy(), np.full(len(c), np.nan)
    side, front, back = np.abs(n[:, 2]) > 0.5, n[:, 0] > 0.5, n[:, 0] < -0.5
    window = front & (np.abs(q[:, 2]) < 0.9) & (q[:, 1] < 0.45) & (q[:, 1] > -0.8)
    window |= side & (q[:, 0] > 0.55) & (q[:, 0] < 0.95) & (q[:, 1] < 0.2) & (q[:, 1] > -0.75)
    window |= back & (np.abs(q[:, 2]) > 0.08) & (np.abs(q[:, 2]) < 0.85) & (q[:, 1] < -0.1) & (q[:, 1] > -0.8)
    _glass(out, refl, window, c2)
    seam = (side & (np.abs(q[:, 0] - 0.45) < 0.012)) | (back & (np.abs(q[:, 2]) < 0.012))
    out[seam] *= 0.4
    return out, refl


def _tyre(c, c2, q, n, world, half):
    out, refl = c.copy(), np.full(len(c), np.nan)
    cap = np.abs(n[:, 2]) > 0.5
    rho = np.hypot(q[:, 0], q[:, 1])
    rim = cap & (rho < 0.6)
    out[rim] = (0.55, 0.55, 0.57)
    out[cap & (rho < 0.15)] = (0.25, 0.25, 0.25)
    return out, refl


def _bike_wheel(c, c2, q, n, world, half):
    """Tyre ring, thin spokes over a dark interior, a hub."""
    out, refl = c.copy(), np.full(len(c), np.nan)
    rho = np.hypot(q[:, 0], q[:, 1])
    theta = np.arctan2(q[:, 1], q[:, 0])
    inner = rho < 0.86
    spoke = np.abs(((theta * 8 / np.pi) % 2) - 1) > 0.8
    out[inner] = (0.18, 0.18, 0.19)
    out[inner & spoke] = (0.6, 0.6, 0.62)
    out[rho < 0.12] = c2[rho < 0.12]
    return out, refl


def _head(c, c2, q, n, world, half):
    """Face (skin) in front, hair or helmet over the top and back."""
    out = c2.copy()
    face = (n[:, 0] > 0.2) & (q[:, 1] > -0.35)
    out[face] = c[face]
    eyes = face & (np.abs(q[:, 1] + 0.05) < 0.09) & (np.abs(np.abs(q[:, 2]) - 0.35) < 0.15)
    out[eyes] *= 0.3
    return out, np.full(len(c), np.nan)


def _cloth(c, c2, q, n, world, half):
    grain = value_noise(world[:, 0] + world[:, 2], world[:, 1], 0.05, 3) - 0.5
    return np.clip(c * (1 + 0.15 * grain[:, None]), 0, 1), np.full(len(c), np.nan)


def _plain(c, c2, q, n, world, half):
    return c.copy(), np.full(len(c), np.nan)


def _retro(c, c2, q, n, world, half):
    return c.copy(), np.full(len(c), RETRO_REFLECTANCE)


def _paving(c, c2, q, n, world, half):
    out = c.copy()
    top = n[:, 1] < -0.5
    x, z = world[:, 0], world[:, 2]
    joint = top & ((np.abs((x % 0.6) - 0.3) > 0.28) | (np.abs((z % 0.6) - 0.3) > 0.28))
    grain = value_noise(x, z, 0.15, 11) - 0.5
    out *= (1 + 0.12 * grain)[:, None]
    out[joint] *= 0.75
    out[~top] = c2[~top]  # the kerb stone
    return np.clip(out, 0, 1), np.full(len(c), np.nan)


def _grass(c, c2, q, n, world, half):
    x, z = world[:, 0], world[:, 2]
    g = 0.6 * value_noise(x, z, 0.3, 5) + 0.4 * value_noise(x, z, 2.0, 6)
    return np.clip(c * (0.7 + 0.6 * g)[:, None], 0, 1), np.full(len(c), np.nan)


def _building(c, c2, q, n, world, half):
    """Facade with a grid of windows (2.8 m floors, 2.6 m bays); darker roof."""
    out, refl = c.copy(), np.full(len(c), np.nan)
    roof = n[:, 1] < -0.5
    along = np.where(np.abs(n[:, 0]) > 0.5, q[:, 2] * half[:, 2], q[:, 0] * half[:, 0])
    up = (q[:, 1] + 1) * half[:, 1]  # metres below the top
    height = 2 * half[:, 1] - up  # metres above the base
    window = ~roof & (np.abs((along % 2.6) - 1.3) < 0.55) & ((height % 2.8) > 0.9) & ((height % 2.8) < 2.2)
    window &= height > 0.8
    grime = value_noise(world[:, 0] + world[:, 2], world[:, 1], 1.5, 21) - 0.5
    out *= (1 + 0.2 * grime)[:, None]
    out[roof] *= 0.5
    _glass(out, refl, window, c2)
    return np.clip(out, 0, 1), refl


def _foliage(c, c2, q, n, world, half):
    g = value_noise(world[:, 0] * 1.3 + world[:, 1], world[:, 2] + world[:, 1], 0.25, 8)
    return np.clip(c * (0.55 + 0.9 * g)[:, None], 0, 1), np.full(len(c), np.nan)


TEXTURES = {PAINT: _paint, CABIN: _cabin, VAN_BODY: _van_body, TYRE: _tyre, UNDER: _plain,
            SKIN: _plain, HEAD: _head, CLOTH: _cloth, SHOE: _plain, METAL: _plain, LAMP: _retro,
            REFLECTOR: _retro, BIKE_WHEEL: _bike_wheel, PAVING: _paving, GRASS: _grass, KERB: _plain,
            BUILDING: _building, BARK: _cloth, FOLIAGE: _foliage, SIGN: _retro, WALL: _grass}
GLOSSY = (PAINT, CABIN, VAN_BODY)


def asphalt(world: np.ndarray, road: Road) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (n, 3) and reflectance (n,) of ground-plane hits: asphalt, markings, verges."""
    x, z = world[:, 0], world[:, 2]
    grain = 0.6 * value_noise(x, z, 0.08, 1) + 0.4 * value_noise(x, z, 1.7, 2)
    tone = road.tone * (0.8 + 0.4 * grain)
    out = np.repeat(tone[:, None], 3, axis=1) * np.array([1.0, 1.0, 1.03])
    refl = 0.08 + 0.5 * tone
    paint = np.zeros(len(x), dtype=bool)
    for xe in (road.x_left + 0.3, road.x_right - 0.3):
        paint |= np.abs(x - xe) < 0.08
    dash = ((z + road.dash_phase) % 9.0) < 3.0
    for xl in road.lanes:
        paint |= (np.abs(x - xl) < 0.07) & dash
    crossing = np.zeros(len(x), dtype=bool)
    for z0, z1 in road.side_streets:
        crossing |= (z > z0) & (z < z1)
    paint &= ~crossing | (np.abs(x - road.x_left - 0.3) > 1) & (np.abs(x - road.x_right + 0.3) > 1)
    wear = value_noise(x, z, 0.3, 4) > 0.25
    paint &= wear
    out[paint] = (0.85, 0.85, 0.82)
    refl[paint] = 0.6
    return np.clip(out, 0, 1), np.clip(refl, 0, 1)


def albedo(material: np.ndarray, color: np.ndarray, color2: np.ndarray, q: np.ndarray,
           n: np.ndarray, world: np.ndarray, half: np.ndarray):
    """Albedo (n, 3) and reflectance (n,) of primitive hits, each of its material."""
    out = np.zeros((len(material), 3))
    refl = np.zeros(len(material))
    for mat in np.unique(material):
        sel = material == mat
        a, r = TEXTURES[int(mat)](color[sel], color2[sel], q[sel], n[sel], world[sel], half[sel])
        out[sel] = a
        refl[sel] = np.where(np.isnan(r), 0.05 + 0.5 * _luminance(a), r)
    return out, np.clip(refl, 0, 1)
