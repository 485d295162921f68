"""The demo's report: ``OUT/report.md`` (the notes, the tables, the sentence under them, the
learning curves, the Figure-1 bar chart, the pictures, the story's own figure, the stage times)
and the summary the demo prints at its end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from monokd.pipeline.pictures import draw_pictures
from monokd.pipeline.presets import preset_items, recipe
from monokd.pipeline.run_record import precision
from monokd.pipeline.stages import Clock
from monokd.pipeline.stories import story_function
from monokd.timing import hms


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


def read_curve(run_dir: str | Path) -> list[tuple[int, dict[str, float]]]:
    """(step, flat AP dict) of each validation of a run (its ``metrics.json``)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    return sorted((int(v["step"]), v.get("metrics") or {}) for v in doc.get("validations") or [])


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
        lines.append(f"  {name:<{width}}  {hms(seconds)}  (from {hms(starts[name])}, CPU {cpu.get(name, 0.0):.0f} s)")
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
    where = plot.longer_runs or f"the longer runs in {plot.docs}"
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


def precision_line(runs: dict, labels: dict) -> str:
    """The report's line on the precision each model trained at (its run's record);
    ``auto`` with what it means on this machine, where the report is written right after
    the trainings."""
    from monokd.training.precision import resolve_precision

    precisions = {name: precision(run) for name, run in runs.items()}

    def shown(value: str) -> str:
        if value != "auto":
            return f"`{value}`"
        return f"`auto` (here {resolve_precision('auto', say=lambda _: None)})"

    if len(set(precisions.values())) == 1:
        return f"Precision: {shown(next(iter(precisions.values())))}, every model."
    return "Precision: " + ", ".join(f"{labels.get(n, n)} {shown(v)}" for n, v in precisions.items()) + "."


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
             precision_line({m.name: runs[m.name] for m in plot.models}, labels),
             *([""] + list(about_inputs) if about_inputs else [])]
    path = write_report(out / "report.md", {labels[n]: r for n, r in results.items()}, chart, pictures,
                        dict(clock.timings), notes, caption=headline(preset, results, curves), curves=curve_png,
                        starts=starts, total=time.monotonic() - clock.start, cpu=cpu,
                        title=f"monokd demo: {plot.method} on SynthKITTI")
    section = story_function(plot.figure)(root, runs, plot, figures) if plot.figure else None
    if section:
        with path.open("a") as report:
            report.write(section)
    return path
