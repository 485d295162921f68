"""ADD's 3D-aware self-attention feature adapter (Fig. 3).

The student feature F^k is flattened into H_k*W_k tokens; queries and keys are the tokens
plus the 3D-aware PE F_emb (values are the plain tokens), so which cells attend to which is
steered by depth. Multi-head attention runs through scaled_dot_product_attention, which
picks a memory-efficient kernel on GPU (MonoDETR's stride-8 level has 7680 tokens).
The attention is added to F^k (a residual, as in any transformer layer), so the adapter
starts close to the identity and F_3d^k = F^k + Attn(F^k + F_emb, F^k + F_emb, F^k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monokd.distill.add.pos_encoding import DepthPositionalEncoding


class SelfAttentionAdapter(nn.Module):
    """(B, C, H, W) student feature [+ (B, 1, h, w) depth] -> (B, C, H, W) F_3d."""

    def __init__(self, channels: int, heads: int = 8, pos_encoding: DepthPositionalEncoding | None = None):
        super().__init__()
        if channels % heads:
            raise ValueError(f"SelfAttentionAdapter: {channels} channels not divisible by {heads} heads")
        self.heads = heads
        self.pos_encoding = pos_encoding
        self.q_proj = nn.Linear(channels, channels)
        self.k_proj = nn.Linear(channels, channels)
        self.v_proj = nn.Linear(channels, channels)
        self.out_proj = nn.Linear(channels, channels)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, heads, N, C / heads)."""
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, feature: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = feature.shape
        tokens = feature.flatten(2).transpose(1, 2)  # (B, HW, C)
        query_key = tokens
        if self.pos_encoding is not None:
            if depth is None:
                raise ValueError("SelfAttentionAdapter: a positional encoding needs a depth map")
            query_key = tokens + self.pos_encoding(depth, (h, w))
        attended = F.scaled_dot_product_attention(
            self._split(self.q_proj(query_key)), self._split(self.k_proj(query_key)), self._split(self.v_proj(tokens)))
        attended = self.out_proj(attended.transpose(1, 2).reshape(b, h * w, c))
        return feature + attended.transpose(1, 2).reshape(b, c, h, w)
