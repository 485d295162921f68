"""``monokd depth-maps``: KITTI depth_2 maps from the velodyne sweeps, for the object
benchmark's frames or (``--raw``) KITTI raw frames (:mod:`monokd.data.depth_maps`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from monokd.data.depth_maps import write_depth_maps, write_raw_depth_maps
from monokd.errors import KittiFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="KITTI root (training/velodyne, calib, image_2)")
    parser.add_argument("--split", default=None,
                        help="ImageSets split (e.g. trainval); default: every frame with a velodyne sweep")
    parser.add_argument("--raw", action="store_true",
                        help="--root is a KITTI raw root (<date>/<drive>_sync/...) and --split a raw split in "
                             "its ImageSets/; maps go to <drive>/depth_02/data/<frame>.png")
    parser.add_argument("--overwrite", action="store_true", help="rewrite maps that already exist")


def run(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        raise KittiFormatError(args.root, reason="the KITTI root does not exist (or is not a folder)")
    if args.raw:
        counts = write_raw_depth_maps(args.root, args.split, args.overwrite)
    else:
        counts = write_depth_maps(args.root, args.split, args.overwrite)
    if counts["frames"] == 0:
        where = "<drive>/velodyne_points/data/*.bin" if args.raw else "training/velodyne/*.bin"
        raise KittiFormatError(args.root, reason=f"no frame with a velodyne sweep ({where})")
    return 0
