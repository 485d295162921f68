"""CaDDN's KITTI recipe against the official code (OpenPCDet's CaDDN.yaml, TRAILab/CaDDN): the
switches of docs/caddn.md's table, each on a hand-computed case, and the official weight
layouts (keys and shapes recorded from torchvision 0.29 / OpenPCDet @8cacccec in tests/data)
loading strictly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from monokd.config import load_config
from monokd.errors import CheckpointMismatchError
from monokd.geometry.grid import BEVGrid
from monokd.models.bev.anchors import anchor_config, make_anchors
from monokd.models.bev.frustum_to_voxel import FrustumToVoxel
from monokd.models.bev.target_assigner import assign_targets, nearest_bev_iou

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"

# --- 1. frustum sampling --------------------------------------------------------------------
# One voxel, centred at LiDAR (5, 0, 0) -> rect (0, 0, 5): depth 5 m, pixel (cu, cv) = (5, 3).
# LID with D = 4 over [2, 12]: bin size 1, edges 2, 3, 5, 8, 12, so 5 m is index t = 2 exactly.
# Input 16 x 8, features at stride 4: 4 x 2.
_L2R = torch.tensor([[[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]])
_P2 = torch.tensor([[[10.0, 0, 5, 0], [0, 10, 3, 0], [0, 0, 1, 0]]])
_GRID = BEVGrid((4.5, -0.5, -0.5, 5.5, 0.5, 0.5), (1.0, 1.0, 1.0))


def _sample(convention: str, frustum: torch.Tensor) -> float:
    lift = FrustumToVoxel(_GRID, (2.0, 12.0, 4), convention)
    return float(lift(frustum, _L2R, _P2, (8, 16)).flatten()[0])


@pytest.mark.parametrize("convention, expected", [
    ("openpcdet", 2.0),        # z_norm = 2 t / (D - 1) - 1, align_corners: bin k at t = k
    ("monokd", 1.5),           # z_norm = 2 t / D - 1, not aligned: bin k at t = k + 0.5
    ("trailab", 13.0 / 6.0),   # OpenPCDet's normaliser, not aligned: t D / (D - 1) - 0.5
])
def test_frustum_depth_convention_at_a_hand_computed_voxel(convention, expected):
    frustum = torch.arange(4.0).reshape(1, 1, 4, 1, 1).expand(1, 1, 4, 2, 4).contiguous()  # value = bin
    assert _sample(convention, frustum) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("convention, expected", [
    ("openpcdet", 1.0),        # u (Wf - 1) / (W - 1) = 5 * 3 / 15
    ("monokd", 0.875),         # (u + 0.5) / 4 - 0.5
    ("trailab", 5.0 / 6.0),    # u / (W - 1) * Wf - 0.5
])
def test_frustum_image_convention_at_a_hand_computed_voxel(convention, expected):
    frustum = torch.arange(4.0).reshape(1, 1, 1, 1, 4).expand(1, 1, 4, 2, 4).contiguous()  # value = column
    assert _sample(convention, frustum) == pytest.approx(expected, abs=1e-5)


# --- 2. target assignment -------------------------------------------------------------------

def _scene():
    """A Car at 30 degrees; anchors: on it at 0, shifted 0.4 m forward / back at 0, on it at
    90 degrees, and far away."""
    gt = torch.tensor([[10.0, 0, -1, 3.9, 1.6, 1.56, math.radians(30)]])
    anchors = torch.tensor([[10.0, 0, -1, 3.9, 1.6, 1.56, 0], [10.4, 0, -1, 3.9, 1.6, 1.56, 0],
                            [9.6, 0, -1, 3.9, 1.6, 1.56, 0], [10.0, 0, -1, 3.9, 1.6, 1.56, math.pi / 2],
                            [20.0, 0, -1, 3.9, 1.6, 1.56, 0]])
    return anchors, gt


def test_nearest_bev_iou_by_hand():
    anchors, gt = _scene()
    # 30 degrees snaps to 0: the GT's rectangle is the first anchor's; 0.4 m shift: 3.5 x 1.6
    # overlap of 6.24 + 6.24 - 5.6; at 90 degrees: a 1.6 x 1.6 overlap of 6.24 + 6.24 - 2.56
    expected = torch.tensor([1.0, 5.6 / 6.88, 5.6 / 6.88, 2.56 / 9.92, 0.0])
    assert torch.allclose(nearest_bev_iou(anchors, gt)[:, 0], expected, atol=1e-6)


def test_assignment_rules_differ_on_the_30_degree_box():
    anchors, gt = _scene()
    classes, labels = torch.zeros(5, dtype=torch.long), torch.tensor([0])
    nearest = assign_targets(anchors, classes, gt, labels, [0.6], [0.45], "nearest_bev")
    rotated = assign_targets(anchors, classes, gt, labels, [0.6], [0.45], "rotated")
    # rotated IoUs 0.555, 0.510, 0.510, 0.310, 0: only the forced best anchor is positive
    assert nearest["labels"].tolist() == [1, 1, 1, 0, 0]
    assert rotated["labels"].tolist() == [1, -1, -1, 0, 0]
    assert nearest["matched_gt"].tolist() == [0, 0, 0, -1, -1]


# --- 3. anchor placement --------------------------------------------------------------------

def test_anchor_placement_edge_to_edge_and_centred():
    grid = BEVGrid((0.0, 0.0, -1.0, 4.0, 2.0, 1.0), (1.0, 1.0, 2.0))  # 4 x 2 cells
    specs = anchor_config({"Car": {"rotations": [0.0]}}, ["Car"], "anchors")
    edge, _ = make_anchors(grid, 1, specs, align_center=False)
    centre, _ = make_anchors(grid, 1, specs, align_center=True)
    assert edge.shape == (2, 4, 1, 7)
    assert torch.allclose(edge[0, :, 0, 0], torch.tensor([0.0, 4 / 3, 8 / 3, 4.0]))
    assert torch.allclose(edge[:, 0, 0, 1], torch.tensor([0.0, 2.0]))
    assert torch.allclose(centre[0, :, 0, 0], torch.tensor([0.5, 1.5, 2.5, 3.5]))
    assert torch.allclose(centre[:, 0, 0, 1], torch.tensor([0.5, 1.5]))


def test_null_anchor_entry_drops_a_base_class():
    specs = anchor_config({"Car": {}, "Cyclist": None}, ["Car"], "anchors")
    assert len(specs) == 1


# --- the recipes ----------------------------------------------------------------------------

def test_kitti_recipe_takes_the_official_values_and_synth_keeps_monokds():
    kitti = load_config(ROOT / "configs/caddn_kitti.yaml")
    synth = load_config(ROOT / "configs/caddn_synth.yaml")
    official = {"model.frustum_sampling": "openpcdet", "model.anchor_head.align_center": False,
                "model.anchor_head.assign_iou": "nearest_bev", "model.collapse_bn.eps": 1e-5,
                "model.collapse_bn.momentum": 0.1, "model.depth_head.pooling_norm": True,
                "model.backbone.norm": "batch", "data.resize": "pad", "train.moms": [0.95, 0.85],
                "train.adam_beta2": 0.99, "data.classes": ["Car", "Pedestrian", "Cyclist"]}
    own = {"model.frustum_sampling": "monokd", "model.anchor_head.align_center": True,
           "model.anchor_head.assign_iou": "rotated", "model.collapse_bn.eps": 1e-3,
           "model.collapse_bn.momentum": 0.01, "model.depth_head.pooling_norm": False,
           "model.backbone.norm": "batch", "data.resize": "stretch", "train.moms": None,
           "train.adam_beta2": 0.999, "data.classes": ["Car"]}
    from monokd.config import get
    assert {k: get(kitti, k) for k in official} == official
    assert {k: get(synth, k) for k in own} == own
    assert kitti["model"]["anchor_head"]["anchors"]["Car"]["rotations"] == [0, 1.57]


# --- the ASPP pooling norm ------------------------------------------------------------------

def test_pooling_batch_norm_one_image_uses_running_statistics():
    from monokd.models.caddn.depth_head import ASPP

    aspp = ASPP(8, 4, rates=(1,), dropout=0.0, pooling_norm=True).train()
    norm = aspp.pooling[2]
    aspp(torch.randn(1, 8, 5, 6))  # one image: a 1 x 1 map per channel
    assert torch.equal(norm.running_mean, torch.zeros(4)) and int(norm.num_batches_tracked) == 0
    aspp(torch.randn(2, 8, 5, 6))  # two: batch statistics, as torchvision
    assert int(norm.num_batches_tracked) == 1 and not torch.equal(norm.running_mean, torch.zeros(4))


# --- the schedule ---------------------------------------------------------------------------

def test_one_cycle_beta1():
    from monokd.training.schedule import beta1

    cfg = {"train": {"lr_schedule": "onecycle", "epochs": 10, "pct_start": 0.4, "moms": [0.95, 0.85]}}
    values = [beta1(e, b, 10, cfg) for e, b in ((0, 0), (2, 0), (4, 0), (7, 0))]
    assert values == pytest.approx([0.95, 0.90, 0.85, 0.90])  # 100 steps, rise 40
    assert beta1(0, 0, 10, {"train": {"lr_schedule": "onecycle"}}) is None


# --- native size with padding ---------------------------------------------------------------

def test_pad_resize_keeps_the_native_scale():
    from monokd.data import augment as aug

    plain = aug.input_affine(aug.Augmentation(flip=False), (1242, 375), (1248, 376), "pad")
    assert np.allclose(plain, [[1, 0, 0], [0, 1, 0]])
    flipped = aug.input_affine(aug.Augmentation(flip=True), (1242, 375), (1248, 376), "pad")
    assert np.allclose(flipped, aug.flip_affine(1242))


# --- official weights -----------------------------------------------------------------------

def _meta_state(name: str) -> dict:
    layout = json.loads((DATA / name).read_text())
    return {k: torch.empty(shape, device="meta") for k, shape in layout.items()}


@pytest.fixture(scope="module")
def kitti_model():
    from monokd.models import build_detector

    with torch.device("meta"):
        return build_detector(load_config(ROOT / "configs/caddn_kitti.yaml"))


def test_openpcdet_layout_loads_strictly_and_a_missing_key_is_one_line(kitti_model):
    from monokd.models.caddn.weights import openpcdet_state

    state = _meta_state("openpcdet_caddn_kitti.json")
    assert len(state) == 903
    converted = openpcdet_state(kitti_model, state, "ckpt.pth")
    assert set(converted) == set(kitti_model.state_dict())
    assert converted["bev_backbone.stages.0.0.weight"].shape == (64, 64, 3, 3)  # blocks.0.1 after ZeroPad2d
    del state["backbone_2d.blocks.2.31.weight"]
    with pytest.raises(CheckpointMismatchError) as err:
        openpcdet_state(kitti_model, state, "ckpt.pth")
    assert "\n" not in str(err.value)
    assert "1 missing keys (bev_backbone.stages.2.30.weight)" in str(err.value)


def test_openpcdet_layout_of_another_class_count_is_refused(kitti_model):
    from monokd.models.caddn.weights import openpcdet_state

    state = _meta_state("openpcdet_caddn_kitti.json")
    state["dense_head.conv_cls.weight"] = torch.empty(6, 384, 1, 1, device="meta")
    state["extra.weight"] = torch.empty(1, device="meta")
    with pytest.raises(CheckpointMismatchError) as err:
        openpcdet_state(kitti_model, state, "ckpt.pth")
    assert "1 unexpected keys (extra.weight)" in str(err.value)
    assert "1 shape mismatches (head.conv_cls.weight (6, 384, 1, 1) vs (18, 384, 1, 1))" in str(err.value)


def test_torchvision_deeplabv3_layout_loads_trunk_and_head(kitti_model):
    from monokd.models.caddn.weights import deeplabv3_state, is_deeplabv3

    state = _meta_state("torchvision_deeplabv3_resnet101_coco.json")
    assert is_deeplabv3(state)
    converted = deeplabv3_state(kitti_model, state, "coco.pth")
    own = {k for k in kitti_model.state_dict() if k.startswith(("backbone.", "depth_head."))}
    # 21 COCO classes against D + 1 = 81: the last conv stays at its initialisation (OpenPCDet's rule)
    assert set(converted) == own - {"depth_head.classifier.weight", "depth_head.classifier.bias"}
    assert converted["depth_head.aspp.pooling.2.running_var"].shape == (256,)
    del state["classifier.0.convs.4.2.running_var"]
    with pytest.raises(CheckpointMismatchError) as err:
        deeplabv3_state(kitti_model, state, "coco.pth")
    assert "\n" not in str(err.value) and "depth_head.aspp.pooling.2.running_var" in str(err.value)


def test_deeplabv3_needs_the_pooling_norm():
    from monokd.models import build_detector
    from monokd.models.caddn.weights import deeplabv3_state

    cfg = load_config(ROOT / "configs/caddn_kitti.yaml", ["model.depth_head.pooling_norm=false"])
    with torch.device("meta"):
        model = build_detector(cfg)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys .*aspp.pooling.2.*set model.depth_head.pooling_norm: true"):
        deeplabv3_state(model, _meta_state("torchvision_deeplabv3_resnet101_coco.json"), "coco.pth")


# official names of a small CaDDN's tensors, written from the tables of monokd.models.caddn.weights
_TO_TORCHVISION = (("depth_head.aspp.branches.", "classifier.0.convs."), ("depth_head.aspp.pooling.", "classifier.0.convs.4."),
                   ("depth_head.aspp.project.0.", "classifier.0.project."), ("depth_head.head.0.", "classifier.1."),
                   ("depth_head.head.1.", "classifier.2."), ("depth_head.classifier.", "classifier.4."),
                   ("backbone.", "backbone."))


def _tiny_cfg(tmp_path=None):
    return load_config(ROOT / "configs/caddn_synth.yaml", ["model.depth_head.pooling_norm=true"])


def test_deeplabv3_file_values_land_in_place(tmp_path):
    from monokd.models import build_detector

    torch.manual_seed(0)
    source = build_detector(_tiny_cfg())
    official = {}
    for key, value in source.state_dict().items():
        for ours, theirs in _TO_TORCHVISION:
            if key.startswith(ours):
                official[theirs + key[len(ours):]] = value.clone().float().uniform_() if value.is_floating_point() else value
    official["aux_classifier.0.weight"] = torch.zeros(3)  # dropped, as OpenPCDet does
    torch.save(official, tmp_path / "deeplab.pth")
    cfg = _tiny_cfg()
    cfg["model"]["backbone"]["weights"] = str(tmp_path / "deeplab.pth")
    model = build_detector(cfg)
    state = model.state_dict()
    assert torch.equal(state["depth_head.aspp.pooling.1.weight"], official["classifier.0.convs.4.1.weight"])
    assert torch.equal(state["depth_head.classifier.bias"], official["classifier.4.bias"])
    assert torch.equal(state["backbone.layer1.0.bn1.running_var"], official["backbone.layer1.0.bn1.running_var"])
    assert isinstance(model.backbone.bn1, torch.nn.BatchNorm2d)  # norm: batch, trained


def test_convert_command_writes_a_checkpoint_that_loads(tmp_path):
    from monokd.cli import main
    from monokd.models import build_detector
    from monokd.training.checkpoint import load_detector

    torch.manual_seed(1)
    source = build_detector(_tiny_cfg())
    inverse = {"backbone.": "vfe.ffn.ddn.model.backbone.", "reduce.0.": "vfe.ffn.channel_reduce.conv.",
               "reduce.1.": "vfe.ffn.channel_reduce.bn.", "collapse.block.0.": "map_to_bev_module.block.conv.",
               "collapse.block.1.": "map_to_bev_module.block.bn.", "bev_backbone.upsamples.": "backbone_2d.deblocks.",
               "head.conv_cls.": "dense_head.conv_cls.", "head.conv_box.": "dense_head.conv_box.",
               "head.conv_dir.": "dense_head.conv_dir_cls."}
    model_state = {"global_step": torch.tensor([7])}
    for key, value in source.state_dict().items():
        value = value.clone().float().normal_() if value.is_floating_point() else value
        if key.startswith("depth_head."):
            name = next(t + key[len(o):] for o, t in _TO_TORCHVISION if key.startswith(o))
            model_state["vfe.ffn.ddn.model." + name] = value
        elif key.startswith("bev_backbone.stages."):
            stage, index, rest = key[len("bev_backbone.stages."):].split(".", 2)
            model_state[f"backbone_2d.blocks.{stage}.{int(index) + 1}.{rest}"] = value
        else:
            prefix = next(p for p in inverse if key.startswith(p))
            model_state[inverse[prefix] + key[len(prefix):]] = value
    torch.save({"model_state": model_state, "epoch": 80}, tmp_path / "official.pth")
    out = tmp_path / "converted.ckpt"
    args = ["convert", "--config", str(ROOT / "configs/caddn_synth.yaml"), "--set", "model.depth_head.pooling_norm=true",
            "--ckpt", str(tmp_path / "official.pth"), "--out", str(out)]
    assert main(args) == 0
    model, _ = load_detector(out)
    assert torch.equal(model.state_dict()["bev_backbone.stages.1.3.weight"], model_state["backbone_2d.blocks.1.4.weight"])
    assert torch.equal(model.state_dict()["head.conv_dir.bias"], model_state["dense_head.conv_dir_cls.bias"])
    assert main(args) == 1  # an existing --out is kept
