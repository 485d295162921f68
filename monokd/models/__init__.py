"""Detectors, built by name from a config: ``build_detector(cfg)`` reads ``cfg["model"]["name"]``.

The registry maps a name to ``"module:builder"``; the module is imported only when that
detector is built, so adding one (CaDDN, PatchNet) is one line here and one builder function
``builder(cfg) -> nn.Module`` that takes the whole config. The module declares its ``model``
and ``loss`` sections (monokd.schema.Section) as ``SECTION`` and ``LOSS_SECTION``; the config
loader checks a recipe against them.
"""

from __future__ import annotations

import importlib

from torch import nn

from monokd.errors import ConfigError

REGISTRY: dict[str, str] = {
    "monodetr": "monokd.models.monodetr.model:build_monodetr",
    "patchnet": "monokd.models.patchnet.model:build_patchnet",
    "caddn": "monokd.models.caddn.model:build_caddn",
    "takd_student": "monokd.models.takd.model:build_takd_student",
    "lidar_pillars": "monokd.models.lidar.model:build_lidar_pillars",
}
# models with a config that are not detectors (built by their own command)
CONFIG_ONLY: dict[str, str] = {"depth_resnet": "monokd.models.depth.model"}


def register(name: str, target: str) -> None:
    """Add a detector: ``target`` = ``"package.module:builder"``."""
    REGISTRY[name] = target


def build_detector(cfg: dict) -> nn.Module:
    """The detector named by ``cfg["model"]["name"]``, built from the whole config."""
    name = (cfg.get("model") or {}).get("name")
    if name not in REGISTRY:
        raise ConfigError(f"model.name: {name!r} is not a known detector; known: {sorted(REGISTRY)}")
    module, _, builder = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), builder)(cfg)


def model_sections(model: dict):
    """The declarations (monokd.schema.Section) of the ``model`` and ``loss`` sections of the
    model ``model["name"]`` names: its module's ``SECTION`` and ``LOSS_SECTION``, or what its
    ``config_sections(model)`` returns (a model wrapping another); (None, None) for a name
    nobody registered or a module that declares none."""
    target = REGISTRY.get(model.get("name")) or CONFIG_ONLY.get(model.get("name"))
    if target is None:
        return None, None
    module = importlib.import_module(target.partition(":")[0])
    if callable(getattr(module, "config_sections", None)):
        return module.config_sections(model)
    return getattr(module, "SECTION", None), getattr(module, "LOSS_SECTION", None)
