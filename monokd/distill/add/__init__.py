"""ADD (Wu et al., AAAI 2023): attention-based depth distillation with 3D-aware positional encoding."""

from monokd.distill.add.distiller import PRESETS, TABLES, ADDDistiller, parse_options

__all__ = ["ADDDistiller", "PRESETS", "TABLES", "parse_options"]
