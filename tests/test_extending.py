"""docs/extending.md, run: a toy detector written against monokd.models.contract alone, registered
by name, checked as a teacher by the preflight, and distilled with ADD by the code that builds
every distillation (monokd.training.checkpoint.build_model)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monokd.errors import ConfigError
from monokd.geometry.depth import object_depth_map
from monokd.models import REGISTRY, build_detector, detector_class
from monokd.models.contract import (IMAGES, SIGNALS, TARGETS, Detector, DistillSpec, attach_signals,
                                    signal_set)

CHANNELS = 8


class ToyDetector(Detector):
    """images -> two conv levels (strides 4, 8) -> pooled -> the mean log-depth of the image's
    objects. ``model.depth_input: gt_object`` makes it a teacher: the GT object-wise depth map
    enters as a fourth input channel."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = dict(cfg)
        self.stem = nn.Conv2d(4 if self.is_teacher(cfg) else 3, CHANNELS, 3, stride=4, padding=1)
        self.down = nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1)
        self.head = nn.Linear(CHANNELS, 1)

    @staticmethod
    def is_teacher(model_cfg: dict) -> bool:
        return model_cfg.get("depth_input") == "gt_object"

    @classmethod
    def from_config(cls, cfg: dict) -> "ToyDetector":
        return cls(cfg.get("model") or {})

    # --- what it declares ---------------------------------------------------------------------
    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        return (TARGETS,) if cls.is_teacher(model_cfg) else ()

    @property
    def distill_spec(self) -> DistillSpec:
        return DistillSpec(feature_channels=[CHANNELS, CHANNELS], feature_strides=[4, 8], query_dim=None,
                           num_decoder_layers=0)

    # --- forward, losses, decoding --------------------------------------------------------------
    def forward(self, batch: dict, signals=()) -> dict:
        images = batch[IMAGES]
        if self.is_teacher(self.cfg):
            size = tuple(images.shape[-2:])
            depth = torch.stack([object_depth_map(t["boxes_2d"], t["depth"], size, 1) for t in batch[TARGETS]])
            images = torch.cat([images, depth[:, None].to(images) / 60.0], dim=1)
        f4 = F.relu(self.stem(images))
        f8 = F.relu(self.down(f4))
        outputs = {"pred_log_depth": self.head(f8.mean(dim=(2, 3)))[:, 0]}
        return attach_signals(outputs, signal_set(signals), features=[f4, f8])

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        target = torch.stack([t["depth"].log().mean() for t in batch[TARGETS]])
        terms = {"loss_depth": F.l1_loss(outputs["pred_log_depth"], target)}
        terms["loss"] = terms["loss_depth"]
        return terms

    def decode(self, outputs: dict, batch: dict) -> list:
        return [[] for _ in batch[TARGETS]]


def toy_batch(batch_size: int = 2, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    targets = [{"boxes_2d": torch.tensor([[4.0, 4.0, 20.0, 16.0], [30.0, 8.0, 52.0, 28.0]]),
                "depth": torch.tensor([12.0 + 5 * b, 35.0]), "labels": torch.zeros(2, dtype=torch.long)}
               for b in range(batch_size)]
    P2 = torch.tensor([[50.0, 0, 32, 0], [0, 50.0, 16, 0], [0, 0, 1, 0]]).expand(batch_size, 3, 4).clone()
    return {"images": torch.randn(batch_size, 3, 32, 64, generator=gen), "P2": P2, "targets": targets,
            "frame_ids": [f"{i:06d}" for i in range(batch_size)]}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy", "tests.test_extending:ToyDetector")
    return {"model": {"name": "toy"}, "data": {"classes": ["Car"]}}


def test_the_toy_declares_what_generic_code_reads(toy):
    from monokd.serving.servable import unserved
    from monokd.training.preflight import is_privileged, model_role

    teacher_cfg = {**toy, "model": {"name": "toy", "depth_input": "gt_object"}}
    assert detector_class(toy) is ToyDetector
    assert model_role(toy)["privileged_inputs"] == [] and not is_privileged(model_role(toy))
    assert model_role(teacher_cfg)["privileged_inputs"] == ["targets"]
    student, teacher = build_detector(toy), build_detector(teacher_cfg)
    assert unserved(student, toy) is None
    assert "a teacher" in unserved(teacher, teacher_cfg) and "its labels" in unserved(teacher, teacher_cfg)
    assert student.decode_threshold is None and student.onnx_opset == 17
    assert student.match_foreground({}, toy_batch(3))[2][0].numel() == 0  # no queries: nothing matched


def test_the_toy_is_distilled_with_add_through_the_contract(toy, tmp_path):
    from monokd.training.checkpoint import build_model
    from monokd.training.preflight import check_teacher

    torch.manual_seed(0)
    teacher_cfg = {**toy, "model": {"name": "toy", "depth_input": "gt_object"}}
    teacher = build_detector(teacher_cfg)
    ckpt = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in teacher.state_dict().items()},
                "hyper_parameters": {"cfg": teacher_cfg}}, ckpt)
    cfg = {**toy, "distill": {"method": "add", "teacher": {"ckpt": str(ckpt)}, "response": {"enabled": False},
                              "feature": {"embed_dim": 8, "heads": 2}}}
    assert check_teacher(cfg, None) == []  # privileged: a teacher
    model = build_model(cfg)
    assert type(model.student) is ToyDetector and not any(k.startswith("teacher") for k in model.state_dict())
    assert model.student_signals == {"features"}

    batch = toy_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = []
    for _ in range(8):
        terms = model.losses(model(batch), batch)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        history.append(float(terms["distill_feat"].detach()))
    assert set(terms) == {"loss", "loss_depth", "distill_feat"}
    assert history[-1] < history[0]  # the student's features move towards the teacher's
    assert model.student.stem.weight.grad is not None and model.teacher.stem.weight.grad is None
    model.eval()
    assert SIGNALS not in model(batch)  # inference asks for no signal

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in build_detector(toy).state_dict().items()},
                "hyper_parameters": {"cfg": toy}}, plain)
    with pytest.raises(ConfigError, match="plain model"):
        check_teacher({**cfg, "distill": {**cfg["distill"], "teacher": {"ckpt": str(plain)}}}, None)
