"""MonoTAKD: a camera student taught by a frozen LiDAR teacher and a frozen camera teaching
assistant (Liu et al., CVPR 2025).

    L_total = L_IMD + L_CMRD + L_logit  (+ L_GT, the student's own detection and depth loss)

    IMD   (Eq. 3)  F_S imitates F_TA                                  monokd/distill/takd/imd.py
    CMRD  (Eq. 5)  F_res' imitates F_res = F_T - F_TA                 monokd/distill/takd/cmrd.py
    logit          the student's anchor head imitates the teacher's   monokd/distill/takd/logit.py

F_T, F_TA, F_S, F_res' are (B, C, NY, NX) BEV features on one BEV grid: the teacher's ``bev``
signal (pillar scatter + BEV encoder, monokd/models/lidar), the TA's ``bev_features(batch)["bev"]``
(the camera pipeline lifting with the frame's dense depth, ``model.depth_input: gt_pixel``) and
the student's ``bev`` / ``residual`` signals (monokd/models/takd/model.py). With the
student's ``model.takd.ta: branch`` (the released code) F_TA is the student's own ``ta_bev``
signal and no TA network is held. The paper's total has no GT term and the released
code trains on the teacher's outputs only; ``distill.gt_loss.enabled`` adds the student's own
losses (its anchor-head and depth terms) as a documented switch.

Like ADD's distiller this is itself a detector whose ``forward`` is the student's
(monokd.distill.base). The teacher and the TA are frozen roles held outside the module tree
(never optimised, never checkpointed with the student), each built only when a loss needs it;
they run under ``torch.no_grad`` inside ``losses``.

Depth maps: a non-finite value in ``batch["depth_maps"]`` (NaN-padded maps, MonoTAKD #7)
becomes 0 (= no depth) before any model sees the batch, and the feature losses compare finite
cells only, so a NaN can never reach a loss.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.distill.base import Distiller
from monokd.distill.takd.cmrd import RESIDUALS, cmrd_loss, residual_target
from monokd.distill.takd.features import NORMALIZE
from monokd.distill.takd.imd import VARIANTS as IMD_VARIANTS
from monokd.distill.takd.imd import imd_loss
from monokd.distill.takd.logit import logit_losses
from monokd.errors import ConfigError
from monokd.models.bev.anchor_head import HEAD_OUTPUTS, PRED_BOXES, PRED_CLS, PRED_DIR
from monokd.models.bev.box_coder import CODE_SIZE
from monokd.models.contract import FrozenRole, signal_set, signals_of
from monokd.schema import Section

DEFAULTS = {
    "method": "takd",
    # allow_*: overrides of monokd.training.preflight.check_teacher (noted in the run's log)
    # config: None builds the model from the config stored in its checkpoint
    "teacher": {"config": None, "ckpt": None, "allow_plain": False, "allow_overlap": False},
    "ta": {"config": None, "ckpt": None, "allow_plain": False, "allow_overlap": False},
    # variant: paper (MSE with gradient) or released (batch min-max, detached: zero gradient)
    "imd": {"enabled": True, "weight": 1.0, "normalize": "none", "variant": "paper"},
    # the released code: residual released (|batch min-max F_TA - F_T| >= 0.6 x batch max), weight 0.2
    "cmrd": {"enabled": True, "weight": 1.0, "residual": "difference", "normalize": "none", "threshold": 0.6},
    "logit": {"enabled": True, "weight": 1.0, "cls_weight": 2.0, "box_weight": 2.0, "dir_weight": 0.4,
              "score_threshold": 0.1, "beta": 2.0, "cls_batch_mean": True},  # released: false
    "gt_loss": {"enabled": False, "weight": 1.0},
}
CHOICES = {"imd.normalize": NORMALIZE, "imd.variant": IMD_VARIANTS, "cmrd.normalize": NORMALIZE,
           "cmrd.residual": RESIDUALS}
SECTION = Section("distill", DEFAULTS, choices=CHOICES,
                  paths=("teacher.config", "teacher.ckpt", "ta.config", "ta.ckpt"),
                  renamed={f"{role}_{what}": f"{role}.{what}" for role in ("teacher", "ta") for what in ("config", "ckpt")})


def parse_options(section: dict) -> dict:
    """``cfg["distill"]`` merged over DEFAULTS; unknown keys or values raise ConfigError."""
    options = SECTION.resolve(section)
    if options["method"] != "takd":
        raise ConfigError(f"distill.method: {options['method']!r} is not 'takd'")
    if not any(options[part]["enabled"] for part in ("imd", "cmrd", "logit", "gt_loss")):
        raise ConfigError("distill: imd, cmrd, logit and gt_loss are all disabled: nothing would train the "
                          "student (drop the distill section to train it alone)")
    return options


def clean_depth(batch: dict) -> dict:
    """``batch`` with non-finite depth-map values set to 0 (a shallow copy; the input is kept)."""
    depth = batch.get("depth_maps")
    if depth is None or bool(torch.isfinite(depth).all()):
        return batch
    return {**batch, "depth_maps": torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)}


class TAKDDistiller(Distiller):
    """Student + (hidden, frozen) LiDAR teacher and camera TA; see the module docstring."""

    frozen_roles = (FrozenRole("teacher", required=False), FrozenRole("ta", required=False))

    def __init__(self, student: nn.Module, teacher: nn.Module | None, ta: nn.Module | None, options: dict):
        super().__init__(student)
        self.options = options
        needs_teacher = options["cmrd"]["enabled"] or options["logit"]["enabled"]
        needs_ta = options["imd"]["enabled"] or options["cmrd"]["enabled"]
        # the student's own GT-depth branch (model.takd.ta: branch) gives F_TA in its forward
        self.ta_branch = needs_ta and bool(getattr(student, "ta_branch", False))
        if self.ta_branch and ta is not None:
            raise ConfigError("distill.ta: the student computes its TA itself (model.takd.ta: branch); drop "
                              "distill.ta.{config, ckpt} or set model.takd.ta: network")
        if needs_teacher and teacher is None:
            raise ConfigError("distill.teacher: CMRD and logit distillation need the LiDAR teacher "
                              "(distill.teacher.{config, ckpt})")
        if needs_ta and ta is None and not self.ta_branch:
            raise ConfigError("distill.ta: IMD and CMRD need the camera TA (distill.ta.{config, ckpt})")
        if needs_ta and not self.ta_branch and not callable(getattr(ta, "bev_features", None)):
            raise ConfigError(f"distill.ta: {type(ta).__name__} has no bev_features(batch); the TA is a camera "
                              "BEV detector (caddn with model.depth_input: gt_pixel)")
        if options["cmrd"]["enabled"] and getattr(student, "residual", None) is None:
            raise ConfigError("distill.cmrd.enabled: the student has no residual branch to train "
                              "(model.name: takd_student with model.takd.residual: true)")
        if (getattr(student, "residual", None) is not None and getattr(student, "ffm", None) is None
                and not options["cmrd"]["enabled"]):
            raise ConfigError("model.takd.residual: without CMRD and without FFM nothing trains the residual "
                              "branch (its parameters would get no gradient); set model.takd.residual=false")
        if options["imd"]["enabled"] and not callable(getattr(student, "bev_features", None)):
            raise ConfigError(f"distill.imd.enabled: the student ({type(student).__name__}) exposes no BEV feature")
        self.hold_frozen("teacher", teacher if needs_teacher else None)
        self.hold_frozen("ta", ta if needs_ta and not self.ta_branch else None)
        self.student_signals = signal_set([name for name, part in (("bev", "imd"), ("residual", "cmrd"))
                                           if options[part]["enabled"]] + (["ta_bev"] if self.ta_branch else []))
        self.teacher_signals = signal_set({"bev"} if options["cmrd"]["enabled"] else ())

    @classmethod
    def unlabeled_refusal(cls, section: dict) -> str | None:
        """None: IMD, CMRD and the logit loss read no label (teacher on LiDAR, TA on the depth
        maps), the GT loss is the student's own, which masks unlabeled frames."""
        return None

    @classmethod
    def from_section(cls, section: dict, student: nn.Module, frozen: dict) -> "TAKDDistiller":
        return cls(student, frozen.get("teacher"), frozen.get("ta"), parse_options(section))

    def forward(self, batch: dict, signals=()) -> dict:
        return super().forward(clean_depth(batch), signals)

    # --- losses ----------------------------------------------------------------------------
    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        """``distill_imd``, ``distill_cmrd``, ``distill_logit_{cls, box, dir}`` (weighted) for the
        enabled parts, the student's own terms if ``gt_loss`` is on, and ``loss`` = their sum."""
        opts = self.options
        batch = clean_depth(batch)
        terms: dict[str, torch.Tensor] = {}
        if opts["gt_loss"]["enabled"]:
            own = dict(self.student.losses(outputs, batch))
            own_total = own.pop("loss")
            terms.update(own)
        with torch.no_grad():
            teacher_out = self.teacher(batch, signals=self.teacher_signals) if self.teacher is not None else None
            ta_bev = self.ta.bev_features(batch)["bev"] if self.ta is not None else None
        if self.ta_branch:  # the student's own TA branch; IMD and CMRD take it as a target (detached)
            ta_bev = _bev(outputs, "ta_bev", "student")
        extra = {}
        if opts["imd"]["enabled"]:
            student_bev = _bev(outputs, "bev", "student")
            _same_grid(student_bev, ta_bev, "the student", "the TA")
            extra["distill_imd"] = opts["imd"]["weight"] * imd_loss(student_bev, ta_bev, opts["imd"]["normalize"],
                                                                   opts["imd"]["variant"])
        if opts["cmrd"]["enabled"]:
            teacher_bev = _bev(teacher_out, "bev", "teacher")
            _same_grid(teacher_bev, ta_bev, "the LiDAR teacher", "the TA")
            target = residual_target(teacher_bev, ta_bev, opts["cmrd"]["residual"], opts["cmrd"]["normalize"],
                                     opts["cmrd"]["threshold"])
            predicted = _bev(outputs, "residual", "student")
            _same_grid(predicted, target, "the student's residual", "F_T - F_TA")
            extra["distill_cmrd"] = opts["cmrd"]["weight"] * cmrd_loss(predicted, target)
        if opts["logit"]["enabled"]:
            logit = opts["logit"]
            student_head, teacher_head = _head(outputs, "student"), _head(teacher_out, "teacher")
            num_classes, num_dir_bins = _head_sizes(student_head)
            parts = logit_losses(student_head, teacher_head, num_classes, CODE_SIZE, num_dir_bins,
                                 logit["score_threshold"], logit["beta"],
                                 {"cls": logit["cls_weight"], "box": logit["box_weight"], "dir": logit["dir_weight"]},
                                 terms=("cls", "box", "dir") if student_head.get(PRED_DIR) is not None
                                 else ("cls", "box"), cls_batch_mean=logit["cls_batch_mean"])
            extra.update({f"distill_logit_{k}": logit["weight"] * v for k, v in parts.items()})
        clash = set(extra) & set(terms)
        if clash:
            raise ConfigError(f"distill: the student's losses already use the keys {sorted(clash)}")
        total = sum(extra.values())
        if opts["gt_loss"]["enabled"]:
            total = total + opts["gt_loss"]["weight"] * own_total
        terms.update(extra)
        terms["loss"] = total
        return terms


def _bev(outputs: dict | None, key: str, who: str) -> torch.Tensor:
    """The ``key`` signal (``bev`` or ``residual``) of ``outputs``."""
    return signals_of(outputs, who).require(key, who, "MonoTAKD needs BEV detectors (takd_student, lidar_pillars)")


def _same_grid(a: torch.Tensor, b: torch.Tensor, who_a: str, who_b: str) -> None:
    if a.shape != b.shape:
        raise ConfigError(f"distill: {who_a}'s BEV feature {tuple(a.shape)} vs {who_b}'s {tuple(b.shape)}: all "
                          "three models need the same model.grid and BEV channels")


def _head(outputs: dict | None, who: str) -> dict:
    outputs = outputs or {}
    missing = [k for k in (PRED_CLS, PRED_BOXES) if outputs.get(k) is None]
    if missing:
        raise ConfigError(f"distill.logit: the {who}'s outputs lack {missing} (an anchor head's outputs)")
    return {key: outputs.get(key) for key in HEAD_OUTPUTS}


def _head_sizes(head: dict) -> tuple[int, int]:
    """(classes, direction bins) from channels-last head outputs with A anchors per cell and a
    CODE_SIZE-D code: box channels = CODE_SIZE * A."""
    anchors = head[PRED_BOXES].shape[-1] // CODE_SIZE
    num_dir_bins = head[PRED_DIR].shape[-1] // anchors if head.get(PRED_DIR) is not None else 0
    return head[PRED_CLS].shape[-1] // anchors, num_dir_bins


# --- named ablation rows (the paper's Table 4 switches), as overrides of configs/takd_*.yaml ----
def _row(imd: bool, cmrd: bool, sam: bool, ffm: bool, logit: bool, gt: bool) -> list[str]:
    return [f"distill.imd.enabled={str(imd).lower()}", f"distill.cmrd.enabled={str(cmrd).lower()}",
            f"distill.logit.enabled={str(logit).lower()}", f"distill.gt_loss.enabled={str(gt).lower()}",
            f"model.takd.residual={str(cmrd or ffm).lower()}", f"model.takd.sam.enabled={str(sam).lower()}",
            f"model.takd.ffm={str(ffm).lower()}"]


PRESETS: dict[str, list[str]] = {
    # the camera student alone: no distillation, no residual branch, no FFM (= its camera detector)
    "student": ["distill=null", "model.takd.residual=false", "model.takd.ffm=false"],
    "+IMD": _row(True, False, False, False, False, True),
    "+CMRD": _row(True, True, False, False, False, True),
    "+SAM": _row(True, True, True, False, False, True),
    "+FFM": _row(True, True, True, True, False, True),
    "full": _row(True, True, True, True, True, False),  # the paper's L_total
    "full+GT": _row(True, True, True, True, True, True),
}
TABLES = {"table4": ["student", "+IMD", "+CMRD", "+SAM", "+FFM", "full"]}
# What `monokd ablate --method takd` reports of these rows (monokd.pipeline.ablate).
ABLATION = {
    "title": "MonoTAKD",
    "rows": "Rows: the paper's component ablation (camera student alone, +IMD, +CMRD, +SAM, +FFM, full) and the "
            "LiDAR teacher and the TA",
    "labels": {}, "frozen_paper_ap3d": {}, "default_rows": {"quick": ["student", "full+GT"]},
}

