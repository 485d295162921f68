"""Optimiser and learning-rate schedule (``train.*``): AdamW, linear warm-up, then x gamma at
each milestone epoch. The rate is a pure function of the position in training, so a resumed
run follows the same schedule without any scheduler state."""

from __future__ import annotations

import torch
from torch import nn

from monokd.config import get


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters. With ``train.no_decay_bias`` (MonoDETR's optimiser)
    every parameter whose name contains "bias" (conv/linear biases, attention in_proj_bias,
    norm biases) is in a group without weight decay; otherwise all decay alike."""
    decay = float(get(cfg, "train.weight_decay", 1e-4))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not get(cfg, "train.no_decay_bias", False):
        return torch.optim.AdamW([p for _, p in named], lr=float(get(cfg, "train.lr", 2e-4)), weight_decay=decay)
    groups = [{"params": [p for n, p in named if "bias" not in n], "weight_decay": decay},
              {"params": [p for n, p in named if "bias" in n], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=float(get(cfg, "train.lr", 2e-4)))


def lr_factor(epoch: int, batch_idx: int, batches_per_epoch: int, cfg: dict) -> float:
    """Multiplier of ``train.lr`` at batch ``batch_idx`` of ``epoch``.

    MultiStep: gamma ** (number of milestones <= epoch); warm-up: linear from 1/n to 1 over
    the first ``warmup_epochs`` (may be fractional) epochs' n batches.
    """
    milestones = get(cfg, "train.lr_milestones") or []
    factor = float(get(cfg, "train.lr_gamma", 0.1)) ** sum(epoch >= int(m) for m in milestones)
    warmup_steps = int(round(float(get(cfg, "train.warmup_epochs", 0) or 0) * batches_per_epoch))
    step = epoch * batches_per_epoch + batch_idx
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
