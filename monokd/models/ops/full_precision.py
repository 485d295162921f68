"""Regions of a model that run in fp32 under mixed-precision autocast.

bf16 keeps 8 bits of mantissa: a sigmoid-normalised box coordinate in [0.5, 1) is rounded to
2^-9 of the image (0.6 px of a 320-px input, 2.4 px of KITTI's 1242), a depth of 40 m to
0.25 m. Where such a value decides a discrete choice (the nearest cell of a GT depth map) or is
refined layer after layer (the decoder's boxes), the rounding is an error the network cannot
learn away; the few small layers that produce those values cost little in fp32.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def full_precision(like: torch.Tensor):
    """Autocast off on ``like``'s device inside the block (a no-op outside autocast): ops run
    in the dtype of their inputs, so cast them with ``.float()`` on entry."""
    with torch.autocast(device_type=like.device.type, enabled=False):
        yield
