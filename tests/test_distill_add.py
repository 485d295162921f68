"""The ADD distiller on a fake detector: loss terms, gradients, frozen teacher, ablation switches."""

import copy

import pytest
import torch

from monokd.config import set_key
from monokd.distill import build_distiller
from monokd.distill.add.adapters import ConvAdapter, MLPAdapter
from monokd.distill.add.cross_attention import CrossAttentionAdapter
from monokd.distill.add.masks import gt_depth_maps
from monokd.distill.add.distiller import DEFAULTS, PAPER_AP3D, PRESETS, TABLES, preset_overrides
from monokd.distill.add.self_attention import SelfAttentionAdapter
from monokd.distill.interface import DistillSpec
from monokd.errors import ConfigError
from tests.test_distill_fake import FakeDetector, make_batch

torch.set_num_threads(1)

SMALL = {"depth_channels": 8, "embed_dim": 12, "heads": 4}


def _cfg(**feature):
    return {"model": {"name": "fake"},
            "distill": {"method": "add", "teacher": {"config": "t.yaml", "ckpt": "t.ckpt"},
                        "feature": {**SMALL, **feature}, "response": {"heads": 4}}}


def _pair(seed=0, **kwargs):
    torch.manual_seed(seed)
    return FakeDetector(**kwargs), FakeDetector(depth_input=True)


def test_losses_are_student_terms_plus_distill_terms():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(), student, teacher)
    batch = make_batch()
    outputs = distiller(batch)
    terms = distiller.losses(outputs, batch)
    own = student.losses(outputs, batch)
    assert set(terms) == set(own) | {"distill_feat", "distill_resp"}
    assert terms["distill_feat"] > 0 and terms["distill_resp"] > 0
    expected = own["loss"] + terms["distill_feat"] + terms["distill_resp"]
    assert torch.allclose(terms["loss"], expected)
    # alpha and beta scale their terms linearly
    cfg = _cfg()
    cfg["distill"]["feature"]["weight"] = 2.0
    cfg["distill"]["response"]["weight"] = 0.0
    student2, teacher2 = _pair()
    scaled = build_distiller(cfg, student2, teacher2).losses(outputs, batch)
    assert torch.allclose(scaled["distill_feat"], 2 * terms["distill_feat"])
    assert scaled["distill_resp"] == 0


def test_gradients_reach_student_and_adapters_never_the_teacher():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(), student, teacher)
    distiller.train()
    assert not teacher.training and distiller.student.training
    teacher_before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(student.state_dict())
    param_ids = {id(p) for p in distiller.parameters()}
    assert not param_ids & {id(p) for p in teacher.parameters()}
    assert all(not key.startswith("teacher") for key in distiller.state_dict())

    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.1)
    batch = make_batch()
    distiller.losses(distiller(batch), batch)["loss"].backward()
    assert student.stem.weight.grad is not None and student.stem.weight.grad.abs().sum() > 0
    assert student.layers[0].weight.grad.abs().sum() > 0
    sa = distiller.feature_adapters["0"]
    assert sa.q_proj.weight.grad.abs().sum() > 0
    assert sa.pos_encoding.embedding.weight.grad.abs().sum() > 0
    assert distiller.response_adapters[1].q_mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    optimizer.step()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert not torch.equal(student.stem.weight, student_before["stem.weight"])


def test_teacher_follows_dtype_moves_and_stays_out_of_the_checkpoint():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(), student, teacher).double()
    assert teacher.stem.weight.dtype == torch.float64
    prefixes = {key.split(".")[0] for key in distiller.state_dict()}
    assert prefixes == {"student", "feature_adapters", "response_adapters"}
    assert set(distiller.student_state_dict()) == set(FakeDetector().state_dict())


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "baseline"])
def test_each_preset_builds_exactly_the_terms_it_names(name):
    cfg = _cfg()
    for item in preset_overrides(name):
        set_key(cfg, item)
    student, teacher = _pair()
    distiller = build_distiller(cfg, student, teacher)
    feature = "F" in name.split("+") or name.startswith(("SA-", "feat-"))
    response = "R" in name.split("+") or name.startswith("resp-")
    assert bool(distiller.feature_adapters) == feature
    assert bool(len(distiller.response_adapters)) == response
    sa = "SA" in name or name.startswith("feat-")
    ca = "CA" in name or name.startswith("resp-")
    for adapter in distiller.feature_adapters.values():
        assert isinstance(adapter, SelfAttentionAdapter if sa else ConvAdapter)
        if sa:
            assert (adapter.pos_encoding is None) == name.endswith("PE-none")
    for adapter in distiller.response_adapters:
        assert isinstance(adapter, CrossAttentionAdapter if ca else MLPAdapter)
    batch = make_batch()
    terms = distiller.losses(distiller(batch), batch)
    assert ("distill_feat" in terms) == feature and ("distill_resp" in terms) == response
    assert name in PAPER_AP3D


def test_preset_tables_and_baseline():
    assert all(name in PRESETS for rows in TABLES.values() for name in rows)
    assert len(TABLES["table4"]) == 9 and len(TABLES["table5"]) == 12
    cfg = _cfg()
    for item in preset_overrides("baseline"):
        set_key(cfg, item)
    assert cfg["distill"] is None
    cfg = _cfg()
    for item in preset_overrides("feat-bg-0.05"):
        set_key(cfg, item)
    assert cfg["distill"]["feature"]["bg_weight"] == 0.05 and cfg["distill"]["response"]["enabled"] is False
    with pytest.raises(ConfigError, match="unknown"):
        preset_overrides("F+XX")


def test_levels_select_adapters_and_bg_weight_matters():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(levels=[1]), student, teacher)
    assert list(distiller.feature_adapters) == ["1"]
    batch = make_batch()
    outputs = distiller(batch)
    base = distiller.losses(outputs, batch)["distill_feat"]
    distiller.options["feature"]["bg_weight"] = 0.0
    assert distiller.losses(outputs, batch)["distill_feat"] < base
    with pytest.raises(ConfigError, match="levels"):
        build_distiller(_cfg(levels=[2]), *_pair())


def test_estimated_positional_encoding_uses_the_students_depth():
    batch = make_batch()
    student, teacher = _pair()
    distiller = build_distiller(_cfg(pos_encoding="estimated", levels=[0]), student, teacher)
    outputs = distiller(batch)
    first = distiller.losses(outputs, batch)["distill_feat"]
    outputs["depth_map"] = outputs["depth_map"] * 0 + 55.0  # a different estimate
    assert not torch.isclose(distiller.losses(outputs, batch)["distill_feat"], first)
    # a student exposing no estimated depth fails with the option's name
    student, teacher = _pair(estimated_depth=False)
    distiller = build_distiller(_cfg(pos_encoding="estimated"), student, teacher)
    with pytest.raises(ConfigError, match="pos_encoding=estimated"):
        distiller.losses(distiller(batch), batch)


def test_gt_positional_encoding_depends_on_gt_depth():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(levels=[0]), student, teacher)
    batch = make_batch()
    feature = distiller(batch)["distill"]["features"][0].detach()
    adapter = distiller.feature_adapters["0"]
    near = adapter(feature, gt_depth_maps(batch["targets"], feature.shape[-2:], 4))
    for target in batch["targets"]:
        target["depth"] = target["depth"] + 20.0
    far = adapter(feature, gt_depth_maps(batch["targets"], feature.shape[-2:], 4))
    assert not torch.allclose(near, far)


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="distill.feature.colour"):
        build_distiller(_cfg(colour=1), *_pair())
    cfg = _cfg()
    cfg["distill"]["response"]["adapter"] = "transformer"
    with pytest.raises(ConfigError, match="distill.response.adapter"):
        build_distiller(cfg, *_pair())
    with pytest.raises(ConfigError, match="no teacher"):
        build_distiller(_cfg(), FakeDetector(), None)
    student, teacher = _pair()
    student.distill_spec = DistillSpec([16, 16], [4, 8], None, 0)
    teacher.distill_spec = student.distill_spec
    with pytest.raises(ConfigError, match="response.enabled=false"):
        build_distiller(_cfg(), student, teacher)
    cfg = _cfg()
    cfg["distill"]["response"]["enabled"] = False
    assert len(build_distiller(cfg, student, teacher).response_adapters) == 0
    student, teacher = _pair()
    teacher.distill_spec = DistillSpec([16, 32], [4, 8], 16, 2)
    with pytest.raises(ConfigError, match="same architecture"):
        build_distiller(_cfg(), student, teacher)
    assert DEFAULTS["feature"]["bg_weight"] == 0.1 and DEFAULTS["response"]["bg_weight"] == 0.5
