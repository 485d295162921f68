"""``monokd gt-database``: the ground-truth sampling database of a LiDAR detector's training
split, built from its velodyne sweeps and labels (:mod:`monokd.data.gt_database`; OpenPCDet's
``create_kitti_infos`` step ``create_groundtruth_database``). The folder is replaced whole; one
that this command did not build (no ``index.json``: e.g. OpenPCDet's) is refused unless
``--overwrite``."""

from __future__ import annotations

import argparse
from pathlib import Path

from monokd.data.gt_database import INDEX, RELEASED_GROUPS, build_database, database_dir
from monokd.errors import KittiFormatError
from monokd.outputs import check_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="KITTI root (ImageSets/, training/velodyne, calib, label_2)")
    parser.add_argument("--split", default="train", help="ImageSets split to take the objects from (default: train)")
    parser.add_argument("--classes", nargs="+", default=list(RELEASED_GROUPS),
                        help="object classes kept (default: Car Pedestrian Cyclist)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a ROOT/gt_database/SPLIT that this command did not build")


def run(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        raise KittiFormatError(args.root, reason="the KITTI root does not exist (or is not a folder)")
    check_output(database_dir(args.root, args.split), "gt-database", args.overwrite, own=INDEX, flag=None)
    counts = build_database(args.root, args.split, tuple(args.classes))
    listed = ", ".join(f"{cls} {counts.get(cls, 0)}" for cls in args.classes)
    print(f"{database_dir(args.root, args.split)}: {listed}")
    return 0
