"""CMRD, cross-modal residual distillation (MonoTAKD, Liu et al. 2025, Eq. 4-5).

What the LiDAR teacher's BEV feature holds beyond the TA's (both over the same BEV grid and
channels) is the residual, the LiDAR-only spatial cues; the student's residual branch
(monokd/models/takd/residual.py) predicts it:

    difference (the paper, Eq. 4):     F_res = N(F_T) - N(F_TA)
    abs_threshold:                     D = |N(F_TA) - N(F_T)|,  F_res = D * [D >= r * max_sample D]
    released (the released code):      D = |M(F_TA) - F_T|,      F_res = D * [D >= r * max_batch D]
    L_CMRD = w * || F_res' - F_res ||^2 / (B C NY NX)                         (Eq. 5)

N is the identity or a per-sample min-max normalisation (``distill.cmrd.normalize``, not read
by ``released``); M is the min-max over the whole batch (features.batch_minmax). The released
code normalises the TA only (the teacher's feature enters raw), keeps the cells at or above
r = 0.6 times the batch's largest difference and weighs the term w = 0.2 (the KITTI recipe's
``distill.cmrd.weight``). The target carries no gradient.
"""

from __future__ import annotations

import torch

from monokd.distill.takd.features import batch_minmax, masked_mse, normalized

RESIDUALS = ("difference", "abs_threshold", "released")


@torch.no_grad()
def residual_target(teacher_bev: torch.Tensor, ta_bev: torch.Tensor, residual: str = "difference",
                    normalize: str = "none", threshold: float = 0.6) -> torch.Tensor:
    """F_res (B, C, NY, NX) from the teacher's and the TA's BEV features of the same shape."""
    if teacher_bev.shape != ta_bev.shape:
        raise ValueError(f"CMRD: teacher BEV {tuple(teacher_bev.shape)} vs TA BEV {tuple(ta_bev.shape)}: the "
                         "LiDAR teacher and the TA must share the BEV grid and the BEV channels")
    if residual == "released":
        return _kept_above((batch_minmax(ta_bev) - teacher_bev).abs(), threshold, per_sample=False)
    teacher, ta = normalized(teacher_bev, normalize), normalized(ta_bev, normalize)
    if residual == "difference":
        return teacher - ta
    if residual == "abs_threshold":
        return _kept_above((ta - teacher).abs(), threshold, per_sample=True)
    raise ValueError(f"CMRD: residual {residual!r} is not one of {RESIDUALS}")


def _kept_above(diff: torch.Tensor, threshold: float, per_sample: bool) -> torch.Tensor:
    """``diff`` where it is >= threshold x its largest finite value (per sample or over the
    batch), 0 elsewhere; a non-finite value never sets the peak."""
    finite = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
    peak = finite.flatten(1).amax(1).view(-1, 1, 1, 1) if per_sample else finite.max()
    return torch.where(diff >= threshold * peak, diff, torch.zeros_like(diff))


def cmrd_loss(predicted_residual: torch.Tensor, target_residual: torch.Tensor) -> torch.Tensor:
    """L_CMRD before its weight."""
    return masked_mse(predicted_residual, target_residual.detach())
