"""Speed of `monokd synth` at the default size (416x128), and the label statistics.

Runs the `monokd synth` subcommand in a fresh process (so start-up and imports count, as for
a user) on ``--frames`` frames with 1 worker; then, in process, ``generate`` (render + write
every file) with 1 worker (the per-core figure) and with ``--workers K``; and times
``render_frame`` alone, with and without the LiDAR. Summarises the labels written (class
counts, 2-D heights, depths, occlusion). Prints the figures and writes
benchmarks/results/synth_speed.json.

    .venv/bin/python benchmarks/synth_speed.py [--frames 20] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monokd.data.kitti import KittiPaths, read_label, read_split  # noqa: E402
from monokd.data.synth import generate, render_frame  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)

HEIGHT_BINS = [0, 5.1, 8.5, 13.7, 20, 30, 40, 60, 128]  # px at 128 rows (8.5 / 13.7 = KITTI's 25 / 40 scaled)
DEPTH_BINS = [0, 10, 20, 30, 40, 50, 60]


def run_cli(out: Path, frames: int, workers: int, seed: int) -> float:
    """Wall seconds of `monokd synth` in a fresh interpreter."""
    cmd = [sys.executable, "-c", "import sys; from monokd.cli import main; sys.exit(main(sys.argv[1:]))",
           "synth", "--out", str(out), "--num-train", str(frames), "--num-val", "0",
           "--seed", str(seed), "--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_generate(out: Path, frames: int, workers: int, seed: int) -> float:
    start = time.perf_counter()
    generate(out, frames, 0, seed, workers=workers)
    return time.perf_counter() - start


def time_render(frames: int, seed: int) -> dict:
    """Mean seconds per frame of render_frame with and without the LiDAR (in-process)."""
    render_frame([seed, 0])  # warm-up (imports, caches)
    out = {}
    for lidar in (False, True):
        start = time.perf_counter()
        for i in range(frames):
            render_frame([seed, i], lidar=lidar)
        out["with_lidar" if lidar else "camera_only"] = (time.perf_counter() - start) / frames
    return out


def label_statistics(root: Path) -> dict:
    paths = KittiPaths(root)
    kinds, occlusion = Counter(), Counter()
    heights, depths, per_frame = [], [], []
    for frame in read_split(paths.split("trainval")):
        objects = read_label(paths.file("label_2", frame))
        kinds.update(o.type for o in objects)
        real = [o for o in objects if o.type != "DontCare"]
        per_frame.append(len(real))
        occlusion.update(str(o.occluded) for o in real)
        heights += [o.height_2d for o in real]
        depths += [float(o.location[2]) for o in real]
    return {"classes": dict(kinds), "occlusion": dict(occlusion),
            "objects_per_frame": float(np.mean(per_frame)),
            "height_2d_bins_px": HEIGHT_BINS, "height_2d_hist": np.histogram(heights, HEIGHT_BINS)[0].tolist(),
            "depth_bins_m": DEPTH_BINS, "depth_hist": np.histogram(depths, DEPTH_BINS)[0].tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "synth_speed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cli = run_cli(Path(tmp) / "cli", args.frames, 1, args.seed)
        one = time_generate(Path(tmp) / "w1", args.frames, 1, args.seed)
        many = time_generate(Path(tmp) / "wk", args.frames, args.workers, args.seed) if args.workers > 1 else None
        stats = label_statistics(Path(tmp) / "w1")
    render = time_render(min(args.frames, 10), args.seed)
    result = {
        "command": f"monokd synth --num-train {args.frames} --num-val 0 (416x128)",
        "frames": args.frames,
        "cli_seconds_1_worker": round(cli, 3),
        "cli_frames_per_second_1_worker": round(args.frames / cli, 3),
        "generate_frames_per_second_1_worker": round(args.frames / one, 3),
        "workers": args.workers,
        "generate_frames_per_second_k_workers": None if many is None else round(args.frames / many, 3),
        "render_seconds_per_frame": {k: round(v, 4) for k, v in render.items()},
        "label_statistics": stats,
        "machine": {"cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "note": "the CLI figure includes interpreter start-up and the monokd dispatcher importing every "
                "subcommand (torch, lightning); generate = render + write all five files, per core with 1 "
                "worker; the machine is shared, see the load average",
    }
    print(f"monokd synth, {args.frames} frames at 416x128, 1 worker, fresh process: {cli:.2f} s = "
          f"{args.frames / cli:.2f} frames/s (with start-up)")
    print(f"generate, 1 worker (per core): {args.frames / one:.2f} frames/s")
    if many is not None:
        print(f"generate, {args.workers} workers: {args.frames / many:.2f} frames/s")
    print(f"render_frame: {render['with_lidar'] * 1000:.0f} ms/frame with the LiDAR, "
          f"{render['camera_only'] * 1000:.0f} ms camera + labels only")
    print("labels:", json.dumps(stats))
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
