"""Training step time, peak memory and inference latency of CaDDN, and the cost of ADD on it.

CPU, one thread: the SynthKITTI recipes (configs/caddn_synth.yaml at batch 8 beside
configs/monodetr_synth.yaml, the recipe whose training time the synth CaDDN must stay within
2x of, and
configs/add_caddn_synth.yaml with a randomly initialised GT-depth teacher: the ADD / baseline
step ratio), then the KITTI recipe (configs/caddn_kitti.yaml: ResNet-101, 1280x384, 0.16 m
voxels) for one step at batch 1 under an address-space cap (``--kitti-cap-gib``), so a
machine without the memory reports a MemoryError instead of swapping or being OOM-killed.
Each measurement runs in its own process, so ``peak_rss_gib`` (the process's maximum
resident memory) belongs to it alone. The frustum tensor (C x D x H/4 x W/4 floats a frame)
is CaDDN's known memory problem (CaDDN #49); its size is reported per recipe.
The frames are a small SynthKITTI rendered on the fly and warped to each recipe's input size.
Writes benchmarks/results/caddn_speed.json.

    python benchmarks/caddn_speed.py [--steps 3] [--kitti-cap-gib 12] [--skip-kitti | --only-kitti] [--out PATH]

An entry of the out file that this run does not measure again is kept; every entry records
the load average when it was written (the machine is shared: compare entries of one run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import write_json  # noqa: E402  (benchmarks/_results.py)


def _frustum_gib(cfg: dict, batch_size: int) -> float:
    width, height = cfg["data"]["input_size"]
    model = cfg["model"]
    floats = batch_size * model["image_channels"] * model["depth"]["num_bins"] * (height // 4) * (width // 4)
    return round(4 * floats / 2**30, 3)


def _build(config: str, root: str, teacher: bool):
    from monokd.config import load_config, set_key
    from monokd.models import build_detector

    cfg = load_config(REPO / config)
    set_key(cfg, f"data.root={root}")
    torch.manual_seed(0)
    if not teacher:
        return cfg, build_detector(cfg)
    from monokd.distill.add.distiller import ADDDistiller, parse_options

    student_cfg = {k: v for k, v in cfg.items() if k != "distill"}
    teacher_cfg = load_config(REPO / config.replace("add_caddn", "caddn_teacher"))  # an untrained teacher
    set_key(teacher_cfg, f"data.root={root}")
    return cfg, ADDDistiller(build_detector(student_cfg), build_detector(teacher_cfg), parse_options(cfg["distill"]))


def _measure(config: str, root: str, steps: int, runs: int, batch_size: int | None, teacher: bool,
             cap_gib: float | None, queue) -> None:
    """One recipe in this (child) process; puts a result dict on ``queue``."""
    torch.set_num_threads(1)
    if cap_gib:
        limit = int(cap_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result = {"config": config, "threads": 1}
    try:
        from train_speed import batches, time_inference, time_training

        cfg, model = _build(config, root, teacher)
        batch_size = batch_size or int(cfg["train"]["batch_size"])
        result.update(input_size=cfg["data"]["input_size"], batch_size=batch_size)
        grid = model.distill_spec.bev_grid
        if grid is not None:
            result.update(grid_size=list(grid.grid_size), frustum_gib_per_step=_frustum_gib(cfg, batch_size))
        train_batch, one = batches(cfg, Path(root), batch_size)
        cpu = torch.device("cpu")
        train = time_training(model, cfg, train_batch, cpu, steps, bf16=False)
        result.update(train_step_s=round(statistics.median(train), 3), train_steps_timed=len(train),
                      train_images_per_s=round(batch_size / statistics.median(train), 3))
        if runs:
            infer = time_inference(model, one, cpu, runs, bf16=False)
            result.update(inference_latency_ms=round(1000 * statistics.median(infer), 1), inference_runs_timed=len(infer))
    except MemoryError as err:
        result["error"] = f"MemoryError under a {cap_gib} GiB address-space cap: {err}"
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    queue.put(result)


def measure(*args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.perf_counter()
    process = ctx.Process(target=_measure, args=(*args, queue))
    process.start()
    process.join()
    result = queue.get() if not queue.empty() else {"config": args[0], "error": f"exit code {process.exitcode}"}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed synth training steps (after one warm-up)")
    parser.add_argument("--runs", type=int, default=5, help="timed inference runs")
    parser.add_argument("--kitti-cap-gib", type=float, default=12.0, help="address-space cap of the KITTI step")
    parser.add_argument("--skip-kitti", action="store_true", help="only the synth recipes")
    parser.add_argument("--only-kitti", action="store_true", help="only the KITTI recipe (the out file's synth "
                        "entries are kept, as any entry not measured again)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "caddn_speed.json"))
    args = parser.parse_args(argv)
    from monokd.data.synth import generate

    out = Path(args.out)
    previous = json.loads(out.read_text()).get("results", []) if out.is_file() else []
    with tempfile.TemporaryDirectory() as tmp:
        root = str(generate(Path(tmp) / "synth", num_train=8, num_val=1, seed=0))
        results = []
        if not args.only_kitti:
            results.append(measure("configs/monodetr_synth.yaml", root, args.steps, 0, None, False, None))
            results.append(measure("configs/caddn_synth.yaml", root, args.steps, args.runs, None, False, None))
            results.append(measure("configs/add_caddn_synth.yaml", root, args.steps, 0, None, True, None))
        if not args.skip_kitti:
            results.append(measure("configs/caddn_kitti.yaml", root, 1, 1, 1, False, args.kitti_cap_gib))
    load = [round(v, 2) for v in os.getloadavg()]
    for result in results:
        result["loadavg"] = load
    measured = {r["config"] for r in results}
    results = [r for r in previous if r["config"] not in measured] + results  # a partial rerun keeps the rest
    by_config = {r["config"]: r for r in results}
    monodetr, baseline, add = (by_config.get(f"configs/{c}.yaml", {})
                               for c in ("monodetr_synth", "caddn_synth", "add_caddn_synth"))
    def ratio(a: dict, b: dict):
        return round(a["train_step_s"] / b["train_step_s"], 3) if "train_step_s" in a and "train_step_s" in b else None

    doc = {"machine": {"cpu_threads": 1, "platform": platform.platform(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
           "add_over_baseline_step": ratio(add, baseline),
           "caddn_over_monodetr_synth_step": ratio(baseline, monodetr), "results": results}
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
