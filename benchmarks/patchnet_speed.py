"""What the PatchNet pipeline costs on this machine: the depth front-end (training step,
inference per frame) and PatchNet (training step, inference per frame, the ADD student's
training step against the baseline's).

The models are the SynthKITTI recipes (configs/depth_synth.yaml, configs/patchnet_synth.yaml,
configs/add_patchnet_synth.yaml with an untrained GT-depth teacher: speed does not depend on
the weights) on a freshly rendered SynthKITTI (416 x 128), batches of --batch frames. The
depth maps PatchNet reads are the frames' depth_2 (the estimated maps have the same format).
Calls are interleaved (A, B, A, B, ...) so that machine load affects all alike; medians.
Writes benchmarks/results/patchnet_speed.json.

    python benchmarks/patchnet_speed.py [--threads 1] [--runs 5] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monokd.config import load_config  # noqa: E402
from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.data.synth import generate  # noqa: E402
from monokd.distill import build_distiller  # noqa: E402
from monokd.training.schedule import build_optimizer  # noqa: E402
from monokd.models import build_detector  # noqa: E402
from monokd.models.depth.model import build_depth_net  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)
from distill_overhead import interleaved_median  # noqa: E402


def step(model, optimizer, loss_of):
    def call():
        optimizer.zero_grad(set_to_none=True)
        loss_of(model).backward()
        optimizer.step()
    return call


@torch.no_grad()
def infer(model, argument):
    def call():
        model(argument)
    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "patchnet_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate(root, num_train=args.batch, num_val=1, seed=0, width=416, height=128)
        depth_cfg = load_config(REPO / "configs" / "depth_synth.yaml", [f"data.root={root}"])
        overrides = [f"data.root={root}", f"data.depth_pred_dir={root / 'training' / 'depth_2'}"]
        base_cfg = load_config(REPO / "configs" / "patchnet_synth.yaml", overrides)
        add_cfg = load_config(REPO / "configs" / "add_patchnet_synth.yaml", overrides)
        teacher_cfg = load_config(REPO / "configs" / "patchnet_teacher_synth.yaml", [f"data.root={root}"])
        train_batch = collate([KittiDataset(root, "train", add_cfg)[i] for i in range(args.batch)])
        eval_cfg = {**base_cfg, "data": {**base_cfg["data"], "train_split": "none"}}
        eval_batch = collate([KittiDataset(root, "train", eval_cfg, augment=False)[0]])

        depth_net = build_depth_net(depth_cfg)
        depth_opt = build_optimizer(depth_net, depth_cfg)

        def depth_loss(model):
            return model.losses(model(train_batch), train_batch)["loss"]

        baseline = build_detector(base_cfg).train()
        teacher = build_detector(teacher_cfg).eval().requires_grad_(False)
        add = build_distiller(add_cfg, build_detector(add_cfg), teacher).train()
        train_times = interleaved_median({
            "depth_train_step": step(depth_net.train(), depth_opt, depth_loss),
            "patchnet_train_step": step(baseline, build_optimizer(baseline, base_cfg),
                                        lambda m: m.losses(m(train_batch), train_batch)["loss"]),
            "add_patchnet_train_step": step(add, build_optimizer(add, add_cfg),
                                            lambda m: m.losses(m(train_batch), train_batch)["loss"]),
        }, args.runs)
        depth_net.eval()
        baseline.eval()
        infer_times = interleaved_median({
            "depth_inference_per_frame": infer(depth_net, eval_batch),
            "patchnet_inference_per_frame": infer(baseline, eval_batch),
        }, args.runs)
        patches = int(sum(len(p["boxes"]) for p in train_batch["proposals"]))
    doc = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "cpu_count": os.cpu_count(), "torch": torch.__version__},
        "setup": {"batch_frames": args.batch, "train_patches_in_batch": patches, "input_size": [416, 128],
                  "runs": args.runs, "recipes": ["depth_synth", "patchnet_synth", "add_patchnet_synth"]},
        "seconds": {k: round(v, 4) for k, v in {**train_times, **infer_times}.items()},
        "add_over_baseline_step": round(train_times["add_patchnet_train_step"] / train_times["patchnet_train_step"], 3),
        "parameters": {"depth_net": sum(p.numel() for p in depth_net.parameters()),
                       "patchnet": sum(p.numel() for p in baseline.parameters())},
    }
    print({**doc["seconds"], "add_over_baseline_step": doc["add_over_baseline_step"]})
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
