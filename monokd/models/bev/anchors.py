"""Per-class anchors on the BEV grid (SECOND / PointPillars; OpenPCDet's AnchorGenerator).

At every cell centre of a BEV map of stride s (LiDAR metres, monokd.geometry.grid), each class
places one anchor per (size, bottom height, rotation):

    anchor = (x_cell, y_cell, bottom + dz / 2, dx, dy, dz, rotation)        (LiDAR 7-D box)

    anchors (NY / s, NX / s, A, 7)    A = sum over classes of sizes x heights x rotations,
                                      ordered class, size, height, rotation
    anchor_classes (A,)               the class index of each of the A slots

The flattened order (y, x, a) is the order of the head's channels-last outputs reshaped to
(B, NY * NX * A, ·). Placement (``align_center``):

    True  (OpenPCDet's ``align_center: True``)   x_i = x_min + (i + 0.5) (x_max - x_min) / n
    False (OpenPCDet's default, CaDDN.yaml)      x_i = x_min + i (x_max - x_min) / (n - 1)

for the n cells along x of the stride-s map, and the same along y: edge to edge, the first
and the last anchors on the range's borders, so each anchor is up to half a cell (0.16 m at
CaDDN's stride-2 map) from its cell's centre, depending on the map size.

Configuration (``model.anchor_head.anchors``, one entry per class of ``data.classes``;
CaDDN's KITTI values are the defaults in :data:`DEFAULT_ANCHORS`, with rotation pi / 2 where
OpenPCDet writes 1.57; an entry set to null is dropped, so a recipe can remove a class its
base configures)::

    Car: {sizes: [[3.9, 1.6, 1.56]], bottom_heights: [-1.78], rotations: [0, 1.5708],
          matched_threshold: 0.6, unmatched_threshold: 0.45}

sizes are [dx, dy, dz] = [l, w, h] metres.
"""

from __future__ import annotations

import math

import torch

from monokd.errors import ConfigError, did_you_mean
from monokd.geometry.grid import BEVGrid

_HALF_PI = math.pi / 2
DEFAULT_ANCHORS = {
    "Car": {"sizes": [[3.9, 1.6, 1.56]], "bottom_heights": [-1.78], "rotations": [0.0, _HALF_PI],
            "matched_threshold": 0.6, "unmatched_threshold": 0.45},
    "Pedestrian": {"sizes": [[0.8, 0.6, 1.73]], "bottom_heights": [-0.6], "rotations": [0.0, _HALF_PI],
                   "matched_threshold": 0.5, "unmatched_threshold": 0.35},
    "Cyclist": {"sizes": [[1.76, 0.6, 1.73]], "bottom_heights": [-0.6], "rotations": [0.0, _HALF_PI],
                "matched_threshold": 0.5, "unmatched_threshold": 0.35},
}
ANCHOR_KEYS = ("sizes", "bottom_heights", "rotations", "matched_threshold", "unmatched_threshold")


def anchor_config(section: dict | None, class_names, key: str) -> list[dict]:
    """One validated anchor dict per class of ``class_names`` (defaults: :data:`DEFAULT_ANCHORS`)."""
    section = {name: spec for name, spec in (section or {}).items() if spec is not None}
    unknown = sorted(set(section) - set(class_names))
    if unknown:
        raise ConfigError(f"{key}: anchors for {unknown}, which are not in data.classes {list(class_names)}")
    out = []
    for name in class_names:
        given = section.get(name)
        if given is None and name not in DEFAULT_ANCHORS:
            raise ConfigError(f"{key}.{name}: no anchors configured and no default for this class")
        spec = {**DEFAULT_ANCHORS.get(name, {}), **(given or {})}
        bad = sorted(set(spec) - set(ANCHOR_KEYS))
        if bad:
            raise ConfigError(f"{key}.{name}: unknown keys {bad} "
                              f"({did_you_mean(bad[0], ANCHOR_KEYS)}known: {', '.join(ANCHOR_KEYS)})")
        missing = [k for k in ANCHOR_KEYS if k not in spec]
        if missing:
            raise ConfigError(f"{key}.{name}: missing {missing}")
        if any(len(s) != 3 or min(s) <= 0 for s in spec["sizes"]):
            raise ConfigError(f"{key}.{name}.sizes: each size is [dx, dy, dz] > 0; got {spec['sizes']}")
        if not spec["unmatched_threshold"] <= spec["matched_threshold"]:
            raise ConfigError(f"{key}.{name}: unmatched_threshold {spec['unmatched_threshold']} is above "
                              f"matched_threshold {spec['matched_threshold']}")
        out.append(spec)
    return out


def anchors_per_location(specs: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, 6) (z_centre, dx, dy, dz, rotation, class) rows in slot order, split as
    (A, 5) float and (A,) long class indices."""
    rows, classes = [], []
    for cls, spec in enumerate(specs):
        for dx, dy, dz in spec["sizes"]:
            for bottom in spec["bottom_heights"]:
                for rotation in spec["rotations"]:
                    rows.append([bottom + dz / 2, dx, dy, dz, rotation])
                    classes.append(cls)
    return torch.tensor(rows, dtype=torch.float32), torch.tensor(classes, dtype=torch.long)


def edge_to_edge_positions(grid: BEVGrid, stride: int, device=None) -> torch.Tensor:
    """(NY / s, NX / s, 2) LiDAR (x, y) of OpenPCDet's ``align_center: False`` anchors: n
    positions from the range's low edge to its high edge inclusive, step extent / (n - 1)."""
    ny, nx = grid.bev_shape(stride)
    pcr = grid.point_cloud_range
    axes = []
    for low, high, count in ((pcr[0], pcr[3], nx), (pcr[1], pcr[4], ny)):
        step = (high - low) / max(count - 1, 1)
        axes.append((low + torch.arange(count, dtype=torch.float64, device=device) * step).float())
    ys, xs = torch.meshgrid(axes[1], axes[0], indexing="ij")
    return torch.stack([xs, ys], dim=-1)


def make_anchors(grid: BEVGrid, stride: int, specs: list[dict], device=None,
                 align_center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors (NY / s, NX / s, A, 7) of a stride-``stride`` BEV map (at the cell centres, or
    edge to edge without ``align_center``; see the module docstring), and anchor_classes (A,)."""
    slots, classes = anchors_per_location(specs)
    centres = (grid.cell_centres(stride, device=device) if align_center
               else edge_to_edge_positions(grid, stride, device))  # (ny, nx, 2)
    ny, nx = centres.shape[:2]
    slots = slots.to(device)
    anchors = torch.cat([centres[:, :, None, :].expand(ny, nx, len(slots), 2),
                         slots[None, None].expand(ny, nx, len(slots), 5)], dim=-1)
    return anchors, classes.to(device)
