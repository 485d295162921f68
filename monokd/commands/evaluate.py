"""``monokd evaluate``: KITTI AP of result files, or of a checkpoint.

Two uses, mutually exclusive:

    monokd evaluate --gt-dir LABEL_DIR --det-dir RESULT_DIR [--split FILE] [--classes ...] [--json OUT]
    monokd evaluate [--config CFG] --ckpt CKPT [--split NAME] [--set k=v ...] [--out DIR]

The first prints the devkit-style report of result files and can write the AP figures as
JSON ({"flat": {"Car/3d/moderate/R40@0.70": AP%, ...}, ...}); the second runs a checkpoint
through ``monokd.training.evaluate.evaluate_checkpoint``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monokd.data.checks import require_frames
from monokd.data.kitti import read_split
from monokd.evaluation.results import evaluate_dirs, frames_of_dir, locate_results

_FILES = ("gt_dir", "det_dir")
_CHECKPOINT = ("config", "ckpt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("result files (use with --gt-dir and --det-dir)")
    files.add_argument("--gt-dir", help="label_2 directory of the ground truth")
    files.add_argument("--det-dir", help="result directory, one <frame>.txt a frame (a missing file = no "
                                          "detections; DIR/data/ is used when only it holds them)")
    files.add_argument("--classes", nargs="+", default=["Car", "Pedestrian", "Cyclist"],
                       help="classes to evaluate (default: Car Pedestrian Cyclist)")
    files.add_argument("--json", metavar="OUT.json", help="write the AP figures as JSON")
    files.add_argument("--min-height-scale", type=float, default=1.0,
                       help="multiply the devkit's minimum 2-D heights 40/25/25 px (default 1, the "
                            "benchmark; SynthKITTI at 128 rows: 128/375 = 0.3413)")
    ckpt = parser.add_argument_group("checkpoint (use with --ckpt and optionally --config)")
    ckpt.add_argument("--config", help="experiment config (YAML; default: the checkpoint's own)")
    ckpt.add_argument("--ckpt", help="checkpoint to evaluate")
    ckpt.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override, repeatable")
    ckpt.add_argument("--out", help="output directory (results, report)")
    parser.add_argument("--split", help="with --gt-dir: an ImageSets file of frame ids; "
                                        "with --config: a split name (e.g. val)")


def _mode(args) -> str:
    files = [k for k in _FILES if getattr(args, k, None)]
    ckpt = [k for k in _CHECKPOINT if getattr(args, k, None)]
    if files and ckpt:
        raise ValueError("use either --gt-dir/--det-dir or --config/--ckpt, not both")
    if ckpt:
        if not args.ckpt:
            raise ValueError("checkpoint mode needs --ckpt (--config is optional: by default the "
                             "checkpoint's own config)")
        return "checkpoint"
    if len(files) != 2:
        raise ValueError("give --gt-dir and --det-dir (result files) or --config and --ckpt (a checkpoint)")
    if args.set or args.out:
        raise ValueError("--set and --out belong to checkpoint mode (--config/--ckpt)")
    return "files"


def _run_checkpoint(args) -> int:
    try:
        from monokd.training.evaluate import evaluate_checkpoint
    except ImportError as err:
        print(f"monokd evaluate: checkpoint evaluation is not available in this build "
              f"(monokd.training.evaluate.evaluate_checkpoint: {err})", file=sys.stderr)
        return 2
    return int(evaluate_checkpoint(args) or 0)


def _run_files(args) -> int:
    split_ids = read_split(args.split) if args.split else None
    if split_ids is not None:
        require_frames(split_ids, args.split)
    det_dir = locate_results(args.det_dir, split_ids if split_ids is not None else frames_of_dir(args.gt_dir))
    if det_dir != Path(args.det_dir):
        print(f"reading the result files from {det_dir} ({args.det_dir} holds none)")
    result = evaluate_dirs(args.gt_dir, det_dir, split_ids, classes=args.classes,
                           min_height_scale=args.min_height_scale)
    print(result.report(), end="")
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    return 0


def run(args) -> int:
    try:
        mode = _mode(args)
    except ValueError as err:  # a usage error: exit 2, like argparse's
        print(f"monokd evaluate: error: {err}", file=sys.stderr)
        return 2
    # bad input raises monokd's errors, which monokd.cli prints as one line (exit 1)
    return _run_checkpoint(args) if mode == "checkpoint" else _run_files(args)
