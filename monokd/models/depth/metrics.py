"""The standard monocular depth metrics (Eigen et al. 2014), per image then averaged.

    AbsRel = mean |d - d*| / d*        RMSE = sqrt(mean (d - d*)^2)   (metres)
    delta1 = fraction of pixels with max(d / d*, d* / d) < 1.25

over the pixels whose GT depth d* lies in [min_depth, max_depth] (KITTI: the 80 m cap).
Each image's metrics are computed over its own valid pixels and the images are averaged,
as in the KITTI depth benchmark and the Eigen-split tables.
"""

from __future__ import annotations

import torch

from monokd.models.depth.losses import valid_depth

METRICS = ("abs_rel", "rmse", "delta1")


@torch.no_grad()
def image_metrics(pred: torch.Tensor, gt: torch.Tensor, min_depth: float, max_depth: float) -> list[dict]:
    """Per image of (B, 1, H, W) pred / gt: {abs_rel, rmse, delta1}; images without a valid
    pixel are skipped."""
    out = []
    for p, g in zip(pred, gt):
        valid = valid_depth(g, min_depth, max_depth)
        if not bool(valid.any()):
            continue
        p, g = p[valid].double().clamp(min=min_depth, max=max_depth), g[valid].double()
        ratio = torch.maximum(p / g, g / p)
        out.append({"abs_rel": float(((p - g).abs() / g).mean()), "rmse": float(((p - g) ** 2).mean().sqrt()),
                    "delta1": float((ratio < 1.25).double().mean())})
    return out


def average(per_image: list[dict]) -> dict:
    """Mean of each metric over images, plus ``images`` (their count)."""
    if not per_image:
        return {"images": 0}
    return {**{k: sum(m[k] for m in per_image) / len(per_image) for k in METRICS}, "images": len(per_image)}
