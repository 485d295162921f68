"""Three CPU levers of a training step, each timed in fresh child processes (OpenMP's threads
and glibc's malloc are set when a process starts): the ResNet's widths, the allocator, and
how a second OpenMP thread waits.

- **widths**: the ResNet trunk at torchvision's widths (64, 128, 256, 512) against narrower
  ones (``model.backbone.widths``), one thread.
- **allocator**: glibc's default against ``monokd.training.allocator.keep_freed_memory``
  (what ``monokd train`` sets), one thread: step time, user and system CPU seconds a step,
  minor page faults a step.
- **threads**: one thread against two, the second waiting as OpenMP's default (spins),
  ``OMP_WAIT_POLICY=PASSIVE`` (sleeps at once) and ``GOMP_SPINCOUNT=10000`` (spins briefly,
  then sleeps: what the demo's lanes set), the training alone on the machine.

The step is ``benchmarks/train_speed.py``'s (the module's forward, losses, backward, gradient
clipping and AdamW, the frozen teachers untrained) on a batch of SynthKITTI frames rendered
on the fly, at the demo's input size (320x96) and precision (bf16 autocast where the CPU has
native bf16, else fp32) unless told otherwise. Medians of ``--steps`` timed steps after one
untimed warm-up. Writes benchmarks/results/cpu_levers.json.

    python benchmarks/cpu_levers.py [--models monodetr,add_monodetr] [--steps 6]
        [--size 320x96] [--widths 64,48,32] [--narrow 32] [--fp32] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

DEFAULT_MODELS = ("monodetr", "add_monodetr")
NO_RESNET = ("lidar_teacher", "patchnet")  # train_speed's models without monokd's ResNet trunk
# how the second thread waits: the environment each variant's child gets
WAITS = {"spin": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin_10000": {"GOMP_SPINCOUNT": "10000"}}


def stage_widths(base: int) -> list[int]:
    """ResNet stage widths doubling from ``base`` (64 -> torchvision's 64, 128, 256, 512)."""
    return [base, 2 * base, 4 * base, 8 * base]


def worker(args) -> int:
    """``--worker MODEL``: ``--steps`` timed steps at ``--width``; one JSON line with the median
    step time and the user / system seconds and minor page faults a step."""
    import torch
    import yaml

    from monokd.training.allocator import keep_freed_memory
    from train_speed import Trainee, batches, recipe, timed  # benchmarks/train_speed.py

    kept = keep_freed_memory() if args.malloc == "kept" else False
    width, height = args.size
    with tempfile.TemporaryDirectory(prefix="cpu_levers_worker_") as work:
        cfg = recipe(args.worker, Path(args.root), Path(work), False,
                     size={"input_size": [width, height], "batch_size": args.batch_size})
        widths = stage_widths(args.width)
        cfg["model"]["backbone"]["widths"] = widths
        for section in (cfg.get("distill") or {}).values():  # the frozen teachers alike
            if isinstance(section, dict) and section.get("config"):
                path = Path(section["config"])
                frozen = yaml.safe_load(path.read_text())
                frozen["model"]["backbone"]["widths"] = widths
                path.write_text(yaml.safe_dump(frozen))
        batch, _ = batches(cfg, Path(args.root), args.batch_size)
        trainee = Trainee(cfg, batch)
    bf16 = not args.fp32
    trainee.step(bf16)
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = [timed(trainee.step, bf16) for _ in range(args.steps)]
    after = resource.getrusage(resource.RUSAGE_SELF)
    n = args.steps
    print(json.dumps({"model": args.worker, "width": args.width, "threads": torch.get_num_threads(),
                      "allocator_kept": kept, "step_s": round(statistics.median(times), 4),
                      "user_s": round((after.ru_utime - before.ru_utime) / n, 4),
                      "system_s": round((after.ru_stime - before.ru_stime) / n, 4),
                      "minor_faults": (after.ru_minflt - before.ru_minflt) // n}), flush=True)
    return 0


def run_worker(model: str, root: Path, args, width: int, threads: int = 1, malloc: str = "kept",
               wait: str = "spin") -> dict:
    """One child process timing ``model``: its JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MONOKD_MALLOC")}
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO),
                **WAITS[wait]})
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--root", str(root),
               "--steps", str(args.steps), "--size", f"{args.size[0]}x{args.size[1]}",
               "--batch-size", str(args.batch_size), "--width", str(width), "--malloc", malloc]
    if args.fp32:
        command.append("--fp32")
    child = subprocess.run(command, capture_output=True, text=True, env=env)
    if child.returncode:
        raise RuntimeError(f"cpu_levers worker failed ({child.returncode}):\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure(model: str, root: Path, args) -> dict:
    """The three levers for ``model``; each variant a child process of its own."""
    widths = {str(w): run_worker(model, root, args, w) for w in args.widths}
    narrow = args.narrow
    allocator = {"default": run_worker(model, root, args, narrow, malloc="default"),
                 "kept": widths.get(str(narrow)) or run_worker(model, root, args, narrow)}
    threads = {"1": allocator["kept"], **{f"2_{wait}": run_worker(model, root, args, narrow, threads=2, wait=wait)
                                          for wait in WAITS}}
    one = threads["1"]["step_s"]
    return {
        "widths": widths,
        "widths_speedup": {w: round(widths[str(args.widths[0])]["step_s"] / r["step_s"], 3) for w, r in widths.items()},
        "allocator": allocator,
        "allocator_speedup": round(allocator["default"]["step_s"] / allocator["kept"]["step_s"], 3),
        "threads": threads,
        "two_threads_speedup": {k: round(one / r["step_s"], 3) for k, r in threads.items() if k != "1"},
    }


def size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated names of benchmarks/train_speed.py's MODELS with a ResNet trunk")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 6; --quick 1)")
    parser.add_argument("--size", type=size, default=None, help="input WxH (default 320x96, the demo's; --quick 128x64)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 (--quick 2)")
    parser.add_argument("--widths", default="64,48,32", help="ResNet base widths compared, the first the reference")
    parser.add_argument("--narrow", type=int, default=32, help="the base width of the allocator and thread variants")
    parser.add_argument("--fp32", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one step: the tests' run")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_levers.json"))
    # internal: the workers
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--malloc", choices=("kept", "default"), default="kept", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (1 if args.quick else 6)
    args.size = args.size or ((128, 64) if args.quick else (320, 96))
    args.batch_size = args.batch_size or (2 if args.quick else 8)
    if args.worker:
        return worker(args)
    args.widths = [int(w) for w in args.widths.split(",")]
    from monokd.data.synth import generate
    from monokd.training.precision import cpu_has_bf16
    from train_speed import MODELS, finish, machine

    models = [m for m in args.models.split(",") if m]
    known = [m for m in MODELS if m not in NO_RESNET]
    unknown = [m for m in models if m not in known]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (known, the models with a ResNet trunk: "
                     f"{', '.join(known)})")
    if not args.fp32 and not cpu_has_bf16():
        print("this CPU has no native bf16: timing fp32", flush=True)
        args.fp32 = True
    wall = time.perf_counter()
    doc = {"machine": machine(1),
           "setup": {"steps": args.steps, "input_size": list(args.size), "batch_size": args.batch_size,
                     "precision": "fp32" if args.fp32 else "bf16 autocast", "widths": args.widths,
                     "narrow": args.narrow, "waits": WAITS, "quick": args.quick},
           "models": {}}
    with tempfile.TemporaryDirectory(prefix="cpu_levers_") as tmp:
        root = generate(Path(tmp) / "synth", num_train=args.batch_size, num_val=1, seed=0,
                        **({"width": 160, "height": 64} if args.quick else {}))
        for model in models:
            doc["models"][model] = measure(model, root, args)
            row = doc["models"][model]
            print(f"{model}: widths {row['widths_speedup']}, allocator x{row['allocator_speedup']}, "
                  f"two threads {row['two_threads_speedup']}", flush=True)
    finish(doc, wall, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
