"""Positional encodings of MonoDETR: the 2-D sine encoding of feature cells (DETR) and the
learned depth positional encoding, interpolated between integer metres."""

from __future__ import annotations

import math

import torch
from torch import nn


POSITION_ENCODINGS = ("official", "centred")
_OFFICIAL_EPS = 1e-6  # DETR's PositionEmbeddingSine(normalize=True): cumsum / (last + eps)


def sine_position_encoding(height: int, width: int, channels: int, temperature: float = 10000.0,
                           device=None, dtype=torch.float32, normalisation: str = "centred") -> torch.Tensor:
    """(1, channels, height, width) normalised 2-D sine encoding.

    Half of the channels encode y, half x. Cell i of n has the coordinate

    - ``centred``:  (i + 0.5) / n * 2pi, the cell centre (the maps of every level span the
      same [0, 2pi) range symmetrically);
    - ``official``: (i + 1) / (n + 1e-6) * 2pi, MonoDETR's (DETR's normalised cumulative
      sum of an all-valid mask, without Deformable DETR's -0.5).

    Within each half, channel pairs (2k, 2k+1) are sin and cos of coordinate / temperature^(2k / half).
    """
    if channels % 4:
        raise ValueError(f"sine position encoding needs channels divisible by 4, got {channels}")
    if normalisation not in POSITION_ENCODINGS:
        raise ValueError(f"sine position encoding: {normalisation!r} is not one of {POSITION_ENCODINGS}")
    half = channels // 2
    scale = 2 * math.pi
    y, x = (_cell_coordinates(n, normalisation, device) * scale for n in (height, width))
    dim_t = torch.arange(half, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def encode(coord: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, half)
        angles = coord[:, None] / dim_t
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, half)
    pos_x = encode(x)[None, :, :].expand(height, width, half)
    return torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)[None].to(dtype)


def _cell_coordinates(n: int, normalisation: str, device) -> torch.Tensor:
    """(n,) cell coordinates in [0, 1] (see :func:`sine_position_encoding`)."""
    index = torch.arange(n, device=device, dtype=torch.float32)
    if normalisation == "official":
        return (index + 1) / (n + _OFFICIAL_EPS)
    return (index + 0.5) / n


class DepthPositionalEncoding(nn.Module):
    """Embedding(floor(max_depth) + 1, C) read at a continuous depth by linear interpolation
    between the entries of the integer metres below and above it.

    Forward: depth (B, H, W) metres -> (B, C, H, W); depths are clamped to [0, max_depth]. A
    NaN depth (a diverged network's) has no row to read: its encoding is NaN, so the loss is
    non-finite and the training engine skips the step (``train.max_nonfinite``).
    """

    def __init__(self, channels: int, max_depth: float):
        super().__init__()
        self.max_depth = float(max_depth)
        self.embed = nn.Embedding(int(self.max_depth) + 1, channels)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        # NaN.long() is an arbitrary integer (an index error in the embedding): read row 0 there
        # and give the NaN back to the output, where the loss sees it.
        unknown = depth.isnan()
        depth = depth.masked_fill(unknown, 0.0).clamp(min=0, max=self.max_depth)
        floor = depth.floor()
        frac = (depth - floor)[..., None]
        lower = floor.long()
        upper = (lower + 1).clamp(max=self.embed.num_embeddings - 1)
        out = self.embed(lower) * (1 - frac) + self.embed(upper) * frac
        out = out.masked_fill(unknown[..., None], float("nan"))
        return out.permute(0, 3, 1, 2)
