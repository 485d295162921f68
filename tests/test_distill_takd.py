"""MonoTAKD's student and distiller on tiny stand-in models (tests/takd_fakes.py): the loss
terms of each switch, gradients into the student only, frozen teacher and TA, NaN depth."""

from __future__ import annotations

import copy

import pytest
import torch

from monokd.distill.takd.distiller import PRESETS, TAKDDistiller, parse_options
from monokd.errors import ConfigError
from monokd.models import REGISTRY, build_detector
from monokd.models.contract import SIGNALS
from monokd.models.takd.model import TAKDStudent, takd_options
from tests.takd_fakes import FakeCamera, FakeLidar, fake_batch

REGISTRY.setdefault("fake_bev_camera", "tests.takd_fakes:build_fake_camera")


def _student(**takd):
    torch.manual_seed(0)
    return TAKDStudent(FakeCamera(), takd_options({"sam": {"dilations": [1, 2]}, **takd}))


def _distiller(section=None, **takd):
    torch.manual_seed(1)
    teacher, ta = FakeLidar(), FakeCamera(gt_pixel=True)
    return TAKDDistiller(_student(**takd), teacher, ta, parse_options({"method": "takd", **(section or {})}))


SWITCHES = [
    ({}, {"distill_imd", "distill_cmrd", "distill_logit_cls", "distill_logit_box", "distill_logit_dir"}),
    ({"imd": {"enabled": False}, "cmrd": {"enabled": False}}, {"distill_logit_cls", "distill_logit_box",
                                                               "distill_logit_dir"}),
    ({"cmrd": {"enabled": False}, "logit": {"enabled": False}}, {"distill_imd"}),
    ({"imd": {"enabled": False}, "logit": {"enabled": False}}, {"distill_cmrd"}),
    ({"imd": {"enabled": False}, "cmrd": {"enabled": False}, "logit": {"enabled": False},
      "gt_loss": {"enabled": True}}, {"loss_cls", "loss_depth"}),
    ({"gt_loss": {"enabled": True}, "logit": {"enabled": False}}, {"distill_imd", "distill_cmrd", "loss_cls",
                                                                   "loss_depth"}),
]


@pytest.mark.parametrize("section,expected", SWITCHES)
def test_each_switch_produces_exactly_its_terms(section, expected):
    distiller = _distiller(section).train()
    batch = fake_batch()
    terms = distiller.losses(distiller(batch), batch)
    assert set(terms) == expected | {"loss"}
    parts = sum(v for k, v in terms.items() if k != "loss")
    assert torch.allclose(terms["loss"], parts)


@pytest.mark.parametrize("term", ["distill_imd", "distill_cmrd", "distill_logit_cls", "distill_logit_box",
                                  "distill_logit_dir"])
def test_every_distillation_loss_reaches_the_student(term):
    distiller = _distiller().train()
    batch = fake_batch()
    terms = distiller.losses(distiller(batch), batch)
    assert terms[term].item() > 0
    terms[term].backward()
    grads = [p.grad for p in distiller.student.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    for model in (distiller.teacher, distiller.ta):
        assert all(p.grad is None for p in model.parameters())


def test_a_step_changes_the_student_and_never_the_teacher_or_the_ta():
    distiller = _distiller({"gt_loss": {"enabled": True}}).train()
    frozen_before = [copy.deepcopy(m.state_dict()) for m in (distiller.teacher, distiller.ta)]
    student_before = copy.deepcopy(distiller.student.state_dict())
    optimizer = torch.optim.AdamW(distiller.parameters(), lr=1e-2)
    batch = fake_batch()
    distiller.losses(distiller(batch), batch)["loss"].backward()
    optimizer.step()
    for model, before in zip((distiller.teacher, distiller.ta), frozen_before):
        assert not model.training
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key  # weights and BN statistics bit-identical
    changed = [k for k, v in distiller.student.state_dict().items() if not torch.equal(v, student_before[k])]
    assert any(k.startswith("residual.") for k in changed) and any(k.startswith("ffm.") for k in changed)
    assert any(k.startswith("camera.") for k in changed)


def test_teacher_and_ta_stay_out_of_parameters_state_dict_and_train_mode():
    distiller = _distiller()
    ids = {id(p) for p in distiller.parameters()}
    for model in (distiller.teacher, distiller.ta):
        assert not ids & {id(p) for p in model.parameters()}
    assert all(k.startswith("student.") for k in distiller.state_dict())
    distiller.train()
    assert distiller.student.training and not distiller.teacher.training and not distiller.ta.training
    distiller.to(torch.float64)
    assert next(distiller.teacher.parameters()).dtype == torch.float64


def test_nan_depth_gives_finite_losses_and_gradients():
    distiller = _distiller({"gt_loss": {"enabled": True}}).train()
    batch = fake_batch()
    batch["depth_maps"][0, 0, :4] = float("nan")
    batch["depth_maps"][1, 0, 2, 3] = float("inf")
    terms = distiller.losses(distiller(batch), batch)
    assert all(torch.isfinite(v) for v in terms.values()), terms
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in distiller.student.parameters() if p.grad is not None)
    assert torch.isnan(batch["depth_maps"]).any()  # the caller's batch is not modified


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="distill.cmrd.residual"):
        parse_options({"method": "takd", "cmrd": {"residual": "ratio"}})
    with pytest.raises(ConfigError, match="distill.imd.weigth"):
        parse_options({"method": "takd", "imd": {"weigth": 1}})
    with pytest.raises(ConfigError, match="all disabled"):
        parse_options({"method": "takd", "imd": {"enabled": False}, "cmrd": {"enabled": False},
                       "logit": {"enabled": False}})
    with pytest.raises(ConfigError, match="residual branch"):
        TAKDDistiller(_student(residual=False, ffm=False), FakeLidar(), FakeCamera(True), parse_options({"method": "takd"}))
    with pytest.raises(ConfigError, match="distill.ta"):
        TAKDDistiller(_student(), FakeLidar(), None, parse_options({"method": "takd"}))
    with pytest.raises(ConfigError, match="nothing trains the residual"):
        TAKDDistiller(_student(ffm=False), FakeLidar(), FakeCamera(True),
                      parse_options({"method": "takd", "cmrd": {"enabled": False}}))
    with pytest.raises(ConfigError, match="model.takd.ffm"):
        takd_options({"residual": False, "ffm": True})


def test_student_without_branches_is_its_camera_detector():
    torch.manual_seed(0)
    camera = FakeCamera().eval()
    student = TAKDStudent(copy.deepcopy(camera), takd_options({"residual": False, "ffm": False})).eval()
    batch = fake_batch()
    ours, theirs = student(batch), camera(batch)
    for key in ("pred_cls", "pred_boxes", "pred_dir", "pred_depth_logits"):
        assert torch.equal(ours[key], theirs[key])
    assert all(k.startswith("camera.") for k in student.state_dict())


def test_residual_branch_runs_at_inference_only_with_ffm():
    batch = fake_batch()
    without_ffm = _student(ffm=False).eval()
    assert without_ffm(batch, signals={"residual"})[SIGNALS].residual is None
    assert without_ffm.train()(batch, signals={"residual"})[SIGNALS].residual.shape == (2, 8, 6, 5)
    assert _student().eval()(batch, signals={"residual"})[SIGNALS].residual is not None


def test_student_builds_from_the_registry_and_rows_pin_every_switch():
    cfg = {"model": {"name": "takd_student", "camera": "fake_bev_camera", "takd": {"sam": {"mode": "parallel"}}}}
    student = build_detector(cfg)
    assert isinstance(student, TAKDStudent) and student.residual.align.mode == "parallel"
    with pytest.raises(ConfigError, match="model.takd.ffm"):
        build_detector({"model": {**cfg["model"], "takd": {"ffm": "yes"}}})
    assert set(PRESETS) >= {"student", "+IMD", "+CMRD", "+SAM", "+FFM", "full"}
    for name, overrides in PRESETS.items():
        if name != "student":
            assert {o.split("=")[0] for o in overrides} >= {"distill.imd.enabled", "distill.cmrd.enabled",
                                                            "distill.logit.enabled", "model.takd.ffm"}


def test_engine_builds_the_distiller_with_teacher_and_ta(tmp_path):
    from monokd.training.checkpoint import build_model

    REGISTRY.setdefault("fake_lidar", "tests.takd_fakes:build_fake_lidar")
    (tmp_path / "teacher.yaml").write_text("model: {name: fake_lidar}\n")
    (tmp_path / "ta.yaml").write_text("model: {name: fake_bev_camera, depth_input: gt_pixel}\n")
    cfg = {"model": {"name": "takd_student", "camera": "fake_bev_camera", "takd": {"sam": {"dilations": [1, 2]}}},
           "distill": {"method": "takd", "teacher": {"config": str(tmp_path / "teacher.yaml")},
                       "ta": {"config": str(tmp_path / "ta.yaml")}}}
    model = build_model(cfg)
    assert isinstance(model, TAKDDistiller)
    assert isinstance(model.teacher, FakeLidar) and model.ta.gt_pixel and not model.ta.training
    cfg["distill"].pop("ta")
    with pytest.raises(ConfigError, match="distill.ta"):
        build_model(cfg)


def test_distillation_losses_fall_when_training_the_student():
    distiller = _distiller().train()
    optimizer = torch.optim.Adam(distiller.parameters(), lr=1e-2)
    batch = fake_batch()
    history = []
    for _ in range(20):
        terms = distiller.losses(distiller(batch), batch)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in terms.items()})
    for key in ("distill_imd", "distill_cmrd", "distill_logit_cls", "distill_logit_box", "distill_logit_dir"):
        assert history[-1][key] < 0.8 * history[0][key], (key, history[0][key], history[-1][key])
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]


def test_every_ablation_row_builds(tmp_path):
    from monokd.config import set_key
    from monokd.training.checkpoint import build_model

    REGISTRY.setdefault("fake_lidar", "tests.takd_fakes:build_fake_lidar")
    (tmp_path / "teacher.yaml").write_text("model: {name: fake_lidar}\n")
    (tmp_path / "ta.yaml").write_text("model: {name: fake_bev_camera, depth_input: gt_pixel}\n")
    for name, overrides in PRESETS.items():
        cfg = {"model": {"name": "takd_student", "camera": "fake_bev_camera", "takd": {"sam": {"dilations": [1, 2]}}},
               "distill": {"method": "takd", "teacher": {"config": str(tmp_path / "teacher.yaml")},
                           "ta": {"config": str(tmp_path / "ta.yaml")}}}
        for item in overrides:
            set_key(cfg, item)
        model = build_model(cfg)
        student = model if name == "student" else model.student
        assert isinstance(student, TAKDStudent), name
        assert (student.ffm is not None) == ("model.takd.ffm=true" in overrides), name
