"""Demo presets: ``configs/demo_<name>.yaml`` (or any YAML path), the SynthKITTI size and the
``--set`` overrides that size the recipes for the demo.

``overrides.all`` (every run), ``overrides.<student>`` (every run of that student, e.g. its
width), ``overrides.<model>`` (one model of the story: ``teacher``, ``baseline``, ``add``),
``overrides.<student>.<model>`` (one model of this student's story only). Optional:
``student`` / ``method`` (the preset's default story), ``configs.<model>`` (a recipe
replacing the story's, as ``monokd ablate`` presets use) and ``evaluate`` / ``pictures_set``
(items of the evaluations, in the same layout).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from monokd.errors import ConfigError
from monokd.pipeline.stories import DEFAULT_METHOD, DEFAULT_STUDENT, default_student, story

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"


def load_preset(name: str, student: str | None = None, method: str | None = None) -> dict:
    """``configs/demo_<name>.yaml``, or a YAML path; ``preset["story"]`` is the story of
    ``(student, method)``: the arguments, else the preset's own ``student`` / ``method``
    keys, else monodetr + add."""
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / f"demo_{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem[len("demo_"):] for p in CONFIG_DIR.glob("demo_*.yaml"))
        raise ConfigError(f"{path}: no such demo preset (presets: {', '.join(choices)})")
    preset = yaml.safe_load(path.read_text()) or {}
    if "data" not in preset:
        raise ConfigError(f"{path}: the preset has no 'data' section")
    preset["overrides"] = preset.get("overrides") or {}
    if not isinstance(preset["overrides"], dict):
        raise ConfigError(f"{path}: overrides must be a mapping (all, <student>, <model>, <student>.<model>: lists of key=value)")
    method = method or preset.get("method") or DEFAULT_METHOD
    student = student or preset.get("student") or default_student(method)
    preset["story"] = story(student, method)
    preset["student"], preset["method"] = student, method
    preset["configs"] = preset.get("configs") or {}
    preset["_path"] = str(path)
    return preset


def recipe(preset: dict, model: str) -> Path:
    """The recipe of one model: the preset's ``configs.<model>`` if it names one (e.g. the
    CaDDN recipes of ``demo_caddn_synth.yaml`` for ``monokd ablate``), else the story's;
    relative to configs/ unless absolute."""
    path = Path((preset.get("configs") or {}).get(model) or preset["story"].model(model).recipe)
    return path if path.is_absolute() else CONFIG_DIR / path


def preset_items(preset: dict, section: str, model: str) -> list[str]:
    """The ``--set`` items of one model in a preset section (``overrides``, ``evaluate``):
    its ``all`` items, then the story's student's, then the model's own in every story
    (``<model>``), then the model's own in this student's story only (``<student>.<model>``,
    e.g. ``monodetr.teacher``: the stories share model names such as teacher)."""
    items = preset.get(section) or {}
    if not isinstance(items, dict):
        raise ConfigError(f"{preset.get('_path', 'preset')}: {section} must be a mapping "
                          "(all, <student>, <model>, <student>.<model>: lists of key=value)")
    student = preset.get("student", DEFAULT_STUDENT)
    return [*(items.get("all") or []), *(items.get(student) or []), *(items.get(model) or []),
            *(items.get(f"{student}.{model}") or [])]


def stage_overrides(preset: dict, model: str, data_root: str | Path) -> list[str]:
    """``--set`` items of one model's training: the data root, then the preset's
    ``overrides`` for every run (``all``), for the story's student, and for this model."""
    return [f"data.root={data_root}", *preset_items(preset, "overrides", model)]


def ta_overrides(ta_dir: str | Path, ckpt: str | Path) -> list[str]:
    """Point a MonoTAKD student at its trained teaching assistant (built from the config
    stored in its checkpoint)."""
    return [f"distill.ta.ckpt={ckpt}"]


def teacher_overrides(teacher_dir: str | Path, ckpt: str | Path) -> list[str]:
    """Point a distilled student at its trained teacher (built from the config stored in its
    checkpoint)."""
    return [f"distill.teacher.ckpt={ckpt}"]
