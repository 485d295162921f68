"""One camera student (CaDDN on SynthKITTI), two distillations side by side: ADD from the
pixel-wise GT-depth teacher and MonoTAKD from the LiDAR teacher and the camera TA (issue 12).

    python benchmarks/add_vs_takd.py [--add benchmarks/results/add_seeds_caddn.json]
                                     [--takd benchmarks/results/takd_seeds.json]

No training: reads the two seed studies' JSON. They are comparable only when they share the
student alone, seed by seed: the same per-seed figures of ``baseline`` (add_seeds_caddn) and
``student`` (takd_seeds), i.e. the same runs (takd_seeds' ``student`` arm is CaDDN with the
MonoTAKD branches off: the same weights at every step). The script refuses otherwise. ADD's
GT-depth teacher is MonoTAKD's TA when both studies use one run for it (``ta`` = ``teacher``).

Writes ``benchmarks/results/add_vs_takd.{json,md}``: per model (student alone, ADD, MonoTAKD)
mean +- sample std over the shared seeds, and the paired (same seed) differences ADD - student,
MonoTAKD - student and MonoTAKD - ADD with the 95 % Student-t interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monokd.pipeline.statistics import aggregate, paired_differences  # noqa: E402
from _results import ap_tables, paired_lines, precision_sentence, short_name, write_report  # noqa: E402  (benchmarks/_results.py)
from monokd.pipeline.run_record import common  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
LABELS = {"student": "CaDDN alone", "add": "ADD (GT-depth teacher)", "takd": "MonoTAKD (LiDAR teacher + TA)"}
PAIRS = (("add", "student"), ("takd", "student"), ("takd", "add"))


def key(kind: str, difficulty: str, iou: str) -> str:
    return f"Car/{kind}/{difficulty}/R40@{iou}"


PAIRED_METRICS = [key(kind, "moderate", iou) for iou in ("0.70", "0.50") for kind in ("3d", "bev")]


def per_seed(study: dict, arm: str) -> dict[int, dict]:
    return {int(s): flat for s, flat in study["models"][arm]["per_seed"].items()}


def compare(add_study: dict, takd_study: dict) -> dict:
    """The comparison JSON; raises SystemExit when the studies do not share their student alone."""
    arms = {"student": per_seed(add_study, "baseline"), "add": per_seed(add_study, "add"),
            "takd": per_seed(takd_study, "takd")}
    takd_student = per_seed(takd_study, "student")
    seeds = sorted(set(arms["student"]) & set(arms["add"]) & set(arms["takd"]) & set(takd_student))
    if not seeds:
        raise SystemExit("add_vs_takd: the two studies share no student seed")
    for seed in seeds:
        if arms["student"][seed] != takd_student[seed]:
            raise SystemExit(f"add_vs_takd: seed {seed}: the ADD study's baseline and the MonoTAKD study's student "
                             "differ (not the same runs): the two distillations are not on one student")
    models = {arm: {**aggregate([flats[s] for s in seeds]), "seeds": seeds,
                    "per_seed": {str(s): flats[s] for s in seeds}} for arm, flats in arms.items()}
    paired = {f"{a}_minus_{b}": paired_differences([arms[a][s] for s in seeds], [arms[b][s] for s in seeds],
                                                   PAIRED_METRICS) for a, b in PAIRS}
    teachers = {"add_teacher": add_study["models"]["teacher"], "takd_lidar_teacher": takd_study["models"]["lidar_teacher"],
                "takd_ta": takd_study["models"]["ta"]}
    same_ta = teachers["add_teacher"]["per_seed"] == teachers["takd_ta"]["per_seed"]
    precisions = [study.get("precision") for study in (add_study, takd_study)]
    return {"seeds": seeds, "val_frames": add_study.get("val_frames"), "train_frames": add_study.get("train_frames"),
            **(common(precisions, "precision") if None not in precisions else {"precision": None}),
            "train_args": {"add": add_study.get("train_args"), "takd": takd_study.get("train_args")},
            "ta_is_add_teacher": same_ta, "ci_method": takd_study.get("ci_method"), "models": models,
            "teachers": {name: {"mean": t["mean"], "seeds": t["seeds"]} for name, t in teachers.items()},
            "paired": paired}


def _train_args_sentence(results: dict) -> str:
    """What the two studies changed of the recipes (their ``--train-arg``), as recorded."""
    args = results.get("train_args") or {}
    texts = {name: "not recorded" if a is None else (f"`{' '.join(a)}`" if a else "the recipes as shipped")
             for name, a in args.items()}
    if not texts:
        return ""
    if len(set(texts.values())) == 1:
        return f" Every training: {next(iter(texts.values()))}."
    return " Trainings: " + "; ".join(f"{name} study {text}" for name, text in texts.items()) + "."


def markdown(results: dict) -> str:
    seeds, models = results["seeds"], results["models"]
    teacher = results["teachers"]
    lines = ["# ADD vs MonoTAKD on one camera student (CaDDN, SynthKITTI)", "",
             f"Car AP R40 (%) on val ({results['val_frames']} frames), last checkpoint, mean ± sample std over the "
             f"seeds {seeds}; the student-alone runs are shared by both studies. ADD distils the pixel-wise GT-depth "
             f"teacher ({teacher['add_teacher']['mean'][key('3d', 'moderate', '0.50')]:.2f} AP3D@0.5 mod.); "
             f"MonoTAKD the LiDAR teacher ({teacher['takd_lidar_teacher']['mean'][key('3d', 'moderate', '0.50')]:.2f}) "
             f"through the TA ({'the same run as ADD' + chr(39) + 's teacher' if results['ta_is_add_teacher'] else 'its own run'}). "
             f"`python benchmarks/add_vs_takd.py{' --short' if results.get('short') else ''}`."
             f"{_train_args_sentence(results)}{precision_sentence(results)}", ""]
    lines += ap_tables(models, LABELS.get, first_column="student")
    for name, diff in results["paired"].items():
        a, b = name.split("_minus_")
        lines += [f"{LABELS[a]} - {LABELS[b]}, paired by seed (mean ± std, 95 % t-interval):", "",
                  *paired_lines(diff), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--add", default=None, help="default benchmarks/results/add_seeds_caddn[_short].json")
    parser.add_argument("--takd", default=None, help="default benchmarks/results/takd_seeds[_short].json")
    parser.add_argument("--out", default=str(RESULTS / "add_vs_takd"))
    parser.add_argument("--short", action="store_true",
                        help="the short-schedule studies: read the *_short.json files by default, write <out>_short")
    args = parser.parse_args(argv)
    add = Path(args.add) if args.add else short_name(RESULTS / "add_seeds_caddn", args.short).with_suffix(".json")
    takd = Path(args.takd) if args.takd else short_name(RESULTS / "takd_seeds", args.short).with_suffix(".json")
    results = {**compare(json.loads(add.read_text()), json.loads(takd.read_text())), "inputs": [str(add), str(takd)],
               "short": args.short}
    write_report(results, markdown(results), short_name(args.out, args.short))
    return 0


if __name__ == "__main__":
    sys.exit(main())
