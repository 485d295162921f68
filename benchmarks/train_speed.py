"""Training step time and inference latency of MonoDETR.

CPU: the SynthKITTI recipe (configs/monodetr_synth.yaml: ResNet-18, 416x128, batch 8), a
few steps only. GPU (when one is present): the KITTI recipe (configs/monodetr_kitti.yaml:
ResNet-50, 1280x384, batch 16), fp32 and bf16 autocast. The frames are a small SynthKITTI
rendered on the fly; the dataset warps them to each recipe's input size, so the timings
depend only on that size. Writes benchmarks/results/train_speed.json.

    python benchmarks/train_speed.py [--threads 1] [--steps 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.config import load_config, set_key  # noqa: E402
from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.data.synth import generate  # noqa: E402
from monokd.training.inference import to_device  # noqa: E402
from monokd.training.schedule import build_optimizer  # noqa: E402
from monokd.models import build_detector  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def batches(cfg: dict, root: Path, batch_size: int) -> tuple[dict, dict]:
    """(a training batch of ``batch_size`` augmented frames, a batch of 1 for inference)."""
    train = KittiDataset(root, "train", cfg, augment=True)
    plain = KittiDataset(root, "train", cfg, augment=False)
    return collate([train[i % len(train)] for i in range(batch_size)]), collate([plain[0]])


def time_training(model, cfg: dict, batch: dict, device, steps: int, bf16: bool) -> list[float]:
    """Seconds per optimiser step (forward, losses, backward, clip, AdamW), after one warm-up."""
    optimizer = build_optimizer(model, cfg)
    model.train()
    times = []
    for step in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        with autocast(device, bf16):
            outputs = model(batch)
            loss = model.losses(outputs, batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sync(device)
        if step:
            times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def time_inference(model, batch: dict, device, runs: int, bf16: bool) -> list[float]:
    """Seconds per forward + decode of one image, after one warm-up."""
    model.eval()
    times = []
    for run in range(runs + 1):
        sync(device)
        start = time.perf_counter()
        with autocast(device, bf16):
            outputs = model(batch)
        model.decode(outputs, batch)
        sync(device)
        if run:
            times.append(time.perf_counter() - start)
    return times


def measure(config: str, root: Path, device: torch.device, steps: int, runs: int, bf16: bool,
            batch_size: int | None = None) -> dict:
    cfg = load_config(REPO / config)
    set_key(cfg, f"data.root={root}")
    batch_size = batch_size or int(cfg["train"]["batch_size"])
    train_batch, one = batches(cfg, root, batch_size)
    torch.manual_seed(0)
    model = build_detector(cfg).to(device)
    train_times = time_training(model, cfg, to_device(train_batch, device), device, steps, bf16)
    infer_times = time_inference(model, to_device(one, device), device, runs, bf16)
    step = statistics.median(train_times)
    latency = statistics.median(infer_times)
    result = {
        "config": config, "input_size": cfg["data"]["input_size"], "batch_size": batch_size,
        "precision": "bf16-mixed" if bf16 else "32", "device": str(device),
        "train_step_s": round(step, 4), "train_images_per_s": round(batch_size / step, 2),
        "train_steps_timed": len(train_times),
        "inference_latency_ms": round(1000 * latency, 2), "inference_images_per_s": round(1 / latency, 2),
        "inference_runs_timed": len(infer_times),
    }
    if device.type == "cuda":
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the project's CPU budget)")
    parser.add_argument("--steps", type=int, default=3, help="timed CPU training steps")
    parser.add_argument("--gpu-steps", type=int, default=20, help="timed GPU training steps")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "synth", num_train=16, num_val=1, seed=0)
        cpu = torch.device("cpu")
        results.append(measure("configs/monodetr_synth.yaml", root, cpu, args.steps, 5, bf16=False))
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            torch.backends.cudnn.benchmark = True
            for bf16 in (False, True):
                results.append(measure("configs/monodetr_kitti.yaml", root, gpu, args.gpu_steps, 50, bf16))
    doc = {
        "machine": {"cpu_threads": args.threads, "platform": platform.platform(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": results,
    }
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
