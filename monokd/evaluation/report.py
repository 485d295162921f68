"""The result of a KITTI evaluation: precision curves, AP figures, the printed report, JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monokd.atomic import write_json

DIFFICULTIES = ("easy", "moderate", "hard")
METRICS = ("bbox", "bev", "3d")
RECALLS = ("R11", "R40")
N_SAMPLE_PTS = 41  # recall 0, 1/40, ..., 1
_ROW = {"bbox": "bbox", "bev": "bev ", "3d": "3d  ", "aos": "aos "}


def flat_key(cls: str, metric: str, difficulty: str, recall: str, iou: float) -> str:
    """``Car/3d/moderate/R40@0.70`` (aos uses its bbox threshold)."""
    return f"{cls}/{metric}/{difficulty}/{recall}@{iou:.2f}"


def ap_r11(curve: np.ndarray) -> float:
    """Mean of the 11 points 0, 4, ..., 40 of a (41,) curve, in percent (summed in order,
    as the python port does)."""
    total = 0.0
    for i in range(0, N_SAMPLE_PTS, 4):
        total += float(curve[i])
    return total / 11 * 100


def ap_r40(curve: np.ndarray) -> float:
    """Mean of the 40 points 1..40 of a (41,) curve, in percent."""
    total = 0.0
    for i in range(1, N_SAMPLE_PTS):
        total += float(curve[i])
    return total / 40 * 100


def _ap(curve: np.ndarray, recall: str) -> float:
    return ap_r11(curve) if recall == "R11" else ap_r40(curve)


@dataclass
class EvalResult:
    """AP of every class x metric (bbox, bev, 3d, aos) x difficulty x R11/R40 x threshold.

    thresholds: class -> ((bbox, bev, 3d) strict, (bbox, bev, 3d) loose).
    curves: (class, metric, difficulty, iou) -> (41,) interpolated precision (or, for
    "aos", orientation similarity) at recall 0, 1/40, ..., 1.
    """

    classes: tuple
    thresholds: dict
    compute_aos: bool
    num_frames: int
    curves: dict = field(default_factory=dict)

    def add_curve(self, cls: str, metric: str, difficulty: str, iou: float, curve: np.ndarray) -> None:
        self.curves[(cls, metric, difficulty, round(float(iou), 6))] = np.asarray(curve, dtype=np.float64)

    def ap(self, cls: str, metric: str, difficulty: str, recall: str = "R40", iou: float | None = None) -> float:
        """AP in percent; ``iou`` defaults to the strict threshold of the metric."""
        if iou is None:
            iou = self.thresholds[cls][0][METRICS.index("bbox" if metric == "aos" else metric)]
        return _ap(self.curves[(cls, metric, difficulty, round(float(iou), 6))], recall)

    def _metrics(self):
        return METRICS + (("aos",) if self.compute_aos else ())

    @property
    def flat(self) -> dict[str, float]:
        """{"Car/3d/moderate/R40@0.70": AP in percent, ...} over both threshold settings."""
        out: dict[str, float] = {}
        for cls in self.classes:
            for setting in self.thresholds[cls]:
                for metric in self._metrics():
                    iou = setting[METRICS.index("bbox" if metric == "aos" else metric)]
                    for recall in RECALLS:
                        for difficulty in DIFFICULTIES:
                            out[flat_key(cls, metric, difficulty, recall, iou)] = \
                                self.ap(cls, metric, difficulty, recall, iou)
        return out

    def report(self) -> str:
        """The devkit / python-port style text, per class and threshold setting."""
        lines = []
        for cls in self.classes:
            for setting in self.thresholds[cls]:
                for recall, tag in (("R11", "AP"), ("R40", "AP_R40")):
                    lines.append(f"{cls} {tag}@{setting[0]:.2f}, {setting[1]:.2f}, {setting[2]:.2f}:")
                    for metric in self._metrics():
                        iou = setting[METRICS.index("bbox" if metric == "aos" else metric)]
                        digits = 2 if metric == "aos" else 4
                        values = ", ".join(f"{self.ap(cls, metric, d, recall, iou):.{digits}f}"
                                           for d in DIFFICULTIES)
                        lines.append(f"{_ROW[metric]} AP:{values}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "flat": self.flat,
            "classes": list(self.classes),
            "num_frames": self.num_frames,
            "compute_aos": self.compute_aos,
            "min_overlaps": {c: {"strict": list(s), "loose": list(lo)}
                             for c, (s, lo) in self.thresholds.items()},
        }

    def write_json(self, path: str | Path) -> None:
        write_json(path, self.to_dict())
