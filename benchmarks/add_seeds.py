"""Teacher / baseline / ADD arms over several seeds on SynthKITTI: the acceptance figure of ADD.

    python benchmarks/add_seeds.py --protocol power [--jobs 8]      # the powered study (issue 13)
    python benchmarks/add_seeds.py [--seeds 444 445 446] [--teacher-seed 444] [--runs runs/exp]  # -> add_seeds_legacy
    python benchmarks/add_seeds.py --from-json benchmarks/results/add_seeds.json  # re-render only
    python benchmarks/add_seeds.py --student caddn [--seeds 444 445 446]   # -> add_seeds_caddn.{json,md}

Fixed teacher, as in most distillation papers: one GT-depth teacher (configs/
monodetr_teacher_synth.yaml at ``--teacher-seed``) and, for every student seed s, one run per
arm: ``baseline`` (configs/monodetr_synth.yaml), ``add`` (configs/add_monodetr_synth.yaml as
shipped) or any row of ``monokd.distill.add.PRESETS`` (its overrides on the ADD recipe, e.g.
``paper-literal``, ``depth-memory+gt-pairing``), all distilled from that one teacher, so the
students' spread is their own. Runs live in ``RUNS/<arm>-s<seed>``; finished runs are reused and
interrupted ones resume (``--resume auto``), so the whole study resumes after an interruption.
``--jobs N`` trains N runs at once (a GPU holds several of these small models). Each run is
evaluated at its *last* checkpoint (no selection on val) with ``monokd evaluate``.

Protocols (``--protocol``; explicit options override them):

- ``legacy``: the README's first study: SynthKITTI 800 / 200 frames, students at seeds 444-446,
  teacher 444 at its best checkpoint (the seed-444 students share the teacher's initial
  weights and data order).
- ``power``: 800 / 1000 frames (the same 800 train frames: frame i depends on (seed, i) only),
  students at seeds 1001-1005, which share neither weights nor data order (``train.seed``
  drives both) with the seed-444 teacher, taken at its last checkpoint (no selection on val);
  arms baseline, add (the recipe as shipped: the paper's distilled signals and index pairing,
  with region means) and depth-memory+gt-pairing (the variant the probes favour:
  benchmarks/add_probe.py), each ~20-30 min a training on one core. Not paper-literal (Eq. 4 / 5
  summed as written): at the paper's weights its sums start ~500x the detection loss and the
  student never learns to detect (seed 1001: AP3D@0.5 0.00; docs/add.md); ``--arms`` adds it.

Runs are scheduled seed by seed (every arm of seed 1001, then of 1002, ...), so an interrupted
study has whole paired seeds; ``--finished-only`` renders what has finished without training
(``partial: true`` in the JSON, with the planned seeds): every arm over its finished seeds,
each paired difference over the seeds the arm shares with the baseline (``paired_seeds``).

Writes ``benchmarks/results/add_seeds.{json,md}`` (``add_seeds_legacy`` for the legacy protocol): per arm mean +- sample std over seeds, and
per student arm its paired (same seed) difference to the baseline per metric: ``mean``, ``std``,
``per_seed`` and ``ci95`` = [low, high], the two-sided 95 % Student-t interval
mean -+ t(0.975, n - 1) std / sqrt(n) (``monokd.pipeline.statistics.paired_differences``).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.distill.add import PRESETS  # noqa: E402
from monokd.pipeline import presets, stages  # noqa: E402
from monokd.pipeline.statistics import paired_differences  # noqa: E402
from _results import (ap_tables, models_block, paired_lines, precision_sentence, recorded, run_folder,  # noqa: E402
                      short_name, train_and_score, write_report)  # (benchmarks/_results.py)

RECIPES = {"teacher": "configs/monodetr_teacher_synth.yaml", "baseline": "configs/monodetr_synth.yaml",
           "add": "configs/add_monodetr_synth.yaml"}
LABELS = {"teacher": "teacher (GT object depth)", "baseline": "baseline MonoDETR", "add": "ADD student"}
# --student: the recipes and labels of each student's three arms, and its results file
STUDENTS = {
    "monodetr": (dict(RECIPES), dict(LABELS), "add_seeds"),
    "caddn": ({"teacher": "configs/caddn_teacher_synth.yaml", "baseline": "configs/caddn_synth.yaml",
               "add": "configs/add_caddn_synth.yaml"},
              {"teacher": "teacher (pixel-wise GT depth)", "baseline": "baseline CaDDN", "add": "ADD student"},
              "add_seeds_caddn"),
}


def use_student(name: str) -> str:
    """Point RECIPES and LABELS at ``name``'s arms (in place); returns its results file stem."""
    recipes, labels, stem = STUDENTS[name]
    RECIPES.clear()
    RECIPES.update(recipes)
    LABELS.clear()
    LABELS.update(labels)
    return stem
PER_SEED = (("3d", "0.70"), ("3d", "0.50"), ("bbox", "0.70"))  # the per-seed table's moderate figures
CI_METHOD = "95 % two-sided Student t-interval over the paired per-seed differences: mean -+ t(0.975, n-1) std / sqrt(n)"
PROTOCOLS = {
    "legacy": {"num_train": 800, "num_val": 200, "teacher_seed": 444, "seeds": [444, 445, 446],
               "arms": ["teacher", "baseline", "add"], "runs": "runs/exp", "data": "data/synthkitti",
               "teacher_ckpt": "best.ckpt"},
    "power": {"num_train": 800, "num_val": 1000, "teacher_seed": 444, "seeds": [1001, 1002, 1003, 1004, 1005],
              "arms": ["teacher", "baseline", "add", "depth-memory+gt-pairing"],
              "runs": "runs/add_power", "data": "data/synthkitti-800-1000", "teacher_ckpt": "last.ckpt"},
}


def key(kind: str, difficulty: str, iou: str) -> str:
    return f"Car/{kind}/{difficulty}/R40@{iou}"


PAIRED_METRICS = [key(kind, "moderate", iou) for iou in ("0.70", "0.50") for kind in ("3d", "bev")]
PAIRED_METRICS.append(key("bbox", "moderate", "0.70"))


def arm_recipe(arm: str) -> tuple[str, list[str]]:
    """(recipe, overrides) of an arm: teacher / baseline / add, or a PRESETS row on the ADD recipe."""
    if arm in RECIPES:
        return RECIPES[arm], []
    if arm not in PRESETS:
        raise SystemExit(f"add_seeds: unknown arm {arm!r} (arms: {', '.join([*RECIPES, *PRESETS])})")
    overrides = list(PRESETS[arm])
    return (RECIPES["baseline"], []) if "distill=null" in overrides else (RECIPES["add"], overrides)


def train_and_evaluate(arm: str, seed: int, runs: Path, teacher_seed: int, data_root: Path,
                       extra: list[str], teacher_ckpt: str = "last.ckpt") -> dict[str, float]:
    run_dir = runs / run_folder(arm, seed)
    recipe, overrides = arm_recipe(arm)
    overrides = [f"data.root={data_root}", *overrides]
    if recipe == RECIPES["add"]:
        teacher = runs / run_folder("teacher", teacher_seed)
        overrides += presets.teacher_overrides(teacher, teacher / teacher_ckpt)
    return train_and_score(REPO / recipe, run_dir, overrides, seed, extra, f"{arm} seed {seed}")


def summarise(flats: dict[str, dict[int, dict]], arms: list[str], seeds: dict[str, list[int]], meta: dict) -> dict:
    """The results JSON from per-arm, per-seed flat metrics (no training). Each student arm is
    paired with the baseline over the seeds both have (``paired_seeds``); in a whole study
    that is every seed, in a partial one (``--finished-only``) an arm may have fewer."""
    results = {**meta, "ci_method": CI_METHOD, "models": models_block(flats, arms, seeds), "paired": {},
               "paired_seeds": {}}
    if "baseline" in arms:
        for arm in arms:
            if arm in ("teacher", "baseline"):
                continue
            both = [s for s in seeds[arm] if s in seeds["baseline"]]
            if not both:  # no paired difference before the arm and the baseline share a finished seed
                continue
            results["paired_seeds"][arm] = both
            results["paired"][arm] = paired_differences([flats[arm][s] for s in both],
                                                        [flats["baseline"][s] for s in both], PAIRED_METRICS)
        if "add" in results["paired"]:
            results["add_minus_baseline"] = results["paired"]["add"]  # the first study's key
    return results


def _label(arm: str) -> str:
    return LABELS.get(arm, f"ADD `{arm}`")


def _short(arm: str) -> str:
    return "ADD" if arm == "add" else arm


def markdown(results: dict) -> str:
    seeds, models = results["seeds"], results["models"]
    title = (f"the finished runs of seeds {results.get('planned_seeds')}" if results.get("partial")
             else f"{len(seeds)} seeds {seeds}")
    lines = [f"# Teacher / baseline / ADD on SynthKITTI over {title}", "",
             f"Car AP R40 (%) on val ({results.get('val_frames', 200)} frames), last checkpoint, mean ± sample std over "
             f"n seeds; every ADD student distilled from the seed-{results['teacher_seed']} teacher. "
             f"`python benchmarks/add_seeds.py{' --protocol ' + results['protocol'] if results.get('protocol') else ''}`"
             f"{', every training with `' + ' '.join(results['train_args']) + '`' if results.get('train_args') else ''}."
             f"{precision_sentence(results)}", ""]
    if results.get("partial"):
        lines += [f"**Partial study** (`--finished-only`): {len(seeds)} of the planned seeds "
                  f"{results.get('planned_seeds')} have every arm trained and evaluated; each row's n is its "
                  "finished seeds, each paired difference is over the seeds the arm shares with the baseline; "
                  "the rest are to run.", ""]
    lines += ap_tables(models, _label)
    paired = results.get("paired") or {}
    lines += ["Per seed, moderate (AP3D@0.7 / AP3D@0.5 / 2-D bbox AP@0.7):", "",
              "| seed | " + " | ".join(_label(m) for m in models) + "".join(f" | {_short(a)} - baseline" for a in paired) + " |",
              "|---" * (len(models) + len(paired) + 1) + "|"]
    paired_seeds = results["paired_seeds"]  # summarise writes it, --from-json included
    for seed in sorted({int(s) for m in models if m != "teacher" for s in models[m]["per_seed"]}):
        cells = []
        for row in models.values():
            flat = row["per_seed"].get(str(seed))
            cells.append("-" if flat is None else " / ".join(f"{flat[key(k, 'moderate', iou)]:.2f}" for k, iou in PER_SEED))
        for arm, diff in paired.items():
            at = paired_seeds[arm].index(seed) if seed in paired_seeds[arm] else None
            cells.append("-" if at is None else
                         " / ".join(f"{diff[key(k, 'moderate', iou)]['per_seed'][at]:+.2f}" for k, iou in PER_SEED))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    for arm, diff in paired.items():
        n = len(paired_seeds[arm])
        how = ("mean ± sample std, 95 % two-sided Student t-interval with n - 1 degrees of freedom" if n > 1
               else "one seed: no spread, no interval")
        lines += ["", f"{_short(arm)} - baseline, paired by seed over {n} seed{'s' if n > 1 else ''} "
                  f"{paired_seeds[arm]} ({how}):", "", *paired_lines(diff)]
    return "\n".join(lines) + "\n"


def from_json(path: Path) -> dict:
    """Recompute the summary (paired differences with CIs) from a results JSON's per-seed figures."""
    import json

    old = json.loads(path.read_text())
    arms = list(old["models"])
    flats = {a: {int(s): f for s, f in old["models"][a]["per_seed"].items()} for a in arms}
    seeds = {a: [int(s) for s in old["models"][a].get("seeds", old["models"][a]["per_seed"])] for a in arms}
    meta = {k: v for k, v in old.items() if k not in ("models", "paired", "paired_seeds", "add_minus_baseline", "ci_method")}
    meta.setdefault("protocol", "legacy")
    meta.setdefault("val_frames", 200)
    meta.setdefault("train_frames", 800)
    meta.setdefault("student_seeds", old["seeds"])
    meta.setdefault("shares_teacher_seed", old["teacher_seed"] in old["seeds"])
    if "precision" not in meta and meta.get("runs"):  # a study older than the record: its runs, if still there
        meta.update(recorded(Path(meta["runs"]) / run_folder(a, s) for a in arms for s in seeds[a]))
    meta.setdefault("precision", None)
    meta.setdefault("train_args", None)  # not recorded
    return summarise(flats, arms, seeds, meta)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="legacy")
    parser.add_argument("--student", choices=list(STUDENTS), default="monodetr",
                        help="the student of the three arms (caddn: configs/*caddn*_synth.yaml, the "
                             "default out add_seeds_caddn; the PRESETS rows are MonoDETR's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="student seeds")
    parser.add_argument("--teacher-seed", type=int, default=None, help="the teacher every ADD student learns from")
    parser.add_argument("--teacher-seeds", type=int, nargs="+", default=None,
                        help="seeds of the teacher row (default: legacy --seeds, power the teacher seed)")
    parser.add_argument("--arms", "--models", dest="arms", nargs="+", default=None,
                        help="teacher, baseline, add, or PRESETS rows (e.g. paper-literal, depth-memory+gt-pairing)")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-val", type=int, default=None)
    parser.add_argument("--data", default=None, help="SynthKITTI root (generated if missing)")
    parser.add_argument("--runs", default=None)
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (after the teacher)")
    parser.add_argument("--train-arg", action="append", default=[], help="extra argument for monokd train, repeatable")
    parser.add_argument("--from-json", default=None, help="re-render an existing results JSON in place (no training)")
    parser.add_argument("--finished-only", action="store_true",
                        help="no training: summarise the seeds whose every arm has finished and been evaluated")
    parser.add_argument("--out", default=None, help="results path without suffix (default "
                        "benchmarks/results/add_seeds for the power protocol, add_seeds_legacy for the "
                        "legacy one, add_seeds_caddn with --student caddn)")
    parser.add_argument("--short", action="store_true",
                        help="write <out>_short.{json,md}: a shortened schedule (--train-arg), kept beside the "
                             "full schedule's files; with --from-json, a copy of that JSON under the _short name")
    args = parser.parse_args(argv)
    stem = use_student(args.student)
    if stem == "add_seeds" and args.protocol == "legacy":
        stem = "add_seeds_legacy"  # the first, 3-seed study; add_seeds is the powered one (issue 13)
    default = Path(args.from_json).with_suffix("") if args.from_json else REPO / "benchmarks" / "results" / stem
    out = short_name(Path(args.out) if args.out else default, args.short)  # --from-json re-renders in place
    if args.from_json:
        results = from_json(Path(args.from_json))
    else:
        results = run_study(args)
    write_report(results, markdown(results), out)
    return 0


def run_study(args) -> dict:
    proto = PROTOCOLS[args.protocol]
    seeds = args.seeds or proto["seeds"]
    teacher_seed = args.teacher_seed if args.teacher_seed is not None else proto["teacher_seed"]
    arms = args.arms or proto["arms"]
    for arm in arms:
        arm_recipe(arm)  # unknown arms fail before any training
    num_train, num_val = args.num_train or proto["num_train"], args.num_val or proto["num_val"]
    runs, root = Path(args.runs or proto["runs"]), Path(args.data or proto["data"])
    teacher_seeds = args.teacher_seeds or (seeds if args.protocol == "legacy" else [teacher_seed])
    meta = {"protocol": args.protocol, "student": getattr(args, "student", "monodetr"), "seeds": seeds, "student_seeds": seeds, "teacher_seed": teacher_seed,
            "teacher_seeds": teacher_seeds, "shares_teacher_seed": teacher_seed in seeds, "runs": str(runs),
            "data": str(root), "train_frames": num_train, "val_frames": num_val, "arms": arms,
            "teacher_ckpt": proto["teacher_ckpt"], "train_args": list(args.train_arg), "precision": None}
    if getattr(args, "finished_only", False):
        return finished_only(arms, seeds, teacher_seeds, runs, meta)
    stages.ensure_synth(root, num_train, num_val, seed=0)
    distilled = [a for a in arms if arm_recipe(a)[0] == RECIPES["add"]]
    run = lambda arm, seed: train_and_evaluate(arm, seed, runs, teacher_seed, root, args.train_arg,  # noqa: E731
                                               proto["teacher_ckpt"])
    flats: dict[str, dict[int, dict]] = {a: {} for a in arms}
    if distilled:  # the teacher must exist before any student is distilled from it
        flats.setdefault("teacher", {})[teacher_seed] = run("teacher", teacher_seed)
    arm_seeds = {a: teacher_seeds if a == "teacher" else seeds for a in arms}
    # seed-major: an interrupted study leaves whole paired seeds
    order = list(dict.fromkeys([*teacher_seeds, *seeds]))
    jobs = [(a, s) for s in order for a in arms if s in arm_seeds[a] and s not in flats.get(a, {})]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for (arm, seed), flat in zip(jobs, pool.map(lambda job: run(*job), jobs)):
            flats[arm][seed] = flat
    meta.update(recorded(runs / run_folder(a, s) for a in arms for s in arm_seeds[a]))
    return summarise(flats, arms, arm_seeds, meta)


def finished_only(arms: list[str], seeds: list[int], teacher_seeds: list[int], runs: Path, meta: dict) -> dict:
    """The summary of an unfinished study: every arm over its seeds that have trained (demo's
    marker) and been evaluated, each student arm paired with the baseline over the seeds both
    have; ``seeds`` are the seeds every arm has. Nothing is trained or evaluated."""
    def done(arm: str, seed: int) -> bool:
        run = runs / run_folder(arm, seed)
        return stages.training_done(run) and stages.evaluation_json(run / "eval-last") is not None

    students = [a for a in arms if a != "teacher"]
    arm_seeds = {a: [s for s in (teacher_seeds if a == "teacher" else seeds) if done(a, s)] for a in arms}
    whole = [s for s in seeds if all(s in arm_seeds[a] for a in students)]
    flats = {a: {s: stages.read_flat(runs / run_folder(a, s) / "eval-last") for s in arm_seeds[a]} for a in arms}
    partial = any(arm_seeds[a] != seeds for a in students)
    meta = {**meta, **recorded(runs / run_folder(a, s) for a in arms for s in arm_seeds[a])}
    return summarise(flats, arms, arm_seeds, {**meta, "seeds": whole, "student_seeds": whole,
                                             "partial": partial, "planned_seeds": seeds})


if __name__ == "__main__":
    sys.exit(main())
