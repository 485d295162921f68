"""``monokd depth train | predict | evaluate``: the monocular depth front-end (docs/patchnet.md).

- ``train --config configs/depth_synth.yaml --out runs/depth``: trains the DepthNet of
  monokd.models.depth through the engine every detector trains with (monokd.training.fit: one
  loop, one checkpoint format) on ``data.train_split`` against its depth_2 maps with the SILog
  loss; each validation scores ``data.val_split`` (AbsRel, RMSE, delta1; ``train.monitor``
  names the one best.ckpt follows). Writes config.yaml, last.ckpt (``--resume auto``),
  best.ckpt and metrics.json, as ``monokd train`` does; the checkpoint records its frames.
- ``predict --ckpt CKPT --split val --split train --out DIR``: one uint16 PNG per frame
  (metres x 256, the depth_2 format, at the original image size), resumable; DIR/meta.json
  says how many frames of each split the network trained on (monokd.serving.depth_maps). A DIR
  holding files it did not write (another network's maps, which it would take as its own) is
  refused unless ``--overwrite``.
- ``evaluate --pred-dir DIR --root ROOT --split val``: the metrics of any folder of depth
  PNGs (this front-end's, or a user's DORN maps) against depth_2.

A detector reads such a folder through ``data.depth_pred_dir`` (batch key ``depth_pred``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monokd.atomic import write_json
from monokd.config import load_config, set_key
from monokd.errors import CheckpointMismatchError
from monokd.models.depth.model import training_config
from monokd.outputs import check_output_file
from monokd.serving.depth_maps import evaluate_dir, is_loop_checkpoint, predict
from monokd.training.callbacks import console_progress
from monokd.training.checkpoint import read_checkpoint
from monokd.training.fit import fit, resolve_resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="depth_command", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train the depth network on depth_2")
    train.add_argument("--config", required=True, help="depth recipe YAML (e.g. configs/depth_*.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, repeatable")
    train.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    train.add_argument("--resume", nargs="?", const="auto", default=None, metavar="auto|PATH",
                       help="continue a run: 'auto' (also the bare flag) = OUT/last.ckpt if present, or a path")
    train.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    train.add_argument("--devices", type=int, default=None, help="devices (default: all GPUs, else 1 CPU process)")
    predict_ = sub.add_parser("predict", help="write depth PNGs (metres x 256) for the frames of splits")
    predict_.add_argument("--ckpt", required=True, help="checkpoint of `monokd depth train`")
    predict_.add_argument("--split", action="append", default=None, help="split name (repeatable; default val)")
    predict_.add_argument("--root", default=None, help="KITTI root (default: the checkpoint's data.root)")
    predict_.add_argument("--out", required=True, help="output folder of the depth PNGs")
    predict_.add_argument("--batch-size", type=int, default=4, help="frames per batch (default 4)")
    predict_.add_argument("--overwrite", action="store_true",
                          help="write into an --out holding files depth predict did not write (its own it resumes)")
    evaluate = sub.add_parser("evaluate", help="AbsRel / RMSE / delta1 of a folder of depth PNGs")
    evaluate.add_argument("--pred-dir", required=True, help="folder of predicted depth PNGs (<frame>.png)")
    evaluate.add_argument("--root", required=True, help="KITTI root with the ground-truth depth_2 maps")
    evaluate.add_argument("--split", default="val", help="ImageSets split to evaluate (default val)")
    evaluate.add_argument("--min-depth", type=float, default=1.0, help="nearest depth scored, metres (default 1)")
    evaluate.add_argument("--max-depth", type=float, default=80.0, help="farthest depth scored, metres (default 80)")
    evaluate.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --json")


def train(args: argparse.Namespace) -> None:
    cfg = training_config(load_config(args.config, args.set))
    if args.seed is not None:
        set_key(cfg, f"train.seed={args.seed}")
    out = Path(args.out)
    resume = resolve_resume(args.resume, out)
    if resume is not None and is_loop_checkpoint(read_checkpoint(resume)):
        raise CheckpointMismatchError(
            f"{resume}: a checkpoint of the former `monokd depth train` loop, which the engine cannot resume "
            "(`monokd depth predict` still reads it): train again into a fresh --out")
    plain, live = console_progress(cfg)
    fit(cfg, out, resume, args.devices, callbacks=plain, progress_bar=live)


def run(args: argparse.Namespace) -> int:
    if args.depth_command == "train":
        train(args)
    elif args.depth_command == "predict":
        predict(args.ckpt, args.split or ["val"], args.out, args.root, args.batch_size, overwrite=args.overwrite)
    else:
        check_output_file(args.json, args.overwrite)
        metrics = evaluate_dir(args.pred_dir, args.root, args.split, args.min_depth, args.max_depth)
        print(json.dumps(metrics, indent=2))
        if args.json:
            write_json(args.json, metrics, indent=2)
    return 0
