"""The demo's and the ablation's report: metric tables (markdown), the Figure-1 bar chart,
the learning curves (val AP against training step) and the side-by-side prediction pictures.

Metrics come as the evaluation's "flat" dict, e.g. ``{"Car/3d/moderate/R40@0.70": 12.3}``
(AP in percent). A table cell is either a float or a ``(mean, std)`` pair (the ablation's
aggregate over seeds); a missing key prints as ``-``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from monokd.atomic import atomic_path, write_text
from monokd.timing import hms

LEVELS = ("easy", "moderate", "hard")
METRICS = ("3d", "bev")
METRIC_NAMES = {"3d": "AP3D", "bev": "AP_BEV"}
IOUS = (0.7, 0.5)

Cell = Union[float, tuple]


def metric_key(metric: str, level: str, iou: float, cls: str = "Car", recall: str = "R40") -> str:
    """The evaluation's flat key, e.g. ``metric_key("3d", "moderate", 0.7)`` ->
    ``"Car/3d/moderate/R40@0.70"``."""
    return f"{cls}/{metric}/{level}/{recall}@{iou:.2f}"


def format_cell(value: Cell | None, digits: int = 2) -> str:
    """``12.345`` -> ``12.35``; ``(12.3, 0.45)`` -> ``12.30 ± 0.45``; None or NaN -> ``-``."""
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        mean, std = value[0], value[1]
        if mean is None or math.isnan(mean):
            return "-"
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    if math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def metric_table(rows: Sequence[tuple[str, Mapping[str, Cell]]], iou: float, cls: str = "Car",
                 metrics: Sequence[str] = METRICS, levels: Sequence[str] = LEVELS,
                 label: str = "model", extra: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """A markdown table in the layout of the paper's Table 4: one row per model, columns
    AP3D easy/mod/hard then AP_BEV easy/mod/hard (R40) at one IoU threshold, then the
    ``extra`` columns (column name -> row name -> text)."""
    extra = extra or {}
    columns = [f"{METRIC_NAMES[m]} {level[:3] if level == 'moderate' else level}" for m in metrics for level in levels]
    columns += list(extra)
    header = f"| {label} | " + " | ".join(columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [f"{cls} R40 at IoU {iou:.1f}", "", header, rule]
    for name, values in rows:
        cells = [format_cell(values.get(metric_key(m, level, iou, cls))) for m in metrics for level in levels]
        cells += [column.get(name, "-") for column in extra.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_tables(rows: Sequence[tuple[str, Mapping[str, Cell]]], cls: str = "Car",
                   ious: Sequence[float] = IOUS, label: str = "model") -> str:
    """The tables at each IoU threshold (0.7 then 0.5), separated by a blank line."""
    return "\n".join(metric_table(rows, iou, cls, label=label) for iou in ious)


def bar_chart(results: Mapping[str, Mapping[str, float]], path: str | Path, cls: str = "Car",
              ious: Sequence[float] = IOUS, colors: Mapping[str, str] | None = None) -> Path:
    """Figure 1 of the paper for one network: moderate AP_BEV and AP3D (R40), one panel per
    IoU threshold, one bar per model (``results`` maps a model's name to its flat metrics,
    in the order drawn; by default the teacher grey, the baseline blue, ADD red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(colors or {})
    default = {"teacher": "#8c8c8c", "baseline": "#1f77b4", "add": "#d62728"}
    names = list(results)
    width = 0.8 / max(len(names), 1)
    fig, axes = plt.subplots(1, len(ious), figsize=(4.2 * len(ious), 3.4), squeeze=False)
    for ax, iou in zip(axes[0], ious):
        groups = [f"{METRIC_NAMES[m]} moderate" for m in ("bev", "3d")]
        for i, name in enumerate(names):
            values = [results[name].get(metric_key(m, "moderate", iou, cls), float("nan")) for m in ("bev", "3d")]
            x = np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width
            color = colors.get(name, default.get(name.lower().split()[0], None))
            bars = ax.bar(x, np.nan_to_num(values), width, label=name, color=color)
            for bar, value in zip(bars, values):
                text = "n/a" if math.isnan(value) else f"{value:.1f}"
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.set_title(f"{cls} R40, IoU {iou:.1f}")
        ax.set_ylabel("AP (%)")
        top = max([results[n].get(metric_key(m, "moderate", iou, cls), 0.0)
                   for n in names for m in ("bev", "3d")] + [1.0])
        ax.set_ylim(0, top * 1.2 if not math.isnan(top) else 1.0)
    axes[0][-1].legend(fontsize=8, loc="upper right")
    return _save(fig, path, dpi=110)


def learning_curves(curves: Mapping[str, Sequence[tuple[int, Mapping[str, float]]]], path: str | Path,
                    keys: Sequence[str] = (metric_key("bev", "moderate", 0.5), metric_key("3d", "moderate", 0.5)),
                    colors: Mapping[str, str] | None = None) -> Path:
    """Val AP against training step: one panel per flat key in ``keys``, one line per model
    (``curves`` maps a model's name to its validations, (step, flat dict) in step order),
    each validation a marker, the last one labelled with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(colors or {})
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        metric, level, iou = key.split("/")[1], key.split("/")[2], key.split("@")[-1]
        top = 1.0  # an all-zero panel still gets a readable axis
        for name, points in curves.items():
            points = [(step, flat[key]) for step, flat in points if key in flat]
            if not points:
                continue
            steps, values = zip(*points)
            top = max(top, *values)
            ax.plot(steps, values, marker="o", markersize=3.5, label=name, color=colors.get(name))
            ax.annotate(f"{values[-1]:.1f}", (steps[-1], values[-1]), xytext=(3, 0), textcoords="offset points",
                        fontsize=8, va="center", color=colors.get(name))
        ax.set_title(f"{METRIC_NAMES.get(metric, metric)} {level}, R40, IoU {float(iou):.1f}", fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("val AP (%)")
        ax.set_ylim(0, top * 1.15)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    return _save(fig, path, dpi=110)


def prediction_grid(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                    title: str = "") -> Path:
    """One frame, side by side: for each model (column) its image with 3-D boxes on top and
    its bird's-eye view below. ``panels`` maps a model's name to (image (H, W, 3) uint8 RGB,
    bev (H', W', 3) uint8 RGB), both already drawn (by ``monokd.viz``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(panels)
    image_h, image_w = panels[names[0]][0].shape[:2]
    bev_h, bev_w = panels[names[0]][1].shape[:2]
    col_w = 4.0
    height = col_w * image_h / image_w + col_w * bev_h / bev_w
    fig, axes = plt.subplots(2, len(names), figsize=(col_w * len(names), height + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": [image_h / image_w, bev_h / bev_w]})
    for column, name in enumerate(names):
        image, bev = panels[name]
        axes[0][column].imshow(image)
        axes[0][column].set_title(name, fontsize=10)
        axes[1][column].imshow(bev)
        for ax in (axes[0][column], axes[1][column]):
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=100)



def write_report(path: str | Path, results: Mapping[str, Mapping[str, float]], chart: str | Path | None = None,
                 pictures: Sequence[str | Path] = (), timings: Mapping[str, float] | None = None,
                 notes: Sequence[str] = (), title: str = "monokd demo: ADD on SynthKITTI", caption: str = "",
                 curves: str | Path | None = None, starts: Mapping[str, float] | None = None,
                 total: float | None = None, cpu: Mapping[str, float] | None = None) -> Path:
    """Write the demo's report.md: the tables (AP3D and AP_BEV, R40, easy/mod/hard, at 0.7 and
    0.5) and the ``caption`` under them, the learning curves, the chart and the pictures
    (linked relative to the report), the stage times (a stage of 0 seconds was reused, done by
    an earlier run, and says so; with ``starts``, seconds since the beginning, a column "from";
    ``cpu``, CPU seconds, a column "CPU"; ``total`` the wall time, else the sum of the stages)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def link(target: str | Path) -> str:
        target = Path(target)
        try:
            return target.resolve().relative_to(path.parent.resolve()).as_posix()
        except ValueError:
            return target.as_posix()

    parts = [f"# {title}", ""]
    parts += list(notes) + ([""] if notes else [])
    parts += ["## Car AP (R40) on the val split", "", results_tables(list(results.items()))]
    if caption:
        parts += [caption, ""]
    if curves is not None:
        parts += ["## Learning curves (val AP at each validation)", "",
                  "The trainings' own validations, in each training's precision; the tables above evaluate "
                  "the last checkpoint in fp32 (`monokd evaluate`), so a curve's last point can differ "
                  "from its table entry by rounding.", "", f"![learning curves]({link(curves)})", ""]
    if chart is not None:
        parts += ["## Moderate AP with and without distillation (as in the paper's Figure 1)", "",
                  f"![moderate AP]({link(chart)})", ""]
    if pictures:
        parts += ["## Predictions on val frames (ground truth and predictions; image and bird's-eye view)", ""]
        parts += [f"![{Path(p).stem}]({link(p)})" for p in pictures] + [""]
    if timings:
        total = sum(timings.values()) if total is None else total
        if starts:
            cpu = cpu or {}
            parts += ["## Stage times (wall clock; stages that start together ran side by side)", "",
                      "| stage | from | time (h:mm:ss) | CPU (s) |", "|---|---:|---:|---:|"]
            parts += [f"| {name} | {hms(starts.get(name, 0.0))} | {hms(seconds)} | {cpu.get(name, 0.0):.0f} |"
                      if seconds else f"| {name} | | reused: done by an earlier run | |"
                      for name, seconds in timings.items()]
            parts += [f"| total | | {hms(total)} | {sum(cpu.values()):.0f} |", ""]
        else:
            parts += ["## Stage times", "", "| stage | time (h:mm:ss) |", "|---|---:|"]
            parts += [f"| {name} | {hms(seconds) if seconds else 'reused: done by an earlier run'} |"
                      for name, seconds in timings.items()]
            parts += [f"| total | {hms(total)} |", ""]
    write_text(path, "\n".join(parts))
    return path


def _save(fig, path: str | Path, dpi: int) -> Path:
    """Lay out, write (making the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path
