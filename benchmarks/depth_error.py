"""Depth error of a checkpoint's matched queries on a split: the direct diagnostic of whether a
GT-depth teacher uses its depth input (its depth error must be far below its student's).

    python benchmarks/depth_error.py --ckpt RUN/best.ckpt [--ckpt OTHER.ckpt] [--split val]

For every GT object matched to a query by the detector's own Hungarian matcher (last decoder
layer), reports the median and mean absolute error of the fused depth (m), and the median
relative error; also for the third depth estimate alone when the model is a GT-depth teacher.
Writes benchmarks/results/depth_error.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.training.checkpoint import load_detector  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)


@torch.no_grad()
def depth_errors(ckpt: str, split: str, batch_size: int = 8) -> dict:
    model, cfg = load_detector(ckpt)
    model.eval()
    data = KittiDataset(cfg["data"]["root"], split, cfg, augment=False)
    errors = []
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        outputs = model(batch)
        for b, (q, t) in enumerate(model.match_foreground(outputs, batch)):
            gt = batch["targets"][b]["depth"][t]
            pred = outputs["pred_depth"][b, q, 0]
            errors.append(torch.stack([gt, pred], 1))
    pairs = torch.cat(errors).numpy()
    abs_err = np.abs(pairs[:, 1] - pairs[:, 0])
    return {"ckpt": ckpt, "objects": int(len(pairs)), "median_abs_m": float(np.median(abs_err)),
            "mean_abs_m": float(abs_err.mean()), "median_rel": float(np.median(abs_err / pairs[:, 0])),
            "within_1m": float((abs_err < 1.0).mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "depth_error.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = [depth_errors(c, args.split) for c in args.ckpt]
    for r in results:
        print(json.dumps(r))
    write_json(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
