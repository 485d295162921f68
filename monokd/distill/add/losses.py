"""ADD's foreground/background balanced squared errors (Eq. 4 and Eq. 5).

    L = fg_weight * ||M (S - T)||^2 / (n_fg * C)  +  bg_weight * ||(1 - M)(S - T)||^2 / (n_bg * C)

Normalisation: each region's sum is divided by its own element count (cells x channels),
i.e. each term is the mean squared error over its region. Raw sums, as Eq. 4 is written,
would grow with the map size, the channel count and the number of objects, so alpha/beta
would mean something different at each level and in each batch; with per-region means the
paper's bg/fg ratio (0.1 for features, 0.5 for responses) is the relative weight of an
average background error, whatever the share of cells the boxes cover. A region with no
element (a batch without objects) contributes 0. Levels (Eq. 4) and decoder layers (Eq. 5)
are summed, as in the paper.

``normalization="sum"`` is Eq. 4 / 5 as written: each region's plain sum of squared errors,
per image (the batch's sum divided by the number of images, so that the batch size does not
scale it). On SynthKITTI's maps the background is then 6-15x heavier relative to the
foreground than with region means (features; ~9x for the queries), so beta_I / beta_v do not
mean the same thing under the two normalisations.
"""

from __future__ import annotations

import torch


NORMALIZATIONS = ("region_mean", "sum")


def balanced_mse(student: torch.Tensor, teacher: torch.Tensor, foreground: torch.Tensor,
                 fg_weight: float, bg_weight: float, normalization: str = "region_mean") -> torch.Tensor:
    """Weighted fg and bg squared errors: region means, or per-image sums (Eq. 4 / 5 literally).

    Args:
        student, teacher: (B, C, H, W) feature maps or (B, Q, C) query states.
        foreground: (B, H, W) or (B, Q) bool mask over the cells / queries.
        normalization: ``region_mean`` or ``sum``.
    Returns:
        scalar.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"balanced_mse: normalization {normalization!r} is not one of {NORMALIZATIONS}")
    if student.shape != teacher.shape:
        raise ValueError(f"balanced_mse: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    if student.dim() == 4:  # (B, C, H, W): channels on dim 1
        error = (student - teacher.detach()).pow(2).sum(dim=1)
        channels = student.shape[1]
    else:  # (B, Q, C): channels last
        error = (student - teacher.detach()).pow(2).sum(dim=-1)
        channels = student.shape[-1]
    if foreground.shape != error.shape:
        raise ValueError(f"balanced_mse: mask {tuple(foreground.shape)} vs cells {tuple(error.shape)}")
    fg = foreground.to(error.dtype)
    if normalization == "sum":
        images = max(student.shape[0], 1)
        return (fg_weight * (error * fg).sum() + bg_weight * (error * (1 - fg)).sum()) / images
    n_fg, n_bg = fg.sum(), (1 - fg).sum()
    fg_term = (error * fg).sum() / (n_fg * channels).clamp(min=1)
    bg_term = (error * (1 - fg)).sum() / (n_bg * channels).clamp(min=1)
    return fg_weight * fg_term + bg_weight * bg_term
