"""The scale-invariant log loss (SILog; Eigen et al., NIPS 2014, Eq. 4; BTS's weighting).

    g_i = log d_pred_i - log d_gt_i                 over the valid pixels i (GT depth in range)
    L   = alpha * sqrt( mean(g^2) - lambda * mean(g)^2 )

lambda = 1 makes the loss blind to a global scale (relative depth only); lambda = 0 is the
RMSE of log depth. PatchNet needs metric depth, so lambda = 0.85 (BTS, AdaBins): mostly
scale-invariant, which lets the network learn the scene's structure without being dominated
by per-image scale errors, while 15 % of the scale term keeps the output metric. Log depth
weighs a 1 m error at 5 m like a 10 m error at 50 m, the way monocular cues degrade.
alpha = 10 puts the loss at the scale of the other losses of the field.
"""

from __future__ import annotations

import torch


def valid_depth(gt: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Pixels with a usable GT depth: finite and in [min_depth, max_depth] (0 = no depth)."""
    return torch.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, lam: float = 0.85,
               alpha: float = 10.0) -> torch.Tensor:
    """SILog over the valid pixels of the whole batch.

    Args:
        pred: (B, 1, H, W) predicted depth (m, > 0).  gt: (B, 1, H, W) GT depth (m).
        valid: (B, 1, H, W) bool.
    Returns:
        scalar; 0 (with a gradient path) when no pixel is valid.
    """
    if not bool(valid.any()):
        return pred.sum() * 0.0
    g = torch.log(pred[valid]) - torch.log(gt[valid])
    var = (g ** 2).mean() - lam * g.mean() ** 2
    return alpha * torch.sqrt(var.clamp(min=1e-12))
