"""CMRD, cross-modal residual distillation (MonoTAKD, Liu et al. 2025, Eq. 4-5).

What the LiDAR teacher's BEV feature holds beyond the TA's (both over the same BEV grid and
channels) is the residual, the LiDAR-only spatial cues; the student's residual branch
(monokd/models/takd/residual.py) predicts it:

    difference (the paper, Eq. 4):           F_res = N(F_T) - N(F_TA)
    abs_threshold (the released code):       D = |N(F_TA) - N(F_T)|,  F_res = D * [D >= r * max D]
    L_CMRD = w * || F_res' - F_res ||^2 / (B C NY NX)                         (Eq. 5)

N is the identity or a per-sample min-max normalisation (``distill.cmrd.normalize``); the
code normalises the TA (not the teacher), uses r = 0.6 over the whole batch and w = 0.2.
Here the threshold is taken per sample. The target carries no gradient.
"""

from __future__ import annotations

import torch

from monokd.distill.takd.features import masked_mse, normalized

RESIDUALS = ("difference", "abs_threshold")


@torch.no_grad()
def residual_target(teacher_bev: torch.Tensor, ta_bev: torch.Tensor, residual: str = "difference",
                    normalize: str = "none", threshold: float = 0.6) -> torch.Tensor:
    """F_res (B, C, NY, NX) from the teacher's and the TA's BEV features of the same shape."""
    if teacher_bev.shape != ta_bev.shape:
        raise ValueError(f"CMRD: teacher BEV {tuple(teacher_bev.shape)} vs TA BEV {tuple(ta_bev.shape)}: the "
                         "LiDAR teacher and the TA must share the BEV grid and the BEV channels")
    teacher, ta = normalized(teacher_bev, normalize), normalized(ta_bev, normalize)
    if residual == "difference":
        return teacher - ta
    if residual == "abs_threshold":
        diff = (ta - teacher).abs()
        finite = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
        peak = finite.flatten(1).amax(1).view(-1, 1, 1, 1)
        return torch.where(diff >= threshold * peak, diff, torch.zeros_like(diff))
    raise ValueError(f"CMRD: residual {residual!r} is not one of {RESIDUALS}")


def cmrd_loss(predicted_residual: torch.Tensor, target_residual: torch.Tensor) -> torch.Tensor:
    """L_CMRD before its weight."""
    return masked_mse(predicted_residual, target_residual.detach())
