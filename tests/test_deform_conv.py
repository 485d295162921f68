"""Deformable convolution against nn.functional.conv2d (zero offsets) and a direct loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monokd.models.ops.deform_conv import DeformConv2d, deform_conv2d


def _bilinear(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """feature (C, H, W) at pixel coordinates (y, x), corners outside the map read as zero."""
    _, height, width = feature.shape
    y0, x0 = math.floor(y), math.floor(x)
    out = torch.zeros(feature.shape[0], dtype=feature.dtype)
    for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yi < height and 0 <= xi < width:
                out += wy * wx * feature[:, yi, xi]
    return out


def loop_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask, groups):
    """y[n, o, i, j] = b_o + sum_{c, k} w[o, c, k] * m_k * x[n, c](p0 + p_k + dp_k), one read at a time."""
    batch, channels, _, _ = x.shape
    out_channels, c_per_group, kh, kw = weight.shape
    _, _, out_h, out_w = offset.shape
    kernel = kh * kw
    offset_groups = offset.shape[1] // (2 * kernel)
    out = torch.zeros(batch, out_channels, out_h, out_w, dtype=x.dtype)
    for n in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for o in range(out_channels):
                    g = o // (out_channels // groups)
                    acc = torch.zeros((), dtype=x.dtype) if bias is None else bias[o].clone()
                    for c_local in range(c_per_group):
                        c = g * c_per_group + c_local
                        og = c // (channels // offset_groups)
                        for a in range(kh):
                            for b in range(kw):
                                k = a * kw + b
                                dy = offset[n, 2 * (og * kernel + k), i, j].item()
                                dx = offset[n, 2 * (og * kernel + k) + 1, i, j].item()
                                y = i * stride - padding + a * dilation + dy
                                xx = j * stride - padding + b * dilation + dx
                                value = _bilinear(x[n, c:c + 1], y, xx)[0]
                                if mask is not None:
                                    value = value * mask[n, og * kernel + k, i, j]
                                acc = acc + weight[o, c_local, a, b] * value
                    out[n, o, i, j] = acc
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 2, 2, 2), (1, 0, 1, 1)])
def test_zero_offsets_equal_conv2d(stride, padding, dilation, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    weight = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    offset = torch.zeros(2, 2 * 9, *expected.shape[-2:], dtype=torch.float64)
    got = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, groups=groups)
    torch.testing.assert_close(got, expected)
    # an all-ones mask is the unmodulated layer
    ones = torch.ones(2, 9, *expected.shape[-2:], dtype=torch.float64)
    torch.testing.assert_close(deform_conv2d(x, offset, weight, bias, stride, padding, dilation, ones, groups), expected)


@pytest.mark.parametrize("stride,padding,dilation,groups,offset_groups,modulated", [
    (1, 1, 1, 1, 1, False), (1, 1, 2, 1, 2, True), (2, 1, 1, 2, 1, True)])
def test_random_offsets_match_loop(stride, padding, dilation, groups, offset_groups, modulated):
    torch.manual_seed(1)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    weight = torch.randn(4, 4 // groups, 3, 3, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    out_h = (6 + 2 * padding - dilation * 2 - 1) // stride + 1
    out_w = (5 + 2 * padding - dilation * 2 - 1) // stride + 1
    # offsets up to +-3 px: reads fall between pixels, across the border and fully outside
    offset = 3 * (2 * torch.rand(2, 2 * offset_groups * 9, out_h, out_w, dtype=torch.float64) - 1)
    mask = torch.rand(2, offset_groups * 9, out_h, out_w, dtype=torch.float64) if modulated else None
    got = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask, groups)
    expected = loop_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask, groups)
    torch.testing.assert_close(got, expected)


def test_integer_offset_shifts_the_read():
    """dx = +1 everywhere reads one pixel to the right: a 1x1 kernel becomes a left shift."""
    x = torch.arange(12.0).view(1, 1, 3, 4)
    offset = torch.zeros(1, 2, 3, 4)
    offset[:, 1] = 1.0
    got = deform_conv2d(x, offset, torch.ones(1, 1, 1, 1))
    expected = torch.cat([x[..., 1:], torch.zeros(1, 1, 3, 1)], dim=-1)
    torch.testing.assert_close(got, expected)


def test_layer_starts_as_conv_and_learns_offsets():
    torch.manual_seed(2)
    layer = DeformConv2d(4, 5, 3, padding=1, modulated=True)
    x = torch.randn(2, 4, 8, 8)
    # untrained: regular grid, mask sigmoid(0) = 1/2
    expected = F.conv2d(x, layer.weight * 0.5, None, 1, 1) + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)
    layer(x).square().sum().backward()
    assert layer.offset_conv.weight.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0
