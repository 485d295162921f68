"""``monokd export``: write the student alone (safetensors, a baseline checkpoint, ONNX); what
is written and how is :mod:`monokd.serving.export`."""

from __future__ import annotations

import argparse

from monokd.config import load_config
from monokd.serving.export import export_student


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint of `monokd train` (distilled or baseline)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--config", default=None, help="the run's config (default: the one stored in the checkpoint)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (on --config, else on the checkpoint's config), repeatable")
    parser.add_argument("--no-onnx", action="store_true",
                        help="skip the ONNX model (needed for a detector that reads more than an image: PatchNet)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; a detector that needs a newer one raises it: "
                             "CaDDN uses 20, its 5-D GridSample)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size of the ONNX model (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out holding files export did not write (its own it rewrites)")


def run(args: argparse.Namespace) -> int:
    cfg = None
    if args.config:
        cfg = load_config(args.config, args.set)
    report = export_student(args.ckpt, args.out, cfg=cfg, onnx=not args.no_onnx, opset=args.opset,
                            batch_size=args.batch_size, overrides=None if args.config else args.set,
                            overwrite=args.overwrite)
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0
