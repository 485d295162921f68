"""What every distiller shares: a student it trains and frozen models it holds outside the
module tree.

A distiller is itself a detector (monokd.models.contract.Detector): ``forward`` is the student's
forward, asking it (while training) for the signals the distiller's losses read, so decoding,
validation and inference never pay for them; ``decode``, ``match_foreground``, ``distill_spec``
and the declarations are the student's.

The frozen models (``frozen_roles``: ADD a teacher, MonoTAKD a teacher and a teaching
assistant) are not in ``parameters()`` (so never in the optimizer), not in ``state_dict()`` (so
a distilled checkpoint holds the student and the adapters only), yet ``.to()`` / ``.half()``
reach them and ``train()`` keeps them in eval mode. Resuming rebuilds them from
``distill.<role>.{config, ckpt}``, which must therefore stay available while the run may resume.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from monokd.models.contract import Detector, FrozenRole, signal_set


class Distiller(Detector):
    """Base of ADD's and MonoTAKD's distillers. Subclasses set ``frozen_roles``, fill
    ``student_signals`` (the signals their losses read from the student's outputs) and
    implement ``from_section`` and ``losses``."""

    frozen_roles: ClassVar[tuple[FrozenRole, ...]] = (FrozenRole("teacher"),)

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.student_signals: frozenset[str] = frozenset()

    @classmethod
    def from_section(cls, section: dict, student: nn.Module, frozen: dict[str, nn.Module | None]) -> "Distiller":
        """The distiller of a ``distill`` config section, around ``student`` and the frozen
        models of its roles (by role name; None where not built)."""
        raise NotImplementedError(f"{cls.__name__}.from_section")

    @classmethod
    def unlabeled_refusal(cls, section: dict) -> str | None:
        """None when the method, configured by its ``distill`` section, can train on unlabeled
        frames (``data.unlabeled``: its terms either read no label or mask the unlabeled
        frames), else the one-line reason ``monokd train`` refuses the option with. Frozen
        models reading labels (privileged input ``targets``) are refused generically."""
        return (f"distill.method: {section.get('method')!r} does not declare training on unlabeled frames "
                "(Distiller.unlabeled_refusal); remove data.unlabeled")

    def hold_frozen(self, name: str, model: nn.Module | None) -> None:
        """Keep ``model`` as ``self.<name>``, frozen and outside the module tree."""
        object.__setattr__(self, name, model)  # deliberately not a registered submodule
        if model is not None:
            model.requires_grad_(False)
            model.eval()

    def frozen_models(self) -> list[nn.Module]:
        return [m for m in (getattr(self, role.name, None) for role in self.frozen_roles) if m is not None]

    # --- the detector interface, delegated to the student ---------------------------------
    def forward(self, batch: dict, signals=()) -> dict:
        wanted = (self.student_signals if self.training else frozenset()) | signal_set(signals)
        return self.student(batch, signals=wanted) if wanted else self.student(batch)

    def decode(self, outputs: dict, batch: dict) -> list:
        return self.student.decode(outputs, batch)

    def match_foreground(self, outputs: dict, batch: dict):
        return self.student.match_foreground(outputs, batch)

    @property
    def distill_spec(self):
        return self.student.distill_spec

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.student.inputs)

    @property
    def privileged_inputs(self) -> tuple[str, ...]:
        return tuple(self.student.privileged_inputs)

    @property
    def decode_threshold(self) -> tuple[str, float] | None:
        return getattr(self.student, "decode_threshold", None)

    @property
    def onnx_opset(self) -> int:
        return int(getattr(self.student, "onnx_opset", 0))

    def train(self, mode: bool = True):
        super().train(mode)
        for model in self.frozen_models():
            model.eval()  # dropout off, normalisation statistics frozen, always
        return self

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for model in self.frozen_models():
            model._apply(fn, recurse)  # device / dtype moves must reach the hidden models
        return self

    def student_state_dict(self) -> dict[str, torch.Tensor]:
        """The student's own state dict (what `monokd export` writes)."""
        return self.student.state_dict()
