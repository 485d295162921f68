"""The 2-D boxes a two-stage detector starts from (PatchNet): ``batch["proposals"]``.

One dict per frame:

- ``boxes`` (N, 4) float32 x1 y1 x2 y2 in input pixels, clipped to the input image;
- ``labels`` (N,) long, index into ``data.classes``;
- ``scores`` (N,) float32, the 2-D confidence (1 for GT boxes);
- ``target_index`` (N,) long, the target the box was made from (-1: none, i.e. a detection).

Sources (``data.proposals``; ``train`` applies to ``data.train_split``, ``eval`` to the rest):

- ``gt_jitter``: each supervised target's 2-D box with its centre moved by up to
  +-``jitter`` x (w, h) and its width and height scaled by 1 +- ``jitter`` (uniform draws;
  PatchNet's / F-PointNet's training boxes, +-10 %), ``copies`` draws per object;
- ``gt``: the targets' boxes as they are (the "GT 2-D boxes at evaluation" rows);
- ``results``: the 2-D box and score of every line of ``<results_dir>/<frame>.txt``, KITTI
  result files as ``monokd predict`` of any detector writes them, of a class in
  ``data.classes``, at least ``min_height`` px high in the original image (x the dataset's
  min-height scale; PatchNet: 25 px) and scored at least ``min_score``. A missing folder is
  an error, a missing file means no box, a malformed line is a KittiFormatError naming the
  file and the line (the reader is monokd.evaluation.results.read_results). A folder
  whose files hold no box at all (a 2-D detector that found nothing above its decode
  threshold) is a MonokdWarning, once per folder: every frame would get no proposal.

The draws happen in the dataset, so every model fed one batch (a student on estimated depth,
its teacher on depth_2) sees the same boxes with the same jitter: a paired batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from monokd.data.augment import transform_boxes_2d
from monokd.errors import ConfigError, KittiFormatError, MonokdWarning
from monokd.evaluation.results import read_results
from monokd.schema import Section

DEFAULTS = {"train": "gt_jitter", "eval": "gt", "jitter": 0.1, "copies": 1, "results_dir": None,
            "min_height": 25.0, "min_score": 0.0}
SOURCES = ("gt_jitter", "gt", "results")
SECTION = Section("data.proposals", DEFAULTS, choices={"train": SOURCES, "eval": SOURCES}, paths=("results_dir",))
_CHECKED: set[str] = set()  # the results folders this process has looked at for a box


def proposal_config(section: dict | None) -> dict:
    """``data.proposals`` over DEFAULTS (ConfigError names a bad key or value)."""
    out = SECTION.resolve(section)
    if "results" in (out["train"], out["eval"]) and not out["results_dir"]:
        raise ConfigError("data.proposals.results_dir: the 'results' source needs a folder of KITTI result files")
    if not 0 <= float(out["jitter"]) < 1:
        raise ConfigError(f"data.proposals.jitter: {out['jitter']} is not in [0, 1)")
    return out


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator, ratio: float) -> np.ndarray:
    """(N, 4) boxes with centre shifts of up to +-ratio x (w, h) and w, h scaled by 1 +- ratio."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    shift, scale = rng.uniform(-ratio, ratio, (len(boxes), 2)), 1 + rng.uniform(-ratio, ratio, (len(boxes), 2))
    cx, cy = cx + w * shift[:, 0], cy + h * shift[:, 1]
    w, h = w * scale[:, 0], h * scale[:, 1]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def from_targets(targets: dict, rng: np.random.Generator | None, jitter: float, copies: int) -> dict:
    """Proposals from the targets' 2-D boxes (jittered when ``rng`` is given)."""
    boxes = targets["boxes_2d"].numpy().astype(np.float64)
    index = np.arange(len(boxes))
    if rng is not None:
        index = np.tile(index, copies)
        boxes = jitter_boxes(np.tile(boxes, (copies, 1)), rng, jitter)
    return _proposals(boxes, targets["labels"].numpy()[index], np.ones(len(index)), index)


def from_results(path: str | Path, classes: list[str], affine: np.ndarray, min_height: float,
                 min_score: float) -> dict:
    """Proposals from one KITTI result file (original pixels -> input pixels by ``affine``)."""
    if not Path(path).parent.is_dir():  # a missing file is a frame without box; a missing folder a mistake
        raise KittiFormatError(Path(path).parent, None, None, "result directory not found (data.proposals.results_dir)")
    warn_if_no_box(Path(path).parent)
    kept = [o for o in read_results(path) if o.type in classes and o.height_2d >= min_height and o.score >= min_score]
    boxes = transform_boxes_2d(np.array([o.box2d for o in kept]).reshape(-1, 4), affine)
    return _proposals(boxes, [classes.index(o.type) for o in kept], [o.score for o in kept], [-1] * len(kept))


def count_result_boxes(results_dir: str | Path, stop_at: int | None = None) -> tuple[int, int]:
    """(boxes, files): the non-empty lines of the ``*.txt`` result files in ``results_dir``
    and the number of those files; counting stops once ``stop_at`` boxes are seen."""
    boxes = files = 0
    for path in sorted(Path(results_dir).glob("*.txt")):
        files += 1
        boxes += sum(1 for line in path.read_text().splitlines() if line.strip())
        if stop_at is not None and boxes >= stop_at:
            break
    return boxes, files


def no_box_message(results_dir: str | Path, files: int) -> str:
    """The one line that says a results folder holds no 2-D box."""
    return (f"{results_dir}: no 2-D box in its {files} result file(s) (data.proposals.results_dir): every frame "
            "gets no proposal, so the detector predicts nothing and its AP reads 0; decode the 2-D detector at a "
            "lower score threshold, or evaluate on the GT boxes (data.proposals.eval=gt)")


def warn_if_no_box(results_dir: str | Path) -> None:
    """A MonokdWarning (:func:`no_box_message`), once per folder and process, when the
    result files of ``results_dir`` hold no box at all."""
    key = str(Path(results_dir).resolve())
    if key in _CHECKED:
        return
    _CHECKED.add(key)
    boxes, files = count_result_boxes(results_dir, stop_at=1)
    if boxes == 0:
        warnings.warn(no_box_message(results_dir, files), MonokdWarning, stacklevel=3)


def clip_boxes(proposals: dict, input_size) -> dict:
    """Boxes clipped to the input image; boxes less than one pixel wide or high dropped."""
    width, height = input_size
    boxes = proposals["boxes"].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return {**{k: v[keep] for k, v in proposals.items()}, "boxes": boxes[keep]}


def _proposals(boxes, labels, scores, target_index) -> dict:
    return {"boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
            "scores": torch.as_tensor(np.asarray(scores, dtype=np.float32).reshape(-1)),
            "target_index": torch.as_tensor(np.asarray(target_index, dtype=np.int64).reshape(-1))}
