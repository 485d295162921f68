"""Does the training precision change the results? Two run folders with the same rows and
seeds at two precisions (e.g. bf16-mixed and fp32), compared row by row: ``monokd ablate``'s,
or a seed study's (benchmarks/add_seeds.py, takd_seeds.py; its frozen teacher linked into both).

    python benchmarks/precision_study.py RUNS_A RUNS_B [--out benchmarks/results/precision_study]
    python benchmarks/precision_study.py /work/runs/abl_bf16 /work/runs/abl_fp32

No training: reads ``RUNS/seed<k>/<row>/`` (each run's recorded precision and ``--set`` items,
monokd.pipeline.run_record) and ``RUNS/seed<k>/eval/<row>/`` (its evaluation), or a seed
study's ``RUNS/<row>-s<k>/`` and its ``eval-last/``. A row is
compared over the seeds where it has finished and been evaluated in both folders. Runs of one
seed share their initial weights and data order at both precisions (``train.seed``), so the
difference is paired by seed:

    d_s = AP_A(s) - AP_B(s),   mean d -+ t(0.975, n - 1) std(d) / sqrt(n)   (95 % t-interval)

over AP3D@0.7, AP_BEV@0.7, AP3D@0.5 and AP_BEV@0.5 (Car, moderate, R40), or for a run of the
depth front-end (its ``eval/<run>/`` holding ``monokd depth evaluate --json``'s file) over
AbsRel, RMSE (m) and delta1 on val (monokd.models.depth.metrics). ``within_seed_spread``:
|mean d| <= the seed spread, the pooled sample std over seeds sqrt((s_A^2 + s_B^2) / 2) of the
metric: a precision effect no larger than what changing the seed alone does.

A pair of runs whose ``--set`` items differ in anything but ``train.precision`` (and the runs'
own folder, in the teacher paths) is listed under ``differing_settings``: it compares more than
precision. Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monokd.models.depth import metrics as depth_metrics  # noqa: E402
from monokd.pipeline import ablate, run_record, stages  # noqa: E402
from monokd.pipeline.statistics import aggregate, paired_differences  # noqa: E402
from _results import mean_std, write_report  # noqa: E402  (benchmarks/_results.py)

METRICS = ablate.SUMMARY_KEYS  # Car 3d / bev moderate R40 at 0.7 then 0.5
DEPTH_METRICS = depth_metrics.METRICS  # the depth front-end's val errors (monokd depth evaluate)
NAMES = {**{k: f"{'AP3D' if '/3d/' in k else 'AP_BEV'}@{k[-4:-1]}" for k in METRICS},
         "abs_rel": "AbsRel", "rmse": "RMSE (m)", "delta1": "δ1"}
CI_METHOD = ablate.CI_METHOD
FROZEN_FOLDERS = ("teacher", "lidar_teacher", "ta")  # the frozen models' runs, listed first


def _row_names() -> dict[str, str]:
    """Run folder -> the ablation row it holds (``monokd ablate``'s folder naming), both methods."""
    names = {}
    for method in ablate.METHODS:
        rows = ablate.distill_rows(method)[0]
        for row, folder in ablate.run_names(list(rows), rows).items():
            names.setdefault(folder, row)
    return names


def evaluation(eval_dir: Path) -> tuple[dict[str, float], int | None] | None:
    """A finished evaluation's metrics and frame count, or None: a detector's ``flat`` AP dict
    (``monokd evaluate``), else a JSON holding every :data:`DEPTH_METRICS` (``monokd depth
    evaluate --json``, its ``images`` the frame count)."""
    if stages.evaluation_json(eval_dir) is not None:
        return stages.read_flat(eval_dir), run_record.evaluated_frames(eval_dir)
    for path in sorted(Path(eval_dir).glob("*.json")) if Path(eval_dir).is_dir() else []:
        try:
            found = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(found, dict) and all(isinstance(found.get(k), (int, float)) for k in DEPTH_METRICS):
            return {k: float(found[k]) for k in DEPTH_METRICS}, found.get("images")
    return None


def finished(runs: Path) -> dict[str, dict[int, tuple[Path, Path]]]:
    """Row -> seed -> (run folder, its evaluation folder), for every run trained and evaluated
    under ``runs``, in either layout: ``monokd ablate``'s (``seed<s>/<row>/``, evaluated in
    ``seed<s>/eval/<row>/``) or the seed studies' (``<name>-s<seed>/``, evaluated in
    ``<run>/eval-last/``: benchmarks/add_seeds.py, takd_seeds.py)."""
    found: dict[str, dict[int, tuple[Path, Path]]] = {}
    for seed_dir in sorted(runs.glob("seed*")):
        if not seed_dir.name[4:].isdigit():
            continue
        for run in sorted(p for p in seed_dir.iterdir() if p.is_dir() and p.name != "eval"):
            scored = seed_dir / "eval" / run.name
            if stages.training_done(run) and evaluation(scored) is not None:
                found.setdefault(run.name, {})[int(seed_dir.name[4:])] = (run, scored)
    for run in sorted(p for p in runs.glob("*-s*") if p.is_dir()):
        name, _, seed = run.name.rpartition("-s")
        scored = run / "eval-last"
        if name and seed.isdigit() and stages.training_done(run) and evaluation(scored) is not None:
            found.setdefault(name, {})[int(seed)] = (run, scored)
    return found


def _settings(run: Path, runs: Path) -> list[str]:
    """A run's ``--set`` items but its precision, its own study folder written as OUT, a
    frozen model's checkpoint as its ``last.ckpt`` where the recorded file holds the same
    weights (``run_record.canonical_checkpoint_items``)."""
    items = run_record.canonical_checkpoint_items(run_record.set_items(run_record.train_command(run) or []))
    items = [i.replace(str(runs.resolve()), "OUT").replace(str(runs), "OUT") for i in items]
    return [i for i in items if not i.startswith("train.precision=")]


def _order(folder: str, known: list[str]) -> tuple:
    if folder in FROZEN_FOLDERS:
        return (0, FROZEN_FOLDERS.index(folder), folder)
    return (1, known.index(folder), folder) if folder in known else (2, 0, folder)


def compare(runs_a: Path, runs_b: Path) -> dict:
    """The comparison JSON: per row the seeds both folders finished, each side's recorded
    precision and mean / std, the paired difference A - B (``mean``, ``std``, ``per_seed``,
    ``ci95``) and whether it lies within the seed spread. SystemExit when no row is shared."""
    a, b = finished(runs_a), finished(runs_b)
    names = _row_names()
    known = list(names)
    rows, precisions, frames, differing = [], {"a": [], "b": []}, [], {}
    for folder in sorted(set(a) & set(b), key=lambda f: _order(f, known)):
        # a run both folders hold (a frozen teacher linked into both) compares nothing
        seeds = sorted(s for s in set(a[folder]) & set(b[folder])
                       if a[folder][s][0].resolve() != b[folder][s][0].resolve())
        if not seeds:
            continue
        found_evals = {side: [evaluation(found[folder][s][1]) for s in seeds] for side, found in (("a", a), ("b", b))}
        flats = {side: [e[0] for e in evals] for side, evals in found_evals.items()}
        frames += [e[1] for evals in found_evals.values() for e in evals]
        keys = list(METRICS) if all(k in flats["a"][0] for k in METRICS) else list(DEPTH_METRICS)
        row_precision = {}
        for side, found in (("a", a), ("b", b)):
            values = [run_record.precision(found[folder][s][0]) for s in seeds]
            precisions[side] += values
            row_precision[side] = run_record.common(values, "precision")["precision"]
        for s in seeds:
            settings = {"a": _settings(a[folder][s][0], runs_a), "b": _settings(b[folder][s][0], runs_b)}
            if settings["a"] != settings["b"]:
                differing[f"seed{s}/{folder}"] = settings
        stats = {side: aggregate(flats[side]) for side in flats}
        diff = paired_differences(flats["a"], flats["b"], keys)
        spread = {k: math.sqrt((stats["a"]["std"][k] ** 2 + stats["b"]["std"][k] ** 2) / 2) for k in keys}
        rows.append({"row": names.get(folder, folder), "run": folder, "seeds": seeds, "n": len(seeds),
                     "metrics": keys, "precision": row_precision, "a": stats["a"], "b": stats["b"], "paired": diff,
                     "seed_spread": spread,
                     "within_seed_spread": {k: abs(diff[k]["mean"]) <= spread[k] for k in keys},
                     "ci95_includes_zero": {k: diff[k]["ci95"] is None or diff[k]["ci95"][0] <= 0 <= diff[k]["ci95"][1]
                                            for k in keys}})
    if not rows:
        raise SystemExit(f"precision_study: {runs_a} and {runs_b} share no finished, evaluated run")
    seeds = sorted({s for r in rows for s in r["seeds"]})
    return {"runs_a": str(runs_a), "runs_b": str(runs_b),
            "precision_a": run_record.common(precisions["a"], "precision")["precision"],
            "precision_b": run_record.common(precisions["b"], "precision")["precision"],
            "seeds": seeds, **run_record.common([f for f in frames if f is not None], "val_frames"),
            "train_args": {"runs_a": sorted({i for r in a.values() for run, _ in r.values() for i in _settings(run, runs_a)}),
                           "runs_b": sorted({i for r in b.values() for run, _ in r.values() for i in _settings(run, runs_b)})},
            "metrics": METRICS, "depth_metrics": list(DEPTH_METRICS), "ci_method": CI_METHOD,
            "seed_spread_method": "pooled sample std over seeds, sqrt((std_a^2 + std_b^2) / 2), per metric",
            "differing_settings": differing, "rows": rows}


def _cell(row: dict, key: str) -> str:
    d = row["paired"][key]
    ci = d["ci95"]
    digits = 3 if key in ("abs_rel", "delta1") else 2
    text = f"{d['mean']:+.{digits}f}" + (f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else "")
    return text + (" ✓" if row["within_seed_spread"][key] else " ✗")


def markdown(results: dict) -> str:
    pa, pb = results["precision_a"], results["precision_b"]
    lines = [f"# Training precision: {pa} vs {pb}", "",
             f"`python benchmarks/precision_study.py {results['runs_a']} {results['runs_b']}`: the same rows and seeds "
             f"trained at each precision, Car AP R40 (%) moderate on val ({results.get('val_frames')} frames), "
             f"n = seeds finished in both. Paired difference {pa} - {pb} by seed, mean [95 % t-interval]; "
             "✓: |mean| within the seed spread (the pooled sample std over seeds), ✗: beyond it.", ""]
    if results.get("note"):
        lines += [results["note"], ""]
    if results["differing_settings"]:
        lines += [f"**Warning**: run pairs whose settings differ beyond the precision: "
                  f"{', '.join(results['differing_settings'])} (the JSON's `differing_settings`).", ""]
    detectors = [r for r in results["rows"] if list(r.get("metrics", METRICS)) == list(METRICS)]
    depth = [r for r in results["rows"] if r not in detectors]
    if detectors:
        lines += _difference_table(detectors, list(METRICS), pa, pb)
        lines += ["", "Mean ± sample std per precision at every metric:", ""] + _value_table(detectors, list(METRICS), pa, pb)
    if depth:
        lines += ["", "The depth front-end (`monokd depth evaluate` on val: AbsRel and RMSE lower is better, "
                  "δ1 higher), paired difference and mean ± sample std:", ""]
        lines += _difference_table(depth, list(DEPTH_METRICS), pa, pb) + [""] + _value_table(depth, list(DEPTH_METRICS), pa, pb)
    return "\n".join(lines) + "\n"


def _difference_table(rows: list[dict], keys: list[str], pa: str, pb: str) -> list[str]:
    lines = [f"| row | n | {NAMES[keys[0]]} {pa} | {NAMES[keys[0]]} {pb} | " + " | ".join(f"Δ {NAMES[k]}" for k in keys) + " |",
             "|---|---:|" + "---:|" * (2 + len(keys))]
    for row in rows:
        lines.append(f"| {row['row']} | {row['n']} | {_mean_std(row['a'], keys[0])} | {_mean_std(row['b'], keys[0])} | "
                     + " | ".join(_cell(row, k) for k in keys) + " |")
    return lines


def _value_table(rows: list[dict], keys: list[str], pa: str, pb: str) -> list[str]:
    lines = ["| row | " + " | ".join(f"{NAMES[k]} {p}" for k in keys for p in (pa, pb)) + " |",
             "|---|" + "---:|" * (2 * len(keys))]
    for row in rows:
        lines.append(f"| {row['row']} | " + " | ".join(_mean_std(row[side], k) for k in keys for side in ("a", "b")) + " |")
    return lines


def _mean_std(stats: dict, key: str) -> str:
    """AP as ``mean_std`` writes it; AbsRel and delta1 to three decimals."""
    if key not in ("abs_rel", "delta1") or stats["n"] == 0:
        return mean_std(stats, key)
    mean = f"{stats['mean'][key]:.3f}"
    return mean if stats["n"] == 1 else f"{mean} ± {stats['std'][key]:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_a", help="monokd ablate --out folder of one precision (the difference is A - B)")
    parser.add_argument("runs_b", help="the other precision's, same rows and seeds")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "precision_study"))
    parser.add_argument("--note", default=None, help="what else tells the two folders apart (e.g. the code "
                        "version each was trained with): one sentence under the title, and `note` in the JSON")
    args = parser.parse_args(argv)
    results = compare(Path(args.runs_a), Path(args.runs_b))
    if args.note:
        results["note"] = args.note
    write_report(results, markdown(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
