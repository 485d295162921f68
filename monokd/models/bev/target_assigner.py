"""Anchor target assignment with per-class IoU thresholds (SECOND; OpenPCDet's
AxisAlignedTargetAssigner without sampling).

For one image and each class c, over the anchors of class c and the GT boxes of class c, with
IoU one of (``iou``):

* ``rotated``: the exact rotated bird's-eye-view IoU (:func:`monokd.geometry.iou.iou_bev_lidar`,
  the overlap the evaluation and NMS use);
* ``nearest_bev``: OpenPCDet's ``boxes3d_nearest_bev_iou``, what its AxisAlignedTargetAssigner
  computes with ``MATCH_HEIGHT: False`` (CaDDN.yaml, every KITTI anchor recipe of OpenPCDet,
  with or without ``USE_MULTIHEAD``): each box's heading is snapped to the nearest of 0 and
  90 degrees (|limit_period(heading, 0.5, pi)| < pi / 4 keeps (dx, dy), else they swap) and
  the IoU of the two axis-aligned rectangles is taken. Blind to headings in between: a car at
  30 degrees is matched as if it were at 0.

    positive (label c + 1)  IoU with some GT >= matched_threshold_c, or the anchor is one of a GT's
                            best anchors (ties included; a GT overlapping no anchor forces none)
    negative (label 0)      best IoU < unmatched_threshold_c and not forced positive
    ignored  (label -1)     otherwise (between the thresholds)

A positive anchor is matched to the GT of its highest IoU, and its box target is the residual
code (monokd.models.bev.box_coder.encode) of that GT against the anchor. Anchors of a class with
no GT in the image are all negative; GT boxes of a label outside the head's classes (< 0) are
dropped. On the CPU the rotated IoU costs little: only the anchor-box pairs whose circumscribed
circles meet are clipped (~0.1 s for 100k anchors x 20 boxes).
"""

from __future__ import annotations

import math

import torch

from monokd.geometry.iou import iou_bev_lidar
from monokd.models.bev import box_coder

IOUS = ("rotated", "nearest_bev")


def nearest_bev_rectangles(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 7) LiDAR boxes -> (N, 4) x1, y1, x2, y2: the footprint with its heading snapped to
    0 or 90 degrees (OpenPCDet's ``boxes3d_lidar_to_aligned_bev_boxes``)."""
    heading = boxes[:, 6] - torch.floor(boxes[:, 6] / math.pi + 0.5) * math.pi  # in [-pi/2, pi/2)
    along = (heading.abs() < math.pi / 4)[:, None]
    dims = torch.where(along, boxes[:, [3, 4]], boxes[:, [4, 3]])
    return torch.cat([boxes[:, :2] - dims / 2, boxes[:, :2] + dims / 2], dim=1)


def nearest_bev_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """(N, 7), (M, 7) LiDAR boxes -> (N, M) IoU of their heading-snapped axis-aligned
    footprints (OpenPCDet's ``boxes3d_nearest_bev_iou``; union clamped at 1e-6 as there)."""
    a, b = nearest_bev_rectangles(boxes_a), nearest_bev_rectangles(boxes_b)
    width = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    height = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def pairwise_iou(anchors: torch.Tensor, gt_boxes: torch.Tensor, iou: str) -> torch.Tensor:
    """(N, 7) anchors, (M, 7) GT boxes -> (N, M) IoU of the rule ``iou`` (:data:`IOUS`)."""
    if iou == "rotated":
        return torch.from_numpy(iou_bev_lidar(anchors, gt_boxes)).to(anchors.device)
    if iou == "nearest_bev":
        return nearest_bev_iou(anchors.float(), gt_boxes.to(anchors.device).float())
    raise ValueError(f"assign_targets: iou {iou!r} is not one of {IOUS}")


@torch.no_grad()
def assign_targets(anchors: torch.Tensor, anchor_classes: torch.Tensor, gt_boxes: torch.Tensor,
                   gt_labels: torch.Tensor, matched_thresholds, unmatched_thresholds,
                   iou: str = "rotated") -> dict:
    """Targets of one image.

    Args:
        anchors: (N, 7) LiDAR boxes.  anchor_classes: (N,) class index of each anchor.
        gt_boxes: (M, 7) LiDAR boxes.  gt_labels: (M,) class indices (< 0: not supervised).
        matched_thresholds, unmatched_thresholds: one per class.
        iou: the overlap rule, ``rotated`` or ``nearest_bev`` (module docstring).
    Returns:
        ``labels`` (N,) long (-1 ignored, 0 negative, c + 1 positive for class c),
        ``box_targets`` (N, 7) residual codes (0 where not positive),
        ``matched_gt`` (N,) long index into gt_boxes (-1 where not positive).
    """
    device = anchors.device
    num = anchors.shape[0]
    labels = torch.zeros(num, dtype=torch.long, device=device)
    matched = torch.full((num,), -1, dtype=torch.long, device=device)
    gt_labels = gt_labels.to(device).long()
    for cls in range(len(matched_thresholds)):
        anchor_index = torch.nonzero(anchor_classes.to(device) == cls).flatten()
        gt_index = torch.nonzero(gt_labels == cls).flatten()
        if anchor_index.numel() == 0 or gt_index.numel() == 0:
            continue
        overlap = pairwise_iou(anchors[anchor_index], gt_boxes[gt_index], iou)
        best_iou, best_gt = overlap.max(dim=1)
        gt_best = overlap.max(dim=0).values
        gt_best = torch.where(gt_best > 0, gt_best, torch.full_like(gt_best, -1.0))  # overlaps nothing
        forced = (overlap == gt_best[None, :]).any(dim=1)
        positive = (best_iou >= matched_thresholds[cls]) | forced
        ignored = ~positive & (best_iou >= unmatched_thresholds[cls])
        labels[anchor_index[positive]] = cls + 1
        labels[anchor_index[ignored]] = -1
        matched[anchor_index[positive]] = gt_index[best_gt[positive]]
    box_targets = torch.zeros_like(anchors)
    positive = matched >= 0
    if positive.any():
        box_targets[positive] = box_coder.encode(gt_boxes.to(anchors)[matched[positive]], anchors[positive])
    return {"labels": labels, "box_targets": box_targets, "matched_gt": matched}
