"""Detectors, built by name from a config: ``build_detector(cfg)`` reads ``cfg["model"]["name"]``.

The registry maps a name to ``"module:builder"``; the module is imported only when that
detector is built, so adding one (CaDDN, PatchNet) is one line here and one builder function
``builder(cfg) -> nn.Module`` that takes the whole config.
"""

from __future__ import annotations

import importlib

from torch import nn

from monokd.config import check_types
from monokd.errors import ConfigError

REGISTRY: dict[str, str] = {
    "monodetr": "monokd.models.monodetr.model:build_monodetr",
    "patchnet": "monokd.models.patchnet.model:build_patchnet",
    "caddn": "monokd.models.caddn.model:build_caddn",
    "takd_student": "monokd.models.takd.model:build_takd_student",
    "lidar_pillars": "monokd.models.lidar.model:build_lidar_pillars",
    "depth_resnet": "monokd.models.depth.model:build_depth_net",
}


def register(name: str, target: str) -> None:
    """Add a detector: ``target`` = ``"package.module:builder"``."""
    REGISTRY[name] = target


def build_detector(cfg: dict) -> nn.Module:
    """The detector named by ``cfg["model"]["name"]``, built from the whole config."""
    name = (cfg.get("model") or {}).get("name")
    if name not in REGISTRY:
        raise ConfigError(f"model.name: {name!r} is not a known detector; known: {sorted(REGISTRY)}")
    module, _, builder = REGISTRY[name].partition(":")
    module = importlib.import_module(module)
    if isinstance(getattr(module, "DEFAULTS", None), dict):  # the model section's defaults
        check_types(cfg.get("model") or {}, module.DEFAULTS, "model")
    return getattr(module, builder)(cfg)
