"""The residual 7-D box coder of SECOND / PointPillars (OpenPCDet's ResidualCoder) and the
direction classifier's bins.

Boxes and anchors are LiDAR 7-D boxes (x, y, z, dx, dy, dz, heading) (monokd.geometry.boxes).
With d_a = sqrt(dx_a^2 + dy_a^2) the anchor's footprint diagonal:

    t_x = (x - x_a) / d_a      t_y = (y - y_a) / d_a      t_z = (z - z_a) / dz_a
    t_dx = log(dx / dx_a)      t_dy = log(dy / dy_a)      t_dz = log(dz / dz_a)
    t_h = heading - heading_a

and :func:`decode` is its exact inverse. The box loss compares headings through
sin(a - b) (:func:`sin_difference`), which cannot tell a box from its reverse; the direction
classifier supplies that bit: bin = floor(wrap(heading - offset, [0, 2 pi)) / (2 pi / K)) with
K = 2 bins and offset pi / 4 (OpenPCDet's DIR_OFFSET 0.78539), and :func:`apply_direction`
moves a decoded heading into the predicted bin.
"""

from __future__ import annotations

import math

import torch

CODE_SIZE = 7
HEADING = 6
DIR_OFFSET = math.pi / 4
NUM_DIR_BINS = 2
_MIN_SIZE = 1e-5  # log of a zero size would be -inf; a degenerate box stays finite


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(..., 7) boxes and (..., 7) anchors -> (..., 7) residual codes."""
    xa, ya, za, dxa, dya, dza, ra = anchors.unbind(-1)
    xg, yg, zg, dxg, dyg, dzg, rg = boxes.unbind(-1)
    diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
    return torch.stack([(xg - xa) / diagonal, (yg - ya) / diagonal, (zg - za) / dza,
                        torch.log(dxg.clamp(min=_MIN_SIZE) / dxa), torch.log(dyg.clamp(min=_MIN_SIZE) / dya),
                        torch.log(dzg.clamp(min=_MIN_SIZE) / dza), rg - ra], dim=-1)


def decode(codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(..., 7) residual codes and (..., 7) anchors -> (..., 7) boxes (inverse of :func:`encode`)."""
    xa, ya, za, dxa, dya, dza, ra = anchors.unbind(-1)
    xt, yt, zt, dxt, dyt, dzt, rt = codes.unbind(-1)
    diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
    return torch.stack([xt * diagonal + xa, yt * diagonal + ya, zt * dza + za,
                        torch.exp(dxt) * dxa, torch.exp(dyt) * dya, torch.exp(dzt) * dza, rt + ra], dim=-1)


def sin_difference(preds: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both (..., 7) with the heading channel replaced so that their difference is
    sin(a - b) = sin a cos b - cos a sin b (SECOND's sine-error loss)."""
    a, b = preds[..., HEADING:HEADING + 1], targets[..., HEADING:HEADING + 1]
    return (torch.cat([preds[..., :HEADING], a.sin() * b.cos()], dim=-1),
            torch.cat([targets[..., :HEADING], a.cos() * b.sin()], dim=-1))


def _period(angle: torch.Tensor, offset: float, period: float) -> torch.Tensor:
    """angle - floor(angle / period + offset) * period: into [-offset * period, (1 - offset) * period)."""
    return angle - torch.floor(angle / period + offset) * period


def direction_target(heading: torch.Tensor, num_bins: int = NUM_DIR_BINS, offset: float = DIR_OFFSET) -> torch.Tensor:
    """(...) box headings -> (...) long direction bins in [0, num_bins)."""
    shifted = _period(heading - offset, 0.0, 2 * math.pi)
    return torch.floor(shifted / (2 * math.pi / num_bins)).long().clamp(0, num_bins - 1)


def apply_direction(heading: torch.Tensor, bins: torch.Tensor, num_bins: int = NUM_DIR_BINS,
                    offset: float = DIR_OFFSET) -> torch.Tensor:
    """Decoded headings (...) moved into their predicted direction ``bins`` (...):
    heading mod (2 pi / K) placed in the bin's sector [offset + k 2 pi / K, offset + (k + 1) 2 pi / K)."""
    period = 2 * math.pi / num_bins
    return _period(heading - offset, 0.0, period) + offset + period * bins.to(heading.dtype)
