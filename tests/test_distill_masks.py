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


# --- BEV and "given" levels ------------------------------------------------------------------
from monokd.distill.add.masks import bev_feature_masks, bev_gt_depth_maps, level_mask_and_depth  # noqa: E402
from monokd.models.contract import DistillSignals, DistillSpec  # noqa: E402
from monokd.geometry.grid import BEVGrid  # noqa: E402

# LiDAR x forward, y left, z up -> rect x right, y down, z forward
LIDAR_TO_RECT = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
MIRROR = torch.diag(torch.tensor([-1.0, 1, 1, 1]))
GRID = BEVGrid((0, -4, -2, 8, 4, 2), (0.5, 0.5, 4))  # 16 x 16 cells of 0.5 m


def _box(x, y, length, width, heading, mirrored=False):
    """A target row from a LiDAR-frame footprint (centre at LiDAR z = 0, height 1.5)."""
    h = 1.5
    rx, ry_ = (y if mirrored else -y), -math.pi / 2 - heading  # length axis (cos ry, 0, -sin ry) in rect
    if mirrored:
        ry_ = math.pi - ry_
    return [rx, h / 2, x], [h, width, length], ry_, x


def _bev_targets(boxes, mirrored=False):
    rows = [_box(*b, mirrored=mirrored) for b in boxes]
    return {"location": torch.tensor([r[0] for r in rows]), "dims": torch.tensor([r[1] for r in rows]),
            "rotation_y": torch.tensor([r[2] for r in rows]), "depth": torch.tensor([r[3] for r in rows]),
            "boxes_2d": torch.zeros(len(rows), 4)}


import math  # noqa: E402

BOXES = [(3.0, 1.0, 2.2, 1.2, 0.0),          # A: x 1.9..4.1, y 0.4..1.6, 3 m
         (4.5, 1.0, 2.0, 1.0, 0.0),          # C: x 3.5..5.5, y 0.5..1.5, farther, overlaps A at x 3.75
         (6.1, -2.1, 0.3, 0.2, math.pi / 2)]  # B: smaller than a cell at stride 4


def test_bev_masks_and_depth_from_hand_placed_boxes():
    targets = [_bev_targets(BOXES)]
    depth = bev_gt_depth_maps(targets, LIDAR_TO_RECT[None], GRID, 1, (16, 16))[0, 0]
    expected = torch.zeros(16, 16)
    expected[9:11, 7:11] = 4.5   # C: cell centres x 3.75 .. 5.25 (columns 7-10), y 0.75, 1.25 (rows 9-10)
    expected[9:11, 4:8] = 3.0    # A over C where they overlap (column 7): the nearer object wins
    expected[3, 12] = 6.1        # B: no cell centre inside, the cell holding its centre (x 6.1, y -2.1)
    assert torch.equal(depth, expected)
    # stride 2 (1 m cells): A -> x centres 2.5, 3.5, y 0.5, 1.5; B -> its centre cell (x 6..7, y -3..-2)
    mask = bev_feature_masks([_bev_targets([BOXES[0], BOXES[2]])], LIDAR_TO_RECT[None], GRID, 2, (8, 8))[0]
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    assert set(map(tuple, mask.nonzero().tolist())) == {(4, 2), (5, 2), (4, 3), (5, 3), (1, 6)}
    # stride 4: B's centre cell is row 0 (y -4..-2), column 3 (x 6..8)
    assert bev_feature_masks(targets, LIDAR_TO_RECT[None], GRID, 4, (4, 4))[0, 0, 3]


def test_bev_masks_follow_a_flipped_frame_and_reject_wrong_sizes():
    plain = bev_gt_depth_maps([_bev_targets(BOXES)], LIDAR_TO_RECT[None], GRID, 1, (16, 16))
    flipped = bev_gt_depth_maps([_bev_targets(BOXES, mirrored=True)], (MIRROR @ LIDAR_TO_RECT)[None], GRID, 1, (16, 16))
    assert torch.equal(plain, flipped)  # the LiDAR-frame footprint does not depend on the mirror
    empty = _bev_targets([])
    assert not bev_feature_masks([empty], LIDAR_TO_RECT[None], GRID, 1, (16, 16)).any()
    with pytest.raises(ValueError, match="not the grid's"):
        bev_feature_masks([empty], LIDAR_TO_RECT[None], GRID, 1, (8, 16))


def test_level_dispatch_image_bev_given():
    spec = DistillSpec([4, 4, 4], [8, 2, 1], None, 0, feature_spaces=["image", "bev", "given"], bev_grid=GRID)
    targets = [_bev_targets(BOXES[:1])]
    targets[0]["boxes_2d"] = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    batch = {"targets": targets, "lidar_to_rect": LIDAR_TO_RECT[None]}
    given_mask, given_depth = torch.rand(1, 3, 5) > 0.5, torch.rand(1, 1, 3, 5) * 50
    outputs = DistillSignals(masks=[None, None, given_mask], pe_depth=[None, None, given_depth])
    mask, depth = level_mask_and_depth(spec, 0, batch, outputs, (2, 4))
    assert mask[0].tolist() == [[True, True, False, False], [False] * 4] and depth[0, 0, 0, 0] == 3.0
    mask, depth = level_mask_and_depth(spec, 1, batch, outputs, (8, 8))
    assert mask.sum() == 4 and depth.max() == 3.0  # A at stride 2 (see above)
    mask, depth = level_mask_and_depth(spec, 2, batch, outputs, (3, 5))
    assert torch.equal(mask, given_mask) and torch.equal(depth, given_depth)
    with pytest.raises(ValueError, match="does not match|do not match"):
        level_mask_and_depth(spec, 2, batch, outputs, (3, 6))
    with pytest.raises(ValueError, match=r"'given' but the detector's masks\[2\]"):
        level_mask_and_depth(spec, 2, batch, DistillSignals(), (3, 5))
    with pytest.raises(ValueError, match="no lidar_to_rect"):
        level_mask_and_depth(spec, 1, {"targets": targets}, outputs, (8, 8))
    with pytest.raises(ValueError, match="needs bev_grid"):
        DistillSpec([4], [1], None, 0, feature_spaces=["bev"])
    with pytest.raises(ValueError, match="feature_spaces"):
        DistillSpec([4], [1], None, 0, feature_spaces=["pixels"])
    with pytest.raises(ValueError, match="source 'depth_memory' has 2 channels but 1 strides"):
        DistillSpec([4], [1], None, 0, sources={"depth_memory": ([4, 4], [8])})
    with pytest.raises(ValueError, match="'memory' is not a DistillSignals source"):
        DistillSpec([4], [1], None, 0, sources={"memory": ([4], [8])})
