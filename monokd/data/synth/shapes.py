"""The shapes of Car, Van, Pedestrian and Cyclist as unions of primitives.

Parts are given in the object's local frame (KITTI's): x along the length with the front at
+l/2, y down with the bottom at 0 and the top at -h, z across the width. Every class's parts
reach all six faces of the (h, w, l) box, so the labelled box is the tight box of the shape.
Front and back differ (headlights / tail lights, bonnet longer than boot, face / hair,
rider leaning to the handlebar), so the appearance carries the heading.
"""

from __future__ import annotations

import numpy as np

from monokd.data.synth import materials as M
from monokd.data.synth.raycast import BOX, CYLINDER, ELLIPSOID, Primitives, yaw_matrix

PAINTS = np.array([[0.92, 0.92, 0.90], [0.70, 0.71, 0.72], [0.42, 0.43, 0.45], [0.07, 0.07, 0.08],
                   [0.55, 0.06, 0.05], [0.08, 0.16, 0.42], [0.20, 0.35, 0.65], [0.16, 0.30, 0.18],
                   [0.72, 0.64, 0.48], [0.85, 0.45, 0.08]])
PAINT_P = np.array([0.22, 0.2, 0.14, 0.14, 0.08, 0.07, 0.06, 0.03, 0.03, 0.03])
CLOTHES = np.array([[0.10, 0.10, 0.12], [0.15, 0.18, 0.35], [0.55, 0.10, 0.10], [0.85, 0.85, 0.82],
                    [0.35, 0.30, 0.25], [0.25, 0.40, 0.25], [0.75, 0.55, 0.20], [0.45, 0.45, 0.50],
                    [0.60, 0.25, 0.45], [0.20, 0.45, 0.60]])
SKINS = np.array([[0.85, 0.67, 0.55], [0.72, 0.52, 0.40], [0.50, 0.35, 0.25], [0.33, 0.22, 0.16]])
HAIRS = np.array([[0.08, 0.06, 0.05], [0.30, 0.20, 0.10], [0.55, 0.45, 0.30], [0.50, 0.50, 0.50]])
GLASS = np.array([0.10, 0.13, 0.16])
TYRE = np.array([0.06, 0.06, 0.06])
UNDER = np.array([0.03, 0.03, 0.03])


def _jitter(rng, color, amount=0.05):
    return np.clip(color + rng.normal(0, amount, 3), 0, 1)


def _part(kind, material, lo, hi, color, color2=None):
    """A part spanning the local axis-aligned box [lo, hi] (x, y, z)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return (kind, material, (lo + hi) / 2, (hi - lo) / 2, np.asarray(color, dtype=np.float64),
            np.asarray(color if color2 is None else color2, dtype=np.float64))


def _wheels(h, w, l, r, x_axle, tyre_w, inset):
    """Four tyres (cylinders along local z) with their axles at +-x_axle."""
    z = w / 2 - inset - tyre_w / 2
    return [_part(CYLINDER, M.TYRE, (sx * x_axle - r, -2 * r, sz * z - tyre_w / 2),
                  (sx * x_axle + r, 0.0, sz * z + tyre_w / 2), TYRE)
            for sx in (1, -1) for sz in (1, -1)]


def car_parts(h, w, l, rng):
    paint = _jitter(rng, PAINTS[rng.choice(len(PAINTS), p=PAINT_P)], 0.03)
    r = 0.21 * h
    x_axle = l / 2 - max(0.17 * l, r + 0.2)
    belt = -0.56 * h
    cab_back, cab_front = -l / 2 + rng.uniform(0.12, 0.2) * l, l / 2 - rng.uniform(0.3, 0.36) * l
    return [
        _part(BOX, M.UNDER, (-l / 2 + 0.12, -0.14 * h, -w / 2 + 0.1), (l / 2 - 0.12, 0.0, w / 2 - 0.1), UNDER),
        *_wheels(h, w, l, r, x_axle, 0.2, 0.02),
        _part(BOX, M.PAINT, (-l / 2, belt, -w / 2), (l / 2, -0.13 * h, w / 2), paint),
        _part(BOX, M.CABIN, (cab_back, -h, -w / 2 + 0.09), (cab_front, belt, w / 2 - 0.09), paint, GLASS),
    ]


def van_parts(h, w, l, rng):
    paint = PAINTS[rng.choice([0, 0, 0, 1, 2, 3, 5, 6])]
    paint = _jitter(rng, paint, 0.03)
    r = 0.17 * h
    x_axle = l / 2 - 0.18 * l
    belt = -0.45 * h
    box_front = l / 2 - rng.uniform(0.1, 0.14) * l
    return [
        _part(BOX, M.UNDER, (-l / 2 + 0.12, -0.12 * h, -w / 2 + 0.1), (l / 2 - 0.12, 0.0, w / 2 - 0.1), UNDER),
        *_wheels(h, w, l, r, x_axle, 0.22, 0.02),
        _part(BOX, M.PAINT, (-l / 2, belt, -w / 2), (l / 2, -0.11 * h, w / 2), paint),
        _part(BOX, M.VAN_BODY, (-l / 2, -h, -w / 2 + 0.03), (box_front, belt, w / 2 - 0.03), paint, GLASS),
    ]


def pedestrian_parts(h, w, l, rng):
    shirt = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    trousers = _jitter(rng, CLOTHES[rng.choice([0, 1, 1, 4, 7])])
    skin = _jitter(rng, SKINS[rng.integers(len(SKINS))], 0.03)
    hair = HAIRS[rng.integers(len(HAIRS))]
    shoes = np.array([0.05, 0.05, 0.05])
    head_h = min(0.24, 0.13 * h)
    neck = -h + head_h
    shoulder = neck + 0.05
    hip = -0.48 * h
    knee = -0.26 * h
    arm_w, leg_w = min(0.1, 0.18 * w), min(0.13, 0.25 * w)
    torso_z = w / 2 - arm_w
    torso_x = min(0.13, 0.3 * l)
    leg_z = max(torso_z - leg_w, 0.02)
    foot = 0.14
    side = rng.choice([-1.0, 1.0])  # which leg is forward
    parts = [
        _part(BOX, M.CLOTH, (-torso_x, shoulder, -torso_z), (torso_x, hip, torso_z), shirt),
        _part(BOX, M.SKIN, (-0.05, neck - 0.02, -0.05), (0.05, shoulder + 0.01, 0.05), skin),
        _part(ELLIPSOID, M.HEAD, (-0.11, -h, -0.085), (0.11, neck, 0.085), skin, hair),
    ]
    for sign, fwd in ((side, 1.0), (-side, -1.0)):  # the forward leg, then the back leg
        z0, z1 = sorted((sign * leg_z, sign * (leg_z + leg_w)))
        shin_x = fwd * max(l / 2 - 0.2, 0.06)
        toe, heel = fwd * l / 2, fwd * (l / 2 - 2 * foot)
        parts += [
            _part(BOX, M.CLOTH, (fwd * 0.08 - 0.065, hip, z0), (fwd * 0.08 + 0.065, knee - 0.02, z1), trousers),
            _part(BOX, M.CLOTH, (shin_x - 0.06, knee, z0), (shin_x + 0.06, -0.06, z1), trousers),
            _part(BOX, M.SHOE, (min(toe, heel), -0.08, z0), (max(toe, heel), 0.0, z1), shoes),
        ]
        # Arms swing against the legs; the forearm reaches the front / back of the box, so
        # with the feet the figure spans all four corners of its footprint.
        az0, az1 = sorted((sign * torso_z, sign * w / 2))
        reach = -fwd * (l / 2 - 0.05)
        elbow = 0.5 * (shoulder + hip)
        parts += [
            _part(BOX, M.CLOTH, (0.4 * reach - 0.05, shoulder, az0), (0.4 * reach + 0.05, elbow, az1), shirt),
            _part(BOX, M.SKIN if rng.random() < 0.5 else M.CLOTH,
                  (min(0.4 * reach, reach) - 0.03 * (reach > 0), elbow - 0.02, az0),
                  (max(0.4 * reach, reach) + 0.03 * (reach < 0), hip + 0.05, az1), skin if fwd < 0 else shirt),
        ]
    if rng.random() < 0.3:  # backpack: marks the back
        pack = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
        parts.append(_part(BOX, M.CLOTH, (-min(torso_x + 0.16, l / 2), shoulder + 0.05, -0.15),
                           (-torso_x, hip + 0.1, 0.15), pack))
    return parts


def cyclist_parts(h, w, l, rng):
    frame = _jitter(rng, PAINTS[rng.choice(len(PAINTS), p=PAINT_P)], 0.05)
    shirt = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    trousers = _jitter(rng, CLOTHES[rng.choice([0, 1, 1, 4, 7])])
    skin = _jitter(rng, SKINS[rng.integers(len(SKINS))], 0.03)
    helmet = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    bag = _jitter(rng, CLOTHES[rng.choice([0, 2, 6, 7, 9])])
    r = min(0.34, l / 5.2)
    xf, xb = l / 2 - r, -(l / 2 - r)
    seat_y, bar_y = -0.5 * h, -0.56 * h
    shoulder = -0.8 * h
    head_h = min(0.24, 0.13 * h)
    bar_x = xf - 0.04
    parts = [
        _part(CYLINDER, M.BIKE_WHEEL, (xf - r, -2 * r, -0.025), (xf + r, 0.0, 0.025), TYRE, frame),
        _part(CYLINDER, M.BIKE_WHEEL, (xb - r, -2 * r, -0.025), (xb + r, 0.0, 0.025), TYRE, frame),
        _part(BOX, M.METAL, (xb, -r - 0.02, -0.02), (0.05, -r + 0.02, 0.02), frame),  # chain stay
        _part(BOX, M.METAL, (-0.05, seat_y + 0.05, -0.02), (bar_x, seat_y + 0.1, 0.02), frame),  # top tube
        _part(BOX, M.METAL, (-0.02, -r - 0.02, -0.02), (0.3, seat_y + 0.1, 0.02), frame),  # down tube
        _part(BOX, M.METAL, (-0.12, seat_y, -0.02), (-0.06, -r, 0.02), frame),  # seat tube
        _part(BOX, M.METAL, (xf - 0.02, bar_y, -0.02), (xf + 0.02, -r, 0.02), frame),  # fork
        _part(BOX, M.METAL, (bar_x - 0.03, bar_y - 0.03, -w / 2), (bar_x + 0.03, bar_y + 0.03, w / 2),
              np.array([0.1, 0.1, 0.1])),  # handlebar
        _part(BOX, M.LAMP, (bar_x + 0.03, bar_y, -0.04), (bar_x + 0.09, bar_y + 0.06, 0.04),
              np.array([1.0, 1.0, 0.9])),  # front lamp
        _part(BOX, M.REFLECTOR, (xb - 0.08, -2 * r - 0.06, -0.04), (xb + 0.04, -2 * r, 0.04),
              np.array([0.8, 0.05, 0.05])),  # rear mudguard reflector
        # a rear rack with panniers as wide as the handlebar: marks the back, and with the
        # bar makes the shape span its box's width at both ends
        _part(BOX, M.METAL, (-l / 2 + 0.06, -2 * r - 0.04, -0.1), (xb + 0.12, -2 * r, 0.1), frame),
        _part(BOX, M.CLOTH, (-l / 2 + 0.06, -2 * r + 0.02, 0.06), (xb + 0.12, -r - 0.02, w / 2), bag),
        _part(BOX, M.CLOTH, (-l / 2 + 0.06, -2 * r + 0.02, -w / 2), (xb + 0.12, -r - 0.02, -0.06), bag),
        # rider: thighs and shins to the pedals, a torso leaning to the bar, arms, a helmet
        _part(BOX, M.CLOTH, (-0.2, seat_y - 0.05, 0.05), (0.12, seat_y + 0.09, 0.17), trousers),
        _part(BOX, M.CLOTH, (0.04, seat_y + 0.05, 0.05), (0.14, -0.17, 0.17), trousers),
        _part(BOX, M.CLOTH, (-0.2, seat_y - 0.05, -0.17), (0.0, seat_y + 0.09, -0.05), trousers),
        _part(BOX, M.CLOTH, (-0.1, seat_y + 0.05, -0.17), (0.0, -0.3, -0.05), trousers),
        _part(BOX, M.CLOTH, (-0.24, 0.5 * (seat_y + shoulder), -0.18), (0.02, seat_y, 0.18), shirt),
        _part(BOX, M.CLOTH, (-0.12, shoulder, -0.19), (0.16, 0.5 * (seat_y + shoulder), 0.19), shirt),
        _part(BOX, M.CLOTH, (0.05, shoulder + 0.02, 0.19), (bar_x, shoulder + 0.1, 0.26), shirt),
        _part(BOX, M.CLOTH, (0.05, shoulder + 0.02, -0.26), (bar_x, shoulder + 0.1, -0.19), shirt),
        _part(BOX, M.SKIN, (0.0, shoulder - 0.06, -0.05), (0.08, shoulder + 0.01, 0.05), skin),
        _part(ELLIPSOID, M.HEAD, (-0.04, -h, -0.1), (0.2, -h + head_h, 0.1), skin, helmet),
    ]
    return parts


PARTS = {"Car": car_parts, "Van": van_parts, "Pedestrian": pedestrian_parts, "Cyclist": cyclist_parts}


def object_primitives(kind: str, dims, location, rotation_y: float, owner: int, rng) -> Primitives:
    """Primitives of one object; dims (h, w, l), location = bottom centre (rect), owner = the
    scene-object index written into the id buffer."""
    h, w, l = (float(v) for v in dims)
    parts = PARTS[kind](h, w, l, rng)
    rot = yaw_matrix(rotation_y)
    centers = np.array([p[2] for p in parts]) @ rot.T + np.asarray(location, dtype=np.float64)
    n = len(parts)
    return Primitives(center=centers, half=np.array([p[3] for p in parts]),
                      yaw=np.full(n, float(rotation_y)), kind=np.array([p[0] for p in parts]),
                      material=np.array([p[1] for p in parts]), color=np.array([p[4] for p in parts]),
                      color2=np.array([p[5] for p in parts]), owner=np.full(n, owner, dtype=np.int64))
