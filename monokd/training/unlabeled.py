"""Training on unlabeled frames (``data.unlabeled``, docs/unlabeled.md): what ``monokd train``
checks first, and the frames the engine counts.

A run may add unlabeled frames only when every loss can take them, which the models and the
distiller declare (monokd/models/contract.py), so nothing here names a model or a method:

- a distillation (``distill``): without one nothing learns from a frame without labels;
- no frozen model (teacher, TA) reads labels: none has ``targets`` among its privileged
  inputs (a teacher fed object-wise GT depth has nothing to read on an unlabeled frame);
- the distiller's ``unlabeled_refusal(section)`` is None (its terms read no label, or build
  what they need from the teacher's own outputs);
- the student's ``labeled_losses_of(model)``: its detection terms skip the unlabeled frames.

Each refusal is one ConfigError line naming the key.
"""

from __future__ import annotations

import torch

from monokd.config import get, load_config
from monokd.errors import ConfigError
from monokd.models.contract import LABELED, TARGETS

_HINT = "remove data.unlabeled"


def check_unlabeled(cfg: dict) -> None:
    """Refuse ``data.unlabeled`` where a loss cannot take unlabeled frames (module docstring)."""
    from monokd.distill import distiller_class, frozen_roles
    from monokd.models import detector_class

    if not get(cfg, "distill"):
        raise ConfigError("data.unlabeled: needs a distillation (distill section): a model trained alone learns "
                          f"nothing from a frame without labels; {_HINT}")
    for role in frozen_roles(cfg):
        frozen = _frozen_config(cfg, role.name)
        if frozen is None:
            continue
        reads = detector_class(frozen).privileged_inputs_of(get(frozen, "model") or {})
        if TARGETS in reads:
            raise ConfigError(f"data.unlabeled: distill.{role.name} ({get(frozen, 'model.name')!r}) reads the "
                              "frame's labels (privileged input 'targets', e.g. object-wise GT depth), which an "
                              f"unlabeled frame lacks; {_HINT}")
    refusal = distiller_class(cfg).unlabeled_refusal(cfg["distill"])
    if refusal:
        raise ConfigError(f"data.unlabeled: {refusal}")
    model = get(cfg, "model") or {}
    if not detector_class(cfg).labeled_losses_of(model):
        raise ConfigError(f"data.unlabeled: the student ({model.get('name')!r}) declares no detection loss masked "
                          f"to labeled frames (Detector.labeled_losses_of); {_HINT}")


def _frozen_config(cfg: dict, role: str) -> dict | None:
    """The config of frozen model ``role``: ``distill.<role>.config``, else the one its
    checkpoint stores; None when neither is given (its builder reports that)."""
    from monokd.training.checkpoint import checkpoint_config, read_checkpoint, teacher_paths

    ckpt, config = teacher_paths(cfg, role)
    if config:
        return load_config(config)
    if ckpt:
        return checkpoint_config(read_checkpoint(ckpt), ckpt)
    return None


def frame_counts(batch: dict) -> tuple[int, int]:
    """(labeled, unlabeled) frames of ``batch`` (``batch[LABELED]``; every frame labeled
    without it)."""
    flags = batch.get(LABELED)
    total = len(batch["frame_ids"])
    if flags is None:
        return total, 0
    labeled = int(torch.as_tensor(flags, dtype=torch.bool).sum())
    return labeled, total - labeled
