"""``monokd demo``: SynthKITTI -> GT-depth teacher -> baseline student and ADD student side
by side -> evaluation of each -> ``OUT/report.md`` (tables, learning curves, the Figure-1
chart, pictures).

What is trained is a *story* (:data:`STORIES`, keyed by ``(student, method)``): the models
in the order of their waves, each with its recipe and the model it learns from. The models
of one wave run side by side as parallel lanes (one core each, ``monokd.pipeline.lanes``);
a model is evaluated as soon as its training ends. ``--student``/``--method`` pick a story;
adding one (a student such as CaDDN, a method such as MonoTAKD) is one :class:`Story` entry
here plus that student's ``--set`` items in the presets' ``overrides.<student>``.

Training and evaluation run as the documented commands (``monokd train``, ``monokd
evaluate``) in subprocesses, so the demo depends only on their command lines. A stage is
done when its output marker exists (a training: ``TRAIN_MARKER`` and a checkpoint; an
evaluation: its JSON), so a rerun skips finished stages and an interrupted training goes on
with ``--resume auto``. The stage runner here is shared with ``monokd ablate``.

A preset is a YAML file ``configs/demo_<name>.yaml`` (or any path): the SynthKITTI size and
the ``--set`` overrides that size the recipes for the demo: ``overrides.all`` (every run),
``overrides.<student>`` (every run of that student, e.g. its width), ``overrides.<model>``
(one model of the story: ``teacher``, ``baseline``, ``add``). Optional: ``student`` /
``method`` (the preset's default story) and ``configs.<model>`` (a recipe replacing the
story's, as ``monokd ablate`` presets use).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from monokd.pipeline.lanes import Display, Lane, Lanes
from monokd.errors import ConfigError, MonokdError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
SYNTH_MARKER = ".monokd-synth.json"
TRAIN_MARKER = ".monokd-train-done"


# --------------------------------------------------------------------------- stories


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
    returns the report's lines on those inputs. ``docs`` is the page of the story's longer
    runs, which the sentence under the report's table points to."""

    waves: tuple[tuple[Model, ...], ...]
    method: str = "ADD"  # the report's title
    prepare: str | None = None
    prepare_what: str = "the story's inputs"
    prepare_report: str | None = None
    docs: str = "docs/add.md"

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
    ("monodetr", "add"): Story(waves=(
        (Model("teacher", "monodetr_teacher_synth.yaml", "Teacher (object-wise GT depth)", "teacher"),),
        (Model("baseline", "monodetr_synth.yaml", "MonoDETR (baseline)", "baseline"),
         Model("add", "add_monodetr_synth.yaml", "MonoDETR + ADD", "distilled", teacher="teacher")),
    )),
    # MonoTAKD (docs/monotakd.md): LiDAR teacher and camera TA, then the camera student alone
    # (CaDDN) and the MonoTAKD student side by side; model names distinct from the ADD story's,
    # so that a preset's overrides.<model> size each story's models apart
    ("caddn", "takd"): Story(method="MonoTAKD", waves=(
        (Model("lidar_teacher", "takd_lidar_synth.yaml", "LiDAR teacher (pillars)", "teacher"),
         Model("ta", "takd_ta_synth.yaml", "TA (camera, GT depth)", "teacher")),
        (Model("camera", "caddn_synth.yaml", "CaDDN (student alone)", "baseline"),
         Model("takd", "takd_synth.yaml", "CaDDN + MonoTAKD", "distilled", teacher="lidar_teacher", ta="ta")),
    ), docs="docs/monotakd.md"),
    # ADD on CaDDN (docs/caddn.md): the teacher lifts the pixel-wise GT depth
    ("caddn", "add"): Story(waves=(
        (Model("teacher", "caddn_teacher_synth.yaml", "Teacher (pixel-wise GT depth)", "teacher"),),
        (Model("baseline", "caddn_synth.yaml", "CaDDN (baseline)", "baseline"),
         Model("add", "add_caddn_synth.yaml", "CaDDN + ADD", "distilled", teacher="teacher")),
    ), docs="docs/caddn.md"),
    ("patchnet", "add"): Story(waves=(
        (Model("teacher", "patchnet_teacher_synth.yaml", "Teacher (pixel-wise GT depth)", "teacher"),),
        (Model("baseline", "patchnet_synth.yaml", "PatchNet (baseline)", "baseline"),
         Model("add", "add_patchnet_synth.yaml", "PatchNet + ADD", "distilled", teacher="teacher")),
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
        raise ConfigError(f"--student {student}: unknown (known: {', '.join(students)})")
    if method not in methods:
        raise ConfigError(f"--method {method}: unknown (known: {', '.join(methods)})")
    if (student, method) not in STORIES:
        pairs = ", ".join(f"{s}+{m}" for s, m in sorted(STORIES))
        raise ConfigError(f"--student {student} --method {method}: no such demo (known: {pairs})")
    return STORIES[(student, method)]


MODELS = tuple(m.name for m in story().models)
LABELS = {m.name: m.label for m in story().models}
ROLE_COLORS = {"teacher": "#8c8c8c", "baseline": "#1f77b4", "distilled": "#d62728"}
MORE_COLORS = ("#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#17becf")  # a role's second model on


def model_colors(models) -> dict[str, str]:
    """One colour a model (by label): the first model of a role gets the role's colour, any
    further one (MonoTAKD's TA beside the LiDAR teacher) the next of MORE_COLORS."""
    colors, seen, more = {}, set(), iter(MORE_COLORS)
    for m in models:
        colors[m.label] = next(more) if m.role in seen or m.role not in ROLE_COLORS else ROLE_COLORS[m.role]
        seen.add(m.role)
    return colors


def table_threshold(config: dict) -> float | None:
    """The score threshold a model's table evaluation decodes with: the one its detector class
    declares from the config (monokd.models.contract); None when it declares none or the config
    names no model."""
    from monokd.models import detector_class

    if not (config.get("model") or {}).get("name"):
        return None
    threshold = detector_class(config).decode_threshold_of(config["model"])
    return None if threshold is None else float(threshold[1])


# --------------------------------------------------------------------------- stages


class StageError(MonokdError, RuntimeError):
    """A stage's command failed; the message names the stage and the command (the ``monokd``
    command prints it as its one ``error:`` line)."""


@dataclass
class Clock:
    """Prints stage banners with the elapsed time since the pipeline started."""

    prefix: str = "demo"
    start: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.start)
        return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def banner(self, index: int, total: int, name: str, text: str) -> None:
        print(f"\n=== [{self.prefix} {index}/{total}] {name}: {text} (elapsed {self.elapsed()}) ===", flush=True)


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's best checkpoint (``best*.ckpt`` anywhere under the run), else ``last.ckpt``,
    else None."""
    run_dir = Path(run_dir)
    best = sorted(run_dir.rglob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = run_dir / "last.ckpt"
    return last if last.is_file() else None


def training_done(run_dir: str | Path) -> bool:
    """A training is finished when ``monokd train`` exited successfully (our marker
    ``TRAIN_MARKER``, written after it) and left a checkpoint. Neither ``metrics.json`` nor
    ``last.ckpt`` alone proves it: both are rewritten while the run goes on."""
    run_dir = Path(run_dir)
    return (run_dir / TRAIN_MARKER).is_file() and find_checkpoint(run_dir) is not None


def evaluation_json(eval_dir: str | Path) -> Path | None:
    """The evaluation's JSON (the one holding a ``flat`` dict) under ``eval_dir``, or None."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        return None
    for path in sorted(eval_dir.glob("*.json")):
        try:
            if isinstance(json.loads(path.read_text()).get("flat"), dict):
                return path
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            continue
    return None


def read_flat(eval_dir: str | Path) -> dict[str, float]:
    """The ``flat`` metrics (key -> AP percent) of a finished evaluation."""
    path = evaluation_json(eval_dir)
    if path is None:
        raise StageError(f"{eval_dir}: no evaluation JSON with a 'flat' dict")
    return {k: float(v) for k, v in json.loads(path.read_text())["flat"].items()}


def run_command(args: list[str], stage: str, env: dict | None = None, lane=None) -> None:
    """Run ``python -m monokd.cli ARGS``. Without ``lane`` its output (progress bars) goes to
    our terminal; with one (a ``monokd.pipeline.lanes.Lane``) to the lane's log and display."""
    command = [sys.executable, "-m", "monokd.cli", *args]
    if lane is not None:
        code = lane.run(command, env)
        if code != 0:
            raise StageError(f"stage {stage!r} failed (exit {code}): {' '.join(command)}\n"
                             f"its output: {lane.log}\n{lane.tail()}")
        return
    child = subprocess.Popen(command, env={**os.environ, **(env or {})})
    try:
        code = child.wait()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM via run()): never leave a training running behind us;
        # its last.ckpt lets the next run resume.
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    if code != 0:
        raise StageError(f"stage {stage!r} failed (exit {code}): {' '.join(command)}")


def _runner_options(env: dict | None, lane) -> dict:
    """Keyword arguments of ``run_command`` beyond (args, stage), only those given."""
    return {k: v for k, v in (("env", env), ("lane", lane)) if v is not None}


def train(config: str | Path, run_dir: str | Path, overrides: list[str], seed: int | None = None,
          extra: list[str] = (), stage: str = "train", env: dict | None = None, lane=None) -> Path:
    """Train unless done; return the checkpoint. Always ``--resume auto`` so an interrupted
    run continues from its ``last.ckpt``."""
    run_dir = Path(run_dir)
    if not training_done(run_dir):
        args = ["train", "--config", str(config), "--out", str(run_dir), "--resume", "auto"]
        if seed is not None:
            args += ["--seed", str(seed)]
        for item in overrides:
            args += ["--set", item]
        run_command(args + list(extra), stage, **_runner_options(env, lane))
        if find_checkpoint(run_dir) is None:
            raise StageError(f"stage {stage!r}: {run_dir} has no checkpoint after training")
        (run_dir / TRAIN_MARKER).write_text(" ".join(args) + "\n")
    return find_checkpoint(run_dir)


def evaluate(run_dir: str | Path, eval_dir: str | Path, split: str = "val", extra: list[str] = (),
             stage: str = "evaluate", ckpt: str | Path | None = None, env: dict | None = None,
             lane=None) -> dict[str, float]:
    """Evaluate a finished run's checkpoint (``ckpt``, by default :func:`find_checkpoint`)
    with its own saved config, unless done."""
    run_dir, eval_dir = Path(run_dir), Path(eval_dir)
    if evaluation_json(eval_dir) is None:
        ckpt = ckpt or find_checkpoint(run_dir)
        if ckpt is None:
            raise StageError(f"stage {stage!r}: {run_dir} has no checkpoint")
        run_command(["evaluate", "--config", str(run_dir / "config.yaml"), "--ckpt", str(ckpt),
                     "--split", split, "--out", str(eval_dir), *extra], stage, **_runner_options(env, lane))
    return read_flat(eval_dir)


def synth_done(root: str | Path) -> bool:
    """SynthKITTI is there: our marker, or (a dataset made by ``monokd synth``) both split
    files with every listed val image present."""
    root = Path(root)
    if (root / SYNTH_MARKER).is_file():
        return True
    val, train_split = root / "ImageSets" / "val.txt", root / "ImageSets" / "train.txt"
    if not (val.is_file() and train_split.is_file()):
        return False
    ids = val.read_text().split()
    return bool(ids) and all((root / "training" / "image_2" / f"{i.zfill(6)}.png").is_file() for i in ids)


def ensure_synth(root: str | Path, num_train: int, num_val: int, seed: int = 0, width: int = 416,
                 height: int = 128, workers: int = 1) -> Path:
    """Generate SynthKITTI at ``root`` unless it is already there."""
    root = Path(root)
    if not synth_done(root):
        from monokd.data.synth import generate

        generate(root, num_train=num_train, num_val=num_val, seed=seed, width=width, height=height, workers=workers)
        (root / SYNTH_MARKER).write_text(json.dumps(
            {"num_train": num_train, "num_val": num_val, "seed": seed, "width": width, "height": height}))
    return root


# --------------------------------------------------------------------------- presets


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


# --------------------------------------------------------------------------- pictures


def pick_frames(root: str | Path, count: int, split: str = "val") -> list[str]:
    """The ``count`` val frames with the most cars (ties: lowest id), so the pictures show
    something to compare."""
    from monokd.data.kitti import KittiPaths, read_label, read_split

    paths = KittiPaths(Path(root))
    ids = read_split(paths.split(split))
    cars = {i: sum(o.type == "Car" for o in read_label(paths.file("label_2", i))) for i in ids}
    return sorted(ids, key=lambda i: (-cars[i], i))[:count]


def result_file(eval_dir: str | Path, frame: str) -> Path | None:
    """The KITTI result file of one frame written by ``monokd evaluate --out eval_dir``."""
    found = sorted(Path(eval_dir).rglob(f"{frame}.txt"))
    return found[0] if found else None


PICTURES_TAG = "pictures' boxes only: "  # what a model's second evaluation prints its lines after
TOP_K_LEAST = 3  # the pictures show at least this many predictions per model


def top_predictions(objects: list, k: int) -> list:
    """The ``k`` highest-scoring predictions (objects without a score count as 1)."""
    return sorted(objects, key=lambda o: -(1.0 if o.score is None else o.score))[:k]


def draw_pictures(root: str | Path, eval_dirs: dict[str, Path], out_dir: str | Path, count: int,
                  thresholds: dict[str, float | None] | None = None,
                  labels: dict[str, str] | None = None) -> list[Path]:
    """One PNG a frame: for each model its top predictions (red, each with its score) and the
    ground truth (green) on the image and on a bird's-eye view, side by side; every view of a
    frame shares one depth range so the columns compare.

    The rule: each model's top k predictions by score, k = the frame's number of ground-truth
    cars (at least ``TOP_K_LEAST``), whatever their score, so that a short training that
    puts few boxes above its table's score threshold still shows where its best guesses are;
    each panel's title says how many of them reach that model's threshold (``thresholds``:
    model -> :func:`table_threshold`, a model without one gets no count)."""
    from monokd.data.kitti import KittiPaths, read_calib, read_image, read_label
    from monokd.viz.bev import draw_bev
    from monokd.viz.draw import PRED_COLOR, bev_depth, draw_boxes_2d, draw_boxes_3d
    from monokd.viz.report import prediction_grid

    labels = labels or LABELS
    thresholds = thresholds or {}
    paths = KittiPaths(Path(root))
    written = []
    for frame in pick_frames(root, count):
        image = read_image(paths.file("image_2", frame))
        P2 = read_calib(paths.file("calib", frame)).P2
        gt = [o for o in read_label(paths.file("label_2", frame)) if o.type != "DontCare"]
        k = max(TOP_K_LEAST, sum(o.type == "Car" for o in gt))
        preds = {}
        for model, eval_dir in eval_dirs.items():
            found = result_file(eval_dir, frame)
            preds[model] = top_predictions(read_label(found) if found is not None else [], k)
        far = bev_depth(gt, *preds.values())
        panels = {}
        for model, objects in preds.items():
            drawn = draw_boxes_3d(draw_boxes_2d(image, gt), gt, P2)
            drawn = draw_boxes_3d(draw_boxes_2d(drawn, objects, PRED_COLOR), objects, P2, PRED_COLOR)
            bev = draw_bev(None, gt, objects, z_range=(0.0, far), height=max(image.shape[0], 360))
            header = f"{labels.get(model, model)}\ntop {len(objects)} by score"
            threshold = thresholds.get(model)
            if threshold is not None:
                passing = sum(o.score is None or o.score >= threshold for o in objects)
                header += f", {passing} >= {threshold:g} (the table's threshold)"
            panels[header] = (drawn, bev)
        written.append(prediction_grid(
            panels, Path(out_dir) / f"frame_{frame}.png",
            title=f"val frame {frame}: ground truth green ({len(gt)}), each model's top {k} predictions red "
                  "with their scores"))
    return written


# --------------------------------------------------------------------------- the demo


def available_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_env(threads: int) -> dict[str, str]:
    """The environment that gives a child process ``threads`` intra-op threads."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def last_checkpoint(run_dir: str | Path) -> Path:
    """The run's ``last.ckpt`` (the demo reports each model at the end of its schedule, not
    at its best validation, which would pick on the val split it reports), else
    :func:`find_checkpoint`."""
    last = Path(run_dir) / "last.ckpt"
    return last if last.is_file() else find_checkpoint(run_dir)


def read_curve(run_dir: str | Path) -> list[tuple[int, dict[str, float]]]:
    """(step, flat AP dict) of each validation of a run (its ``metrics.json``)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    return sorted((int(v["step"]), v.get("metrics") or {}) for v in doc.get("validations") or [])


def run_demo(out: str | Path, preset_name: str = "default", data_root: str | Path | None = None,
             extra_train: list[str] = (), extra_eval: list[str] = (), student: str | None = None,
             method: str | None = None, threads: int = 1, stream=None) -> Path:
    """Run (or finish) the demo under ``out``; return the report's path."""
    out = Path(out)
    preset = load_preset(preset_name, student, method)
    plot = preset["story"]
    data = preset["data"]
    root = Path(data_root or data.get("root") or out / "data" / "synthkitti")
    seed = int(preset.get("seed", 0))
    # One thread per training: the trainings of a wave run side by side, one core each. (Two
    # threads for the lone teacher were measured at 5-12 s a step on a busy 2-core machine
    # against 0.63 s for one thread: oversubscribed OpenMP threads wait for each other.)
    threads = max(int(threads or 1), 1)
    clock = Clock()
    starts: dict[str, float] = {}
    total = 2 + bool(plot.prepare) + len(plot.waves)

    cpu: dict[str, float] = {}

    def timed(name: str, work, done: bool = False, lane: Lane | None = None):
        """Run ``work`` as stage ``name``: its start, wall time and CPU time (its lane's
        children's, else this process's and its ended children's)."""
        starts[name] = time.monotonic() - clock.start
        before = lane.cpu_seconds if lane is not None else process_cpu_seconds()
        value = work()
        clock.timings[name] = 0.0 if done else time.monotonic() - clock.start - starts[name]
        cpu[name] = (lane.cpu_seconds if lane is not None else process_cpu_seconds()) - before
        return value

    clock.banner(1, total, "data", "reused (already done)" if synth_done(root) else
                 f"SynthKITTI {data['num_train']} train + {data['num_val']} val frames at {root}")
    timed("data", lambda: ensure_synth(root, int(data["num_train"]), int(data["num_val"]), int(data.get("seed", 0)),
                                       int(data.get("width", 416)), int(data.get("height", 128)),
                                       int(data.get("workers", min(available_cores(), 2)))), done=synth_done(root))
    inputs: list[str] = []
    if plot.prepare:
        # a stage like a wave's: its commands' output to OUT/logs/prepare.log, their progress
        # lines on the console prefixed with its name, stopped on an interrupt
        prepare, log = story_function(plot.prepare), out / "logs" / "prepare.log"
        clock.banner(2, total, "prepare", f"{plot.prepare_what}; {threads} thread(s); log in {log}")
        lanes = Lanes()
        lane = Lane("prepare", log, lanes, Display(["prepare"], stream=stream))
        inputs = lanes.side_by_side({"prepare": lambda: timed(
            "prepare", lambda: prepare(preset, root, out, seed, extra_train, thread_env(threads), lane=lane),
            lane=lane)})["prepare"]
        lane.display.status("prepare", f"done (elapsed {clock.elapsed()})")
    runs = {m.name: out / m.name for m in plot.models}
    eval_dirs = {m.name: out / "eval" / m.name for m in plot.models}
    results: dict[str, dict[str, float]] = {}

    # The pictures' boxes: a second evaluation with the preset's ``pictures_set`` items (a low
    # decode threshold, so that the result files keep the low-score boxes the pictures show);
    # the table keeps the recipes' decoding (a lower threshold changes the KITTI AP).
    box_dirs = {m.name: out / "eval_boxes" / m.name for m in plot.models}

    def set_args(section: str, model: str) -> list[str]:
        return [a for item in preset_items(preset, section, model) for a in ("--set", item)]

    def model_lane(model: Model, lane: Lane, env: dict) -> None:
        overrides = stage_overrides(preset, model.name, root) + inputs
        if model.teacher:
            overrides += teacher_overrides(runs[model.teacher], last_checkpoint(runs[model.teacher]))
        if model.ta:
            overrides += ta_overrides(runs[model.ta], last_checkpoint(runs[model.ta]))
        done = training_done(runs[model.name])
        timed(f"train {model.name}", lambda: train(recipe(preset, model.name), runs[model.name], overrides, seed,
                                                   extra_train, stage=f"train {model.name}", env=env, lane=lane),
              done=done, lane=lane)
        lane.display.status(model.name, "trained (reused)" if done else
                            f"trained in {_hms(clock.timings[f'train {model.name}'])}; evaluating on val")
        done = evaluation_json(eval_dirs[model.name]) is not None
        results[model.name] = timed(
            f"evaluate {model.name}",
            lambda: evaluate(runs[model.name], eval_dirs[model.name], "val",
                             [*extra_eval, *set_args("evaluate", model.name)], stage=f"evaluate {model.name}",
                             ckpt=last_checkpoint(runs[model.name]), env=env, lane=lane), done=done, lane=lane)
        boxes = set_args("pictures_set", model.name)
        if boxes:
            done = evaluation_json(box_dirs[model.name]) is not None
            if not done:
                lane.display.status(model.name, f"evaluating again, at a low score threshold, only for the pictures' "
                                                f"boxes ({box_dirs[model.name]}; the table keeps the recipe's)")
            # its lines say what the second evaluation is for
            again = lane.tagged(PICTURES_TAG)
            timed(f"pictures' boxes {model.name}",
                  lambda: evaluate(runs[model.name], box_dirs[model.name], "val", [*extra_eval, *boxes],
                                   stage=f"pictures' boxes {model.name}", ckpt=last_checkpoint(runs[model.name]), env=env,
                                   lane=again), done=done, lane=again)
        else:
            box_dirs[model.name] = eval_dirs[model.name]
        lane.display.status(model.name, f"done (elapsed {clock.elapsed()})")

    for index, wave in enumerate(plot.waves):
        names = ", ".join(m.name for m in wave)
        how = f"side by side, {threads} thread(s) each" if len(wave) > 1 else f"{threads} thread(s)"
        clock.banner(total - len(plot.waves) + index, total, f"train + evaluate {names}",
                     f"{how}; logs in {out / 'logs'}")
        display = Display([m.name for m in wave], stream=stream)
        lanes = Lanes()
        lanes.side_by_side({m.name: (lambda m=m: model_lane(
            m, Lane(m.name, out / "logs" / f"{m.name}.log", lanes, display), thread_env(threads))) for m in wave})

    clock.banner(total, total, "report", str(out / "report.md"))
    about_inputs = story_function(plot.prepare_report)(preset, root, out, inputs) if plot.prepare_report else []
    path = timed("report", lambda: write_demo_report(out, preset, preset_name, root, runs, box_dirs, results,
                                                     starts, clock, cpu, about_inputs))
    print(summary(path, starts, clock, cpu), file=stream or sys.stdout, flush=True)
    return path


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def summary(report: Path, starts: dict[str, float], clock: Clock, cpu: dict[str, float] | None = None) -> str:
    """What the demo prints at its end: where the report is and how long each stage took."""
    cpu = cpu or {}
    lines = [f"\nreport: {report}", "stage times (wall clock, from the start; the stages of a wave overlap; "
                                     "CPU time of the stage's processes):"]
    width = max(len(n) for n in clock.timings)
    for name, seconds in clock.timings.items():
        if seconds == 0.0:
            lines.append(f"  {name:<{width}}  reused")
            continue
        lines.append(f"  {name:<{width}}  {_hms(seconds)}  (from {_hms(starts[name])}, CPU {cpu.get(name, 0.0):.0f} s)")
    lines.append(f"  {'total':<{width}}  {clock.elapsed()}  (CPU {sum(cpu.values()):.0f} s)")
    return "\n".join(lines)


def headline(preset: dict, results: dict[str, dict[str, float]], curves: dict) -> str:
    """The sentence under the table: what these numbers do and do not show."""
    from monokd.viz.report import metric_key

    plot, data = preset["story"], preset["data"]
    key = metric_key("bev", "moderate", 0.5)
    steps = {m.name: (curves.get(m.name) or [(0, {})])[-1][0] for m in plot.models}
    students = [m for m in plot.models if m.role != "teacher"]
    teachers = [m for m in plot.models if m.role == "teacher"]
    parts = [f"These are single-seed runs of {', '.join(f'{steps[m.name]}' for m in plot.models)} steps "
             f"({', '.join(m.label for m in plot.models)}) on {data['num_train']} SynthKITTI frames, each model "
             f"evaluated at its last checkpoint on {data['num_val']} val frames"]
    if teachers and students:
        lead = min(results[t.name].get(key, 0.0) - results[s.name].get(key, 0.0) for t in teachers for s in students)
        who = " and ".join(t.label for t in teachers)
        parts.append(f"they show the pipeline working end to end and {who} {'ahead of' if lead > 0 else 'not ahead of'} "
                     f"{' and '.join(s.label for s in students)} (moderate AP_BEV@0.5 "
                     + ", ".join(f"{m.label} {results[m.name].get(key, float('nan')):.1f}" for m in plot.models) + ")")
    where = (f"the README's longer 3-seed runs (800 frames, 12 epochs: README.md, \"Results on SynthKITTI\", "
             f"and {plot.docs})" if plot.docs == "docs/add.md" else f"the longer runs in {plot.docs}")
    parts.append("they do not measure what distillation gains: a difference of a few AP between the students of one "
                 f"short run is within the seed-to-seed spread, so for that see {where}")
    return "; ".join(parts) + "."


def run_config(preset: dict, model: str, run_dir: Path) -> dict:
    """The config a model's table evaluation decodes with: its run's saved ``config.yaml``
    when that holds a model, else its recipe; then the preset's ``evaluate`` items."""
    from monokd.config import load_config

    saved = Path(run_dir) / "config.yaml"
    config = yaml.safe_load(saved.read_text()) if saved.is_file() else None
    path = saved if isinstance(config, dict) and config.get("model") else recipe(preset, model)
    return load_config(path, preset_items(preset, "evaluate", model))


def write_demo_report(out: Path, preset: dict, preset_name: str, root: Path, runs: dict, eval_dirs: dict,
                      results: dict, starts: dict, clock: Clock, cpu: dict | None = None,
                      about_inputs: list[str] = ()) -> Path:
    """``OUT/report.md`` and its figures: the notes (``about_inputs``: markdown lines on the
    story's prepared inputs, above the tables they explain), the tables, the sentence under
    them, the learning curves, the Figure-1 bar chart, the pictures, the stage times."""
    from monokd.viz.report import bar_chart, learning_curves, write_report

    plot, data = preset["story"], preset["data"]
    labels = {m.name: m.label for m in plot.models}
    colors = model_colors(plot.models)
    curves = {m.name: read_curve(runs[m.name]) for m in plot.models}
    figures = out / "figures"
    curve_png = learning_curves({labels[n]: c for n, c in curves.items()}, figures / "learning_curves.png",
                                colors=colors)
    chart = bar_chart({labels[m.name]: results[m.name] for m in plot.models}, figures / "moderate_ap.png",
                      colors=colors)
    thresholds = {m.name: table_threshold(run_config(preset, m.name, runs[m.name])) for m in plot.models}
    pictures = draw_pictures(root, eval_dirs, figures, int(preset.get("pictures", 3)), thresholds=thresholds,
                             labels=labels)
    notes = [f"Preset `{preset_name}` ({preset['_path']}), story `{preset['student']}` + `{preset['method']}`, "
             f"SynthKITTI {data['num_train']} train / {data['num_val']} val frames at `{root}`, seed "
             f"{int(preset.get('seed', 0))}.",
             "Runs: " + ", ".join(f"`{runs[m.name]}`" for m in plot.models) + f"; logs: `{out / 'logs'}`.",
             *([""] + list(about_inputs) if about_inputs else [])]
    path = write_report(out / "report.md", {labels[n]: r for n, r in results.items()}, chart, pictures,
                        dict(clock.timings), notes, caption=headline(preset, results, curves), curves=curve_png,
                        starts=starts, total=time.monotonic() - clock.start, cpu=cpu,
                        title=f"monokd demo: {plot.method} on SynthKITTI")
    bev = takd_bev_figure(root, runs, plot, figures) if any(m.ta for m in plot.models) else None
    if bev is not None:
        with path.open("a") as report:
            report.write(f"\n## BEV features of teacher, TA, residual and student (the paper's Figures 1 and 4)\n\n"
                         f"![BEV features](figures/{bev.name})\n")
    return path


def takd_bev_maps(student, teacher, ta, batch: dict) -> dict:
    """MonoTAKD's BEV features of the first frame of ``batch``: F_T, F_TA, F_T - F_TA, the
    student's F_S and (if it has the branch) its predicted residual, each (C, NY, NX)."""
    import torch

    from monokd.models.contract import SIGNALS

    with torch.no_grad():
        f_t = teacher.bev_features(batch)["bev"][0]
        f_ta = ta.bev_features(batch)["bev"][0]
        signals = student(batch, signals={"bev", "residual"})[SIGNALS]
    maps = {"LiDAR teacher F_T": f_t, "TA F_TA": f_ta, "residual F_T - F_TA": f_t - f_ta,
            "student F_S": signals.bev[0]}
    if signals.residual is not None:
        maps["student's residual F_res'"] = signals.residual[0]
    return maps


def takd_bev_figure(root: str | Path, runs: dict, plot: Story, out_dir: Path, frame: str | None = None) -> Path:
    """``out_dir/bev_features.png``: :func:`takd_bev_maps` of the story's MonoTAKD student, its
    teacher and TA (their last checkpoints) on ``frame`` (default: the val frame with most cars)."""
    from monokd.data.dataset import KittiDataset, collate
    from monokd.training.checkpoint import load_detector
    from monokd.viz.bev_features import feature_panel

    model = next(m for m in plot.models if m.ta)
    student, cfg = load_detector(last_checkpoint(runs[model.name]))
    teacher, _ = load_detector(last_checkpoint(runs[model.teacher]))
    ta, _ = load_detector(last_checkpoint(runs[model.ta]))
    frame = frame or pick_frames(root, 1)[0]
    dataset = KittiDataset(root, "val", cfg, augment=False)
    batch = collate([dataset[dataset.ids.index(frame)]])
    return feature_panel(takd_bev_maps(student, teacher, ta, batch), out_dir / "bev_features.png",
                         title=f"frame {frame}")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``run_command`` stops its child first."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
