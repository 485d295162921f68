"""MonoDETR network: output contract, gradients, depth fusion, the ADD gt_object teacher input."""

from __future__ import annotations

import math

import pytest
import torch

from monokd.errors import ConfigError
from monokd.models import build_detector
from monokd.models.contract import SIGNALS
from monokd.models.monodetr.heads import fuse_depth
from monokd.models.monodetr.model import MonoDETR
from monokd.models.monodetr.position_encoding import DepthPositionalEncoding, sine_position_encoding
from monokd.models.ops.deform_attn import MSDeformAttn
from tests.helpers import MONODETR_CLASSES as CLASSES, MONODETR_H as H, MONODETR_W as W, monodetr_batch as make_batch, monodetr_cfg as tiny_cfg

@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_detector(tiny_cfg())


def test_output_contract(student):
    out = student(make_batch())
    q, c, layers = 8, len(CLASSES), 2
    assert out["pred_logits"].shape == (2, q, c)
    assert out["pred_boxes"].shape == (2, q, 6)
    assert out["pred_dims"].shape == (2, q, 3)
    assert out["pred_angle"].shape == (2, q, 24)
    assert out["pred_depth"].shape == (2, q, 2)
    assert out["pred_depth_map_logits"].shape == (2, 21, H // 16, W // 16)
    assert len(out["aux_outputs"]) == layers - 1
    assert set(out["aux_outputs"][0]) == {"pred_logits", "pred_boxes", "pred_dims", "pred_angle", "pred_depth"}
    assert ((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all()
    assert SIGNALS not in out
    signals = student(make_batch(), signals={"features", "queries", "estimated_depth"})[SIGNALS]
    feats = signals.features
    assert [tuple(f.shape) for f in feats] == [(2, 32, math.ceil(H / s), math.ceil(W / s)) for s in (8, 16, 32, 64)]
    assert signals.queries.shape == (layers, 2, q, 32)
    assert signals.estimated_depth.shape == (2, 1, H // 16, W // 16)
    assert signals.depth_memory is None  # not asked for
    spec = student.distill_spec
    assert spec.feature_channels == [32] * 4 and spec.feature_strides == [8, 16, 32, 64]
    assert spec.query_dim == 32 and spec.num_decoder_layers == layers


def test_initial_predictions_follow_monodetr_init(student):
    out = student(make_batch())
    # Class prior 0.01; first-layer 2-D box sides start near sigmoid(-2); dims near the class mean.
    assert torch.allclose(out["aux_outputs"][0]["pred_logits"].sigmoid().mean(), torch.tensor(0.01), atol=0.01)
    assert abs(out["aux_outputs"][0]["pred_boxes"][..., 2:].mean().item() - 0.12) < 0.06
    mean_car_ped_height = (1.5256 + 1.7626) / 2
    assert abs(out["pred_dims"][..., 0].mean().item() - mean_car_ped_height) < 0.5


@pytest.mark.parametrize("depth_input", [None, "gt_object"])
def test_backward_reaches_every_trainable_parameter(depth_input):
    torch.manual_seed(0)
    model = build_detector(tiny_cfg(depth_input=depth_input))
    # Deformable DETR zero-initialises the offset and attention-weight matrices, so at step 0 no
    # gradient reaches the encoder's query (hence the level embedding); perturb them as one
    # optimiser step would.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MSDeformAttn):
                module.sampling_offsets.weight.normal_(std=1e-3)
                module.attention_weights.weight.normal_(std=1e-3)
    batch = make_batch()
    loss = model.losses(model(batch), batch)
    assert torch.isfinite(loss["loss"])
    loss["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("backbone.conv1", "backbone.layer1")) for n in frozen)


def test_eval_is_deterministic(student):
    student.eval()
    batch = make_batch()
    with torch.no_grad():
        a, b = student(batch), student(batch)
    assert torch.equal(a["pred_depth"], b["pred_depth"])
    student.train()


def test_student_ignores_gt_depth_teacher_uses_it(student):
    torch.manual_seed(0)
    teacher = build_detector(tiny_cfg(depth_input="gt_object"))
    near, far = make_batch(depths=(12.0, 25.0)), make_batch(depths=(40.0, 25.0))
    for model in (student, teacher):
        model.eval()
    with torch.no_grad():
        s_near, s_far = student(near), student(far)
        wanted = {"queries", "estimated_depth"}
        t_near, t_far = teacher(near, signals=wanted), teacher(far, signals=wanted)
    for key in ("pred_logits", "pred_boxes", "pred_depth"):
        assert torch.equal(s_near[key], s_far[key])
    assert not torch.allclose(t_near["pred_depth"], t_far["pred_depth"])
    assert not torch.allclose(t_near[SIGNALS].queries, t_far[SIGNALS].queries)
    # Image 1 has no object: the teacher's input there is all background, whatever image 0 holds.
    assert torch.equal(t_near["pred_depth"][1], t_far["pred_depth"][1])
    # The teacher's depth map is the GT object-wise map: box 0 (x 10..90, y 20..70) at stride 16
    # covers cells x 0..5, y 1..4; background is the max depth.
    depth_map = t_near[SIGNALS].estimated_depth[0, 0]
    assert depth_map[2, 3].item() == 12.0 and depth_map[0, 0].item() == 60.0
    assert t_far[SIGNALS].estimated_depth[0, 0, 2, 3].item() == 40.0
    # The depth predictor still runs (and is supervised) in the teacher.
    assert t_near["pred_depth_map_logits"].shape == (2, 21, H // 16, W // 16)
    student.train()


def test_teacher_needs_targets():
    teacher = build_detector(tiny_cfg(depth_input="gt_object"))
    batch = make_batch()
    del batch["targets"]
    with pytest.raises(ConfigError, match="gt_object"):
        teacher(batch)


def test_fuse_depth_hand_computed():
    depth_out = torch.tensor([[[0.0, 0.7]]])  # direct = 1 / sigmoid(0) - 1 = 1
    height_3d = torch.tensor([[1.5]])
    boxes = torch.tensor([[[0.5, 0.5, 0.1, 0.1, 0.125, 0.125]]])  # h2d = 0.25 * 100 = 25 px
    depth_map = torch.full((1, 4, 6), 8.0)
    fused = fuse_depth(depth_out, height_3d, boxes, depth_map, torch.tensor([500.0]), input_height=100)
    # geometric = 1.5 * 500 / 25 = 30; mean of 1, 30, 8 = 13.
    assert fused[0, 0, 0].item() == pytest.approx(13.0, abs=1e-4)
    assert fused[0, 0, 1].item() == pytest.approx(0.7)


def test_fuse_depth_samples_map_at_the_projected_centre():
    depth_map = torch.arange(24, dtype=torch.float32).view(1, 4, 6)
    # Centre of cell (row 2, col 3) of a 4 x 6 map: x = 3.5 / 6, y = 2.5 / 4.
    boxes = torch.tensor([[[3.5 / 6, 2.5 / 4, 0.1, 0.1, 0.1, 0.1]]])
    depth_out = torch.tensor([[[0.0, 0.0]]])
    fused = fuse_depth(depth_out, torch.zeros(1, 1), boxes, depth_map, torch.tensor([1.0]), input_height=10)
    assert fused[0, 0, 0].item() == pytest.approx((1.0 + 0.0 + 15.0) / 3, abs=1e-5)


def test_sine_position_encoding_values():
    pe = sine_position_encoding(4, 6, 16)
    assert pe.shape == (1, 16, 4, 6)
    y, x = (1 + 0.5) / 4 * 2 * math.pi, (2 + 0.5) / 6 * 2 * math.pi
    assert pe[0, 0, 1, 2].item() == pytest.approx(math.sin(y), abs=1e-6)
    assert pe[0, 1, 1, 2].item() == pytest.approx(math.cos(y), abs=1e-6)
    assert pe[0, 2, 1, 2].item() == pytest.approx(math.sin(y / 10000 ** (2 / 8)), abs=1e-6)
    assert pe[0, 8, 1, 2].item() == pytest.approx(math.sin(x), abs=1e-6)


def test_depth_positional_encoding_interpolates_between_metres():
    pe = DepthPositionalEncoding(8, max_depth=60)
    table = pe.embed.weight
    out = pe(torch.tensor([[[2.25, 75.0, -3.0]]]))
    assert out.shape == (1, 8, 1, 3)
    assert torch.allclose(out[0, :, 0, 0], 0.75 * table[2] + 0.25 * table[3])
    assert torch.allclose(out[0, :, 0, 1], table[60])
    assert torch.allclose(out[0, :, 0, 2], table[0])


def test_depth_positional_encoding_of_a_nan_depth_is_nan_not_an_index_error():
    pe = DepthPositionalEncoding(8, max_depth=60)
    table = pe.embed.weight
    out = pe(torch.tensor([[[2.25, float("nan"), float("inf")]]]))
    assert torch.allclose(out[0, :, 0, 0], 0.75 * table[2] + 0.25 * table[3])
    assert out[0, :, 0, 1].isnan().all()
    assert torch.allclose(out[0, :, 0, 2], table[60])


def test_a_diverged_forward_is_a_nonfinite_loss_for_the_engine_to_skip(student):
    # NaN activations (as after a step at a diverging lr) reach the depth position encoding:
    # the loss must come out NaN (train.max_nonfinite's business), not raise an index error
    batch = make_batch()
    batch["images"][0, :, :8] = float("nan")
    losses = student.losses(student(batch), batch)
    assert losses["loss"].isnan()


def test_interface_delegates(student):
    batch = make_batch()
    student.eval()
    with torch.no_grad():
        out = student(batch)
    matches = student.match_foreground(out, batch)
    assert len(matches) == 2
    assert len(matches[0][0]) == 2 and sorted(matches[0][1].tolist()) == [0, 1]
    assert len(matches[1][0]) == 0
    detections = student.decode(out, batch)
    assert len(detections) == 2
    student.train()


def test_config_errors():
    with pytest.raises(ConfigError, match="hidden_dim"):
        build_detector(tiny_cfg(hidden_dim=48))
    with pytest.raises(ConfigError, match="depth_input"):
        build_detector(tiny_cfg(depth_input="lidar"))
    with pytest.raises(ConfigError, match="unknown"):
        build_detector(tiny_cfg(hiden_dim=32))
    with pytest.raises(ConfigError, match="num_classes"):
        build_detector(tiny_cfg(num_classes=3))
    with pytest.raises(ConfigError, match="model.name"):
        build_detector({"model": {"name": "nope"}, "data": {"classes": CLASSES}})


def test_kitti_config_parameter_count():
    """R50, C=256, 4 levels, 3 + 3 layers, 50 queries, Car only (docs/monodetr.md)."""
    with torch.device("meta"):
        model = MonoDETR({"backbone": {"norm": "frozen"}}, ["Car"])  # the recipe: ImageNet weights
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in model.backbone.parameters()) == 23_454_912  # torchvision R50 minus fc and BN
    assert (total, trainable) == (36_231_807, 36_009_407)


def test_gt_object_map_is_sampled_nearest_not_blended_with_background():
    """A one-cell object at 20 m in a 60 m background: sampled near its cell's edge, the
    teacher's map term must read 20 m (nearest), where bilinear blending reads ~40 m."""
    from monokd.models.monodetr.heads import sample_depth_map

    depth_map = torch.full((1, 4, 4), 60.0)
    depth_map[0, 1, 1] = 20.0
    point = torch.tensor([[[0.49 / 4 * 2 + 0.01, 1.5 / 4]]])  # x inside cell 1, near its left edge
    nearest = sample_depth_map(depth_map, point, "nearest")
    bilinear = sample_depth_map(depth_map, point, "bilinear")
    assert nearest.item() == 20.0
    assert bilinear.item() > 35.0


def test_teacher_decodes_its_depth_from_the_gt_term_at_inference():
    """In eval mode the gt_object teacher's pred_depth is the GT object depth at the query's
    projected centre (nearest cell); in training it stays the three-way mean; the student is
    unaffected."""
    torch.manual_seed(0)
    teacher = build_detector(tiny_cfg(depth_input="gt_object"))
    batch = make_batch()
    teacher.eval()
    with torch.no_grad():
        out = teacher(batch)
    gt_depths = torch.cat([t["depth"] for t in batch["targets"]]).unique()
    allowed = torch.cat([gt_depths, torch.tensor([60.0])])  # background cells read max depth
    assert torch.isin(out["pred_depth"][..., 0], allowed).all()
    teacher.train()
    with torch.no_grad():
        trained = teacher(batch)
    assert not torch.isin(trained["pred_depth"][..., 0], allowed).all()
    off = build_detector(tiny_cfg(depth_input="gt_object", gt_depth_decode=False)).eval()
    with torch.no_grad():
        assert not torch.isin(off(batch)["pred_depth"][..., 0], allowed).all()


def test_boxes_and_depths_stay_fp32_under_bf16_autocast():
    """Under bf16 autocast the decoder's references and boxes and every head output are fp32
    (bf16 would round a centre to 2^-9 of the image, enough to move a nearest-cell GT depth
    sample onto the background); the boxes are exactly the fp32 refinement of the decoder states."""
    teacher = build_detector(tiny_cfg(depth_input="gt_object")).eval()
    batch = make_batch()
    captured = {}
    teacher.decoder.register_forward_hook(lambda m, args, out: captured.update(states=out[0], boxes=out[1]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = teacher(batch)
    for key in ("pred_boxes", "pred_depth", "pred_dims", "pred_logits", "pred_angle"):
        assert out[key].dtype == torch.float32, key
    states, boxes = captured["states"], captured["boxes"]
    assert boxes.dtype == torch.float32
    decoder = teacher.decoder
    with torch.no_grad():
        expect = decoder.refine(1, states[1].float(), boxes[0])
    assert torch.equal(boxes[1], expect)

