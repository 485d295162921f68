"""``monokd demo``: SynthKITTI -> GT-depth teacher -> baseline student and distilled student
side by side -> evaluation of each -> ``OUT/report.md`` (tables, learning curves, the Figure-1
chart, pictures).

What is trained is a story (``monokd.pipeline.stories``): its waves of models; the models of
one wave run side by side as parallel lanes (``monokd.pipeline.lanes``; the cores shared among
them), and a model is evaluated as soon as its training ends. Each training and evaluation is a stage
(``monokd.pipeline.stages``: the documented commands in subprocesses, skipped when their
marker says they are done); the preset (``monokd.pipeline.presets``) sizes the recipes; the
report is ``monokd.pipeline.report``'s.

With ``unlabeled`` = N > 0 (``monokd demo --unlabeled N``, docs/unlabeled.md) SynthKITTI also
gets two raw drives (the first holds the val frames, which the leakage guard refuses; the
second N fresh frames), and every distilled model of the story trains on the labeled frames
plus those N unlabeled ones (``data.unlabeled``); the teachers and the baseline do not. A story
whose method cannot take unlabeled frames is refused before anything is trained.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from monokd.pipeline.lanes import Display, Lane, Lanes
from monokd.pipeline.presets import load_preset, preset_items, recipe, stage_overrides, ta_overrides, teacher_overrides
from monokd.pipeline.report import summary, write_demo_report
from monokd.pipeline.stages import (Clock, available_cores, ensure_synth, evaluate, evaluation_json, last_checkpoint,
                                    lane_threads, process_cpu_seconds, synth_done, thread_env, train, training_done)
from monokd.data.synth.raw_drives import RAW_DIR
from monokd.pipeline.stories import Model, story_function
from monokd.pipeline.pictures import PICTURES_TAG
from monokd.timing import hms


# the raw drives of a run with unlabeled frames: one holding the val frames, one of fresh frames
RAW_DRIVES = 2
DISTILLED = "distilled"  # the role of the story's models that learn from unlabeled frames


def unlabeled_overrides(root: str | Path) -> list[str]:
    """``--set`` items of a distilled model trained also on SynthKITTI's fresh raw frames (the
    split that passes the leakage guard; the mapping files under ``root`` are found there)."""
    return [f"data.unlabeled.root={Path(root) / RAW_DIR}", "data.unlabeled.split=unlabeled"]


def rendered(done: int, total: int) -> None:
    """The data stage's progress: a line at every tenth of the frames rendered."""
    if done == total or done % max(total // 10, 1) == 0:
        print(f"[data] {done}/{total} frames rendered", flush=True)


def check_unlabeled_story(preset: dict, root: str | Path) -> None:
    """Refuse (ConfigError, one line) a story whose distilled models cannot train on unlabeled
    frames, before anything is trained: each distilled model's recipe, with its teacher and TA
    read from their own recipes, through monokd.training.unlabeled.check_unlabeled."""
    from monokd.config import load_config
    from monokd.training.unlabeled import check_unlabeled

    plot = preset["story"]
    for model in plot.models:
        if model.role != DISTILLED:
            continue
        frozen = [f"distill.{role}.config={recipe(preset, name)}"
                  for role, name in (("teacher", model.teacher), ("ta", model.ta)) if name]
        check_unlabeled(load_config(recipe(preset, model.name), [*unlabeled_overrides(root), *frozen]))


def run_demo(out: str | Path, preset_name: str = "default", data_root: str | Path | None = None,
             extra_train: list[str] = (), extra_eval: list[str] = (), student: str | None = None,
             method: str | None = None, threads: int | None = None, stream=None, unlabeled: int = 0) -> Path:
    """Run (or finish) the demo under ``out``; return the report's path. ``threads``: of each
    training and evaluation (default: the available cores shared among a wave's lanes);
    ``unlabeled``: N unlabeled frames for the distilled student (docs/unlabeled.md)."""
    out = Path(out)
    preset = load_preset(preset_name, student, method)
    plot = preset["story"]
    data = preset["data"]
    root = Path(data_root or data.get("root") or out / "data" / "synthkitti")
    if unlabeled:
        check_unlabeled_story(preset, root)
    seed = int(preset.get("seed", 0))
    # The cores are shared among a wave's trainings: a lone one (the teacher) gets them all,
    # two side by side one each. Several threads spin only briefly before they sleep
    # (stages.thread_env), so a busy machine does not stall them.
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
                                       int(data.get("workers", min(available_cores(), 2))),
                                       raw_drives=RAW_DRIVES if unlabeled else 0, raw_fresh=int(unlabeled),
                                       progress=rendered),
          done=synth_done(root))
    inputs: list[str] = []
    if plot.prepare:
        # a stage like a wave's: its commands' output to OUT/logs/prepare.log, their progress
        # lines on the console prefixed with its name, stopped on an interrupt
        prepare, log = story_function(plot.prepare), out / "logs" / "prepare.log"
        alone = lane_threads(1, threads)
        clock.banner(2, total, "prepare", f"{plot.prepare_what}; {alone} thread(s); log in {log}")
        lanes = Lanes()
        lane = Lane("prepare", log, lanes, Display(["prepare"], stream=stream))
        inputs = lanes.side_by_side({"prepare": lambda: timed(
            "prepare", lambda: prepare(preset, root, out, seed, extra_train, thread_env(alone), lane=lane),
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
        if unlabeled and model.role == DISTILLED:
            overrides += unlabeled_overrides(root)
        done = training_done(runs[model.name])
        timed(f"train {model.name}", lambda: train(recipe(preset, model.name), runs[model.name], overrides, seed,
                                                   extra_train, stage=f"train {model.name}", env=env, lane=lane),
              done=done, lane=lane)
        lane.display.status(model.name, "trained (reused)" if done else
                            f"trained in {hms(clock.timings[f'train {model.name}'])}; evaluating on val")
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
        each = lane_threads(len(wave), threads)
        how = f"side by side, {each} thread(s) each" if len(wave) > 1 else f"{each} thread(s)"
        clock.banner(total - len(plot.waves) + index, total, f"train + evaluate {names}",
                     f"{how}; logs in {out / 'logs'}")
        display = Display([m.name for m in wave], stream=stream)
        lanes = Lanes()
        lanes.side_by_side({m.name: (lambda m=m: model_lane(
            m, Lane(m.name, out / "logs" / f"{m.name}.log", lanes, display), thread_env(each))) for m in wave})

    results = {m.name: results[m.name] for m in plot.models}  # the story's order, not the finishing order
    clock.banner(total, total, "report", str(out / "report.md"))
    about_inputs = story_function(plot.prepare_report)(preset, root, out, inputs) if plot.prepare_report else []
    path = timed("report", lambda: write_demo_report(out, preset, preset_name, root, runs, box_dirs, results,
                                                     starts, clock, cpu, about_inputs))
    print(summary(path, starts, clock, cpu), file=stream or sys.stdout, flush=True)
    return path
