"""Rotated bird's-eye-view non-maximum suppression of LiDAR 7-D boxes.

Greedy, highest score first: a box is kept unless its BEV IoU
(:func:`monokd.geometry.iou.iou_bev_lidar`, the project's one rotated IoU) with an already kept
box exceeds ``iou_threshold``. Each kept box is compared once with the boxes still in the
running, so the cost is (kept boxes) x (candidates) IoUs, most of them pruned before clipping.
Boxes with a non-finite coordinate or score are dropped first (a diverged prediction is not a
detection and would poison the IoU).
"""

from __future__ import annotations

import numpy as np
import torch

from monokd.geometry.iou import iou_bev_lidar


@torch.no_grad()
def rotated_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                pre_max: int | None = None, post_max: int | None = None) -> torch.Tensor:
    """Indices (into ``boxes``) of the kept boxes, best first.

    Args:
        boxes: (N, 7) LiDAR boxes.  scores: (N,).
        iou_threshold: suppress a box whose IoU with a kept box is above this.
        pre_max: consider only the ``pre_max`` best-scoring boxes.  post_max: keep at most this many.
    Returns:
        (K,) long tensor on ``boxes``' device.
    """
    finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
    candidates = torch.nonzero(finite).flatten()
    order = candidates[torch.argsort(scores[candidates], descending=True, stable=True)]
    if pre_max is not None:
        order = order[:pre_max]
    order_np = order.cpu().numpy()
    boxes_np = boxes.detach()[order].cpu().double().numpy()
    alive = np.ones(len(order_np), dtype=bool)
    keep = []
    for i in range(len(order_np)):
        if not alive[i]:
            continue
        keep.append(order_np[i])
        if post_max is not None and len(keep) >= post_max:
            break
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        if rest.size:
            overlap = iou_bev_lidar(boxes_np[i:i + 1], boxes_np[rest])[0]
            alive[rest[overlap > iou_threshold]] = False
    return torch.as_tensor(np.asarray(keep, dtype=np.int64), device=boxes.device)
