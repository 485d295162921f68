"""Running a detector over a loader: batches moved to the device, decoded per frame."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from monokd.data.kitti import Object3D


def to_device(value, device: torch.device):
    """``value`` (a batch: tensors, lists and dicts of them) with every tensor on ``device``."""
    if torch.is_tensor(value):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    return value


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def detect(model: nn.Module, batches: Iterable[dict], device: torch.device | None = None,
           progress: bool = False) -> dict[str, list[Object3D]]:
    """{frame id: decoded detections} over all ``batches`` (model in eval mode)."""
    device = device or default_device()
    model.eval().to(device)
    detections: dict[str, list[Object3D]] = {}
    total = len(batches) if hasattr(batches, "__len__") else None
    for i, batch in enumerate(batches):
        batch = to_device(batch, device)
        outputs = model(batch)
        detections.update(zip(batch["frame_ids"], model.decode(outputs, batch)))
        if progress:
            print(f"\r  {i + 1}/{total or '?'} batches", end="", flush=True)
    if progress:
        print()
    return detections
