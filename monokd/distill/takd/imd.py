"""IMD, intra-modal distillation (MonoTAKD, Liu et al. 2025, Eq. 3).

The student's BEV feature imitates the TA's: both are camera features lifted by the same
pipeline, so the gap to close is only the depth (the TA lifts with the frame's dense depth).
Two variants (``distill.imd.variant``):

    paper:     L_IMD = w * || N(F_S) - N(F_TA) ||^2 / (B C NY NX)            F: (B, C, NY, NX)
               N the identity or a per-sample min-max (``distill.imd.normalize``); the gradient
               reaches the student through F_S, F_TA is a fixed target.
    released:  L_IMD = w * || M(F_S) - M(F_TA) ||^2 / (B C NY NX)
               M = min-max over the whole batch of a detached copy (the released code's
               ``normalize_`` goes through ``.cpu().detach()`` on both sides): the value is
               logged but its gradient is exactly zero, so this term trains nothing.
"""

from __future__ import annotations

import torch

from monokd.distill.takd.features import batch_minmax, masked_mse, normalized

VARIANTS = ("paper", "released")


def imd_loss(student_bev: torch.Tensor, ta_bev: torch.Tensor, normalize: str = "none",
             variant: str = "paper") -> torch.Tensor:
    """L_IMD before its weight; ``ta_bev`` is detached here. ``released``: ``normalize`` is not
    read (the variant fixes its own normalisation) and the result's gradient is zero."""
    if variant == "paper":
        return masked_mse(normalized(student_bev, normalize), normalized(ta_bev.detach(), normalize))
    if variant == "released":
        with torch.no_grad():
            value = masked_mse(batch_minmax(student_bev.detach()), batch_minmax(ta_bev.detach()))
        # stays in the graph (a loss made of this term alone still backpropagates) with zero gradient
        return value + 0.0 * torch.where(torch.isfinite(student_bev), student_bev, 0.0).sum()
    raise ValueError(f"IMD: variant {variant!r} is not one of {VARIANTS}")
