"""Objects of many frames as flat arrays (what the devkit kernels read).

Frame ``f`` owns rows ``offsets[f]:offsets[f + 1]``; within a frame the rows keep the
order of the label file, which the devkit's greedy matching depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
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


def frame_id(key) -> str:
    """Six-digit frame id of an int or a digit string (other strings unchanged)."""
    text = str(key)
    return text.zfill(6) if text.isdigit() else text


def table_from_objects(frames: Sequence[str], annos: Mapping[str, Sequence[Object3D]]) -> ObjectTable:
    """Stack the objects of ``frames`` (a frame missing from ``annos`` has none)."""
    per_frame = [annos.get(frame, ()) for frame in frames]
    objects = [o for objs in per_frame for o in objs]
    counts = np.array([len(objs) for objs in per_frame], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = len(objects)
    scalars = np.array([_SCALARS(o) for o in objects], dtype=np.float64).reshape(n, 7)
    box2d = _stack([o.box2d for o in objects], 4)
    location = _stack([o.location for o in objects], 3)
    box3d = np.concatenate([location, scalars[:, 0:4]], axis=1)
    score = np.array([np.nan if o.score is None else o.score for o in objects], dtype=np.float64)
    names = np.array([o.type.lower() for o in objects], dtype=str).reshape(n)
    return ObjectTable(offsets, names, box2d, box3d, scalars[:, 4].copy(), scalars[:, 5].copy(),
                       scalars[:, 6].astype(np.int64), score.reshape(n))


_SCALARS = attrgetter("h", "w", "l", "rotation_y", "alpha", "truncated", "occluded")


def _stack(arrays: list, width: int) -> np.ndarray:
    """(n, width) float64 from n arrays of ``width`` numbers (concatenate is the fast way)."""
    if not arrays:
        return np.zeros((0, width))
    return np.concatenate(arrays).astype(np.float64, copy=False).reshape(-1, width)
