"""Bird's-eye view: LiDAR points and box footprints on the ground plane (x right, z forward)."""

from __future__ import annotations

import numpy as np

from monokd.data.kitti import Object3D
from monokd.geometry.boxes import FRONT_FACE, corners_3d

GT_COLOR = (40, 200, 40)  # RGB
PRED_COLOR = (235, 50, 50)
BACKGROUND = (20, 20, 24)


class BevCanvas:
    """Maps rectified x, z (m) to BEV pixels: camera at the bottom centre, z up the picture."""

    def __init__(self, x_range=(-20.0, 20.0), z_range=(0.0, 60.0), height: int = 375):
        self.x_range, self.z_range = x_range, z_range
        self.scale = height / (z_range[1] - z_range[0])  # pixels a metre
        self.size = (int(round((x_range[1] - x_range[0]) * self.scale)), int(height))  # (W, H)

    def to_pixels(self, x, z) -> np.ndarray:
        """(N,) x, z in metres -> (N, 2) float pixel coordinates."""
        return np.stack([(np.asarray(x) - self.x_range[0]) * self.scale,
                         (self.z_range[1] - np.asarray(z)) * self.scale], axis=-1)

    def blank(self) -> np.ndarray:
        return np.full((self.size[1], self.size[0], 3), BACKGROUND, dtype=np.uint8)


def draw_bev(points, objects: list[Object3D], preds: list[Object3D] | None = None,
             x_range=(-20.0, 20.0), z_range=(0.0, 60.0), height: int = 375,
             color=GT_COLOR, pred_color=PRED_COLOR) -> np.ndarray:
    """(height, W, 3) uint8 RGB bird's-eye view.

    Args:
        points: (N, >=3) points in rectified camera coordinates (or None), drawn by height.
        objects: boxes drawn in ``color`` (GT); ``preds`` in ``pred_color`` with their score.
        x_range, z_range: the area shown (m).
    """
    import cv2

    canvas = BevCanvas(x_range, z_range, height)
    out = canvas.blank()
    _draw_grid(out, canvas)
    if points is not None and len(points):
        _draw_points(out, canvas, np.asarray(points))
    for group, col in ((objects, color), (preds or [], pred_color)):
        for obj in group:
            if obj.type == "DontCare":
                continue
            _draw_footprint(out, canvas, obj, col)
    cv2.circle(out, tuple(int(v) for v in canvas.to_pixels(0.0, 0.0)), 4, (255, 255, 255), -1)
    return out


def _draw_grid(out, canvas: BevCanvas, step: float = 10.0) -> None:
    import cv2

    width, height = canvas.size
    for z in np.arange(canvas.z_range[0], canvas.z_range[1] + 1e-6, step):
        row = int(round(canvas.to_pixels(0.0, z)[1]))
        cv2.line(out, (0, row), (width - 1, row), (60, 60, 68), 1)
        cv2.putText(out, f"{z:.0f} m", (3, max(row - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (140, 140, 150), 1, cv2.LINE_AA)
    for x in np.arange(np.ceil(canvas.x_range[0] / step) * step, canvas.x_range[1] + 1e-6, step):
        col = int(round(canvas.to_pixels(x, 0.0)[0]))
        cv2.line(out, (col, 0), (col, height - 1), (60, 60, 68), 1)


def _draw_points(out, canvas: BevCanvas, points: np.ndarray) -> None:
    uv = np.floor(canvas.to_pixels(points[:, 0], points[:, 2])).astype(np.int64)
    width, height = canvas.size
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    # Brightness by height above the road (y down; the road is about 1.7 m below the camera).
    above = np.clip((1.7 - points[inside, 1]) / 2.5, 0.0, 1.0)
    shade = 90.0 + 165.0 * above
    out[uv[inside, 1], uv[inside, 0]] = (shade[:, None] * [0.75, 0.85, 1.0]).astype(np.uint8)


def _draw_footprint(out, canvas: BevCanvas, obj: Object3D, color) -> None:
    import cv2

    corners = corners_3d(obj.dims, obj.location, np.asarray(obj.rotation_y))
    footprint = canvas.to_pixels(corners[:4, 0], corners[:4, 2])
    cv2.polylines(out, [np.round(footprint).astype(np.int32)], True, color, 2, cv2.LINE_AA)
    # Heading: from the centre to the middle of the front face.
    centre = footprint.mean(axis=0)
    front = canvas.to_pixels(corners[list(FRONT_FACE[:2]), 0].mean(), corners[list(FRONT_FACE[:2]), 2].mean())
    cv2.line(out, tuple(np.round(centre).astype(int)), tuple(np.round(front).astype(int)), color, 2, cv2.LINE_AA)
    if obj.score is not None:
        corner = np.round(footprint.min(axis=0)).astype(int)
        cv2.putText(out, f"{obj.score:.2f}", (int(corner[0]), int(corner[1]) - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35, color, 1, cv2.LINE_AA)
