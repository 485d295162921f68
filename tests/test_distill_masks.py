"""ADD building blocks: masks, 3D-aware PE, balanced losses, adapters' shapes."""

import pytest
import torch

from monokd.distill.add.cross_attention import CrossAttentionAdapter
from monokd.distill.add.losses import balanced_mse
from monokd.distill.add.masks import feature_masks, gt_depth_maps, query_mask
from monokd.distill.add.pos_encoding import DepthPositionalEncoding, DepthQuantizer
from monokd.distill.add.self_attention import SelfAttentionAdapter

torch.set_num_threads(1)


def _target(boxes, depth):
    return {"boxes_2d": torch.tensor(boxes, dtype=torch.float32), "depth": torch.tensor(depth, dtype=torch.float32)}


def test_feature_masks_at_several_strides():
    targets = [_target([[4.0, 4.0, 20.0, 16.0]], [10.0]), _target([], [])]
    targets[1]["boxes_2d"] = torch.zeros(0, 4)
    # stride 4: cells x floor(1)..ceil(5) -> columns 1..4, rows 1..3 on an 8 x 16 grid
    m4 = feature_masks(targets, (8, 16), 4)
    assert m4.shape == (2, 8, 16) and m4.dtype == torch.bool
    expected = torch.zeros(8, 16, dtype=torch.bool)
    expected[1:4, 1:5] = True
    assert torch.equal(m4[0], expected)
    assert not m4[1].any()
    # stride 8: x 0.5..2.5 -> columns 0..2, y 0.5..2 -> rows 0..1
    m8 = feature_masks(targets, (4, 8), 8)
    expected = torch.zeros(4, 8, dtype=torch.bool)
    expected[0:2, 0:3] = True
    assert torch.equal(m8[0], expected)
    # stride 16: x 0.25..1.25 -> columns 0..1, y 0.25..1 -> row 0
    m16 = feature_masks(targets, (2, 4), 16)
    assert m16[0].nonzero().tolist() == [[0, 0], [0, 1]]


def test_gt_depth_maps_nearer_object_wins():
    targets = [_target([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 24.0, 24.0]], [30.0, 10.0])]
    depth = gt_depth_maps(targets, (4, 4), 8)
    assert depth.shape == (1, 1, 4, 4)
    assert depth[0, 0, 0, 0] == 30.0 and depth[0, 0, 1, 1] == 10.0  # overlap: the 10 m object
    assert depth[0, 0, 2, 2] == 10.0 and depth[0, 0, 3, 3] == 0.0 and depth[0, 0, 0, 3] == 0.0


def test_query_mask_marks_matched_queries():
    mask = query_mask([(torch.tensor([3, 0]), torch.tensor([0, 1])), (torch.zeros(0, dtype=torch.long), torch.zeros(0))], 5)
    assert mask.tolist() == [[True, False, False, True, False], [False] * 5]
    with pytest.raises(ValueError, match="query index 5"):
        query_mask([(torch.tensor([5]), torch.tensor([0]))], 5)


def test_quantizer_bins_depth_uniformly():
    quantizer = DepthQuantizer(depth_channels=6, depth_max=60.0)
    depth = torch.tensor([0.0, 5.0, 9.9, 10.5, 25.0, 59.0, 80.0]).view(1, 1, 1, -1)
    index = quantizer(depth, (1, 7)).argmax(dim=1).flatten().tolist()
    # 10 m bins: (0,10] -> 0, (10,20] -> 1, ... ; beyond depth_max clamps to the last bin
    assert index == [0, 0, 0, 1, 2, 5, 5]
    assert not any(p.requires_grad for p in quantizer.parameters())


def test_positional_encoding_shapes_and_depth_dependence():
    torch.manual_seed(0)
    pe = DepthPositionalEncoding(channels=16, depth_channels=8, embed_dim=12, depth_max=40.0)
    near = torch.full((2, 1, 4, 6), 3.0)
    far = torch.full((2, 1, 4, 6), 33.0)
    out_near, out_far = pe(near, (4, 6)), pe(far, (4, 6))
    assert out_near.shape == (2, 24, 16)
    assert not torch.allclose(out_near, out_far)
    # a coarser depth map is resized bilinearly to the level
    assert pe(torch.full((2, 1, 2, 3), 3.0), (4, 6)).shape == (2, 24, 16)
    assert torch.allclose(pe(torch.full((2, 1, 2, 3), 3.0), (4, 6)), out_near)
    # the index follows the depth cell by cell
    mixed = near.clone()
    mixed[:, :, :2] = 33.0
    index = pe.index(mixed, (4, 6))
    assert (index[:, :2] == 6).all() and (index[:, 2:] == 0).all()


def test_self_attention_adapter_uses_the_depth():
    torch.manual_seed(0)
    adapter = SelfAttentionAdapter(16, heads=4, pos_encoding=DepthPositionalEncoding(16, 8, 12, 40.0))
    feature = torch.randn(2, 16, 4, 6)
    depth = torch.rand(2, 1, 4, 6) * 40
    out = adapter(feature, depth)
    assert out.shape == feature.shape
    assert not torch.allclose(out, adapter(feature, depth.flip(-1)))
    with pytest.raises(ValueError, match="depth map"):
        adapter(feature)
    plain = SelfAttentionAdapter(16, heads=4)
    assert plain(feature).shape == feature.shape


def test_cross_attention_adapter_shapes():
    adapter = CrossAttentionAdapter(16, heads=4)
    student, teacher = torch.randn(2, 6, 16, requires_grad=True), torch.randn(2, 6, 16, requires_grad=True)
    out = adapter(student, teacher)
    assert out.shape == (2, 6, 16)
    out.sum().backward()
    assert student.grad is not None and teacher.grad is None  # the teacher side is detached


def test_balanced_mse_hand_computed():
    student = torch.zeros(1, 2, 2, 2)
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[0, :, 0, 0] = 2.0  # fg cell, error 4 per channel
    teacher[0, :, 1, 1] = 1.0  # bg cell, error 1 per channel
    fg = torch.zeros(1, 2, 2, dtype=torch.bool)
    fg[0, 0, 0] = True
    # fg: 8 / (1 cell * 2 ch) = 4 ; bg: 2 / (3 cells * 2 ch) = 1/3
    assert torch.isclose(balanced_mse(student, teacher, fg, 1.0, 0.1), torch.tensor(4.0 + 0.1 / 3))
    # (B, Q, C) layout and an empty foreground
    s, t = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    assert torch.isclose(balanced_mse(s, t, torch.zeros(1, 3, dtype=torch.bool), 1.0, 0.5), torch.tensor(0.5))
    with pytest.raises(ValueError):
        balanced_mse(s, torch.ones(1, 4, 2), torch.zeros(1, 3, dtype=torch.bool), 1.0, 0.5)
