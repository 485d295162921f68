"""The demo's stories: what ``monokd demo --student S --method M`` trains.

A *story* (:data:`STORIES`, keyed by ``(student, method)``) is the models in the order of
their waves, each with its recipe and the model it learns from. The models of one wave run
side by side as parallel lanes (``monokd.pipeline.lanes``); adding a story (a student such as
CaDDN, a method such as MonoTAKD) is one :class:`Story` entry here plus that student's
``--set`` items in the presets' ``overrides.<student>``. This registry is the one place of
the pipeline that names models and methods.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from monokd.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Model:
    """One model a story trains: its run folder name (also its preset overrides key), the
    recipe under configs/, its row in the report, its role (``teacher``, ``baseline`` or
    ``distilled``: the colour of its bars and curves), the model it is distilled from and,
    for MonoTAKD, its teaching assistant (``distill.ta``)."""

    name: str
    recipe: str
    label: str
    role: str
    teacher: str | None = None
    ta: str | None = None


@dataclass(frozen=True)
class Story:
    """What ``monokd demo --student S --method M`` trains: ``waves`` of models; the models
    of a wave train side by side, a wave starts when the previous one has ended.
    ``prepare`` ("module:function", optional) builds the story's inputs first, as a stage of
    its own (``prepare_what`` its banner), and returns ``--set`` items for every model
    (PatchNet: depth maps and 2-D boxes); ``prepare_report`` ("module:function", optional)
    returns the report's lines on those inputs; ``figure`` ("module:function", optional)
    draws a figure of the trained models and returns the report's section on it. ``docs`` is
    the page of the story's longer runs, which the sentence under the report's table points
    to (``longer_runs``: that pointer in words of its own, when it needs more)."""

    waves: tuple[tuple[Model, ...], ...]
    method: str = "ADD"  # the report's title
    prepare: str | None = None
    prepare_what: str = "the story's inputs"
    prepare_report: str | None = None
    figure: str | None = None
    docs: str = "docs/add.md"
    longer_runs: str | None = None

    @property
    def models(self) -> tuple[Model, ...]:
        return tuple(m for wave in self.waves for m in wave)

    def model(self, name: str) -> Model:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"the demo's story has no model {name!r} (models: {', '.join(m.name for m in self.models)})")


DEFAULT_STUDENT, DEFAULT_METHOD = "monodetr", "add"
STORIES: dict[tuple[str, str], Story] = {
    # ADD's stories: the teacher and the baseline side by side (neither needs the other),
    # then the distilled student alone with every core: its step runs the frozen teacher's
    # forward too, so it is the longest training, and it is the one that must wait
    ("monodetr", "add"): Story(waves=(
        (Model("teacher", "monodetr_teacher_synth.yaml", "Teacher (object-wise GT depth)", "teacher"),
         Model("baseline", "monodetr_synth.yaml", "MonoDETR (baseline)", "baseline")),
        (Model("add", "add_monodetr_synth.yaml", "MonoDETR + ADD", "distilled", teacher="teacher"),),
    ), longer_runs="the README's 5-seed runs at the recipe's schedule (800 train frames, 12 epochs, "
                   "1000 val frames: README.md, \"Results on SynthKITTI: ADD on MonoDETR\", and docs/add.md)"),
    # MonoTAKD (docs/monotakd.md): LiDAR teacher and camera TA, then the camera student alone
    # (CaDDN) and the MonoTAKD student side by side; model names distinct from the ADD story's,
    # so that a preset's overrides.<model> size each story's models apart
    ("caddn", "takd"): Story(method="MonoTAKD", waves=(
        (Model("lidar_teacher", "takd_lidar_synth.yaml", "LiDAR teacher (pillars)", "teacher"),
         Model("ta", "takd_ta_synth.yaml", "TA (camera, GT depth)", "teacher")),
        (Model("camera", "caddn_synth.yaml", "CaDDN (student alone)", "baseline"),
         Model("takd", "takd_synth.yaml", "CaDDN + MonoTAKD", "distilled", teacher="lidar_teacher", ta="ta")),
    ), figure="monokd.pipeline.takd_figure:bev_section", docs="docs/monotakd.md"),
    # ADD on CaDDN (docs/caddn.md): the teacher lifts the pixel-wise GT depth
    ("caddn", "add"): Story(waves=(
        (Model("teacher", "caddn_teacher_synth.yaml", "Teacher (pixel-wise GT depth)", "teacher"),
         Model("baseline", "caddn_synth.yaml", "CaDDN (baseline)", "baseline")),
        (Model("add", "add_caddn_synth.yaml", "CaDDN + ADD", "distilled", teacher="teacher"),),
    ), docs="docs/caddn.md"),
    ("patchnet", "add"): Story(waves=(
        (Model("teacher", "patchnet_teacher_synth.yaml", "Teacher (pixel-wise GT depth)", "teacher"),
         Model("baseline", "patchnet_synth.yaml", "PatchNet (baseline)", "baseline")),
        (Model("add", "add_patchnet_synth.yaml", "PatchNet + ADD", "distilled", teacher="teacher"),),
    ), prepare="monokd.pipeline.patchnet_inputs:prepare_inputs",
        prepare_what="PatchNet's inputs: the depth front-end (train, predict, evaluate), the 2-D box detector "
                     "(MonoDETR: train, evaluate)",
        prepare_report="monokd.pipeline.patchnet_inputs:report_inputs", docs="docs/patchnet.md"),
}


def story_function(spec: str):
    """The function a story names as ``"module:function"``."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def default_student(method: str | None) -> str:
    """The student of ``--method`` alone: the one story's if exactly one has that method
    (``--method takd`` -> caddn), else DEFAULT_STUDENT."""
    students = {s for s, m in STORIES if m == method}
    return students.pop() if len(students) == 1 else DEFAULT_STUDENT


def story(student: str = DEFAULT_STUDENT, method: str = DEFAULT_METHOD) -> Story:
    """The story of ``(student, method)``; an unknown name is a one-line ConfigError naming
    the known ones."""
    students = sorted({s for s, _ in STORIES})
    methods = sorted({m for _, m in STORIES})
    if student not in students:
        raise ConfigError(f"--student {student}: unknown ({did_you_mean(student, students)}"
                          f"known: {', '.join(students)})")
    if method not in methods:
        raise ConfigError(f"--method {method}: unknown ({did_you_mean(method, methods)}known: {', '.join(methods)})")
    if (student, method) not in STORIES:
        pairs = ", ".join(f"{s}+{m}" for s, m in sorted(STORIES))
        raise ConfigError(f"--student {student} --method {method}: no such demo (known: {pairs})")
    return STORIES[(student, method)]


MODELS = tuple(m.name for m in story().models)
LABELS = {m.name: m.label for m in story().models}
