"""Multi-scale deformable attention against an explicit per-point bilinear reference."""

from __future__ import annotations

import math

import pytest
import torch

from monokd.models.ops.deform_attn import MSDeformAttn, ms_deform_attn

SHAPES = [(6, 8), (3, 4), (2, 2)]


def _bilinear_zero_padded(feature: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """feature (D, H, W); (x, y) in [0, 1] of the map, pixel centres at (i + 0.5) / W."""
    _, height, width = feature.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(feature.shape[0], dtype=feature.dtype)
    for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xi < width and 0 <= yi < height:
                out += wx * wy * feature[:, yi, xi]
    return out


def naive_ms_deform_attn(value, shapes, locations, weights):
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, queries, heads * dim, dtype=value.dtype)
    for n in range(batch):
        for q in range(queries):
            for m in range(heads):
                acc = torch.zeros(dim, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    feature = value[n, starts[lvl]:starts[lvl + 1], m].T.reshape(dim, h, w)
                    for p in range(points):
                        x, y = locations[n, q, m, lvl, p].tolist()
                        acc += weights[n, q, m, lvl, p] * _bilinear_zero_padded(feature, x, y)
                out[n, q, m * dim:(m + 1) * dim] = acc
    return out


def _inputs(seed=0, batch=2, queries=5, heads=2, dim=3, points=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in SHAPES)
    value = torch.randn(batch, total, heads, dim, generator=g, dtype=dtype)
    # Some locations fall outside [0, 1] to exercise the zero padding.
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2, generator=g, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, generator=g, dtype=dtype)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, locations, weights


def test_matches_naive_reference():
    value, locations, weights = _inputs()
    shapes = torch.tensor(SHAPES)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    fast = ms_deform_attn(value, shapes, starts, locations, weights)
    slow = naive_ms_deform_attn(value, SHAPES, locations, weights)
    assert fast.shape == (2, 5, 6)
    assert (fast - slow).abs().max().item() < 1e-5


def test_sampling_a_pixel_centre_returns_that_pixel():
    value, _, _ = _inputs(batch=1, queries=1, heads=1, dim=2, points=1)
    h, w = SHAPES[0]
    locations = torch.zeros(1, 1, 1, len(SHAPES), 1, 2, dtype=torch.float64)
    locations[..., 0, 0, 0] = (3 + 0.5) / w  # column 3
    locations[..., 0, 0, 1] = (2 + 0.5) / h  # row 2
    weights = torch.zeros(1, 1, 1, len(SHAPES), 1, dtype=torch.float64)
    weights[..., 0, 0] = 1.0
    out = ms_deform_attn(value, SHAPES, None, locations, weights)
    assert torch.allclose(out[0, 0], value[0, 2 * w + 3, 0])


def test_gradcheck():
    value, locations, weights = _inputs(batch=1, queries=2, heads=2, dim=2, points=2)
    # Keep samples away from pixel-centre lines, where bilinear sampling has a kink.
    value.requires_grad_(True)
    locations = locations.clamp(0.05, 0.95).requires_grad_(True)
    weights.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, l, a: ms_deform_attn(v, SHAPES, None, l, a),
                                    (value, locations, weights), eps=1e-6, atol=1e-5)


def test_module_init_and_shapes():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    # Deformable DETR's init: zero offset weights, head h's offsets along angle 2*pi*h/4,
    # scaled so the larger component is 1 and point p at distance p + 1; uniform attention.
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    bias = attn.sampling_offsets.bias.view(4, 3, 2, 2)
    assert torch.allclose(bias[1, 0, 0], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.allclose(bias[2, 2, 1], torch.tensor([-2.0, 0.0]), atol=1e-6)
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.bias) == 0
    shapes = torch.tensor(SHAPES)
    memory = torch.randn(2, int(shapes.prod(1).sum()), 16)
    query = torch.randn(2, 7, 16)
    out2 = attn(query, torch.rand(2, 7, 2), memory, shapes)
    box = torch.cat([torch.rand(2, 7, 2), torch.full((2, 7, 4), 0.1)], -1)
    out6 = attn(query, box, memory, shapes)
    assert out2.shape == out6.shape == (2, 7, 16)
    with pytest.raises(ValueError):
        attn(query, torch.rand(2, 7, 4), memory, shapes)


def test_box_reference_scales_offsets_with_half_size():
    """With a box reference, sampling = centre + offset / P * half-size (MonoDETR)."""
    attn = MSDeformAttn(d_model=4, n_levels=1, n_heads=1, n_points=2).double()
    with torch.no_grad():
        attn.value_proj.weight.copy_(torch.eye(4))
        attn.output_proj.weight.copy_(torch.eye(4))
    # A map whose first channel is the x coordinate of the pixel centre: sampling returns x.
    h, w = 4, 8
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    memory = torch.zeros(1, h * w, 4, dtype=torch.float64)
    memory[0, :, 0] = xs.repeat(h)
    # Head 0 offsets are (1, 0) and (2, 0): points at centre + (1/2, 2/2) * half-width.
    box = torch.tensor([[[0.3, 0.5, 0.1, 0.1, 0.2, 0.2]]], dtype=torch.float64)
    out = attn(torch.zeros(1, 1, 4, dtype=torch.float64), box, memory, [(h, w)])
    expected = 0.5 * (0.3 + 0.05) + 0.5 * (0.3 + 0.1)
    assert out[0, 0, 0].item() == pytest.approx(expected, abs=1e-9)
