"""Distillation: wrap a student detector and a frozen teacher into one trainable detector."""

from __future__ import annotations

from torch import nn

from monokd.errors import ConfigError


def build_distiller(cfg: dict, student: nn.Module, teacher: nn.Module | None,
                    ta: nn.Module | None = None) -> nn.Module:
    """The distiller named by ``cfg["distill"]["method"]`` (default ``add``).

    The result is itself a detector (forward / losses / decode) whose ``parameters()`` and
    ``state_dict()`` hold the student and the adapters but never the teacher (nor MonoTAKD's
    teaching assistant ``ta``).
    """
    section = cfg.get("distill")
    if not section:
        raise ConfigError("distill: the config has no distill section")
    method = section.get("method", "add")
    if method == "takd":
        from monokd.distill.takd.distiller import TAKDDistiller, parse_options

        return TAKDDistiller(student, teacher, ta, parse_options(section))
    if teacher is None:
        raise ConfigError("distill.teacher: no teacher model given (load it from distill.teacher.{config, ckpt})")
    if method == "add":
        from monokd.distill.add.distiller import ADDDistiller, parse_options

        return ADDDistiller(student, teacher, parse_options(section))
    raise ConfigError(f"distill.method: unknown method {method!r} (known: add, takd)")


METHODS = {"add": "monokd.distill.add.distiller", "takd": "monokd.distill.takd.distiller"}


def distill_section(section: dict):
    """The declaration (monokd.schema.Section) of a ``distill`` section: its method's
    ``SECTION`` (``distill.method``, default ``add``)."""
    import importlib

    from monokd.schema import ConfigKeyError

    method = section.get("method", "add") if isinstance(section, dict) else "add"
    if method not in METHODS:
        raise ConfigKeyError("distill.method", f"unknown method {method!r} (known: {', '.join(METHODS)})")
    return importlib.import_module(METHODS[method]).SECTION


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
