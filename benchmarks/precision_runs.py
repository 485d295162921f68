"""The trainings of a precision comparison for the models ``monokd ablate`` does not train alone:
each model's SynthKITTI recipe at its full schedule, the same seeds in bf16 autocast and in fp32,
laid out as ``monokd ablate`` lays its runs out, for ``benchmarks/precision_study.py``.

    python benchmarks/precision_runs.py --models lidar_teacher,patchnet,depth,ta --seeds 1 2 3 \\
        --data DATA --runs-bf16 RUNS_BF16 --runs-fp32 RUNS_FP32 [--precisions bf16-mixed,32] [--depth-maps DIR]
    python benchmarks/precision_study.py RUNS_BF16 RUNS_FP32 --out benchmarks/results/precision_study_models

Per model, seed and precision: ``RUNS/seed<s>/<model>/`` (``monokd train``, or ``monokd depth
train`` for the depth front-end: the recipe as shipped with ``data.root``, ``train.num_workers=0``
and ``train.precision``) and its val evaluation in ``RUNS/seed<s>/eval/<model>/`` (``monokd
evaluate`` at the last checkpoint; the depth front-end: ``monokd depth predict`` of val, then
``monokd depth evaluate --json depth.json``). Models: ``lidar_teacher``
(configs/takd_lidar_synth.yaml), ``ta`` (configs/takd_ta_synth.yaml, = CaDDN's GT-depth teacher),
``depth`` (configs/depth_synth.yaml) and ``patchnet`` (configs/patchnet_synth.yaml), which reads
the depth maps the fp32 front-end of the first seed predicts for train and val
(``--depth-maps``, default ``RUNS_FP32/depth_pred``; so ``depth`` comes first) and is evaluated on the GT 2-D boxes
(``data.proposals.eval=gt``: the precision of PatchNet alone, not of a box detector). Finished runs
are skipped and interrupted ones resume (``--resume auto``); one training at a time, in the order
depth (first seed, fp32), then model by model and seed by seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.pipeline import stages  # noqa: E402

RECIPES = {"lidar_teacher": "takd_lidar_synth.yaml", "ta": "takd_ta_synth.yaml", "depth": "depth_synth.yaml",
           "patchnet": "patchnet_synth.yaml"}
PRECISION_ITEMS = {"bf16-mixed": "train.precision=bf16-mixed", "32": "train.precision='32'"}


def train_one(model: str, seed: int, precision: str, runs: Path, data: Path, maps: Path,
              predicts_maps: bool = False) -> None:
    """Train and evaluate ``model`` at ``seed`` in ``precision`` under ``runs`` (skipped when done).
    ``predicts_maps``: this depth front-end also writes PatchNet's maps (train and val) to ``maps``."""
    common = [f"data.root={data}", "train.num_workers=0", PRECISION_ITEMS[precision]]
    run, scored = runs / f"seed{seed}" / model, runs / f"seed{seed}" / "eval" / model
    recipe = REPO / "configs" / RECIPES[model]
    if model == "depth":
        stages.train(recipe, run, common, seed, stage=model, command=("depth", "train"))
        pred, splits = (maps, ["--split", "train", "--split", "val"]) if predicts_maps else \
            (runs / f"seed{seed}" / "depth_pred", ["--split", "val"])
        stages.run_command(["depth", "predict", "--ckpt", str(run / "last.ckpt"), *splits, "--out", str(pred)],
                           f"{model} predict")  # resumable: written frames are skipped
        if not (scored / "depth.json").is_file():
            scored.mkdir(parents=True, exist_ok=True)
            stages.run_command(["depth", "evaluate", "--pred-dir", str(pred), "--root", str(data), "--split", "val",
                                "--json", str(scored / "depth.json")], f"{model} evaluate")
        return
    items = common + ([f"data.depth_pred_dir={maps}", "data.proposals.eval=gt"] if model == "patchnet" else [])
    stages.train(recipe, run, items, seed, stage=model)
    stages.evaluate(run, scored, stage=model)


def maps_job(seeds: list[int]) -> tuple[str, int, str]:
    """The training whose predictions are PatchNet's depth maps: the fp32 front-end of the first seed."""
    return "depth", seeds[0], "32"


def plan(models: list[str], seeds: list[int], precisions: list[str]) -> list[tuple[str, int, str]]:
    """(model, seed, precision) in training order: PatchNet's depth front-end first."""
    jobs = [(m, s, p) for m in models for s in seeds for p in precisions]
    if "patchnet" in models:
        jobs = [maps_job(seeds)] + [j for j in jobs if j != maps_job(seeds)]
    return jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lidar_teacher,patchnet,depth", help=f"comma-separated: {', '.join(RECIPES)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precisions", default="bf16-mixed,32")
    parser.add_argument("--data", required=True, help="SynthKITTI root (800 / 200 frames: the seed studies')")
    parser.add_argument("--runs-bf16", required=True)
    parser.add_argument("--runs-fp32", required=True)
    parser.add_argument("--depth-maps", default=None, help="PatchNet's depth maps, predicted there by the fp32 "
                        "front-end of the first seed (default RUNS_FP32/depth_pred)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for name, known in ((models, RECIPES), (precisions, PRECISION_ITEMS)):
        unknown = [n for n in name if n not in known]
        if unknown:
            raise SystemExit(f"precision_runs: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if "patchnet" in models and "32" not in precisions:
        raise SystemExit("precision_runs: patchnet reads the depth maps of the fp32 front-end: keep 32 in --precisions")
    runs = {"bf16-mixed": Path(args.runs_bf16), "32": Path(args.runs_fp32)}
    data, maps = Path(args.data), Path(args.depth_maps or Path(args.runs_fp32) / "depth_pred")
    for model, seed, precision in plan(models, args.seeds, precisions):
        train_one(model, seed, precision, runs[precision], data, maps,
                  predicts_maps="patchnet" in models and (model, seed, precision) == maps_job(args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
