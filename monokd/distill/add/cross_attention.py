"""ADD's target-aware cross-attention response adapter (Fig. 4).

For decoder layer k, an MLP turns the student's object queries F_v^k into attention queries
q_v^k, and two MLPs turn the teacher's query states T_v^k into keys k_v^k and values v_v^k;
multi-head cross-attention, added to F_v^k (a residual, as in a decoder layer), gives the
adapted student queries F_a^k = F_v^k + CA(q_v^k, k_v^k, v_v^k), compared with T_v^k (Eq. 5).
The teacher side is detached: only the student and the adapter learn.

Why the residual: the values come from the teacher, so without it the student would enter
F_a^k only through the attention weights and the adapter could lower Eq. 5 by copying
teacher values; with it the student's own query states are pulled towards T_v^k as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(dim: int) -> nn.Sequential:
    """The two-layer perceptron used for every projection of ADD's response adapters."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class CrossAttentionAdapter(nn.Module):
    """(B, Q, C) student queries x (B, Q_t, C) teacher queries -> (B, Q, C) F_a."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        if dim % heads:
            raise ValueError(f"CrossAttentionAdapter: dim {dim} not divisible by {heads} heads")
        self.heads = heads
        self.q_mlp, self.k_mlp, self.v_mlp = mlp(dim), mlp(dim), mlp(dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, heads, N, C / heads)."""
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        teacher = teacher.detach()
        attended = F.scaled_dot_product_attention(
            self._split(self.q_mlp(student)), self._split(self.k_mlp(teacher)), self._split(self.v_mlp(teacher)))
        b, q, c = student.shape
        return student + self.out_proj(attended.transpose(1, 2).reshape(b, q, c))
