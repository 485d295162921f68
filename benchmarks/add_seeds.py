"""Teacher / baseline / ADD over several seeds on SynthKITTI: the acceptance figure of ADD.

    python benchmarks/add_seeds.py [--seeds 444 445 446] [--teacher-seed 444] [--runs runs/exp]

Protocol (fixed teacher, as in most distillation papers): the GT-depth teacher, the baseline
MonoDETR and the ADD student are the synth recipes as shipped (configs/monodetr_teacher_synth,
monodetr_synth, add_monodetr_synth), on the README's SynthKITTI (800 train / 200 val, seed 0).
For every seed s a teacher, a baseline and an ADD student are trained (``RUNS/{teacher,
baseline,add}-s<s>``; finished runs are reused, interrupted ones resume); every ADD student is
distilled from the one teacher of ``--teacher-seed``, so the students' spread is the students'
own. Each run is evaluated at its *last* checkpoint (no selection on val) with ``monokd
evaluate``. Writes ``benchmarks/results/add_seeds.{json,md}``: mean +- sample std per model and
the per-seed (paired) difference ADD - baseline, since both see the same seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.engine import demo  # noqa: E402
from monokd.engine.ablate import aggregate  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)

RECIPES = {"teacher": "configs/monodetr_teacher_synth.yaml", "baseline": "configs/monodetr_synth.yaml",
           "add": "configs/add_monodetr_synth.yaml"}
LABELS = {"teacher": "teacher (GT object depth)", "baseline": "baseline MonoDETR", "add": "ADD student"}
DIFFICULTIES = ("easy", "moderate", "hard")
PER_SEED = (("3d", "0.70"), ("3d", "0.50"), ("bbox", "0.70"))  # the per-seed table's moderate figures


def key(kind: str, difficulty: str, iou: str) -> str:
    return f"Car/{kind}/{difficulty}/R40@{iou}"


def train_and_evaluate(model: str, seed: int, runs: Path, teacher_seed: int) -> dict[str, float]:
    run_dir = runs / f"{model}-s{seed}"
    overrides = []
    if model == "add":
        teacher = runs / f"teacher-s{teacher_seed}"
        overrides = demo.teacher_overrides(teacher, teacher / "best.ckpt")
    demo.train(REPO / RECIPES[model], run_dir, overrides, seed, stage=f"{model} seed {seed}")
    eval_dir = run_dir / "eval-last"
    if demo.evaluation_json(eval_dir) is None:
        demo.run_command(["evaluate", "--config", str(run_dir / "config.yaml"), "--ckpt", str(run_dir / "last.ckpt"),
                          "--split", "val", "--out", str(eval_dir)], f"evaluate {model} seed {seed}")
    return demo.read_flat(eval_dir)


def paired_differences(a: list[dict], b: list[dict], names: list[str]) -> dict[str, dict]:
    """Per name: mean and sample std over seeds of a[name] - b[name], and the differences."""
    diffs = [{n: x[n] - y[n] for n in names} for x, y in zip(a, b)]
    stats = aggregate(diffs)
    return {n: {"mean": stats["mean"][n], "std": stats["std"][n], "per_seed": [d[n] for d in diffs]} for n in names}


def _mean_std(row: dict, name: str) -> str:
    """'mean ± std', or the one value when there is one seed (a std of 0 would claim too much)."""
    if row["n"] == 1:
        return f"{row['mean'][name]:.2f}"
    return f"{row['mean'][name]:.2f} ± {row['std'][name]:.2f}"


def markdown(results: dict) -> str:
    seeds = results["seeds"]
    lines = [f"# Teacher / baseline / ADD on SynthKITTI over {len(seeds)} seeds {seeds}", "",
             f"Car AP R40 (%) on val (200 frames), last checkpoint, mean ± sample std over n seeds; every ADD student "
             f"distilled from the seed-{results['teacher_seed']} teacher. `python benchmarks/add_seeds.py`.", ""]
    for iou in ("0.70", "0.50"):
        lines += [f"| model | AP3D@{iou[:3]} E / M / H | AP_BEV@{iou[:3]} E / M / H |", "|---|---|---|"]
        for model, row in results["models"].items():
            cells = [" / ".join(_mean_std(row, key(kind, d, iou)) for d in DIFFICULTIES) for kind in ("3d", "bev")]
            lines.append(f"| {LABELS[model]} (n={row['n']}) | {cells[0]} | {cells[1]} |")
        lines.append("")
    lines += ["Per seed, moderate (AP3D@0.7 / AP3D@0.5 / 2-D bbox AP@0.7):", "", "| seed | " + " | ".join(LABELS[m] for m in results["models"])
              + " | ADD - baseline |", "|---" * (len(results["models"]) + 2) + "|"]
    for i, seed in enumerate(seeds):
        cells = []
        for model, row in results["models"].items():
            flat = row["per_seed"].get(str(seed))
            if flat is None:
                cells.append("-")
                continue
            cells.append(" / ".join(f"{flat[key(kind, 'moderate', iou)]:.2f}" for kind, iou in PER_SEED))
        diff = results["add_minus_baseline"]
        cells.append(" / ".join(f"{diff[key(kind, 'moderate', iou)]['per_seed'][i]:+.2f}" for kind, iou in PER_SEED))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines += ["", "ADD - baseline, paired by seed (mean ± std):", ""]
    for name, d in results["add_minus_baseline"].items():
        lines.append(f"- {name}: {d['mean']:+.2f} ± {d['std']:.2f}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[444, 445, 446])
    parser.add_argument("--teacher-seed", type=int, default=444, help="the teacher every ADD student learns from")
    parser.add_argument("--teacher-seeds", type=int, nargs="+", default=None,
                        help="seeds of the teacher row (default: --seeds)")
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--runs", default="runs/exp")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "add_seeds"))
    args = parser.parse_args()
    runs = Path(args.runs)
    demo.ensure_synth(REPO / "data" / "synthkitti", 800, 200, seed=0)
    models = [m for m in RECIPES if m in args.models]
    if "add" in models:  # the teacher must exist before any student is distilled from it
        train_and_evaluate("teacher", args.teacher_seed, runs, args.teacher_seed)
    seeds = {m: (args.teacher_seeds or args.seeds) if m == "teacher" else args.seeds for m in models}
    flats = {m: {s: train_and_evaluate(m, s, runs, args.teacher_seed) for s in seeds[m]} for m in models}
    results = {"seeds": args.seeds, "teacher_seed": args.teacher_seed, "runs": str(runs), "models": {}}
    for model in models:
        per_seed = [flats[model][s] for s in seeds[model]]
        results["models"][model] = {**aggregate(per_seed), "seeds": seeds[model],
                                    "per_seed": {str(s): flats[model][s] for s in seeds[model]}}
    if {"add", "baseline"} <= set(models):
        names = [key(kind, "moderate", iou) for iou in ("0.70", "0.50") for kind in ("3d", "bev")]
        names.append(key("bbox", "moderate", "0.70"))
        results["add_minus_baseline"] = paired_differences([flats["add"][s] for s in args.seeds],
                                                           [flats["baseline"][s] for s in args.seeds], names)
    out = Path(args.out)
    write_json(results, out.with_suffix(".json"))
    text = markdown(results) if "add_minus_baseline" in results else json.dumps(results["models"], indent=1)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
