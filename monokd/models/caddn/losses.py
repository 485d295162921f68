"""CaDDN's depth distribution loss (Reading et al., CVPR 2021, Eq. 3).

    L_depth = w / |pixels| * sum_{pixels} a_p * FL(P_p, bin*_p)
    FL(P, k) = -alpha (1 - P_k)^gamma log P_k                      (focal loss, alpha 0.25, gamma 2)
    a_p = fg_weight inside a GT 2-D box (at the feature stride), bg_weight elsewhere  (13, 1)

The target bin*_p is the LID bin of the block mean of the valid pixel-wise depths
(monokd.models.caddn.frustum.depth_bin_targets): no depth, or beyond the range, is the extra
class D, as in CaDDN (whose completed depth maps leave only the sky without depth).
The foreground rule is monokd.geometry.depth's (the cells a 2-D box covers), the same as ADD's
image-level masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monokd.geometry.depth import foreground_mask
from monokd.models.caddn.frustum import depth_bin_targets

DEFAULTS = {"weight": 3.0, "alpha": 0.25, "gamma": 2.0, "fg_weight": 13.0, "bg_weight": 1.0}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """(B, K, h, w) logits, (B, h, w) long classes -> (B, h, w) per-pixel focal loss."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    return -alpha * (1 - log_p.exp()).pow(gamma) * log_p


def depth_loss(logits: torch.Tensor, depth_maps: torch.Tensor, targets: list[dict], stride: int,
               bins: dict, cfg: dict | None = None) -> torch.Tensor:
    """L_depth for (B, D + 1, h, w) logits given the batch's (B, 1, H, W) depth maps (metres)
    and its targets' ``boxes_2d`` (input pixels)."""
    cfg = {**DEFAULTS, **(cfg or {})}
    size = tuple(logits.shape[-2:])
    target = depth_bin_targets(depth_maps.to(logits.device), size, bins["num_bins"], bins["min"], bins["max"])
    fg = torch.stack([foreground_mask(t["boxes_2d"].to(logits.device), size, stride) for t in targets])
    weights = torch.where(fg, torch.full_like(fg, cfg["fg_weight"], dtype=logits.dtype),
                          torch.full_like(fg, cfg["bg_weight"], dtype=logits.dtype))
    loss = focal_loss(logits, target, cfg["alpha"], cfg["gamma"])
    return cfg["weight"] * (weights * loss).sum() / target.numel()
