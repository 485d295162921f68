"""Validation: detections of all ranks gathered and scored with the KITTI evaluation."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
import torch.distributed as dist

from monokd.config import get, setting
from monokd.data.kitti import KittiPaths, Object3D, read_label
from monokd.evaluation import evaluate



def gather_detections(detections: dict[str, list[Object3D]]) -> dict[str, list[Object3D]]:
    """Union of every rank's {frame: detections} (identical on all ranks)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(detections)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, detections)
    merged: dict[str, list[Object3D]] = {}
    for part in parts:
        merged.update(part)
    return dict(sorted(merged.items()))


def broadcast_object(value, src: int = 0):
    """``value`` of rank ``src`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def eval_batch_size(cfg: dict) -> int:
    """``eval.batch_size``, else ``train.batch_size``."""
    return int(setting(cfg, "eval.batch_size") or setting(cfg, "train.batch_size"))


def eval_classes(cfg: dict) -> list[str]:
    return list(get(cfg, "eval.classes") or get(cfg, "data.classes") or ["Car"])


def read_ground_truth(cfg: dict, frames, part: str = "training") -> dict[str, list[Object3D]]:
    """The label_2 objects of ``frames`` under ``data.root``."""
    paths = KittiPaths(Path(get(cfg, "data.root")), get(cfg, "data.part") or part)
    return {f: read_label(paths.file("label_2", f)) for f in frames}


def score_detections(cfg: dict, gt: dict, detections: dict):
    """:func:`monokd.evaluation.evaluate` with the options of ``cfg["eval"]`` it accepts."""
    accepted = inspect.signature(evaluate).parameters
    options = {k: v for k, v in (get(cfg, "eval") or {}).items()
               if k in accepted and k not in ("gt_annos", "dt_annos", "classes")}
    return evaluate(gt, {f: detections.get(f, []) for f in gt}, eval_classes(cfg), **options)


def monitor_value(flat: dict[str, float], key: str) -> float | None:
    """The monitored AP, or None when the evaluation did not produce that key."""
    value = flat.get(key)
    return None if value is None else float(value)


@torch.no_grad()
def decode_batch(model, batch: dict) -> dict[str, list[Object3D]]:
    """{frame id: detections} of one batch."""
    outputs = model(batch)
    detections = model.decode(outputs, batch)
    return dict(zip(batch["frame_ids"], detections))
