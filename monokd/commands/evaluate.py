"""``monokd evaluate``: KITTI AP of result files, or of a checkpoint.

Two uses, mutually exclusive:

    monokd evaluate --gt-dir LABEL_DIR --det-dir RESULT_DIR [--split FILE] [--missing-as-empty]
                    [--classes ...] [--json OUT]
    monokd evaluate [--config CFG] --ckpt CKPT [--split NAME] [--set k=v ...] [--out DIR]

The first prints the devkit-style report of result files and can write the AP figures as
JSON ({"flat": {"Car/3d/moderate/R40@0.70": AP%, ...}, ...}). It scores the frames of
``--split`` (each needs a result file, as the official devkit requires, unless
``--missing-as-empty``), or without ``--split`` the frames the result folder holds; the second runs a checkpoint
through ``monokd.training.evaluate.evaluate_checkpoint``. Neither replaces what it did not
write unless ``--overwrite`` (an existing ``--json``; an ``--out`` holding other files).
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
    files.add_argument("--det-dir", help="result directory, one <frame>.txt a frame (DIR/data/ is used when "
                                          "only it holds them); without --split, its frames are scored")
    files.add_argument("--missing-as-empty", action="store_true",
                       help="a frame of --split without a result file counts as a frame without detections "
                            "(default: an error naming those frames)")
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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json, or write into an --out holding files evaluate did not "
                             "write (its own --out it rewrites)")
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
    from monokd.data.checks import require_frames
    from monokd.data.kitti import KittiPaths, read_split
    from monokd.evaluation.results import evaluate_dirs, locate_results, require_results, result_frames
    from monokd.outputs import check_output_file

    check_output_file(args.json, args.overwrite)

    if args.split:
        split_file = Path(args.split)
        if not split_file.is_file():  # a split's name (val), or a path under the KITTI root of --gt-dir
            split_file = KittiPaths(Path(args.gt_dir).resolve().parent.parent).split(args.split)
        frames = read_split(split_file)
        require_frames(frames, split_file)
        det_dir = locate_results(args.det_dir, frames)
        if det_dir != Path(args.det_dir):
            print(f"reading the result files from {det_dir} ({args.det_dir} holds none)")
        require_results(det_dir, frames, missing_as_empty=args.missing_as_empty)
    else:
        det_dir, frames = result_frames(args.det_dir)
        print(f"scoring the {len(frames)} frames {det_dir} holds result files for (no --split given)")
    result = evaluate_dirs(args.gt_dir, det_dir, frames, classes=args.classes,
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
