"""MonoDETR's depth-aware transformer: depth encoder, visual encoder and depth-aware decoder.

All layers are post-norm (residual, dropout, LayerNorm after each sub-layer) as in DETR.

- Depth encoder: one standard self-attention layer over the stride-16 depth features.
- Visual encoder: multi-scale deformable self-attention over all levels' cells.
- Decoder layer: depth cross-attention (content queries attend to the depth embedding) ->
  query self-attention -> deformable cross-attention to the visual memory -> FFN.
- Iterative box refinement: after each decoder layer an MLP predicts the 6-D box
  (x3d, y3d, l, r, t, b) as a delta in inverse-sigmoid space to the layer's reference, which,
  detached, is the next layer's reference. The first reference is 2-D (from the query's
  positional embedding), later ones are boxes that scale the deformable sampling pattern.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from monokd.models.monodetr.heads import MLP, inverse_sigmoid
from monokd.models.ops.deform_attn import MSDeformAttn
from monokd.models.ops.full_precision import full_precision


class FFN(nn.Module):
    """Post-norm feed-forward sub-layer: x + Dropout(W2 Dropout(ReLU(W1 x))) -> LayerNorm."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout2(self.linear2(self.dropout1(F.relu(self.linear1(x))))))


class DepthEncoderLayer(nn.Module):
    """Self-attention over the depth features. Forward: src, pos (B, S, C) -> (B, S, C)."""

    def __init__(self, d_model: int, nheads: int, d_ffn: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = k = src + pos
        src = self.norm(src + self.dropout(self.self_attn(q, k, src, need_weights=False)[0]))
        return self.ffn(src)


class VisualEncoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, nheads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, nheads, n_points)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        return self.ffn(self.norm(src + self.dropout(attn)))


class VisualEncoder(nn.Module):
    """Forward: src, pos (B, S, C) of all levels flattened -> memory (B, S, C)."""

    def __init__(self, layer: VisualEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = _clones(layer, num_layers)

    @staticmethod
    def reference_points(spatial_shapes: list[tuple[int, int]], device) -> torch.Tensor:
        """(S, 2) normalised x, y of every cell centre, levels concatenated."""
        points = []
        for height, width in spatial_shapes:
            y, x = torch.meshgrid((torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height,
                                  (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width,
                                  indexing="ij")
            points.append(torch.stack([x.flatten(), y.flatten()], -1))
        return torch.cat(points, 0)

    def forward(self, src, pos, spatial_shapes, level_start_index):
        ref = self.reference_points(spatial_shapes, src.device)[None].expand(src.shape[0], -1, -1).to(src.dtype)
        for layer in self.layers:
            src = layer(src, pos, ref, spatial_shapes, level_start_index)
        return src


class DepthAwareDecoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, nheads: int, n_points: int):
        super().__init__()
        self.cross_attn_depth = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.dropout_depth = nn.Dropout(dropout)
        self.norm_depth = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.dropout_self = nn.Dropout(dropout)
        self.norm_self = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model, n_levels, nheads, n_points)
        self.dropout_cross = nn.Dropout(dropout)
        self.norm_cross = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, level_start_index, depth_memory):
        """tgt, query_pos (B, Q, C); reference_points (B, Q, 2|6); memory (B, S, C);
        depth_memory (B, S_d, C) = depth embedding + depth positional encoding."""
        attn = self.cross_attn_depth(tgt, depth_memory, depth_memory, need_weights=False)[0]
        tgt = self.norm_depth(tgt + self.dropout_depth(attn))
        q = k = tgt + query_pos
        tgt = self.norm_self(tgt + self.dropout_self(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attn = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes, level_start_index)
        tgt = self.norm_cross(tgt + self.dropout_cross(attn))
        return self.ffn(tgt)


class DepthAwareDecoder(nn.Module):
    """Decoder with iterative 6-D box refinement.

    Forward: tgt, query_pos (B, Q, C), memory (B, S, C), spatial_shapes, level_start_index,
    depth_memory (B, S_d, C) -> hs (L, B, Q, C) and boxes (L, B, Q, 6) sigmoid-normalised
    (x3d, y3d, l, r, t, b), with gradient; only the references passed on are detached.
    """

    def __init__(self, layer: DepthAwareDecoderLayer, num_layers: int, d_model: int):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.reference_points = nn.Linear(d_model, 2)
        box_embed = MLP(d_model, d_model, 6, 3)
        self.box_embed = _clones(box_embed, num_layers)
        # Start with small 2-D boxes (sigmoid(-2) = 0.12 of the image per side), as MonoDETR.
        nn.init.constant_(self.box_embed[0].layers[-1].bias[2:], -2.0)

    def forward(self, tgt, query_pos, memory, spatial_shapes, level_start_index, depth_memory):
        # The references and boxes stay fp32 under autocast (monokd.models.ops.full_precision):
        # refined layer after layer, bf16 rounding would accumulate in them.
        with full_precision(query_pos):
            reference = self.reference_points(query_pos.float()).sigmoid()  # (B, Q, 2)
        states, boxes = [], []
        for index, layer in enumerate(self.layers):
            tgt = layer(tgt, query_pos, reference, memory, spatial_shapes, level_start_index, depth_memory)
            with full_precision(tgt):
                box = self.refine(index, tgt.float(), reference)
            reference = box.detach()
            states.append(tgt)
            boxes.append(box)
        return torch.stack(states), torch.stack(boxes)

    def refine(self, index: int, tgt: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, Q, 6) box of layer ``index``: sigmoid(box_embed(tgt) + inverse_sigmoid(reference)),
        a 2-D reference (B, Q, 2) moving only the centre."""
        delta = self.box_embed[index](tgt)
        if reference.shape[-1] == 2:
            return torch.cat([delta[..., :2] + inverse_sigmoid(reference), delta[..., 2:]], -1).sigmoid()
        return (delta + inverse_sigmoid(reference)).sigmoid()


def reset_transformer_parameters(*modules: nn.Module) -> None:
    """Deformable DETR's init: Xavier for every matrix, then the deformable attention's own."""
    for module in modules:
        for param in module.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        for sub in module.modules():
            if isinstance(sub, MSDeformAttn):
                sub.reset_parameters()


def _clones(module: nn.Module, count: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(count))
