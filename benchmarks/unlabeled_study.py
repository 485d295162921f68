"""Labeled frames alone vs labeled plus unlabeled frames (KITTI raw's setting, docs/unlabeled.md)
on SynthKITTI, for MonoTAKD and for ADD on CaDDN, over several student seeds.

    python benchmarks/unlabeled_study.py [--seeds 1001 1002 1003] [--unlabeled 1600] [--jobs 2]
    python benchmarks/unlabeled_study.py --cost [--cost-steps 20]      # the cost of an unlabeled frame
    python benchmarks/unlabeled_study.py --from-json benchmarks/results/unlabeled_study.json

The CaDDN / MonoTAKD seed-study protocol (benchmarks/takd_seeds.py, add_seeds.py): SynthKITTI's
800 train / 200 val frames (seed 0), the same recipes and steps; frozen models trained once at
``--frozen-seed`` (MonoTAKD's LiDAR teacher and TA, ADD's pixel-wise GT-depth CaDDN teacher);
for every student seed s the arms ``takd`` (configs/takd_synth.yaml), ``takd+U`` (the same plus
``data.unlabeled``), ``add`` (configs/add_caddn_synth.yaml) and ``add+U``. The unlabeled frames are
``--unlabeled`` fresh frames of a SynthKITTI raw drive (``monokd synth --raw-drives 2``: the
first drive holds the val frames and is refused by the leakage guard; the split
``raw/ImageSets/unlabeled.txt`` is the second's), ``data.unlabeled.share`` of each batch
(``--share``, default 0.5). An epoch is one pass over the labeled frames, so a +U arm takes
1 / (1 - share) times the steps of its labeled arm per epoch: the comparison is at the same
epochs (the same labeled frames seen), as in the papers' setting.

Writes ``benchmarks/results/unlabeled_study.{json,md}``: per arm mean +- sample std over seeds,
the paired (same seed) differences ``takd+U - takd`` and ``add+U - add`` with their 95 %
Student-t interval, and the frames each run saw (metrics.json ``frames_seen``).

``--cost`` trains nothing to the end: it builds each arm's model (frozen models untrained: the
cost does not depend on their weights), draws ``--cost-steps`` batches of the labeled-only and
the mixed loader, and times data loading and one optimisation step (forward, losses, backward,
AdamW) of each; it writes ``benchmarks/results/unlabeled_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.pipeline import stages  # noqa: E402
from monokd.pipeline.statistics import paired_differences  # noqa: E402
from _results import (ap_tables, models_block, paired_lines, precision_sentence, recorded, run_folder,  # noqa: E402
                      train_and_score, write_json, write_report)

FROZEN = {"lidar_teacher": "configs/takd_lidar_synth.yaml", "ta": "configs/takd_ta_synth.yaml",
          "caddn_teacher": "configs/caddn_teacher_synth.yaml"}
METHODS = {"takd": ("configs/takd_synth.yaml", {"teacher": "lidar_teacher", "ta": "ta"}),
           "add": ("configs/add_caddn_synth.yaml", {"teacher": "caddn_teacher"})}
LABELS = {"takd": "MonoTAKD, labeled frames", "takd+U": "MonoTAKD, + unlabeled frames",
          "add": "ADD on CaDDN, labeled frames", "add+U": "ADD on CaDDN, + unlabeled frames",
          "lidar_teacher": "LiDAR teacher (pillars)", "ta": "TA (camera, GT depth)",
          "caddn_teacher": "ADD's teacher (CaDDN, GT depth)"}
UNLABELED = "+U"
CI_METHOD = "95 % two-sided Student t-interval over the paired per-seed differences: mean -+ t(0.975, n-1) std / sqrt(n)"
DEFAULTS = {"num_train": 800, "num_val": 200, "unlabeled": 1600, "share": 0.5, "frozen_seed": 444,
            "seeds": [1001, 1002, 1003], "methods": ["takd", "add"], "runs": "runs/unlabeled_study",
            "data": "data/synthkitti_raw"}
PAIRED_METRICS = [f"Car/{kind}/moderate/R40@{iou}" for iou in ("0.70", "0.50") for kind in ("3d", "bev")]


def method_of(arm: str) -> str:
    return arm[:-len(UNLABELED)] if arm.endswith(UNLABELED) else arm


def arm_overrides(arm: str, root: Path, share: float) -> list[str]:
    """``--set`` items of a student arm beyond its recipe: the unlabeled frames for a +U arm."""
    if not arm.endswith(UNLABELED):
        return []
    return [f"data.unlabeled.root={root / 'raw'}", "data.unlabeled.split=unlabeled", f"data.unlabeled.share={share}"]


def frozen_overrides(method: str, runs: Path, frozen_seed: int) -> list[str]:
    """Point a student at its method's trained frozen models (saved config + last checkpoint)."""
    out = []
    for role, name in METHODS[method][1].items():
        run = runs / run_folder(name, frozen_seed)
        out += [f"distill.{role}.config={run / 'config.yaml'}", f"distill.{role}.ckpt={run / 'last.ckpt'}"]
    return out


def frames_seen(run_dir: Path) -> dict:
    """The run's ``frames_seen`` (metrics.json), {} when it has none."""
    path = run_dir / "metrics.json"
    return (json.loads(path.read_text()).get("frames_seen") or {}) if path.is_file() else {}


def summarise(flats: dict, arms: list[str], seeds: dict, frames: dict, meta: dict) -> dict:
    """The results JSON from per-arm, per-seed flat metrics (no training)."""
    results = {**meta, "ci_method": CI_METHOD, "models": models_block(flats, arms, seeds), "paired": {},
               "frames_seen": frames}
    for arm in arms:
        base = method_of(arm)
        if arm.endswith(UNLABELED) and base in arms:
            shared = [s for s in seeds[arm] if s in seeds[base]]
            results["paired"][f"{arm} - {base}"] = paired_differences(
                [flats[arm][s] for s in shared], [flats[base][s] for s in shared], PAIRED_METRICS)
    return results


def markdown(results: dict) -> str:
    seeds = results["seeds"]
    args = results.get("train_args") or []
    lines = [f"# Labeled frames alone vs plus unlabeled frames on SynthKITTI over {len(seeds)} seeds {seeds}", "",
             f"Car AP R40 (%) on val ({results['val_frames']} frames), last checkpoint, mean ± sample std over n "
             f"seeds; {results['train_frames']} labeled frames, +U arms also {results['unlabeled_frames']} unlabeled "
             f"frames (share {results['share']} of each batch; epochs are passes over the labeled frames); frozen "
             f"models trained at seed {results['frozen_seed']}. `python benchmarks/unlabeled_study.py`"
             + (f", every training with `{' '.join(args)}`" if args else "") + "." + precision_sentence(results), ""]
    lines += ap_tables(results["models"], lambda arm: LABELS.get(arm, arm))
    for name, diff in results["paired"].items():
        n = len(next(iter(diff.values()))["per_seed"]) if diff else 0
        lines += [f"{name}, paired by seed (n={n}; mean ± std, 95 % t-interval):", "", *paired_lines(diff), ""]
    seen = {f"{arm} s{seed}": f for arm, per in results.get("frames_seen", {}).items() for seed, f in per.items()}
    if seen:
        lines += ["Frames seen (labeled / unlabeled, metrics.json):", ""]
        lines += [f"- {run}: {f.get('labeled', '?')} / {f.get('unlabeled', '?')}" for run, f in seen.items()]
        lines.append("")
    return "\n".join(lines)


def run_study(args) -> dict:
    seeds = args.seeds or DEFAULTS["seeds"]
    methods = args.methods or DEFAULTS["methods"]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unlabeled_study: unknown methods {unknown} (known: {', '.join(METHODS)})")
    frozen_seed = DEFAULTS["frozen_seed"] if args.frozen_seed is None else args.frozen_seed
    num_train, num_val = args.num_train or DEFAULTS["num_train"], args.num_val or DEFAULTS["num_val"]
    unlabeled = args.unlabeled or DEFAULTS["unlabeled"]
    share = DEFAULTS["share"] if args.share is None else args.share
    runs, root = Path(args.runs or DEFAULTS["runs"]), Path(args.data or DEFAULTS["data"])
    stages.ensure_synth(root, num_train, num_val, seed=0, raw_drives=2, raw_fresh=unlabeled)
    frozen = sorted({name for m in methods for name in METHODS[m][1].values()})
    flats: dict[str, dict[int, dict]] = {}

    def frozen_run(name: str) -> dict:
        return train_and_score(REPO / FROZEN[name], runs / run_folder(name, frozen_seed), [f"data.root={root}"],
                               frozen_seed, args.train_arg, f"{name} seed {frozen_seed}")

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # the frozen models before any student
        for name, flat in zip(frozen, pool.map(frozen_run, frozen)):
            flats[name] = {frozen_seed: flat}

    def student_run(job: tuple[str, int]) -> dict:
        arm, seed = job
        method = method_of(arm)
        overrides = [f"data.root={root}", *arm_overrides(arm, root, share), *frozen_overrides(method, runs, frozen_seed)]
        return train_and_score(REPO / METHODS[method][0], runs / run_folder(arm, seed), overrides, seed,
                               args.train_arg, f"{arm} seed {seed}")

    arms = [a for m in methods for a in (m, m + UNLABELED)]
    jobs = [(a, s) for a in arms for s in seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for (arm, seed), flat in zip(jobs, pool.map(student_run, jobs)):
            flats.setdefault(arm, {})[seed] = flat
    frames = {a: {str(s): frames_seen(runs / run_folder(a, s)) for s in seeds} for a in arms}
    arm_seeds = {**{a: seeds for a in arms}, **{name: [frozen_seed] for name in frozen}}
    meta = {"seeds": seeds, "frozen_seed": frozen_seed, "methods": methods, "runs": str(runs), "data": str(root),
            "train_frames": num_train, "val_frames": num_val, "unlabeled_frames": unlabeled, "share": share,
            "train_args": args.train_arg, "precision": None}
    meta.update(recorded(runs / run_folder(a, s) for a in [*frozen, *arms] for s in arm_seeds[a]))
    return summarise(flats, [*frozen, *arms], arm_seeds, frames, meta)


def from_json(path: Path) -> dict:
    """Recompute the summary from a results JSON's per-seed figures."""
    old = json.loads(path.read_text())
    arms = list(old["models"])
    flats = {a: {int(s): f for s, f in old["models"][a]["per_seed"].items()} for a in arms}
    seeds = {a: [int(s) for s in old["models"][a]["seeds"]] for a in arms}
    meta = {k: v for k, v in old.items() if k not in ("models", "paired", "ci_method", "frames_seen")}
    return summarise(flats, arms, seeds, old.get("frames_seen", {}), meta)


# --- the cost of an unlabeled frame ------------------------------------------------------------
def _timed_steps(cfg: dict, steps: int, warmup: int) -> dict:
    """Seconds per batch of the training loader (data) and per optimisation step (compute) of
    ``cfg``, after ``warmup`` steps; frozen models untrained (built from their configs)."""
    import torch

    from monokd.training.datamodule import KittiDataModule
    from monokd.training.module import DetectorModule
    from monokd.training.seeding import seed_everything

    seed_everything(int(cfg["train"].get("seed", 0)))
    module = DetectorModule(cfg)
    model = module.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loader = iter(KittiDataModule(cfg).train_dataloader())
    data, compute, unlabeled = [], [], 0
    for step in range(warmup + steps):
        start = time.perf_counter()
        batch = next(loader)
        loaded = time.perf_counter()
        loss = model.losses(model(batch), batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            data.append(loaded - start)
            compute.append(time.perf_counter() - loaded)
            unlabeled += int((~batch["labeled"]).sum()) if "labeled" in batch else 0
    row = {"steps": steps, "unlabeled_frames": unlabeled}
    for name, values in (("data_s", data), ("compute_s", compute)):
        row[name] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return row


def run_cost(args) -> dict:
    from monokd.config import load_config

    methods = args.methods or DEFAULTS["methods"]
    root = Path(args.data or DEFAULTS["data"])
    share = DEFAULTS["share"] if args.share is None else args.share
    stages.ensure_synth(root, args.num_train or DEFAULTS["num_train"], args.num_val or DEFAULTS["num_val"], seed=0,
                        raw_drives=2, raw_fresh=args.unlabeled or DEFAULTS["unlabeled"])
    out = {"share": share, "data": str(root), "steps": args.cost_steps, "warmup": args.cost_warmup, "methods": {}}
    for method in methods:
        recipe, roles = METHODS[method]
        frozen = [f"distill.{role}.config={REPO / FROZEN[name]}" for role, name in roles.items()]
        frozen += [f"distill.{role}.ckpt=null" for role in roles]
        rows = {}
        for arm in (method, method + UNLABELED):
            items = [f"data.root={root}", "train.num_workers=0", *frozen, *arm_overrides(arm, root, share),
                     *args.cost_set]
            cfg = load_config(REPO / recipe, items)
            rows[arm] = _timed_steps(cfg, args.cost_steps, args.cost_warmup)
            print(f"{arm}: data {rows[arm]['data_s']['mean']:.3f} s, step {rows[arm]['compute_s']['mean']:.3f} s "
                  f"per batch", flush=True)
        base, mixed = rows[method], rows[method + UNLABELED]
        batch = int(cfg["train"]["batch_size"])
        extra = (mixed["data_s"]["mean"] + mixed["compute_s"]["mean"]) - (base["data_s"]["mean"] + base["compute_s"]["mean"])
        rows["per_step_extra_s"] = extra
        rows["per_unlabeled_frame_extra_s"] = extra / max(share * batch, 1e-9)
        rows["epoch_steps_factor"] = 1 / (1 - share)  # an epoch is one pass over the labeled frames
        out["methods"][method] = rows
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="student seeds (default 1001 1002 1003)")
    parser.add_argument("--frozen-seed", type=int, default=None, help="seed of the frozen models (default 444)")
    parser.add_argument("--methods", nargs="+", default=None, help="takd, add (default both)")
    parser.add_argument("--unlabeled", type=int, default=None, help="unlabeled frames (default 1600)")
    parser.add_argument("--share", type=float, default=None, help="data.unlabeled.share (default 0.5)")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-val", type=int, default=None)
    parser.add_argument("--data", default=None, help="SynthKITTI root with raw drives (generated if missing)")
    parser.add_argument("--runs", default=None)
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--train-arg", action="append", default=[], help="extra argument for monokd train, repeatable")
    parser.add_argument("--from-json", default=None, help="re-render an existing results JSON (no training)")
    parser.add_argument("--cost", action="store_true", help="measure the cost of an unlabeled frame per step")
    parser.add_argument("--cost-steps", type=int, default=20)
    parser.add_argument("--cost-warmup", type=int, default=2)
    parser.add_argument("--cost-set", action="append", default=[], help="key=value for the --cost configs, repeatable")
    parser.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/"
                                                    "unlabeled_study, with --cost unlabeled_cost)")
    args = parser.parse_args(argv)
    if args.cost:
        write_json(run_cost(args), Path(args.out or REPO / "benchmarks" / "results" / "unlabeled_cost").with_suffix(".json"))
        return 0
    results = from_json(Path(args.from_json)) if args.from_json else run_study(args)
    write_report(results, markdown(results), Path(args.out or REPO / "benchmarks" / "results" / "unlabeled_study"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
