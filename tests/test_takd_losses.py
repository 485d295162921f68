"""MonoTAKD's losses: IMD, CMRD (both residual definitions), logit distillation; NaN safety."""

from __future__ import annotations

import math

import pytest
import torch

from monokd.distill.takd.cmrd import cmrd_loss, residual_target
from monokd.distill.takd.features import masked_mse, minmax
from monokd.distill.takd.imd import imd_loss
from monokd.distill.takd.logit import logit_losses, quality_focal_loss
from monokd.models.bev.box_coder import sin_difference


def test_imd_value_and_gradient_into_the_student_only():
    student = torch.ones(2, 3, 4, 5, requires_grad=True)
    ta = torch.zeros(2, 3, 4, 5, requires_grad=True)
    loss = imd_loss(student, ta)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert student.grad.abs().sum() > 0
    assert ta.grad is None  # the TA is a fixed target


def test_imd_minmax_is_per_sample_and_keeps_the_gradient():
    x = torch.tensor([0.0, 2.0, 4.0]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    x[1] *= 10
    assert torch.allclose(minmax(x), torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(2, 1, 1, 3))
    student = torch.randn(2, 3, 4, 5, requires_grad=True)
    imd_loss(student, torch.randn(2, 3, 4, 5), normalize="minmax").backward()
    assert student.grad.abs().sum() > 0


def test_nan_never_reaches_a_feature_loss():
    torch.manual_seed(0)
    student = torch.randn(1, 2, 3, 3, requires_grad=True)
    target = torch.randn(1, 2, 3, 3)
    target[0, 0, 1, 1] = float("nan")
    target[0, 1, 0, 0] = float("inf")
    for normalize in ("none", "minmax"):
        loss = imd_loss(student, target, normalize)
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(student.grad).all()
        if normalize == "none":  # (min-max couples every element to the sample's extremes)
            assert student.grad[0, 0, 1, 1] == 0 and student.grad[0, 1, 0, 0] == 0
        student.grad = None
    # the masked mean counts only the finite elements
    assert masked_mse(torch.zeros(1, 1, 1, 2), torch.tensor([[[[2.0, float("nan")]]]])).item() == pytest.approx(4.0)
    for residual in ("difference", "abs_threshold"):
        target_res = residual_target(target, torch.zeros_like(target), residual)
        assert torch.isfinite(cmrd_loss(torch.zeros_like(target, requires_grad=True), target_res))


def test_cmrd_residual_definitions():
    teacher = torch.tensor([1.0, 5.0, 2.0, 0.0]).view(1, 1, 2, 2)
    ta = torch.tensor([2.0, 1.0, 2.0, 0.5]).view(1, 1, 2, 2)
    assert torch.equal(residual_target(teacher, ta, "difference"), teacher - ta)
    # |TA - T| = [1, 4, 0, 0.5]; 0.6 * max = 2.4 keeps only the 4
    expected = torch.tensor([0.0, 4.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert torch.equal(residual_target(teacher, ta, "abs_threshold", threshold=0.6), expected)
    with pytest.raises(ValueError, match="share the BEV grid"):
        residual_target(teacher, ta[..., :1])
    predicted = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss = cmrd_loss(predicted, expected)
    assert loss.item() == pytest.approx(16.0 / 4)
    loss.backward()
    assert predicted.grad.abs().sum() > 0


def _head(batch=2, h=3, w=4, anchors=2, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pred_cls": torch.randn(batch, h, w, anchors * classes, generator=g),
            "pred_boxes": torch.randn(batch, h, w, anchors * 7, generator=g),
            "pred_dir": torch.randn(batch, h, w, anchors * 2, generator=g)}


def test_quality_focal_loss_and_sin_difference_by_hand():
    logits = torch.zeros(3)
    qfl = quality_focal_loss(logits, torch.tensor([0.5, 1.0, 0.0]))
    assert torch.allclose(qfl, torch.tensor([0.0, math.log(2) * 0.25, math.log(2) * 0.25]))
    a = torch.zeros(1, 7)
    a[0, 6] = 0.3
    b = torch.zeros(1, 7)
    b[0, 6] = -0.2
    s, t = sin_difference(a, b)
    assert (s - t)[0, 6].item() == pytest.approx(math.sin(0.5))


def test_logit_losses_terms_zero_at_agreement_and_gradient():
    teacher = _head(seed=0)
    same = logit_losses({k: v.clone() for k, v in teacher.items()}, teacher, num_classes=3)
    assert set(same) == {"cls", "box", "dir"}
    assert same["box"].item() == pytest.approx(0.0, abs=1e-7)
    assert same["cls"].item() == pytest.approx(0.0, abs=1e-7)  # QFL vanishes where sigmoid(s) = t
    student = {k: v.requires_grad_() for k, v in _head(seed=1).items()}
    teacher = {k: v.requires_grad_() for k, v in teacher.items()}
    losses = logit_losses(student, teacher, num_classes=3)
    sum(losses.values()).backward()
    for key in student:
        assert student[key].grad.abs().sum() > 0
        assert teacher[key].grad is None
    assert set(logit_losses(_head(seed=1), _head(), 3, terms=("cls",))) == {"cls"}


def test_logit_losses_below_threshold_give_no_box_or_dir_signal():
    teacher = _head()
    teacher["pred_cls"] = torch.full_like(teacher["pred_cls"], -20.0)  # sigmoid ~ 0 everywhere
    teacher["pred_boxes"][0, 0, 0, 0] = float("nan")
    losses = logit_losses(_head(seed=1), teacher, num_classes=3)
    assert losses["box"].item() == 0 and losses["dir"].item() == 0
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="same shapes|different shapes"):
        logit_losses(_head(h=2), teacher, num_classes=3)


def test_logit_cls_is_normalised_per_class_by_the_teachers_positives():
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    # 1 image, 3 anchors (1 x 3 cells, 1 anchor each), 2 classes; teacher positives: class 0 x2, class 1 x1
    teacher_cls = torch.tensor([[logit(0.5), logit(0.8)], [logit(0.5), -20.0], [-20.0, -20.0]]).view(1, 1, 3, 2)
    zeros = {"pred_cls": torch.zeros(1, 1, 3, 2), "pred_boxes": torch.zeros(1, 1, 3, 7),
             "pred_dir": torch.zeros(1, 1, 3, 2)}
    teacher = {**zeros, "pred_cls": teacher_cls}
    loss = logit_losses(zeros, teacher, num_classes=2, terms=("cls",), weights={"cls": 1.0})["cls"]
    ln2, background = math.log(2), math.log(2) * 0.25  # sigmoid(0) = 0.5 against t ~ 0
    class0 = (0 + 0 + background) / 2
    class1 = (ln2 * 0.3 ** 2 + background + background) / 1
    assert loss.item() == pytest.approx(class0 + class1, rel=1e-5)
