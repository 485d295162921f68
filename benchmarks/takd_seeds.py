"""LiDAR teacher / TA / camera student alone / MonoTAKD student over several seeds on SynthKITTI:
the acceptance figure of MonoTAKD (issue 12), in the schema of benchmarks/results/add_seeds.json.

    python benchmarks/takd_seeds.py [--seeds 1001 1002 1003] [--frozen-seed 444] [--jobs 4]
    python benchmarks/takd_seeds.py --arms student takd +IMD +CMRD +SAM +FFM full --seeds 1001
    python benchmarks/takd_seeds.py --arms lidar_teacher ta student takd +IMD +CMRD +SAM +FFM full --row-seeds 1001
    python benchmarks/takd_seeds.py --add-runs runs/add_seeds_caddn [--seeds ...]   # shares ADD's runs
    python benchmarks/takd_seeds.py --from-json benchmarks/results/takd_seeds.json   # re-render only

Fixed teacher and TA: one LiDAR teacher (configs/takd_lidar_synth.yaml) and one TA
(configs/takd_ta_synth.yaml, = CaDDN's GT-depth teacher) trained at ``--frozen-seed``; for every
student seed s one run per arm: ``student`` (configs/takd_synth.yaml with the ``student`` row: the
camera student alone, = CaDDN), ``takd`` (configs/takd_synth.yaml as shipped) or any row of
``monokd.distill.takd.distiller.PRESETS`` (the ablation rows ``+IMD``, ``+CMRD``, ``+SAM``,
``+FFM``, ``full``, ``full+GT``), all distilled from that one teacher and TA. ``--row-seeds``
runs the ablation rows (every arm but lidar_teacher, ta, student and takd) at fewer seeds than
the study; each row is then paired with the student at its own seeds. Runs live in
``RUNS/<arm>-s<seed>``, finished runs are reused and interrupted ones resume. Each run is
evaluated at its last checkpoint with ``monokd evaluate``.

``--add-runs DIR`` (the runs folder of ``benchmarks/add_seeds.py --student caddn``) reads the TA
and the student alone from that study instead of training them again: its ``teacher-s<frozen
seed>`` (configs/takd_ta_synth.yaml is caddn_teacher_synth.yaml) and its ``baseline-s<seed>``
(CaDDN alone: the ``student`` row is MonoTAKD's network with its branches off; the 200-step
studies trained both and got the same AP at every seed). The two distillations then share their
student-alone runs and GT-depth teacher, as ``benchmarks/add_vs_takd.py`` requires; those runs
must be finished (add_seeds.py trains them), else a one-line error names the folder.

Writes ``benchmarks/results/takd_seeds.{json,md}``: per model mean +- sample std over seeds
(models ``lidar_teacher``, ``ta``, ``student``, ``takd`` and the rows asked for) and, per
distilled arm, its paired (same seed) difference to ``student`` (``paired``; the MonoTAKD arm's
also as ``takd_minus_student``) with the 95 % Student-t interval.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.distill.takd.distiller import PRESETS  # noqa: E402
from monokd.pipeline import stages  # noqa: E402
from monokd.pipeline.statistics import paired_differences  # noqa: E402
from _results import (ap_tables, models_block, paired_lines, precision_sentence, recorded, run_folder,  # noqa: E402
                      short_name, train_and_score, write_report)  # (benchmarks/_results.py)

RECIPES = {"lidar_teacher": "configs/takd_lidar_synth.yaml", "ta": "configs/takd_ta_synth.yaml",
           "takd": "configs/takd_synth.yaml"}
FROZEN = ("lidar_teacher", "ta")
SHARED = {"ta": "teacher", "student": "baseline"}  # --add-runs: arm -> add_seeds.py --student caddn's arm
LABELS = {"lidar_teacher": "LiDAR teacher (pillars)", "ta": "TA (camera, GT depth)",
          "student": "camera student alone (CaDDN)", "takd": "MonoTAKD student"}
CI_METHOD = "95 % two-sided Student t-interval over the paired per-seed differences: mean -+ t(0.975, n-1) std / sqrt(n)"
DEFAULTS = {"num_train": 800, "num_val": 200, "frozen_seed": 444, "seeds": [1001, 1002, 1003],
            "arms": ["lidar_teacher", "ta", "student", "takd"], "runs": "runs/takd_seeds", "data": "data/synthkitti"}


def key(kind: str, difficulty: str, iou: str) -> str:
    return f"Car/{kind}/{difficulty}/R40@{iou}"


PAIRED_METRICS = [key(kind, "moderate", iou) for iou in ("0.70", "0.50") for kind in ("3d", "bev")]


def arm_recipe(arm: str) -> tuple[str, list[str]]:
    """(recipe, overrides) of an arm: lidar_teacher / ta / takd, or a PRESETS row on the MonoTAKD recipe."""
    if arm in RECIPES:
        return RECIPES[arm], []
    if arm not in PRESETS:
        raise SystemExit(f"takd_seeds: unknown arm {arm!r} (arms: {', '.join([*RECIPES, *PRESETS])})")
    return RECIPES["takd"], list(PRESETS[arm])


def distilled(arm: str) -> bool:
    return arm not in FROZEN and "distill=null" not in arm_recipe(arm)[1]


def run_path(arm: str, seed: int, runs: Path, add_runs: Path | None = None) -> Path:
    """The folder of ``arm``'s run at ``seed``: ``RUNS/<arm>-s<seed>``; with ``add_runs`` the TA and
    the student alone are add_seeds.py's runs there (:data:`SHARED`)."""
    if add_runs is not None and arm in SHARED:
        return add_runs / run_folder(SHARED[arm], seed)
    return runs / run_folder(arm, seed)


def frozen_overrides(runs: Path, seed: int, add_runs: Path | None = None) -> list[str]:
    """Point a distilled run at the trained LiDAR teacher and TA (saved config + last checkpoint)."""
    out = []
    for role, arm in (("teacher", "lidar_teacher"), ("ta", "ta")):
        run = run_path(arm, seed, runs, add_runs)
        out += [f"distill.{role}.config={run / 'config.yaml'}", f"distill.{role}.ckpt={run / 'last.ckpt'}"]
    return out


def train_and_evaluate(arm: str, seed: int, runs: Path, frozen_seed: int, data_root: Path,
                       extra: list[str], add_runs: Path | None = None) -> dict[str, float]:
    run_dir = run_path(arm, seed, runs, add_runs)
    if add_runs is not None and arm in SHARED:
        return shared_flat(run_dir)
    recipe, overrides = arm_recipe(arm)
    overrides = [f"data.root={data_root}", *overrides]
    if distilled(arm):
        overrides += frozen_overrides(runs, frozen_seed, add_runs)
    return train_and_score(REPO / recipe, run_dir, overrides, seed, extra, f"{arm} seed {seed}")


def shared_flat(run_dir: Path) -> dict[str, float]:
    """The val metrics of a run add_seeds.py trained and evaluated; SystemExit if it has not."""
    if not stages.training_done(run_dir) or stages.evaluation_json(run_dir / "eval-last") is None:
        raise SystemExit(f"takd_seeds: {run_dir}: not trained and evaluated yet (--add-runs reads it; "
                         f"benchmarks/add_seeds.py --student caddn --runs {run_dir.parent} trains it)")
    return stages.read_flat(run_dir / "eval-last")


def summarise(flats: dict[str, dict[int, dict]], arms: list[str], seeds: dict[str, list[int]], meta: dict) -> dict:
    """The results JSON from per-arm, per-seed flat metrics (no training)."""
    results = {**meta, "ci_method": CI_METHOD, "models": models_block(flats, arms, seeds), "paired": {}}
    if "student" in arms:
        for arm in arms:
            if arm in (*FROZEN, "student"):
                continue
            paired_seeds = [s for s in seeds[arm] if s in seeds["student"]]
            results["paired"][arm] = paired_differences([flats[arm][s] for s in paired_seeds],
                                                        [flats["student"][s] for s in paired_seeds], PAIRED_METRICS)
        if "takd" in results["paired"]:
            results["takd_minus_student"] = results["paired"]["takd"]
    return results


def _train_args_text(results: dict) -> str:
    """', every training with `ARGS`' when the study changed the recipes (e.g. a shorter schedule)."""
    args = results.get("train_args") or []
    return f", every training with `{' '.join(args)}`" if args else ""


def markdown(results: dict) -> str:
    seeds, models = results["seeds"], results["models"]
    lines = [f"# LiDAR teacher / TA / camera student / MonoTAKD on SynthKITTI over {len(seeds)} seeds {seeds}", "",
             f"Car AP R40 (%) on val ({results.get('val_frames')} frames), last checkpoint, mean ± sample std over "
             f"n seeds; every distilled student learns from the seed-{results['frozen_seed']} LiDAR teacher and TA. "
             f"`python benchmarks/takd_seeds.py`{_train_args_text(results)}.{precision_sentence(results)}"
             + (f" The TA and the student alone are `benchmarks/add_seeds.py --student caddn`'s runs "
                f"({results['add_runs']}: its GT-depth teacher and baseline)." if results.get("add_runs") else ""), ""]
    lines += ap_tables(models, lambda arm: LABELS.get(arm, f"MonoTAKD row `{arm}`"))
    for arm, diff in (results.get("paired") or {}).items():
        n = len(next(iter(diff.values()))["per_seed"]) if diff else 0
        lines += [f"{arm} - student, paired by seed (n={n}; mean ± std, 95 % t-interval):", "", *paired_lines(diff), ""]
    return "\n".join(lines)


def from_json(path: Path) -> dict:
    """Recompute the summary from a results JSON's per-seed figures."""
    import json

    old = json.loads(path.read_text())
    arms = list(old["models"])
    flats = {a: {int(s): f for s, f in old["models"][a]["per_seed"].items()} for a in arms}
    seeds = {a: [int(s) for s in old["models"][a]["seeds"]] for a in arms}
    meta = {k: v for k, v in old.items() if k not in ("models", "paired", "takd_minus_student", "ci_method")}
    if "precision" not in meta and meta.get("runs"):  # a study older than the record: its runs, if still there
        add_runs = Path(meta["add_runs"]) if meta.get("add_runs") else None
        meta.update(recorded(run_path(a, s, Path(meta["runs"]), add_runs) for a in arms for s in seeds[a]))
    meta.setdefault("precision", None)
    meta.setdefault("train_args", None)  # not recorded
    return summarise(flats, arms, seeds, meta)


def run_study(args) -> dict:
    seeds = args.seeds or DEFAULTS["seeds"]
    frozen_seed = DEFAULTS["frozen_seed"] if args.frozen_seed is None else args.frozen_seed
    arms = args.arms or DEFAULTS["arms"]
    for arm in arms:
        arm_recipe(arm)  # unknown arms fail before any training
    num_train, num_val = args.num_train or DEFAULTS["num_train"], args.num_val or DEFAULTS["num_val"]
    runs, root = Path(args.runs or DEFAULTS["runs"]), Path(args.data or DEFAULTS["data"])
    stages.ensure_synth(root, num_train, num_val, seed=0)
    add_runs = Path(args.add_runs) if args.add_runs else None
    run = lambda arm, seed: train_and_evaluate(arm, seed, runs, frozen_seed, root, args.train_arg, add_runs)  # noqa: E731
    flats: dict[str, dict[int, dict]] = {a: {} for a in arms}
    if any(distilled(a) for a in arms):  # the teacher and the TA must exist before any student
        with ThreadPoolExecutor(max_workers=max(1, min(2, args.jobs))) as pool:
            for arm, flat in zip(FROZEN, pool.map(lambda a: run(a, frozen_seed), FROZEN)):
                flats.setdefault(arm, {})[frozen_seed] = flat
    row_seeds = args.row_seeds or seeds
    arm_seeds = {a: [frozen_seed] if a in FROZEN else seeds if a in ("student", "takd") else row_seeds for a in arms}
    jobs = [(a, s) for a in arms for s in arm_seeds[a] if s not in flats.get(a, {})]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for (arm, seed), flat in zip(jobs, pool.map(lambda job: run(*job), jobs)):
            flats[arm][seed] = flat
    meta = {"seeds": seeds, "student_seeds": seeds, "row_seeds": row_seeds, "frozen_seed": frozen_seed, "runs": str(runs),
            "data": str(root), "train_frames": num_train, "val_frames": num_val, "arms": arms,
            "train_args": args.train_arg, "precision": None, "add_runs": str(add_runs) if add_runs else None}
    meta.update(recorded(run_path(a, s, runs, add_runs) for a in arms for s in arm_seeds[a]))
    return summarise(flats, arms, arm_seeds, meta)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="student seeds")
    parser.add_argument("--row-seeds", type=int, nargs="+", default=None,
                        help="seeds of the ablation rows (default: --seeds)")
    parser.add_argument("--frozen-seed", type=int, default=None, help="seed of the LiDAR teacher and the TA")
    parser.add_argument("--arms", nargs="+", default=None, help="lidar_teacher, ta, student, takd, or PRESETS rows")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-val", type=int, default=None)
    parser.add_argument("--data", default=None, help="SynthKITTI root (generated if missing)")
    parser.add_argument("--runs", default=None)
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--add-runs", default=None, help="add_seeds.py --student caddn's runs folder: read the TA "
                        "and the student alone from it (teacher-s<frozen seed>, baseline-s<seed>) instead of training them")
    parser.add_argument("--train-arg", action="append", default=[], help="extra argument for monokd train, repeatable")
    parser.add_argument("--from-json", default=None, help="re-render an existing results JSON (no training)")
    parser.add_argument("--out", default=None, help="results path without suffix (default "
                        "benchmarks/results/takd_seeds; with --from-json, that JSON's own)")
    parser.add_argument("--short", action="store_true",
                        help="write <out>_short.{json,md}: a shortened schedule (--train-arg), kept beside the "
                             "full schedule's files; with --from-json, a copy of that JSON under the _short name")
    args = parser.parse_args(argv)
    default = Path(args.from_json).with_suffix("") if args.from_json else REPO / "benchmarks" / "results" / "takd_seeds"
    out = short_name(Path(args.out) if args.out else default, args.short)
    results = from_json(Path(args.from_json)) if args.from_json else run_study(args)
    write_report(results, markdown(results), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
