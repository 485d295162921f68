"""What MonoTAKD costs: training step time of each of its models and of the distilled student
against the camera student alone, peak memory, and what the student costs at inference.

All models are the SynthKITTI recipes on the same batch: the LiDAR teacher
(configs/takd_lidar_synth.yaml), the TA (configs/takd_ta_synth.yaml), the camera student alone
(configs/takd_synth.yaml with the ``student`` row: no distillation, no residual branch, no FFM,
i.e. CaDDN) and the MonoTAKD student (the full recipe, frozen teacher and TA). Training steps
are interleaved in one process so that machine load affects all alike. Inference: forward +
decode of one frame by the student alone, by the MonoTAKD student with FFM (the residual branch
and FFM run at inference) and without FFM (the branch is training-only: the camera detector's
cost). Peak memory is measured on CUDA only (``--device cuda``). Writes
benchmarks/results/takd_speed.json.

    python benchmarks/takd_speed.py [--threads 1] [--steps 3] [--runs 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from distill_overhead import inference, interleaved_median, training_step  # noqa: E402
from train_speed import batches  # noqa: E402

from monokd.config import load_config, set_key  # noqa: E402
from monokd.data.synth import generate  # noqa: E402
from monokd.distill import build_distiller  # noqa: E402
from monokd.distill import preset_overrides  # noqa: E402
from monokd.training.schedule import build_optimizer  # noqa: E402
from monokd.models import build_detector  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)

CONFIGS = {"lidar_teacher": "configs/takd_lidar_synth.yaml", "ta": "configs/takd_ta_synth.yaml",
           "student": "configs/takd_synth.yaml", "takd": "configs/takd_synth.yaml"}


def configs(root: Path) -> dict[str, dict]:
    out = {}
    for name, path in CONFIGS.items():
        cfg = load_config(REPO / path)
        for item in [f"data.root={root}"] + (preset_overrides("student") if name == "student" else []):
            set_key(cfg, item)
        out[name] = cfg
    return out


def to_device(batch: dict, device: torch.device) -> dict:
    moved = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            moved[key] = value.to(device)
        elif key == "points":
            moved[key] = [p.to(device) for p in value]
        elif key == "targets":
            moved[key] = [{k: v.to(device) for k, v in t.items()} for t in value]
        else:
            moved[key] = value
    return moved


def peak_memory_mb(call, device: torch.device) -> float | None:
    """Peak CUDA memory of one call (None on the CPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    call()
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def synced(call, device: torch.device):
    def run():
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps of each model")
    parser.add_argument("--runs", type=int, default=5, help="timed inference runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "takd_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "synth", num_train=8, num_val=1, seed=0)
        cfgs = configs(root)
        train_batch, one = batches(cfgs["takd"], root, int(cfgs["takd"]["train"]["batch_size"]))
        train_batch, one = to_device(train_batch, device), to_device(one, device)

    torch.manual_seed(0)
    models = {name: build_detector(cfgs[name]).to(device) for name in ("lidar_teacher", "ta", "student")}
    frozen = {name: build_detector(cfgs[name]).to(device).eval().requires_grad_(False)
              for name in ("lidar_teacher", "ta")}  # weights do not change timing
    models["takd"] = build_distiller(cfgs["takd"], build_detector(cfgs["takd"]), frozen["lidar_teacher"],
                                     ta=frozen["ta"]).to(device)
    steps = {name: synced(training_step(model, build_optimizer(model, cfgs[name]), train_batch), device)
             for name, model in models.items()}
    step_s = interleaved_median(steps, args.steps)
    memory = {name: peak_memory_mb(call, device) for name, call in steps.items()}

    no_ffm_cfg = json.loads(json.dumps(cfgs["takd"]))
    set_key(no_ffm_cfg, "model.takd.ffm=false")
    students = {"student": models["student"], "takd_ffm": models["takd"].student,
                "takd_no_ffm": build_detector(no_ffm_cfg).to(device)}
    latency = interleaved_median({name: synced(inference(model, one), device) for name, model in students.items()},
                                 args.runs)
    params = {name: sum(p.numel() for p in model.parameters()) for name, model in students.items()}
    doc = {
        "machine": {"device": str(device), "cpu_threads": args.threads, "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg": list(np.round(np.array(os.getloadavg()), 2))},
        "configs": CONFIGS,
        "batch_size": int(cfgs["takd"]["train"]["batch_size"]),
        "train_step_s": {k: round(v, 4) for k, v in step_s.items()},
        "takd_over_student_step_ratio": round(step_s["takd"] / step_s["student"], 3),
        "peak_memory_mb": memory,
        "inference_parameters": params,
        "inference_latency_ms": {k: round(1000 * v, 2) for k, v in latency.items()},
        "takd_ffm_over_student_latency_ratio": round(latency["takd_ffm"] / latency["student"], 3),
        "takd_no_ffm_over_student_latency_ratio": round(latency["takd_no_ffm"] / latency["student"], 3),
    }
    print(json.dumps(doc, indent=1))
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
