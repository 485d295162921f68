"""Teacher / baseline / ADD with the PatchNet student over seeds on SynthKITTI (issue 11's
acceptance figure), in the schema of benchmarks/results/add_seeds.json.

    python benchmarks/add_seeds_patchnet.py [--seeds 444 445 446] [--teacher-seed 444] [--runs runs/patchnet]
    python benchmarks/add_seeds_patchnet.py --from-json benchmarks/results/add_seeds_patchnet.json  # re-render only

The whole story, every stage reused when finished and resumed when interrupted:

1. SynthKITTI 800 train / 200 val frames (seed 0, the MonoDETR study's data);
2. the depth front-end: ``monokd depth train`` (configs/depth_synth.yaml, on ``train`` only),
   ``monokd depth predict`` for train and val into DATA/depth_pred, ``monokd depth evaluate``
   on val (AbsRel / RMSE / delta1: never-seen frames);
3. the 2-D boxes: the MonoDETR baseline (configs/monodetr_synth.yaml at --boxes-seed) and its
   val result files (``monokd evaluate``);
4. the PatchNet teacher (depth_2) at --teacher-seed, then baseline and ADD at every seed, each
   evaluated at its last checkpoint twice: on the MonoDETR boxes (``models``) and on the GT
   2-D boxes (``gt_boxes``), so that the 2-D detector's share of the error is visible.

Writes benchmarks/results/add_seeds_patchnet.{json,md}: ``models`` (teacher, baseline, add:
mean +- sample std and per-seed figures), ``add_minus_baseline`` (paired by seed, with a 95 %
t-interval), the same under ``gt_boxes``, and ``depth_frontend``. Expect hours on one core:
about 30 min for the depth network, 35 min for MonoDETR and 10-20 min per PatchNet run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from add_seeds import markdown, summarise  # noqa: E402
from monokd.pipeline import presets, stages  # noqa: E402
from _results import write_report  # noqa: E402  (benchmarks/_results.py)

RECIPES = {"teacher": "configs/patchnet_teacher_synth.yaml", "baseline": "configs/patchnet_synth.yaml",
           "add": "configs/add_patchnet_synth.yaml"}


def depth_frontend(runs: Path, data: Path, extra: list[str] = ()) -> dict:
    """Train, predict (train + val) and score the depth front-end; returns the val metrics.
    ``extra``: further ``monokd depth train`` arguments (e.g. ``--set train.epochs=4``)."""
    run, pred, scored = runs / "depth", data / "depth_pred", runs / "depth" / "val_metrics.json"
    stages.train(REPO / "configs" / "depth_synth.yaml", run, [f"data.root={data}"], None, extra,
                 stage="depth front-end", command=("depth", "train"))
    stages.run_command(["depth", "predict", "--ckpt", str(run / "last.ckpt"), "--split", "train", "--split", "val",
                      "--out", str(pred)], "depth predict")  # resumable: written frames are skipped
    if not scored.is_file():
        stages.run_command(["depth", "evaluate", "--pred-dir", str(pred), "--root", str(data), "--split", "val",
                          "--json", str(scored)], "depth evaluate")
    return json.loads(scored.read_text())


def boxes_2d(runs: Path, data: Path, seed: int) -> Path:
    """The MonoDETR baseline's val result files (the 2-D boxes PatchNet starts from)."""
    run = runs / f"monodetr-s{seed}"
    stages.train(REPO / "configs" / "monodetr_synth.yaml", run, [f"data.root={data}"], seed, stage="MonoDETR 2-D boxes")
    out = run / "eval-last"
    if stages.evaluation_json(out) is None:
        stages.run_command(["evaluate", "--config", str(run / "config.yaml"), "--ckpt", str(run / "last.ckpt"),
                          "--split", "val", "--out", str(out)], "MonoDETR evaluate")
    return out / "data"


def train_and_evaluate(arm: str, seed: int, runs: Path, common: list[str], teacher_seed: int,
                       extra: list[str] = ()) -> dict[str, dict]:
    """{"detector": flat, "gt": flat} of one run at its last checkpoint."""
    run = runs / f"{arm}-s{seed}"
    overrides = list(common)
    if arm == "add":
        teacher = runs / f"teacher-s{teacher_seed}"
        overrides += presets.teacher_overrides(teacher, teacher / "last.ckpt")
    stages.train(REPO / RECIPES[arm], run, overrides, seed, extra, stage=f"PatchNet {arm} seed {seed}")
    flats = {}
    for boxes in ("detector", "gt"):
        out = run / f"eval-last-{boxes}"
        if stages.evaluation_json(out) is None:
            extra = ["--set", "data.proposals.eval=gt"] if boxes == "gt" else []
            stages.run_command(["evaluate", "--config", str(run / "config.yaml"), "--ckpt", str(run / "last.ckpt"),
                              "--split", "val", "--out", str(out), *extra], f"evaluate {arm} seed {seed} ({boxes} boxes)")
        flats[boxes] = stages.read_flat(out)
    return flats


def _patchnet(text: str) -> str:
    """add_seeds.py's markdown with this study's names."""
    for old, new in (("Teacher / baseline / ADD", "PatchNet teacher / baseline / ADD"),
                     ("teacher (GT object depth)", "teacher (depth_2)"), ("baseline MonoDETR", "baseline PatchNet"),
                     ("python benchmarks/add_seeds.py --protocol patchnet", "python benchmarks/add_seeds_patchnet.py")):
        text = text.replace(old, new)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[444, 445, 446])
    parser.add_argument("--teacher-seed", type=int, default=444)
    parser.add_argument("--boxes-seed", type=int, default=444, help="seed of the MonoDETR 2-D box detector")
    parser.add_argument("--num-train", type=int, default=800)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--data", default="data/synthkitti")
    parser.add_argument("--runs", default="runs/patchnet")
    parser.add_argument("--train-arg", action="append", default=[],
                        help="extra argument for every PatchNet `monokd train` (e.g. --set train.epochs=8), repeatable")
    parser.add_argument("--depth-arg", action="append", default=[],
                        help="extra argument for `monokd depth train`, repeatable")
    parser.add_argument("--from-json", default=None, help="re-render an existing results JSON (no training)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "add_seeds_patchnet"))
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        for block in (results, results["gt_boxes"]):
            with_paired_seeds(block)
        write_report(results, report_text(results), Path(args.out))
        return 0
    data, runs = stages.ensure_synth(Path(args.data), args.num_train, args.num_val, seed=0), Path(args.runs)
    depth = depth_frontend(runs, data, args.depth_arg)
    results_dir = boxes_2d(runs, data, args.boxes_seed)
    common = [f"data.root={data}", f"data.depth_pred_dir={data / 'depth_pred'}",
              f"data.proposals.results_dir={results_dir}"]
    run = lambda arm, seed: train_and_evaluate(arm, seed, runs, common, args.teacher_seed, args.train_arg)  # noqa: E731
    flats = {"teacher": {args.teacher_seed: run("teacher", args.teacher_seed)}}
    for arm in ("baseline", "add"):
        flats[arm] = {s: run(arm, s) for s in args.seeds}
    seeds = {"teacher": [args.teacher_seed], "baseline": args.seeds, "add": args.seeds}
    meta = {"protocol": "patchnet", "seeds": args.seeds, "student_seeds": args.seeds, "teacher_seed": args.teacher_seed,
            "teacher_seeds": [args.teacher_seed], "shares_teacher_seed": args.teacher_seed in args.seeds,
            "runs": str(runs), "data": str(data), "train_frames": args.num_train, "val_frames": args.num_val,
            "arms": list(RECIPES), "teacher_ckpt": "last.ckpt", "boxes_2d": f"MonoDETR seed {args.boxes_seed} ({results_dir})",
            "train_args": args.train_arg, "depth_train_args": args.depth_arg, "depth_frontend": depth}
    by_boxes = {b: {arm: {s: f[b] for s, f in per.items()} for arm, per in flats.items()} for b in ("detector", "gt")}
    results = summarise(by_boxes["detector"], list(RECIPES), seeds, meta)
    results["gt_boxes"] = summarise(by_boxes["gt"], list(RECIPES), seeds, {**meta, "boxes_2d": "GT"})
    write_report(results, report_text(results), Path(args.out))
    return 0


def with_paired_seeds(results: dict) -> dict:
    """A results block written before ``paired_seeds`` existed gets it (each paired arm over the
    seeds it shares with the baseline, as summarise pairs them); a newer block is left as is."""
    baseline = results["models"]["baseline"]["seeds"]
    results.setdefault("paired_seeds", {arm: [s for s in results["models"][arm]["seeds"] if s in baseline]
                                        for arm in results.get("paired", {})})
    return results


def report_text(results: dict) -> str:
    """The study's markdown: add_seeds.py's tables with the 2-D detector's boxes, the depth
    front-end's val metrics and schedule, then the tables with the GT 2-D boxes."""
    depth = results["depth_frontend"]
    depth_args = " ".join(results.get("depth_train_args") or [])
    return (_patchnet(markdown(results))
            + f"\nDepth front-end on val: AbsRel {depth['abs_rel']:.3f}, RMSE {depth['rmse']:.2f} m, "
              f"delta1 {depth['delta1']:.3f}{f' (trained with `{depth_args}`)' if depth_args else ''}. "
              f"2-D boxes: {results.get('boxes_2d')}.\n\n## With the GT 2-D boxes at evaluation\n\n"
            + _patchnet(markdown(results["gt_boxes"])).split("\n", 2)[2])


if __name__ == "__main__":
    sys.exit(main())
