"""Detectors, built by name from a config: ``build_detector(cfg)`` reads ``cfg["model"]["name"]``.

The registry maps a name to ``"module:Class"``, a :class:`monokd.models.contract.Detector`
built by ``Class.from_config(cfg)`` from the whole config (or to ``"module:builder"``, a
function ``builder(cfg) -> nn.Module``); the module is imported only when that detector is
needed, so adding one is one line here. :func:`detector_class` answers a detector's
declarations (privileged inputs, decode threshold) from a config without building it. The
module declares its ``model`` and ``loss`` sections (monokd.schema.Section) as ``SECTION``
and ``LOSS_SECTION``; the config loader checks a recipe against them.
"""

from __future__ import annotations

import importlib

from torch import nn

from monokd.errors import ConfigError, did_you_mean
from monokd.models.contract import Detector

REGISTRY: dict[str, str] = {
    "monodetr": "monokd.models.monodetr.model:MonoDETR",
    "patchnet": "monokd.models.patchnet.model:PatchNet",
    "caddn": "monokd.models.caddn.model:CaDDN",
    "takd_student": "monokd.models.takd.model:TAKDStudent",
    "lidar_pillars": "monokd.models.lidar.model:LidarPillars",
    "lidar_second": "monokd.models.lidar.second:LidarSecond",
    "depth_resnet": "monokd.models.depth.model:build_depth_net",
}


def register(name: str, target: str) -> None:
    """Add a detector: ``target`` = ``"package.module:Class"`` (a Detector with
    ``from_config(cfg)``) or ``"package.module:builder"``."""
    REGISTRY[name] = target


def _target(cfg: dict):
    """(module, the registered class or builder) of ``cfg["model"]["name"]``."""
    name = (cfg.get("model") or {}).get("name")
    if name not in REGISTRY:
        raise ConfigError(f"model.name: {name!r} is not a known detector; {did_you_mean(name, REGISTRY)}"
                          f"known: {sorted(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    module = importlib.import_module(module)
    return module, getattr(module, attr)


def detector_class(cfg: dict) -> type[Detector]:
    """The class of the detector ``cfg`` describes, not built: a builder function's detector
    answers with the contract's defaults (:class:`Detector`)."""
    _, target = _target(cfg)
    return target if isinstance(target, type) and issubclass(target, Detector) else Detector


def build_detector(cfg: dict) -> nn.Module:
    """The detector named by ``cfg["model"]["name"]``, built from the whole config."""
    _, target = _target(cfg)
    if isinstance(target, type):
        return target.from_config(cfg)
    return target(cfg)


def model_sections(model: dict):
    """The declarations (monokd.schema.Section) of the ``model`` and ``loss`` sections of the
    model ``model["name"]`` names: its module's ``SECTION`` and ``LOSS_SECTION``, or what its
    ``config_sections(model)`` returns (a model wrapping another); (None, None) for a name
    nobody registered or a module that declares none."""
    target = REGISTRY.get(model.get("name"))
    if target is None:
        return None, None
    module = importlib.import_module(target.partition(":")[0])
    if callable(getattr(module, "config_sections", None)):
        return module.config_sections(model)
    return getattr(module, "SECTION", None), getattr(module, "LOSS_SECTION", None)
