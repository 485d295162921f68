"""Lets one formula serve numpy arrays and torch tensors alike."""

from __future__ import annotations

import numpy as np


def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def stack(xs, axis: int):
    if is_torch(xs[0]):
        import torch

        return torch.stack(xs, dim=axis)
    return np.stack(xs, axis=axis)


def cat(xs, axis: int):
    if is_torch(xs[0]):
        import torch

        return torch.cat(xs, dim=axis)
    return np.concatenate(xs, axis=axis)


def lib(x):
    """The module (numpy or torch) whose elementwise functions apply to ``x``."""
    if is_torch(x):
        import torch

        return torch
    return np


def atan2(y, x):
    return lib(y).atan2(y, x) if is_torch(y) else np.arctan2(y, x)


def ones_like(x):
    return lib(x).ones_like(x)


def matmul(a, b):
    return a @ b


def swap_last(x):
    """Transpose of the last two axes."""
    return x.transpose(-1, -2) if is_torch(x) else np.swapaxes(x, -1, -2)
