"""``monokd demo``: SynthKITTI -> GT-depth teacher -> baseline student -> ADD student ->
evaluation of all three -> ``OUT/report.md`` (tables, the Figure-1 chart, pictures).

Training and evaluation run as the documented commands (``monokd train``, ``monokd
evaluate``) in subprocesses, so the demo depends only on their command lines. A stage is
done when its output marker exists (a training: ``metrics.json`` and a checkpoint; an
evaluation: its JSON), so a rerun skips finished stages and an interrupted training goes on
with ``--resume auto``. The stage runner here is shared with ``monokd ablate``.

A preset is a YAML file ``configs/demo_<name>.yaml`` (or any path): the SynthKITTI size,
the three recipes and the ``--set`` overrides that shrink them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from monokd.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
SYNTH_MARKER = ".monokd-synth.json"
TRAIN_MARKER = ".monokd-train-done"
MODELS = ("teacher", "baseline", "add")
LABELS = {"teacher": "Teacher (object-wise GT depth)", "baseline": "MonoDETR (baseline)", "add": "MonoDETR + ADD"}


# --------------------------------------------------------------------------- stages


class StageError(RuntimeError):
    """A stage's command failed; the message names the stage and the command."""


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


def run_command(args: list[str], stage: str, env: dict | None = None) -> None:
    """Run ``python -m monokd.cli ARGS``; its output (progress bars) goes to our terminal."""
    command = [sys.executable, "-m", "monokd.cli", *args]
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


def train(config: str | Path, run_dir: str | Path, overrides: list[str], seed: int | None = None,
          extra: list[str] = (), stage: str = "train") -> Path:
    """Train unless done; return the checkpoint. Always ``--resume auto`` so an interrupted
    run continues from its ``last.ckpt``."""
    run_dir = Path(run_dir)
    if not training_done(run_dir):
        args = ["train", "--config", str(config), "--out", str(run_dir), "--resume", "auto"]
        if seed is not None:
            args += ["--seed", str(seed)]
        for item in overrides:
            args += ["--set", item]
        run_command(args + list(extra), stage)
        if find_checkpoint(run_dir) is None:
            raise StageError(f"stage {stage!r}: {run_dir} has no checkpoint after training")
        (run_dir / TRAIN_MARKER).write_text(" ".join(args) + "\n")
    return find_checkpoint(run_dir)


def evaluate(run_dir: str | Path, eval_dir: str | Path, split: str = "val", extra: list[str] = (),
             stage: str = "evaluate") -> dict[str, float]:
    """Evaluate a finished run's checkpoint with its own saved config, unless done."""
    run_dir, eval_dir = Path(run_dir), Path(eval_dir)
    if evaluation_json(eval_dir) is None:
        ckpt = find_checkpoint(run_dir)
        if ckpt is None:
            raise StageError(f"stage {stage!r}: {run_dir} has no checkpoint")
        run_command(["evaluate", "--config", str(run_dir / "config.yaml"), "--ckpt", str(ckpt),
                     "--split", split, "--out", str(eval_dir), *extra], stage)
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


def load_preset(name: str) -> dict:
    """``configs/demo_<name>.yaml``, or a YAML path."""
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / f"demo_{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem[len("demo_"):] for p in CONFIG_DIR.glob("demo_*.yaml"))
        raise ConfigError(f"{path}: no such demo preset (presets: {', '.join(choices)})")
    preset = yaml.safe_load(path.read_text()) or {}
    for key in ("data", "configs"):
        if key not in preset:
            raise ConfigError(f"{path}: the preset has no {key!r} section")
    for model in MODELS:
        if model not in preset["configs"]:
            raise ConfigError(f"{path}: configs.{model} is missing")
    preset.setdefault("overrides", {})
    preset["_path"] = str(path)
    return preset


def recipe(preset: dict, model: str) -> Path:
    """The recipe of one model, relative to configs/ unless absolute."""
    path = Path(preset["configs"][model])
    return path if path.is_absolute() else CONFIG_DIR / path


def stage_overrides(preset: dict, model: str, data_root: str | Path) -> list[str]:
    """``--set`` items of one model: the data root, then the preset's shared and own items."""
    overrides = preset.get("overrides") or {}
    return [f"data.root={data_root}", *(overrides.get("all") or []), *(overrides.get(model) or [])]


def teacher_overrides(teacher_dir: str | Path, ckpt: str | Path) -> list[str]:
    """Point a distilled student at its trained teacher (saved config + checkpoint)."""
    config = Path(teacher_dir) / "config.yaml"
    # Both spellings: distill.teacher.{config, ckpt} (the recipes' and the distiller's) and
    # distill.teacher_{config, ckpt} (what monokd.engine.checkpoint.build_teacher reads).
    return [f"distill.teacher.config={config}", f"distill.teacher.ckpt={ckpt}",
            f"distill.teacher_config={config}", f"distill.teacher_ckpt={ckpt}"]


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


def draw_pictures(root: str | Path, eval_dirs: dict[str, Path], out_dir: str | Path, count: int,
                  score_threshold: float = 0.2) -> list[Path]:
    """One PNG a frame: for each model its predictions (red) and the ground truth (green) on
    the image and on a bird's-eye view, side by side; every view of a frame shares one depth
    range so the columns compare."""
    from monokd.data.kitti import KittiPaths, read_calib, read_image, read_label
    from monokd.viz.bev import draw_bev
    from monokd.viz.draw import PRED_COLOR, bev_depth, draw_boxes_2d, draw_boxes_3d
    from monokd.viz.report import prediction_grid

    paths = KittiPaths(Path(root))
    written = []
    for frame in pick_frames(root, count):
        image = read_image(paths.file("image_2", frame))
        P2 = read_calib(paths.file("calib", frame)).P2
        gt = [o for o in read_label(paths.file("label_2", frame)) if o.type != "DontCare"]
        preds = {}
        for model, eval_dir in eval_dirs.items():
            found = result_file(eval_dir, frame)
            objects = read_label(found) if found is not None else []
            preds[model] = [o for o in objects if o.score is None or o.score >= score_threshold]
        far = bev_depth(gt, *preds.values())
        panels = {}
        for model, objects in preds.items():
            drawn = draw_boxes_3d(draw_boxes_2d(image, gt), gt, P2)
            drawn = draw_boxes_3d(draw_boxes_2d(drawn, objects, PRED_COLOR), objects, P2, PRED_COLOR)
            bev = draw_bev(None, gt, objects, z_range=(0.0, far), height=max(image.shape[0], 360))
            panels[f"{LABELS.get(model, model)} ({len(objects)} shown)"] = (drawn, bev)
        written.append(prediction_grid(panels, Path(out_dir) / f"frame_{frame}.png",
                                       title=f"val frame {frame}: ground truth green, predictions red"))
    return written


# --------------------------------------------------------------------------- the demo


def run_demo(out: str | Path, preset_name: str = "default", data_root: str | Path | None = None,
             extra_train: list[str] = (), extra_eval: list[str] = ()) -> Path:
    """Run (or finish) the demo under ``out``; return the report's path."""
    from monokd.viz.report import bar_chart, write_report

    out = Path(out)
    preset = load_preset(preset_name)
    data = preset["data"]
    root = Path(data_root or data.get("root") or out / "data" / "synthkitti")
    seed = int(preset.get("seed", 0))
    clock = Clock()
    total = 2 + 2 * len(MODELS)
    step = 0

    def stage(name: str, text: str, done: bool, work):
        nonlocal step
        step += 1
        clock.banner(step, total, name, "reused (already done)" if done else text)
        began = time.monotonic()
        value = work()
        clock.timings[name] = 0.0 if done else time.monotonic() - began
        return value

    stage("data", f"SynthKITTI {data['num_train']} train + {data['num_val']} val frames at {root}",
          synth_done(root), lambda: ensure_synth(root, int(data["num_train"]), int(data["num_val"]),
                                                 int(data.get("seed", 0)), int(data.get("width", 416)),
                                                 int(data.get("height", 128)), int(data.get("workers", 1))))
    runs = {m: out / m for m in MODELS}
    ckpts = {}
    for model in MODELS:
        overrides = stage_overrides(preset, model, root)
        if model == "add":
            overrides += teacher_overrides(runs["teacher"], ckpts["teacher"])
        ckpts[model] = stage(f"train {model}", f"training {LABELS[model]} -> {runs[model]}",
                             training_done(runs[model]),
                             lambda m=model, o=overrides: train(recipe(preset, m), runs[m], o, seed,
                                                                extra_train, stage=f"train {m}"))
    results = {}
    eval_dirs = {m: out / "eval" / m for m in MODELS}
    for model in MODELS:
        results[LABELS[model]] = stage(f"evaluate {model}", f"val split -> {eval_dirs[model]}",
                                       evaluation_json(eval_dirs[model]) is not None,
                                       lambda m=model: evaluate(runs[m], eval_dirs[m], "val", extra_eval,
                                                                stage=f"evaluate {m}"))

    def report() -> Path:
        chart = bar_chart({"teacher": results[LABELS["teacher"]], "baseline": results[LABELS["baseline"]],
                           "ADD": results[LABELS["add"]]}, out / "figures" / "moderate_ap.png",
                          colors={"teacher": "#8c8c8c", "baseline": "#1f77b4", "ADD": "#d62728"})
        pictures = draw_pictures(root, eval_dirs, out / "figures", int(preset.get("pictures", 3)))
        notes = [f"Preset `{preset_name}` ({preset['_path']}), SynthKITTI {data['num_train']} train / "
                 f"{data['num_val']} val frames at `{root}`, seed {seed}.",
                 "Runs: " + ", ".join(f"`{runs[m]}`" for m in MODELS) + "."]
        return write_report(out / "report.md", results, chart, pictures, dict(clock.timings), notes)

    path = stage("report", f"{out / 'report.md'}", False, report)
    print(f"\nreport: {path} (total {clock.elapsed()})", flush=True)
    return path


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="default",
                        help="quick (a smoke run, < 3 min on 2 cores) or default (< 20 min), or a YAML path")
    parser.add_argument("--out", default="runs/demo", help="output folder (reused: finished stages are skipped)")
    parser.add_argument("--data", default=None,
                        help="SynthKITTI root (generated there if absent); default OUT/data/synthkitti")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``run_command`` stops its child first."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run(args) -> int:
    exit_on_sigterm()
    try:
        run_demo(args.out, args.preset, args.data)
    except (StageError, ConfigError) as err:
        print(f"monokd demo: {err}", file=sys.stderr)
        return 1
    return 0
