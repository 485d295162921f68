"""Objects of many frames as flat arrays (what the devkit kernels read).

Frame ``f`` owns rows ``offsets[f]:offsets[f + 1]``; within a frame the rows keep the
order of the label file, which the devkit's greedy matching depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from monokd.data.kitti import Object3D


@dataclass
class ObjectTable:
    """n objects over F frames.

    offsets: (F + 1,) int64.  names: (n,) lower-case type names (the devkit compares types
    case-insensitively).  box2d: (n, 4) x1 y1 x2 y2.  box3d: (n, 7) x y z h w l rotation_y.
    alpha, truncated, score: (n,) float64 (score NaN where a line has none).  occluded: (n,) int64.
    """

    offsets: np.ndarray
    names: np.ndarray
    box2d: np.ndarray
    box3d: np.ndarray
    alpha: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray
    score: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def frame_of_rows(self) -> np.ndarray:
        """(n,) the frame index of every row."""
        return np.repeat(np.arange(self.num_frames), self.counts)

    def select(self, keep: np.ndarray) -> "ObjectTable":
        """The rows where ``keep`` (n,) is true, frames and order preserved."""
        counts = np.bincount(self.frame_of_rows()[keep], minlength=self.num_frames)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ObjectTable(offsets, self.names[keep], self.box2d[keep], self.box3d[keep],
                           self.alpha[keep], self.truncated[keep], self.occluded[keep],
                           self.score[keep])


def table_from_objects(frames: Sequence[str], annos: Mapping[str, Sequence[Object3D]]) -> ObjectTable:
    """Stack the objects of ``frames`` (a frame missing from ``annos`` has none)."""
    rows: list[tuple] = []
    counts = np.zeros(len(frames), dtype=np.int64)
    for f, frame in enumerate(frames):
        objects = annos.get(frame, ())
        counts[f] = len(objects)
        for o in objects:
            x1, y1, x2, y2 = o.box2d
            x, y, z = o.location
            rows.append((x1, y1, x2, y2, x, y, z, o.h, o.w, o.l, o.rotation_y, o.alpha,
                         o.truncated, o.occluded, np.nan if o.score is None else o.score))
    values = np.array(rows, dtype=np.float64).reshape(-1, 15)
    names = np.array([o.type.lower() for frame in frames for o in annos.get(frame, ())], dtype=str)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ObjectTable(offsets, names.reshape(-1), np.ascontiguousarray(values[:, 0:4]),
                       np.ascontiguousarray(values[:, 4:11]), values[:, 11].copy(),
                       values[:, 12].copy(), values[:, 13].astype(np.int64), values[:, 14].copy())
