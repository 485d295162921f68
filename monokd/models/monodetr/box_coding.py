"""MonoDETR's box and heading parametrisation.

A query's box is ``(cx, cy, l, r, t, b)``: the projected 3-D centre and its distances to the
left, right, top and bottom edges of the 2-D box, normalised by the input width (cx, l, r) and
height (cy, t, b). The 3-D centre need not be the 2-D box centre, hence four distances.

Heading: the observation angle alpha is split into 12 bins centred at i * 2pi / 12 plus a
residual (radians) from the bin centre, MonoDETR's ``angle2class`` / ``class2angle``.
"""

from __future__ import annotations

import math

import torch

from monokd.geometry.boxes import wrap_angle

NUM_HEADING_BINS = 12
_BIN_WIDTH = 2 * math.pi / NUM_HEADING_BINS
# Floors the areas in GIoU: two zero-area boxes would otherwise divide 0 by 0.
_AREA_EPS = 1e-7


def cxcylrtb_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 6) centre + l, r, t, b -> (..., 4) x1, y1, x2, y2 (same units)."""
    cx, cy, left, right, top, bottom = boxes.unbind(-1)
    return torch.stack([cx - left, cy - top, cx + right, cy + bottom], dim=-1)


def encode_boxes(boxes_2d: torch.Tensor, centers: torch.Tensor, input_size: tuple[float, float]) -> torch.Tensor:
    """Targets of ``pred_boxes``.

    Args:
        boxes_2d: (N, 4) x1, y1, x2, y2 in input pixels.
        centers: (N, 2) projected 3-D centres in input pixels.
        input_size: (W, H) of the network input.
    Returns:
        (N, 6) cx, cy, l, r, t, b normalised by (W, H).
    """
    width, height = input_size
    cx, cy = centers[:, 0], centers[:, 1]
    x1, y1, x2, y2 = boxes_2d.unbind(-1)
    raw = torch.stack([cx, cy, cx - x1, x2 - cx, cy - y1, y2 - cy], dim=-1)
    return raw / raw.new_tensor([width, height, width, width, height, height])


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """GIoU of (..., 4) x1 y1 x2 y2 boxes, broadcast over the leading axes.

    Pairwise: ``generalized_box_iou(a[:, None], b[None])`` -> (N, M). Unlike DETR's, there is no
    assert on x2 >= x1: an inverted box counts as zero area, and all areas are floored so that
    degenerate boxes give a finite value in [-1, 1] and finite gradients.
    """
    area1 = _area(boxes1)
    area2 = _area(boxes2)
    inter = _area(torch.cat([torch.maximum(boxes1[..., :2], boxes2[..., :2]),
                             torch.minimum(boxes1[..., 2:], boxes2[..., 2:])], dim=-1))
    union = (area1 + area2 - inter).clamp(min=_AREA_EPS)
    enclosing = _area(torch.cat([torch.minimum(boxes1[..., :2], boxes2[..., :2]),
                                 torch.maximum(boxes1[..., 2:], boxes2[..., 2:])], dim=-1))
    enclosing = torch.maximum(enclosing.clamp(min=_AREA_EPS), union)
    return inter / union - (enclosing - union) / enclosing


def _area(boxes: torch.Tensor) -> torch.Tensor:
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def angle_to_bin(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha (N,) radians, any range -> heading bin (N,) long and residual (N,) in
    [-pi/12, pi/12), with bin * 2pi/12 + residual = alpha (mod 2pi)."""
    # Shift by half a bin so that bin i covers [centre_i - w/2, centre_i + w/2).
    shifted = torch.remainder(alpha + _BIN_WIDTH / 2, 2 * math.pi)
    bins = torch.div(shifted, _BIN_WIDTH, rounding_mode="floor").clamp(0, NUM_HEADING_BINS - 1)
    residual = shifted - bins * _BIN_WIDTH - _BIN_WIDTH / 2
    return bins.long(), residual


def bin_to_angle(bins: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`angle_to_bin`, wrapped to [-pi, pi)."""
    return wrap_angle(bins.to(residual.dtype) * _BIN_WIDTH + residual)


def decode_heading(pred_angle: torch.Tensor) -> torch.Tensor:
    """(..., 24) 12 bin logits + 12 residuals -> alpha (...) from the most likely bin."""
    bins = pred_angle[..., :NUM_HEADING_BINS].argmax(dim=-1)
    residual = pred_angle[..., NUM_HEADING_BINS:].gather(-1, bins[..., None])[..., 0]
    return bin_to_angle(bins, residual)
