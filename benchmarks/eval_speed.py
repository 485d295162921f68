"""End-to-end speed of the KITTI evaluation on a KITTI-val-sized set.

Makes 3769 frames of label files with KITTI-like object counts and class mix (Car, Van,
Truck, Pedestrian, Person_sitting, Cyclist, Tram, Misc, DontCare) and result files (noisy
ground truth plus false positives) in a temporary directory, then times, in fresh
processes, ``evaluate_dirs`` (reading every file) plus the report:

* cold: an empty numba cache, so the JIT compilation is included;
* warm: the cache that the cold run left.

Prints the figures and writes benchmarks/results/eval_speed.json.

    .venv/bin/python benchmarks/eval_speed.py [--frames 3769] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monokd.data.kitti import Object3D, write_label  # noqa: E402
from monokd.geometry.boxes import alpha_from_rotation_y, project_boxes  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)

# mean objects per frame in KITTI val (about 28k labels over 3769 frames)
RATES = {"Car": 3.8, "Van": 0.39, "Truck": 0.14, "Pedestrian": 0.6, "Person_sitting": 0.03,
         "Cyclist": 0.21, "Tram": 0.06, "Misc": 0.11, "DontCare": 1.5}
DIMS = {"Car": (1.53, 1.63, 3.88), "Van": (2.2, 1.9, 5.1), "Truck": (3.2, 2.6, 10.1),
        "Pedestrian": (1.76, 0.66, 0.84), "Person_sitting": (1.27, 0.59, 0.8),
        "Cyclist": (1.74, 0.6, 1.76), "Tram": (3.5, 2.6, 16.0), "Misc": (1.9, 1.5, 3.6)}
P2 = np.array([[721.54, 0.0, 609.56, 44.86], [0.0, 721.54, 172.85, 0.216], [0.0, 0.0, 1.0, 0.0027]])
IMAGE = (1242, 375)
DETECTED = ("Car", "Pedestrian", "Cyclist")


def _objects(rng, kind, n):
    dims = np.array(DIMS[kind]) * rng.normal(1.0, 0.07, (n, 3))
    z = rng.uniform(5, 70, n)
    loc = np.stack([rng.uniform(-0.75, 0.75, n) * z, rng.normal(1.65, 0.1, n), z], 1)  # in view
    ry = rng.uniform(-np.pi, np.pi, n)
    return dims, loc, ry


def _make(rng, kind, dims, loc, ry, score=None, trunc=None, occ=None):
    boxes = project_boxes(dims, loc, ry, P2, IMAGE)
    alpha = alpha_from_rotation_y(ry, loc[:, 0], loc[:, 2])
    out = []
    for i in range(len(dims)):
        out.append(Object3D(kind, float(trunc[i]) if trunc is not None else 0.0,
                            int(occ[i]) if occ is not None else 0, float(alpha[i]), boxes[i],
                            float(dims[i, 0]), float(dims[i, 1]), float(dims[i, 2]), loc[i], float(ry[i]),
                            None if score is None else float(score[i])))
    return out


def make_frame(rng):
    """(ground truth, detections) of one synthetic frame."""
    gt, det = [], []
    for kind, rate in RATES.items():
        n = rng.poisson(rate)
        if n == 0:
            continue
        if kind == "DontCare":
            x1, y1 = rng.uniform(0, 1100, n), rng.uniform(150, 220, n)
            for a, b in zip(x1, y1):
                box = np.array([a, b, a + rng.uniform(10, 80), b + rng.uniform(5, 30)])
                gt.append(Object3D("DontCare", -1, -1, -10, box, -1, -1, -1,
                                   np.array([-1000.0, -1000, -1000]), -10))
            continue
        dims, loc, ry = _objects(rng, kind, n)
        gt += _make(rng, kind, dims, loc, ry, trunc=rng.choice([0.0, 0.0, 0.0, 0.2, 0.4, 0.6], n),
                    occ=rng.integers(0, 4, n))
        found = rng.uniform(size=n) < (0.85 if kind in DETECTED else 0.3)
        if found.any():
            m = int(found.sum())
            depth = loc[found, 2:3]
            noise = rng.normal(0, 1, (m, 3)) * np.array([0.004, 0.002, 0.02]) * depth  # grows with depth
            ddims = dims[found] * rng.normal(1.0, 0.03, (m, 3))
            dry = ry[found] + rng.normal(0, 0.15, m) + np.where(rng.uniform(size=m) < 0.1, np.pi, 0)
            score = np.clip(rng.normal(0.8, 0.1, m) - depth[:, 0] / 300, 0.01, 0.99)
            label = kind if kind in DETECTED else "Car"  # a Van taken for a Car
            det += _make(rng, label, ddims, loc[found] + noise, dry, score=score)
    n_fp = rng.poisson(6)
    if n_fp:
        kinds = rng.choice(DETECTED, n_fp, p=[0.7, 0.2, 0.1])
        for kind in DETECTED:
            k = int((kinds == kind).sum())
            if k:
                dims, loc, ry = _objects(rng, kind, k)
                det += _make(rng, kind, dims, loc, ry, score=rng.uniform(0.01, 0.4, k))
    rng.shuffle(det)
    return gt, det


def write_dataset(root: Path, frames: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    n_det = 0
    for f in range(frames):
        gt, det = make_frame(rng)
        write_label(root / "label_2" / f"{f:06d}.txt", gt)
        (root / "results").mkdir(parents=True, exist_ok=True)
        if det or rng.uniform() < 0.5:  # a frame without detections may have no file at all
            write_label(root / "results" / f"{f:06d}.txt", det)
        for o in gt:
            counts[o.type] = counts.get(o.type, 0) + 1
        n_det += len(det)
    return {"ground_truth": counts, "detections": n_det}


_TIMED = """
import json, sys, time
t0 = time.perf_counter()
from monokd.evaluation import evaluate_dirs
t1 = time.perf_counter()
result = evaluate_dirs(sys.argv[1], sys.argv[2])
text = result.report()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "evaluate_dirs_and_report_s": t2 - t1, "total_s": t2 - t0,
                  "car_3d_moderate_r40": result.flat["Car/3d/moderate/R40@0.70"]}))
"""


def timed_run(root: Path, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _TIMED, str(root / "label_2"), str(root / "results")],
                         env=env, capture_output=True, text=True, check=True)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats["process_wall_s"] = time.perf_counter() - start  # interpreter start-up included
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds do not depend on what else runs on the shared cores
    stats["process_cpu_s"] = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3769)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval_speed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = write_dataset(root, args.frames, args.seed)
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as cache:
            cold = timed_run(root, cache)
            warm = timed_run(root, cache)
        load_after = os.getloadavg()
    report = {
        "frames": args.frames,
        "objects": made,
        "cold": cold,
        "warm": warm,
        "frames_per_s_cold": args.frames / cold["process_wall_s"],
        "frames_per_s_warm": args.frames / warm["process_wall_s"],
        "target": "full evaluation (read files -> report) < 10 s on 2 cores, compilation included",
        "meets_target": cold["process_wall_s"] < 10.0,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numba": __import__("numba").__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"{args.frames} frames, {sum(made['ground_truth'].values())} labels, {made['detections']} detections")
    for name, run in (("cold (JIT compile)", cold), ("warm (cached JIT)", warm)):
        print(f"{name}: {run['process_wall_s']:.2f} s wall ({run['process_cpu_s']:.2f} s CPU) = "
              f"{args.frames / run['process_wall_s']:.0f} frames/s "
              f"(import {run['import_s']:.2f}, read + evaluate + report {run['evaluate_dirs_and_report_s']:.2f})")
    print(f"load average before/after: {load_before} / {load_after}")
    write_json(report, args.out)


if __name__ == "__main__":
    main()
