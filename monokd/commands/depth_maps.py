"""``monokd depth-maps``: KITTI depth_2 maps from the velodyne sweeps
(:mod:`monokd.data.depth_maps`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from monokd.data.depth_maps import write_depth_maps
from monokd.errors import KittiFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="KITTI root (training/velodyne, calib, image_2)")
    parser.add_argument("--split", default=None,
                        help="ImageSets split (e.g. trainval); default: every frame with a velodyne sweep")
    parser.add_argument("--overwrite", action="store_true", help="rewrite maps that already exist")


def run(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        raise KittiFormatError(args.root, reason="the KITTI root does not exist (or is not a folder)")
    counts = write_depth_maps(args.root, args.split, args.overwrite)
    if counts["frames"] == 0:
        raise KittiFormatError(args.root, reason="no frame with a velodyne sweep (training/velodyne/*.bin)")
    failed = counts["failed"]
    if failed:
        frames = sorted(failed)
        shown = ", ".join(frames[:_SHOWN]) + (", ..." if len(frames) > _SHOWN else "")
        raise KittiFormatError(Path(args.root) / "training" / "depth_2", None, None,
                               f"{len(frames)} of {counts['frames']} frames could not be filled ({shown}); "
                               f"first: {failed[frames[0]]}")
    return 0


_SHOWN = 5  # frames named in the error
