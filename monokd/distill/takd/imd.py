"""IMD, intra-modal distillation (MonoTAKD, Liu et al. 2025, Eq. 3).

The student's BEV feature imitates the TA's: both are camera features lifted by the same
pipeline, so the gap to close is only the depth (the TA lifts with the frame's dense depth):

    L_IMD = w * || N(F_S) - N(F_TA) ||^2 / (B C NY NX)         F: (B, C, NY, NX)

N is the identity or a per-sample min-max normalisation (``distill.imd.normalize``). The
gradient reaches the student through F_S; F_TA is a fixed target. (The released code
normalises through ``.cpu().detach()`` on both sides, so its IMD term gives no gradient at all.)
"""

from __future__ import annotations

import torch

from monokd.distill.takd.features import masked_mse, normalized


def imd_loss(student_bev: torch.Tensor, ta_bev: torch.Tensor, normalize: str = "none") -> torch.Tensor:
    """L_IMD before its weight; ``ta_bev`` is detached here."""
    return masked_mse(normalized(student_bev, normalize), normalized(ta_bev.detach(), normalize))
