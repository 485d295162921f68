"""MonoDETR's official-code switches (docs/monodetr.md, "The KITTI recipe and the official code"):
sine PE normalisation, C5 upsampling, depth-map sampling, the 3-logit class head, the optimiser's
no-decay biases, and the recipes that set them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from monokd.config import load_config
from monokd.training.schedule import build_optimizer
from monokd.errors import ConfigError
from monokd.models import build_detector
from monokd.models.monodetr.depth_predictor import DepthPredictor
from monokd.models.monodetr.heads import fuse_depth
from monokd.models.monodetr.model import MonoDETR
from monokd.models.monodetr.position_encoding import sine_position_encoding
from tests.helpers import monodetr_batch as make_batch, monodetr_cfg as tiny_cfg

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OFFICIAL = ["Pedestrian", "Car", "Cyclist"]  # MonoDETR's cls2id order


def test_official_sine_encoding_at_hand_computed_cells():
    """MonoDETR (DETR's normalize=True on an all-valid mask): cell i of n at (i+1)/(n+1e-6)*2pi."""
    pe = sine_position_encoding(4, 6, 16, normalisation="official")
    y = 2 / (4 + 1e-6) * 2 * math.pi        # row 1 of 4
    x = 3 / (6 + 1e-6) * 2 * math.pi        # column 2 of 6
    assert pe[0, 0, 1, 2].item() == pytest.approx(math.sin(y), abs=1e-6)
    assert pe[0, 1, 1, 2].item() == pytest.approx(math.cos(y), abs=1e-6)
    assert pe[0, 2, 1, 2].item() == pytest.approx(math.sin(y / 10000 ** (2 / 8)), abs=1e-6)
    assert pe[0, 8, 1, 2].item() == pytest.approx(math.sin(x), abs=1e-6)
    assert pe[0, 11, 1, 2].item() == pytest.approx(math.cos(x / 10000 ** (2 / 8)), abs=1e-6)
    last = 4 / (4 + 1e-6) * 2 * math.pi     # the last row sits at ~2pi, not at (n - 0.5) / n * 2pi
    assert pe[0, 1, 3, 0].item() == pytest.approx(math.cos(last), abs=1e-6)
    centred = sine_position_encoding(4, 6, 16)
    assert centred[0, 0, 1, 2].item() == pytest.approx(math.sin(1.5 / 4 * 2 * math.pi), abs=1e-6)
    with pytest.raises(ValueError, match="official"):
        sine_position_encoding(4, 6, 16, normalisation="shifted")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_depth_predictor_upsamples_c5_as_configured(mode):
    torch.manual_seed(0)
    predictor = DepthPredictor(32, num_bins=8, upsample=mode)
    seen = []
    predictor.upsample.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    c5 = torch.randn(1, 32, 2, 3)
    predictor([torch.randn(1, 32, 8, 12), torch.randn(1, 32, 4, 6), c5])
    nearest = c5.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    if mode == "nearest":  # MonoDETR 2022: every stride-16 cell copies its stride-32 parent
        assert torch.equal(seen[0], nearest)
    else:
        assert torch.allclose(seen[0], F.interpolate(c5, size=(4, 6), mode="bilinear", align_corners=False))
        assert not torch.allclose(seen[0], nearest)


def test_model_switches_reach_the_modules():
    model = build_detector(tiny_cfg(depth_upsample="nearest", position_encoding="official",
                                    depth_map_sampling={"align_corners": True, "padding": "zeros"}))
    assert model.depth_predictor.upsample_mode == "nearest"
    assert model.heads.map_sampling == {"align_corners": True, "padding": "zeros"}
    default = build_detector(tiny_cfg())
    assert default.depth_predictor.upsample_mode == "bilinear" and default.cfg["position_encoding"] == "centred"
    for bad in ({"depth_upsample": "area"}, {"position_encoding": "learned"},
                {"depth_map_sampling": {"padding": "reflection"}}, {"depth_map_sampling": {"mode": "x"}}):
        with pytest.raises(ConfigError, match="model.depth_|model.position"):
            build_detector(tiny_cfg(**bad))


def test_official_map_sampling_reads_cell_centres_at_the_edges_and_zero_outside():
    depth_map = (torch.arange(24, dtype=torch.float32) + 1).view(1, 4, 6)
    out = torch.tensor([[[0.0, 0.0]]])
    # align_corners=True: normalised (3/5, 2/3) is exactly cell (row 2, col 3) = 16.
    boxes = torch.tensor([[[3 / 5, 2 / 3, 0.1, 0.1, 0.1, 0.1]]])
    official = {"align_corners": True, "padding": "zeros"}
    fused = fuse_depth(out, torch.zeros(1, 1), boxes, depth_map, torch.tensor([1.0]), 10, map_sampling=official)
    assert fused[0, 0, 0].item() == pytest.approx((1.0 + 16.0) / 3, abs=1e-5)
    exact = fuse_depth(out, torch.zeros(1, 1), boxes, depth_map, torch.tensor([1.0]), 10)
    assert abs(exact[0, 0, 0].item() - fused[0, 0, 0].item()) > 0.1
    outside = torch.tensor([[[1.5, 0.5, 0.1, 0.1, 0.1, 0.1]]])  # right of the image
    zeros = fuse_depth(out, torch.zeros(1, 1), outside, depth_map, torch.tensor([1.0]), 10, map_sampling=official)
    border = fuse_depth(out, torch.zeros(1, 1), outside, depth_map, torch.tensor([1.0]), 10)
    assert zeros[0, 0, 0].item() == pytest.approx(1.0 / 3, abs=1e-5)  # map term 0
    assert border[0, 0, 0].item() > zeros[0, 0, 0].item() + 3


def _car_only(**model):
    cfg = tiny_cfg(**{"logit_classes": OFFICIAL, "num_classes": 3, **model})
    cfg["data"]["classes"] = ["Car"]
    return cfg


def test_three_logit_head_with_car_at_index_1_decodes_car():
    torch.manual_seed(0)
    model = build_detector(_car_only()).eval()
    assert model.heads.class_embed[0].out_features == 3 and model.label_to_logit.tolist() == [1]
    batch = make_batch(batch_size=1)
    with torch.no_grad():
        outputs = model(batch)
    logits = torch.full_like(outputs["pred_logits"], -9.0)
    logits[0, 0, 1] = 3.0  # query 0: Car
    logits[0, 1, 0] = 4.0  # query 1: Pedestrian, an untrained logit: in the pool, not in the output
    outputs["pred_logits"] = logits
    outputs["pred_depth"] = outputs["pred_depth"].clone().fill_(0.0)
    detections = model.decode(outputs, batch)[0]
    assert [d.type for d in detections] == ["Car"]
    assert detections[0].score == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=1e-6)


def test_three_logit_head_supervises_car_on_its_logit():
    """A Car target (label 0 of data.classes [Car]) is the positive of logit 1 in the focal loss."""
    torch.manual_seed(0)
    model = build_detector(_car_only()).train()
    batch = make_batch(batch_size=1)
    batch["targets"][0]["labels"] = torch.tensor([0, 0])
    outputs = model(batch)
    outputs["pred_logits"].retain_grad()
    model.losses(outputs, batch)["loss"].backward()
    queries = model.match_foreground(outputs, batch)[0][0]
    grad = outputs["pred_logits"].grad[0, queries]
    assert (grad[:, 1] < 0).all() and (grad[:, [0, 2]] > 0).all()
    assert batch["targets"][0]["labels"].tolist() == [0, 0]  # the batch itself is left alone


def test_logit_class_errors():
    with pytest.raises(ConfigError, match="num_classes"):
        build_detector(tiny_cfg(num_classes=3))
    cfg = tiny_cfg(logit_classes=["Pedestrian", "Cyclist"])
    with pytest.raises(ConfigError, match="no logit"):
        build_detector(cfg)
    with pytest.raises(ConfigError, match="num_classes"):
        build_detector(_car_only(num_classes=2))


def test_bias_parameters_are_in_the_no_decay_group():
    model = build_detector(tiny_cfg())
    cfg = {"train": {"lr": 1e-3, "weight_decay": 1e-4, "no_decay_bias": True}}
    groups = build_optimizer(model, cfg).param_groups
    decayed, free = ({id(p) for p in g["params"]} for g in groups)
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    named = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | free == set(named) and not decayed & free
    assert all("bias" in named[i] for i in free) and not any("bias" in named[i] for i in decayed)
    assert id(model.decoder.layers[0].self_attn.in_proj_bias) in free  # MonoDETR: "bias" in the name
    assert id(model.heads.class_embed[0].bias) in free and id(model.heads.class_embed[0].weight) in decayed
    plain = build_optimizer(model, {"train": {"weight_decay": 1e-4}}).param_groups
    assert len(plain) == 1 and plain[0]["weight_decay"] == 1e-4


def test_kitti_recipe_is_the_official_model_and_synth_keeps_monokd_defaults():
    kitti = load_config(CONFIGS / "monodetr_kitti.yaml")
    model = kitti["model"]
    assert (model["position_encoding"], model["depth_upsample"]) == ("official", "nearest")
    assert model["depth_map_sampling"] == {"align_corners": True, "padding": "zeros"}
    assert model["logit_classes"] == OFFICIAL and model["num_classes"] == 3
    assert kitti["train"]["grad_clip"] is None and kitti["train"]["no_decay_bias"] is True
    data = kitti["data"]
    assert (data["resize"], data["clip_boxes_2d"], data["filter"]["drop_unknown"]) == ("keep_aspect", False, True)
    assert data["heading_target"] == "label"  # paired with monokd's exact decoding (docs/monodetr.md)
    assert (data["augment"]["sampling"], data["augment"]["channel_swap"]) == ("gaussian", 0.5)
    with torch.device("meta"):
        net = MonoDETR(model, kitti["data"]["classes"])
    assert sum(p.numel() for p in net.parameters()) == 36_233_349  # Car-only 36,231,807 + 2 logits x 3 layers
    for name in ("monodetr_synth.yaml", "monodetr_teacher_synth.yaml", "add_monodetr_synth.yaml"):
        synth = load_config(CONFIGS / name)
        m = synth["model"]
        assert (m["position_encoding"], m["depth_upsample"]) == ("centred", "bilinear"), name
        assert m["depth_map_sampling"] == {"align_corners": False, "padding": "border"}, name
        assert m["logit_classes"] is None and m["num_classes"] is None, name
        assert synth["train"]["no_decay_bias"] is False and synth["train"]["grad_clip"] == 1.0, name
        data = synth["data"]
        assert (data["resize"], data["clip_boxes_2d"], data["filter"]["drop_unknown"]) == ("stretch", True, False)
        assert (data["heading_target"], data["augment"]["sampling"], data["augment"]["channel_swap"]) == \
            ("label", "uniform", 0.0), name
    for name in ("monodetr_teacher_kitti.yaml", "add_monodetr_kitti.yaml"):
        assert load_config(CONFIGS / name)["model"]["logit_classes"] == OFFICIAL


def test_box_2d_heading_ray_inverts_the_box_center_target():
    """heading_ray box_2d: rotation_y = alpha + atan2(u - cu, fu) at the 2-D box centre column
    (input pixels, input P2), the exact inverse of data.heading_target box_center."""
    from monokd.models.monodetr.decode import decode_detections
    from tests.helpers import DECODE_CLASSES, DECODE_GT as GT, DECODE_P2_INPUT as P2_INPUT, decode_batch as _batch, perfect_outputs as _perfect_outputs

    outputs, batch = _perfect_outputs(), _batch()
    exact = decode_detections(outputs, batch, DECODE_CLASSES)[0]
    official = decode_detections(outputs, batch, DECODE_CLASSES, heading_ray="box_2d")[0]
    assert len(exact) == len(official) == len(GT)
    for a, b in zip(exact, official):
        box = b.box2d  # original pixels; the input column is the same ray through the input P2
        column_input = (box[0] + box[2]) / 2 * 1280 / 1242
        ray = math.atan2(column_input - P2_INPUT[0, 2], P2_INPUT[0, 0])
        assert b.alpha == a.alpha and b.location.tolist() == a.location.tolist()
        wrapped = (b.rotation_y - (b.alpha + ray) + math.pi) % (2 * math.pi) - math.pi
        assert abs(wrapped) < 2e-3  # the box is clipped to the image in original pixels only
    assert max(abs(a.rotation_y - b.rotation_y) for a, b in zip(exact, official)) > 1e-3
    with pytest.raises(ConfigError, match="heading_ray"):
        build_detector(tiny_cfg(decode={"heading_ray": "centre"}))
