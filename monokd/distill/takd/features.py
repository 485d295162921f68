"""BEV feature helpers shared by IMD and CMRD: finite masks and the optional min-max normalisation.

A NaN or inf anywhere in a teacher or TA feature (from a NaN-padded depth map, MonoTAKD
issue #7) must never reach a loss: every feature loss compares only cells where both sides
are finite and replaces the others by zero before the arithmetic, so even their gradient is 0.
"""

from __future__ import annotations

import torch

NORMALIZE = ("none", "minmax")
_EPS = 1e-6  # a constant map normalises to 0 instead of 0/0


def minmax(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) scaled per sample to [0, 1] over its finite values (the released code's
    ``normalize_`` does this over the whole batch and detaches it)."""
    finite = torch.isfinite(x)
    flat = torch.where(finite, x, torch.zeros_like(x)).flatten(1)
    big = torch.finfo(x.dtype).max
    low = torch.where(finite.flatten(1), flat, torch.full_like(flat, big)).amin(1)
    high = torch.where(finite.flatten(1), flat, torch.full_like(flat, -big)).amax(1)
    low, high = low.view(-1, 1, 1, 1), high.view(-1, 1, 1, 1)
    return torch.where(finite, (x - low) / (high - low).clamp_min(_EPS), x)


def batch_minmax(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) scaled to [0, 1] by the minimum and maximum of its finite values over the
    whole batch (the released code's ``normalize_``; it is taken per sample by ``minmax``)."""
    finite = torch.isfinite(x)
    if not bool(finite.any()):
        return x
    values = x[finite]
    low, high = values.min(), values.max()
    return torch.where(finite, (x - low) / (high - low).clamp_min(_EPS), x)


def normalized(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` as is (``none``) or min-max normalised per sample (``minmax``)."""
    if mode not in NORMALIZE:
        raise ValueError(f"normalize: {mode!r} is not one of {NORMALIZE}")
    return minmax(x) if mode == "minmax" else x


def masked_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the elements where both tensors are finite (0 if none is).

    Args:
        prediction: (B, C, H, W), carries the gradient. target: same shape, detached by the caller.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"feature loss: prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}")
    valid = torch.isfinite(prediction) & torch.isfinite(target)
    diff = torch.where(valid, prediction, torch.zeros_like(prediction)) - torch.where(valid, target, torch.zeros_like(target))
    return diff.square().sum() / valid.sum().clamp_min(1)
