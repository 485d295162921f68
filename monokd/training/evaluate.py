"""``monokd evaluate --config CFG --ckpt CKPT [--split val] [--out DIR]``: run a checkpoint
over a split, write the KITTI result files (OUT/data/<frame>.txt) and, when the split has
labels, the devkit report (OUT/report.txt) and the AP figures (OUT/metrics.json, with a
``flat`` dict). Called by ``monokd.commands.evaluate`` in its checkpoint mode. An OUT holding
files evaluate did not write is refused before the model is built (monokd.outputs; unless
``overwrite``); evaluate rewrites its own."""

from __future__ import annotations

import sys
from pathlib import Path

from torch.utils.data import DataLoader

from monokd.atomic import write_text
from monokd.config import load_config, setting
from monokd.data.dataset import build_dataset, collate
from monokd.training.checkpoint import checkpoint_config, load_detector, read_checkpoint
from monokd.training.inference import detect
from monokd.training.preflight import warn_seen_frames
from monokd.training.validation import eval_batch_size, read_ground_truth, score_detections
from monokd.evaluation import write_results
from monokd.outputs import check_output, mark_output


def evaluate_checkpoint(args) -> int:
    """``args``: config (optional: the checkpoint's own), ckpt, split, out, and the
    overrides as ``overrides`` or ``set`` (lists of key=value). Returns the exit status; bad
    input raises monokd's errors (monokd.cli prints them as one line)."""
    overrides = list(getattr(args, "overrides", None) or getattr(args, "set", None) or [])
    overwrite = bool(getattr(args, "overwrite", False))
    if getattr(args, "out", None):  # refused before the checkpoint is read; the default OUT below
        check_output(args.out, "evaluate", overwrite)
    checkpoint = read_checkpoint(args.ckpt)
    # --set: on --config, else on the checkpoint's own config
    cfg = (load_config(args.config, overrides) if getattr(args, "config", None)
           else checkpoint_config(checkpoint, args.ckpt, overrides))
    split = getattr(args, "split", None) or setting(cfg, "data.val_split")
    out = Path(getattr(args, "out", None) or Path(args.ckpt).parent / f"eval_{Path(str(split)).stem}")
    check_output(out, "evaluate", overwrite)
    dataset = build_dataset(cfg, split, train=False)  # the data checked before the model is built
    warn_seen_frames(checkpoint, getattr(dataset, "ids", None), split, args.ckpt)
    model, cfg = load_detector(args.ckpt, cfg, checkpoint=checkpoint)
    loader = DataLoader(dataset, batch_size=eval_batch_size(cfg), shuffle=False,
                        num_workers=int(setting(cfg, "train.num_workers") or 0), collate_fn=collate)
    print(f"evaluating {args.ckpt} on {split} ({len(dataset)} frames)", flush=True)
    detections = detect(model, loader, progress=sys.stdout.isatty())
    mark_output(out, "evaluate")
    write_results(out / "data", detections)
    print(f"wrote {len(detections)} result files to {out / 'data'}")
    if not getattr(dataset, "has_labels", True):
        print(f"{split}: no labels, no AP computed")
        return 0
    result = score_detections(cfg, read_ground_truth(cfg, list(detections), getattr(dataset.paths, "part", "training")),
                              detections)
    report = result.report()
    print(report, end="")
    write_text(out / "report.txt", report)
    result.write_json(out / "metrics.json")
    print(f"wrote {out / 'report.txt'} and {out / 'metrics.json'}")
    return 0
