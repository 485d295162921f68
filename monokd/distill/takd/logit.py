"""Logit distillation from the LiDAR teacher's anchor head (MonoTAKD, Liu et al. 2025, Sec. 3.5;
the loss of CMKD's ``AnchorHeadSingleCMKD_V2``, which the released code trains with).

Student and teacher share the BEV grid and the anchor head's configuration, so their anchors
correspond one to one. Per image, over its N anchors and C classes, with t = sigmoid(teacher
class logits), s = student class logits, w_n = [sum_c t_nc > tau] * sum_c t_nc / #{n: sum_c t_nc > tau}:

    L_cls = sum_c sum_n QFL(s_nc, t_nc) / #{n: t_nc > tau}          (normalised per class)
            QFL(s, t) = BCE(sigmoid(s), t) * |sigmoid(s) - t|^beta        (Li et al. 2020, beta = 2)
    L_box = sum_n w_n * sum_k smoothL1_{1/9}(b_nk - b^T_nk)                (7-D residual codes; the
            heading compared through sin(a - b) = sin a cos b - cos a sin b: the box coder's
            ``sin_difference``, the one the anchor head's own box loss uses)
    L_dir = sum_n w_n * CE(d_n, argmax d^T_n)
    L_logit = w_cls L_cls + w_box L_box + w_dir L_dir,   averaged over the batch

(The released head sums L_cls over the batch without dividing by B, ``cls_batch_mean=False``:
B times this L_cls, equal at the released batch of 1.)

tau = 0.1 and (w_cls, w_box, w_dir) = (2, 2, 0.4) as in the released KITTI recipe. The
teacher's outputs are targets: no gradient reaches the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monokd.models.bev.anchor_head import PRED_BOXES, PRED_CLS, PRED_DIR
from monokd.models.bev.box_coder import CODE_SIZE, sin_difference

_SMOOTH_L1_BETA = 1.0 / 9.0  # OpenPCDet's WeightedSmoothL1Loss for anchor heads


def per_anchor(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, A * size) channels-last head output (OpenPCDet's layout) -> (B, H * W * A, size)."""
    return tensor.reshape(tensor.shape[0], -1, size)


def quality_focal_loss(student_logits: torch.Tensor, teacher_scores: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Elementwise QFL of logits against soft targets in [0, 1] (same shape)."""
    bce = F.binary_cross_entropy_with_logits(student_logits, teacher_scores, reduction="none")
    return bce * (student_logits.sigmoid() - teacher_scores).abs().pow(beta)


def logit_losses(student: dict, teacher: dict, num_classes: int, code_size: int = CODE_SIZE, num_dir_bins: int = 2,
                 score_threshold: float = 0.1, beta: float = 2.0, weights: dict | None = None,
                 terms=("cls", "box", "dir"), cls_batch_mean: bool = True) -> dict[str, torch.Tensor]:
    """``{"cls", "box", "dir"}`` (weighted, those named in ``terms``) from two anchor-head outputs
    (``pred_cls``, ``pred_boxes``, ``pred_dir``, monokd.models.bev.anchor_head) of the same shapes;
    ``cls_batch_mean=False`` sums the class term over the batch (the released code)."""
    weights = {"cls": 2.0, "box": 2.0, "dir": 0.4, **(weights or {})}
    for key in (PRED_CLS, PRED_BOXES) + ((PRED_DIR,) if "dir" in terms else ()):
        if student.get(key) is None or teacher.get(key) is None or student[key].shape != teacher[key].shape:
            raise ValueError(f"logit distillation: {key} missing or of different shapes in the student "
                             f"and the teacher; they must share the BEV grid and the anchor head")
    with torch.no_grad():
        scores = per_anchor(teacher[PRED_CLS].detach(), num_classes).float().sigmoid().nan_to_num(0.0)
        anchor_score = scores.sum(-1)  # (B, N)
        positive = anchor_score > score_threshold
        anchor_weight = positive.float() * anchor_score / positive.sum(1, keepdim=True).clamp_min(1)
    batch = scores.shape[0]
    out = {}
    if "cls" in terms:
        logits = per_anchor(student[PRED_CLS], num_classes)
        normaliser = (scores > score_threshold).sum(1, keepdim=True).clamp_min(1)  # (B, 1, C)
        cls = (quality_focal_loss(logits, scores, beta) / normaliser).sum()
        out["cls"] = weights["cls"] * (cls / batch if cls_batch_mean else cls)
    if "box" in terms:
        boxes = per_anchor(student[PRED_BOXES], code_size)
        target = per_anchor(teacher[PRED_BOXES].detach(), code_size).nan_to_num(0.0)
        boxes, target = sin_difference(boxes, target)
        per_box = F.smooth_l1_loss(boxes, target, reduction="none", beta=_SMOOTH_L1_BETA).sum(-1)
        out["box"] = weights["box"] * (anchor_weight * per_box).sum() / batch
    if "dir" in terms:
        logits = per_anchor(student[PRED_DIR], num_dir_bins)
        target = per_anchor(teacher[PRED_DIR].detach(), num_dir_bins).argmax(-1)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(anchor_weight)
        out["dir"] = weights["dir"] * (anchor_weight * ce).sum() / batch
    return out
