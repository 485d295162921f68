"""What ADD costs: training step time of the distilled student against the baseline, and
what the exported student costs at inference (it should cost nothing).

Both models are the SynthKITTI recipes (configs/monodetr_synth.yaml, the ADD recipe
configs/add_monodetr_synth.yaml with its GT-depth teacher) on the same batch. The training
steps of the two are interleaved in one process so that machine load affects both alike.
The ADD student goes through the real export path (`monokd export`: distilled checkpoint ->
student safetensors/ckpt + ONNX); its parameter count, PyTorch latency and onnxruntime latency
are compared with the baseline's. Writes benchmarks/results/distill_overhead.json.

    python benchmarks/distill_overhead.py [--threads 1] [--steps 4] [--runs 10]

Targets: training step ratio <= 1.5 on CPU; inference ratios 1.00 +- 0.05.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from train_speed import batches  # noqa: E402

from monokd.config import load_config, set_key  # noqa: E402
from monokd.data.synth import generate  # noqa: E402
from monokd.distill import build_distiller  # noqa: E402
from monokd.training.checkpoint import MODEL_PREFIX  # noqa: E402
from monokd.serving.export import example_inputs, export_student  # noqa: E402
from monokd.training.schedule import build_optimizer  # noqa: E402
from monokd.models import build_detector  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)


def interleaved_median(calls: dict, runs: int) -> dict[str, float]:
    """Median seconds of each call, run alternately (A, B, A, B, ...) after one warm-up each,
    so that a change of machine load affects every call alike."""
    times = {name: [] for name in calls}
    for run in range(runs + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if run:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def training_step(model, optimizer, batch: dict):
    """One optimiser step: forward, losses, backward, clipping, AdamW."""
    def step():
        model.train()
        loss = model.losses(model(batch), batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
    return step


def inference(model, batch: dict):
    """Forward + decode of one image."""
    def run():
        model.eval()
        with torch.no_grad():
            model.decode(model(batch), batch)
    return run


def onnx_inference(path: Path, images: torch.Tensor, P2: torch.Tensor):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    given = {"images": images.numpy(), "P2": P2.numpy()}
    feeds = {i.name: given[i.name] for i in session.get_inputs()}
    return lambda: session.run(None, feeds)


def export(model_state: dict, cfg: dict, out: Path) -> dict:
    """Through `monokd export`'s code path: a checkpoint in the engine's layout -> student."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "model.ckpt"
    torch.save({"state_dict": {MODEL_PREFIX + k: v for k, v in model_state.items()},
                "hyper_parameters": {"cfg": cfg}}, ckpt)
    return export_student(ckpt, out / "export")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps of each model")
    parser.add_argument("--runs", type=int, default=10, help="timed inference runs")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "distill_overhead.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base_cfg = load_config(REPO / "configs/monodetr_synth.yaml")
    add_cfg = load_config(REPO / "configs/add_monodetr_synth.yaml")
    teacher_cfg = load_config(REPO / "configs/monodetr_teacher_synth.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate(tmp / "synth", num_train=8, num_val=1, seed=0)
        for cfg in (base_cfg, add_cfg, teacher_cfg):
            set_key(cfg, f"data.root={root}")
        train_batch, one = batches(base_cfg, root, int(base_cfg["train"]["batch_size"]))

        torch.manual_seed(0)
        baseline = build_detector(base_cfg)
        teacher = build_detector(teacher_cfg).eval().requires_grad_(False)  # weights do not change timing
        distiller = build_distiller(add_cfg, build_detector(base_cfg), teacher)
        step = interleaved_median({name: training_step(model, build_optimizer(model, base_cfg), train_batch)
                                   for name, model in (("baseline", baseline), ("add", distiller))}, args.steps)

        reports = {"baseline": export(baseline.state_dict(), base_cfg, tmp / "baseline"),
                   "add": export(distiller.state_dict(), add_cfg, tmp / "add")}
        students = {"baseline": baseline, "add": distiller.student}
        images, P2 = example_inputs(base_cfg)
        latency = interleaved_median({name: inference(model, one) for name, model in students.items()}, args.runs)
        onnx_s = interleaved_median({name: onnx_inference(Path(reports[name]["onnx"]), images, P2)
                                     for name in students}, args.runs)

    params = {name: reports[name]["parameters"] for name in reports}
    adapters = sum(p.numel() for n, p in distiller.named_parameters() if not n.startswith("student."))
    doc = {
        "machine": {"cpu_threads": args.threads, "platform": platform.platform(), "torch": torch.__version__,
                    "loadavg": list(np.round(np.array(os.getloadavg()), 2))},
        "configs": {"baseline": "configs/monodetr_synth.yaml", "add": "configs/add_monodetr_synth.yaml"},
        "train_step_s": {k: round(v, 4) for k, v in step.items()},
        "train_step_ratio": round(step["add"] / step["baseline"], 3),
        "train_step_ratio_target": 1.5,
        "adapter_parameters_training_only": adapters,
        "exported_parameters": params,
        "exported_parameter_ratio": params["add"] / params["baseline"],
        "inference_latency_ms": {k: round(1000 * v, 2) for k, v in latency.items()},
        "inference_latency_ratio": round(latency["add"] / latency["baseline"], 3),
        "onnx_latency_ms": {k: round(1000 * v, 2) for k, v in onnx_s.items()},
        "onnx_latency_ratio": round(onnx_s["add"] / onnx_s["baseline"], 3),
        "onnx_max_abs_diff": {k: reports[k]["onnx_max_abs_diff"] for k in reports},
    }
    print(json.dumps(doc, indent=1))
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
