"""Distillation: wrap a student detector and a frozen teacher into one trainable detector."""

from __future__ import annotations

import importlib

from torch import nn

from monokd.errors import ConfigError, did_you_mean
from monokd.models.contract import FrozenRole

# method -> "module:Class"; each class declares ``frozen_roles`` and ``from_section(section,
# student, frozen)`` (monokd.distill.base.Distiller)
METHODS: dict[str, str] = {
    "add": "monokd.distill.add.distiller:ADDDistiller",
    "takd": "monokd.distill.takd.distiller:TAKDDistiller",
}
DEFAULT_METHOD = "add"


def distiller_class(cfg: dict):
    """The distiller class ``cfg["distill"]["method"]`` names (default ``add``)."""
    section = cfg.get("distill")
    if not section:
        raise ConfigError("distill: the config has no distill section")
    method = section.get("method", DEFAULT_METHOD)
    if method not in METHODS:
        raise ConfigError(f"distill.method: unknown method {method!r} ({did_you_mean(method, METHODS)}known: {', '.join(METHODS)})")
    module, _, name = METHODS[method].partition(":")
    return getattr(importlib.import_module(module), name)


def frozen_roles(cfg: dict) -> tuple[FrozenRole, ...]:
    """The frozen models (teacher, teaching assistant, ...) the config's distiller holds."""
    return tuple(distiller_class(cfg).frozen_roles)


def build_distiller(cfg: dict, student: nn.Module, teacher: nn.Module | None = None,
                    **frozen: nn.Module | None) -> nn.Module:
    """The distiller named by ``cfg["distill"]["method"]`` (default ``add``), around ``student``
    and the frozen models of its roles (``teacher``, and by name any other: MonoTAKD's ``ta``).

    The result is itself a detector (forward / losses / decode) whose ``parameters()`` and
    ``state_dict()`` hold the student and the adapters but never a frozen model.
    """
    cls = distiller_class(cfg)
    return cls.from_section(cfg["distill"], student, {"teacher": teacher, **frozen})


def distill_section(section: dict):
    """The declaration (monokd.schema.Section) of a ``distill`` section: its method's
    ``SECTION`` (``distill.method``, default ``add``)."""
    from monokd.schema import ConfigKeyError

    method = section.get("method", DEFAULT_METHOD) if isinstance(section, dict) else DEFAULT_METHOD
    if method not in METHODS:
        raise ConfigKeyError("distill.method", f"unknown method {method!r} ({did_you_mean(method, METHODS)}known: {', '.join(METHODS)})")
    return importlib.import_module(METHODS[method].partition(":")[0]).SECTION


def preset_overrides(name: str) -> list[str]:
    """The ``key=value`` overrides of a named ablation row: ADD's (``monokd.distill.add.PRESETS``,
    e.g. ``paper-literal``, ``depth-memory+gt-pairing``) or MonoTAKD's
    (``monokd.distill.takd.distiller.PRESETS``, e.g. ``+IMD``). ``monokd train --preset NAME``
    applies them before its ``--set`` items. Raises ConfigError naming the known rows."""
    from monokd.distill.add.distiller import PRESETS as ADD_PRESETS
    from monokd.distill.takd.distiller import PRESETS as TAKD_PRESETS

    for table in (ADD_PRESETS, TAKD_PRESETS):
        if name in table:
            return list(table[name])
    raise ConfigError(f"--preset {name!r}: unknown row (ADD: {', '.join(ADD_PRESETS)}; "
                      f"MonoTAKD: {', '.join(TAKD_PRESETS)})")
