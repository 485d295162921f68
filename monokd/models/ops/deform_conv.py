"""Deformable convolution (DCNv1, Dai et al. 2017; DCNv2 with modulation, Zhu et al. 2019)
in plain PyTorch.

For an output cell p0 and kernel point p_k (the ordinary dilated grid), the input is read at
p0 * stride - padding + p_k + dp_k, bilinearly, and (v2) scaled by a mask m_k in [0, 1]:

    y(p0) = sum_k w_k * m_k * x(p0 * stride - padding + p_k + dp_k)       (DCNv2, Eq. 3)

The offsets dp_k = (dy, dx) in input pixels are predicted by an ordinary convolution over
the same input (zero-initialised, so an untrained layer is an ordinary convolution). All
K = kh * kw reads of all output cells are one ``grid_sample`` (zeros outside the map, as the
CUDA kernels do), then one grouped matrix product with the weights: no custom kernel, so it
runs wherever PyTorch runs (CPU, CUDA, MPS, ONNX export).

Offset layout (torchvision's and mmcv's): ``offset[:, 2 * (g * K + k)]`` is dy and
``offset[:, 2 * (g * K + k) + 1]`` is dx of kernel point k (row-major over kh, kw) for offset
group g; ``mask[:, g * K + k]`` its modulation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride=1, padding=0, dilation=1,
                  mask: torch.Tensor | None = None, groups: int = 1) -> torch.Tensor:
    """Deformable convolution.

    Args:
        input: (N, C_in, H, W).
        offset: (N, 2 * G * kh * kw, H_out, W_out), (dy, dx) pairs in input pixels; G (the
            offset groups) divides C_in and is read from the shape.
        weight: (C_out, C_in / groups, kh, kw). bias: (C_out,) or None.
        stride, padding, dilation: int or (h, w) pairs, as in ``nn.functional.conv2d``.
        mask: (N, G * kh * kw, H_out, W_out) modulation (DCNv2), or None (DCNv1).
        groups: convolution groups (divides C_in and C_out).
    Returns:
        (N, C_out, H_out, W_out); with zero offsets and no mask it equals ``F.conv2d``.
    """
    batch, channels, height, width = input.shape
    out_channels, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    kernel = kh * kw
    offset_groups = offset.shape[1] // (2 * kernel)
    if offset.shape[1] != 2 * offset_groups * kernel or offset_groups == 0 or channels % offset_groups:
        raise ValueError(f"deform_conv2d: offset has {offset.shape[1]} channels; expected 2 * G * {kernel} "
                         f"with G dividing C_in = {channels}")
    if tuple(offset.shape[-2:]) != (out_h, out_w):
        raise ValueError(f"deform_conv2d: offset is {tuple(offset.shape[-2:])} spatially, output is {(out_h, out_w)}")
    if mask is not None and mask.shape[1] != offset_groups * kernel:
        raise ValueError(f"deform_conv2d: mask has {mask.shape[1]} channels, expected {offset_groups * kernel}")

    # Sampling positions (N, G, K, H_out, W_out) in input pixels, y and x.
    dtype, device = input.dtype, input.device
    ky, kx = torch.meshgrid(torch.arange(kh, device=device, dtype=dtype) * dh,
                            torch.arange(kw, device=device, dtype=dtype) * dw, indexing="ij")
    oy = torch.arange(out_h, device=device, dtype=dtype) * sh - ph
    ox = torch.arange(out_w, device=device, dtype=dtype) * sw - pw
    offset = offset.view(batch, offset_groups, kernel, 2, out_h, out_w)
    ys = oy.view(1, 1, 1, -1, 1) + ky.reshape(1, 1, -1, 1, 1) + offset[:, :, :, 0]
    xs = ox.view(1, 1, 1, 1, -1) + kx.reshape(1, 1, -1, 1, 1) + offset[:, :, :, 1]
    # grid_sample's align_corners=False convention: pixel i spans [i, i + 1) of [0, W).
    grid = torch.stack(((2 * xs + 1) / width - 1, (2 * ys + 1) / height - 1), dim=-1)
    grid = grid.view(batch * offset_groups, kernel * out_h, out_w, 2)
    per_group = input.reshape(batch * offset_groups, channels // offset_groups, height, width)
    sampled = F.grid_sample(per_group, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.view(batch, offset_groups, channels // offset_groups, kernel, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask.view(batch, offset_groups, 1, kernel, out_h, out_w)

    # Columns (N, groups, C_in / groups * K, L) times weights (groups, C_out / groups, C_in / groups * K).
    columns = sampled.reshape(batch, groups, channels // groups * kernel, out_h * out_w)
    weights = weight.reshape(groups, out_channels // groups, -1)
    out = torch.einsum("gok,bgkl->bgol", weights, columns).reshape(batch, out_channels, out_h, out_w)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """A deformable convolution layer that predicts its own offsets (and masks if modulated).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as in
            ``nn.Conv2d``.
        offset_groups: G, input channel groups sharing one set of offsets.
        modulated: DCNv2 (a sigmoid mask per kernel point) instead of DCNv1.
        zero_offsets: the offset convolution starts at zero (an untrained layer reads the regular
            grid); False keeps ``nn.Conv2d``'s initialisation (MonoTAKD's released DConv).
        offset_bias: the offset convolution has a bias.
    Forward:
        x (N, C_in, H, W) -> (N, C_out, H_out, W_out).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1,
                 dilation=1, groups: int = 1, offset_groups: int = 1, bias: bool = True,
                 modulated: bool = True, zero_offsets: bool = True, offset_bias: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups or in_channels % offset_groups:
            raise ValueError(f"DeformConv2d: groups={groups} / offset_groups={offset_groups} must divide "
                             f"in_channels={in_channels} (and groups out_channels={out_channels})")
        kh, kw = _pair(kernel_size)
        self.stride, self.padding, self.dilation, self.groups = _pair(stride), _pair(padding), _pair(dilation), groups
        self.modulated = modulated
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's initialisation
        per_point = 3 if modulated else 2
        # Offsets (and mask logits) from an ordinary conv with the same geometry; zero at init,
        # an untrained layer reads the regular grid (and, modulated, at half weight).
        self.offset_conv = nn.Conv2d(in_channels, per_point * offset_groups * kh * kw, (kh, kw),
                                     stride=stride, padding=padding, dilation=dilation, bias=offset_bias)
        if zero_offsets:
            nn.init.zeros_(self.offset_conv.weight)
            if offset_bias:
                nn.init.zeros_(self.offset_conv.bias)
        self._offset_channels = 2 * offset_groups * kh * kw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = self.offset_conv(x)
        offset, mask = predicted[:, :self._offset_channels], None
        if self.modulated:
            mask = predicted[:, self._offset_channels:].sigmoid()
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation,
                             mask, self.groups)
