"""What every benchmark ends with: its figures written as JSON (under benchmarks/results/)."""

from __future__ import annotations

import json
from pathlib import Path


SHORT = "_short"  # the name a seed study's short-schedule results keep beside the full schedule's


def write_json(doc, path: str | Path) -> Path:
    """Write ``doc`` as indented JSON at ``path`` (parent folders created) and say where."""
    from monokd.atomic import write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def write_report(results: dict, text: str, out: str | Path) -> None:
    """A study's two outputs: ``out``.json (the figures) and ``out``.md (``text``, also printed)."""
    from monokd.atomic import write_text

    out = Path(out)
    write_json(results, out.with_suffix(".json"))
    write_text(out.with_suffix(".md"), text)
    print(text)


def run_folder(name: str, seed: int) -> str:
    """A seed study's run folder for model or arm ``name`` at ``seed`` (``+`` kept out of paths):
    the one naming add_seeds.py, takd_seeds.py (which reads add_seeds.py's runs with
    ``--add-runs``) and unlabeled_study.py share."""
    return f"{name.replace('+', '_')}-s{seed}"


def short_name(out: str | Path, short: bool) -> Path:
    """``out`` (a results path without suffix), renamed ``<stem>_short`` with ``short``: where a
    study run at a shortened schedule writes, so the full schedule's files keep the plain name."""
    out = Path(out)
    return out.with_name(out.name + SHORT) if short and not out.name.endswith(SHORT) else out


def recorded(run_dirs, eval_name: str = "eval-last") -> dict:
    """What finished runs recorded (monokd.pipeline.run_record): ``precision`` (each run's
    config.yaml or command) and ``val_frames`` (the frames ``<run>/<eval_name>`` scored),
    one value each, or ``mixed`` with the values; a key none of the runs has is left out."""
    from monokd.pipeline import run_record

    runs = [Path(r) for r in run_dirs if (Path(r) / "config.yaml").is_file()]
    out = {}
    if runs:
        out.update(run_record.common([run_record.precision(r) for r in runs], "precision"))
    frames = [f for f in (run_record.evaluated_frames(r / eval_name) for r in runs) if f is not None]
    if frames:
        out.update(run_record.common(frames, "val_frames"))
    return out


def precision_sentence(results: dict) -> str:
    """' Precision P.' of a results JSON: the recorded precision, 'MIXED [...]' when its runs
    had several, 'not recorded' for a study older than the record."""
    precision = results.get("precision")
    if precision == "mixed":
        precision = f"MIXED {results.get('precision_values')}"
    return f" Training precision: {precision if precision is not None else 'not recorded'}."


def train_and_score(recipe, run_dir: Path, overrides: list[str], seed: int, extra: list[str], stage: str) -> dict:
    """A seed study's run: train ``recipe`` into ``run_dir`` unless done (resuming an
    interrupted run), evaluate its last checkpoint on val unless done, return the flat metrics."""
    from monokd.pipeline import stages

    stages.train(recipe, run_dir, overrides, seed, extra, stage=stage)
    eval_dir = run_dir / "eval-last"
    if stages.evaluation_json(eval_dir) is None:
        stages.run_command(["evaluate", "--config", str(run_dir / "config.yaml"), "--ckpt", str(run_dir / "last.ckpt"),
                          "--split", "val", "--out", str(eval_dir)], f"evaluate {stage}")
    return stages.read_flat(eval_dir)


def models_block(flats: dict, arms: list[str], seeds: dict) -> dict:
    """``models`` of a seed study's JSON: per arm, mean / std over its seeds and every seed's figures."""
    from monokd.pipeline.statistics import aggregate

    return {arm: {**aggregate([flats[arm][s] for s in seeds[arm]]), "seeds": seeds[arm],
                  "per_seed": {str(s): flats[arm][s] for s in seeds[arm]}} for arm in arms}


def mean_std(row: dict, name: str) -> str:
    """'mean ± std' of metric ``name`` in an aggregated row, the one value when there is one
    seed (a std of 0 would claim too much), '-' when there is none."""
    if row["n"] == 0:
        return "-"  # an arm with no finished seed yet (add_seeds.py --finished-only)
    if row["n"] == 1:
        return f"{row['mean'][name]:.2f}"
    return f"{row['mean'][name]:.2f} ± {row['std'][name]:.2f}"


AP_DIFFICULTIES = ("easy", "moderate", "hard")


def ap_tables(models: dict, label, first_column: str = "model") -> list[str]:
    """The markdown lines of a seed study's two AP tables (IoU 0.7, then 0.5): per arm of
    ``models`` (aggregated rows) AP3D and AP_BEV easy / moderate / hard as :func:`mean_std`;
    ``label(arm)`` names the row."""
    lines = []
    for iou in ("0.70", "0.50"):
        lines += [f"| {first_column} | AP3D@{iou[:3]} E / M / H | AP_BEV@{iou[:3]} E / M / H |", "|---|---|---|"]
        for arm, row in models.items():
            cells = [" / ".join(mean_std(row, f"Car/{kind}/{d}/R40@{iou}") for d in AP_DIFFICULTIES)
                     for kind in ("3d", "bev")]
            lines.append(f"| {label(arm)} (n={row['n']}) | {cells[0]} | {cells[1]} |")
        lines.append("")
    return lines


def paired_lines(diff: dict) -> list[str]:
    """One markdown line a metric of a paired difference (``paired_differences``): mean, its
    std when there are several seeds ('(one seed)' otherwise), and the 95 % interval if any."""
    lines = []
    for name, d in diff.items():
        ci = d.get("ci95")
        spread = f" ± {d['std']:.2f}" if len(d["per_seed"]) > 1 else " (one seed)"
        lines.append(f"- {name}: {d['mean']:+.2f}{spread}" + (f", CI [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
    return lines
