"""ADD on a tiny real MonoDETR (student) and its gt_object teacher; the shipped ADD recipes."""

import copy
from pathlib import Path

import pytest
import torch
import yaml

from monokd.distill import build_distiller
from monokd.distill.add.distiller import parse_options
from monokd.distill.add.losses import balanced_mse
from monokd.distill.add.masks import feature_masks, gt_depth_maps
from monokd.models.contract import SIGNALS
from monokd.models import build_detector

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
H, W = 64, 192
BASE = {"model": {"name": "monodetr", "backbone": {"depth": 18}, "hidden_dim": 32, "dim_feedforward": 32,
                  "num_queries": 6, "enc_layers": 1, "dec_layers": 2},
        "data": {"classes": ["Car"], "input_size": [W, H]}}


def _target(boxes, depth):
    boxes = torch.tensor(boxes)
    n = len(boxes)
    return {"labels": torch.zeros(n, dtype=torch.long), "boxes_2d": boxes,
            "centers_3d_proj": (boxes[:, :2] + boxes[:, 2:]) / 2, "depth": torch.tensor(depth),
            "dims": torch.tensor([[1.5, 1.6, 3.9]] * n), "location": torch.zeros(n, 3),
            "rotation_y": torch.zeros(n), "alpha": torch.zeros(n), "truncation": torch.zeros(n),
            "occlusion": torch.zeros(n, dtype=torch.long), "difficulty": torch.zeros(n, dtype=torch.long)}


def _batch():
    P2 = torch.tensor([[120.0, 0, W / 2, 0], [0, 120.0, H / 2, 0], [0, 0, 1, 0]]).expand(2, 3, 4).clone()
    targets = [_target([[20.0, 16.0, 60.0, 48.0]], [12.0]), _target([[20.0, 16.0, 60.0, 48.0], [100.0, 20.0, 150.0, 40.0]], [12.0, 30.0])]
    return {"images": torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(0)), "P2": P2, "targets": targets}


def test_add_on_monodetr_trains_the_student_only():
    torch.manual_seed(0)
    student = build_detector(BASE)
    teacher_cfg = copy.deepcopy(BASE)
    teacher_cfg["model"]["depth_input"] = "gt_object"
    teacher = build_detector(teacher_cfg)
    cfg = {**BASE, "distill": {"method": "add", "feature": {"embed_dim": 16, "pos_encoding": "estimated"}}}
    distiller = build_distiller(cfg, student, teacher)
    assert set(distiller.student_state_dict()) == set(build_detector(BASE).state_dict())
    teacher_before = copy.deepcopy(teacher.state_dict())
    optimizer = torch.optim.AdamW([p for p in distiller.parameters() if p.requires_grad], lr=1e-3)
    batch = _batch()
    distiller.train()
    terms = distiller.losses(distiller(batch), batch)
    own = [k for k in terms if k not in ("loss", "distill_feat", "distill_resp")]
    assert torch.allclose(terms["loss"], sum(terms[k] for k in own) + terms["distill_feat"] + terms["distill_resp"])
    terms["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert distiller.feature_adapters["3"].pos_encoding.embedding.weight.grad.abs().sum() > 0
    assert distiller.response_adapters[1].q_mlp[0].weight.grad.abs().sum() > 0
    assert student.input_proj[0][0].weight.grad.abs().sum() > 0
    optimizer.step()
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training


@pytest.mark.parametrize("name", ["add_monodetr_kitti.yaml", "add_monodetr_synth.yaml"])
def test_shipped_recipes_are_full_add(name):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    options = parse_options(raw["distill"])
    assert options["feature"]["adapter"] == "self_attention" and options["feature"]["pos_encoding"] == "gt"
    assert options["response"]["adapter"] == "cross_attention"
    assert (options["feature"]["fg_weight"], options["feature"]["bg_weight"]) == (1.0, 0.1)
    assert (options["response"]["fg_weight"], options["response"]["bg_weight"]) == (1.0, 0.5)
    assert options["feature"]["weight"] == options["response"]["weight"] == 1.0
    # the paper's distilled signals and pairing, this implementation's region means (docs/add.md)
    assert options["feature"]["source"] == "encoder_input" and options["response"]["pairing"] == "index"
    assert options["feature"]["normalization"] == options["response"]["normalization"] == "region_mean"


def _teacher_and_student():
    torch.manual_seed(0)
    student = build_detector(BASE)
    teacher_cfg = copy.deepcopy(BASE)
    teacher_cfg["model"]["depth_input"] = "gt_object"
    return student, build_detector(teacher_cfg).eval()


@torch.no_grad()
def test_depth_memory_carries_the_teachers_gt_depth_and_encoder_input_does_not():
    _, teacher = _teacher_and_student()
    batch = _batch()
    scaled = {**batch, "targets": [{**t, "depth": t["depth"] * 2.5} for t in batch["targets"]]}
    wanted = {"features", "depth_memory"}
    before, after = teacher(batch, signals=wanted)[SIGNALS], teacher(scaled, signals=wanted)[SIGNALS]
    for k, (a, b) in enumerate(zip(before.source("encoder_input", "teacher"), after.source("encoder_input", "teacher"))):
        assert torch.equal(a, b), k  # the paper-literal T^k: computed before the GT depth enters
    memory, memory_scaled = before.source("depth_memory", "teacher")[0], after.source("depth_memory", "teacher")[0]
    assert memory.shape == (2, 32, H // 16, W // 16)
    spec = teacher.distill_spec.source("depth_memory")
    assert (spec.feature_channels, spec.feature_strides, spec.spaces) == ([32], [16], ["image"])
    assert (memory - memory_scaled).abs().max() > 1e-3


def test_depth_memory_source_distils_one_stride_16_map():
    student, teacher = _teacher_and_student()
    cfg = {**BASE, "distill": {"method": "add", "feature": {"embed_dim": 16, "source": "depth_memory"},
                               "response": {"enabled": False}}}
    distiller = build_distiller(cfg, student, teacher)
    assert list(distiller.feature_adapters) == ["0"]
    batch = _batch()
    distiller.eval()  # no dropout: the loss can be recomputed by hand
    outputs = distiller(batch, signals=distiller.student_signals)  # eval mode asks for none by itself
    terms = distiller.losses(outputs, batch)
    assert set(terms) == set(student.losses(outputs, batch)) | {"distill_feat"}
    s_map = outputs[SIGNALS].depth_memory[0]
    with torch.no_grad():
        t_map = teacher(batch, signals={"depth_memory"})[SIGNALS].depth_memory[0]
    size = tuple(s_map.shape[-2:])
    adapted = distiller.feature_adapters["0"](s_map, gt_depth_maps(batch["targets"], size, 16))
    expected = balanced_mse(adapted, t_map, feature_masks(batch["targets"], size, 16), 1.0, 0.1)
    assert torch.allclose(terms["distill_feat"], expected)
    terms["loss"].backward()
    assert student.depth_encoder.self_attn.in_proj_weight.grad.abs().sum() > 0
