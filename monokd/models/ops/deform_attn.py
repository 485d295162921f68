"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

Each query attends, per head, to ``n_points`` sampled locations on each of ``n_levels``
feature maps around its reference point; the samples are bilinear (``grid_sample``,
align_corners=False, zeros outside the map) and mixed by softmax weights predicted from the
query. No custom kernel: it runs wherever PyTorch runs (CPU, CUDA, MPS, ONNX export).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn(value: torch.Tensor, spatial_shapes, level_start_index: torch.Tensor | None,
                   sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """The sampling-and-weighting core.

    Args:
        value: (N, S, M, D) values of all levels flattened, S = sum_l H_l * W_l, M heads.
        spatial_shapes: (L, 2) (H_l, W_l), a LongTensor or a list of pairs.
        level_start_index: (L,) offsets of each level in S (implied by spatial_shapes; kept
            for the reference signature).
        sampling_locations: (N, Lq, M, L, P, 2) x, y in [0, 1] of each level's map
            (0 = left/top edge, 1 = right/bottom edge).
        attention_weights: (N, Lq, M, L, P), normalised over L * P by the caller.
    Returns:
        (N, Lq, M * D).
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in (spatial_shapes.tolist() if torch.is_tensor(spatial_shapes) else spatial_shapes)]
    value_levels = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] convention
    sampled = []
    for level, (height, width) in enumerate(shapes):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        value_l = value_levels[level].flatten(2).transpose(1, 2).reshape(batch * heads, head_dim, height, width)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N*M, D, Lq, L*P) weighted by (N*M, 1, Lq, L*P)
    stacked = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (stacked * weights).sum(-1).view(batch, heads * head_dim, queries)
    return out.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module.

    Args:
        d_model: channels C. n_levels: L. n_heads: M. n_points: P per head and level.
    Forward:
        query (N, Lq, C); reference_points (N, Lq, [L,] 2) normalised x, y, or (N, Lq, [L,] 6)
        MonoDETR boxes (x, y, l, r, t, b) normalised; value_input (N, S, C); spatial_shapes
        (L, 2) tensor or list of (H, W); level_start_index (L,); padding_mask (N, S) bool,
        True = padding, or None.
        Returns (N, Lq, C).
    With a 2-D reference the offsets are in cells of each level; with a box reference they are
    in units of the box's half-size divided by P, so the sampling pattern scales with the object.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: head h starts sampling along direction 2*pi*h/M, point p at
        distance p+1 (cells); uniform attention over all samples."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value_input: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, queries, _ = query.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], heads, self.d_model // heads)
        offsets = self.sampling_offsets(query).view(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, queries, heads, levels, points)
        if reference_points.dim() == 3:  # same reference on every level
            reference_points = reference_points[:, :, None].expand(-1, -1, levels, -1)
        ref = reference_points[:, :, None, :, None, :]  # (N, Lq, 1, L, 1, 2|6)
        if reference_points.shape[-1] == 2:
            shapes = torch.as_tensor(spatial_shapes, device=query.device)
            normaliser = torch.stack([shapes[:, 1], shapes[:, 0]], -1).to(query.dtype)
            locations = ref + offsets / normaliser[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 6:
            half_size = 0.5 * (ref[..., 2::2] + ref[..., 3::2])  # ((l + r) / 2, (t + b) / 2)
            locations = ref[..., :2] + offsets / points * half_size
        else:
            raise ValueError(f"reference_points must end in 2 or 6 values, got {tuple(reference_points.shape)}")
        out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights)
        return self.output_proj(out)
