"""``monokd show``: one PNG a frame with the 3-D and 2-D boxes on the image and a bird's-eye
view with the LiDAR points; optionally predictions (a result label dir) beside the ground truth.

    monokd show --root DIR --split val --ids 000003,000001 --out DIR [--pred-dir LABEL_DIR]

An ``--out`` holding files show did not write is refused unless ``--overwrite`` (monokd.outputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monokd.data.kitti import KittiPaths, read_split, write_image
from monokd.outputs import check_output, mark_output
from monokd.viz.draw import frame_picture


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="KITTI root (ImageSets/, training/, testing/)")
    parser.add_argument("--split", default="val", help="split name (ImageSets/<split>.txt); 'test' reads testing/")
    parser.add_argument("--ids", default=None, help="comma-separated frame ids (default: the whole split)")
    parser.add_argument("--out", required=True, help="directory for the PNGs")
    parser.add_argument("--pred-dir", default=None, help="a directory of result label files to draw in red")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="hide predictions scoring below")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out holding files show did not write (its own it rewrites)")
    parser.add_argument("--max-frames", type=int, default=50, help="draw at most this many frames")


def frame_ids(paths: KittiPaths, split: str, ids: str | None) -> list[str]:
    if ids:
        return [token.strip().zfill(6) for token in ids.split(",") if token.strip()]
    return read_split(paths.split(split), Path(paths.root) / paths.part / "image_2")


def run(args: argparse.Namespace) -> int:
    paths = KittiPaths(Path(args.root), "testing" if args.split == "test" else "training")
    out = Path(args.out)
    check_output(out, "show", args.overwrite)
    frames = frame_ids(paths, args.split, args.ids)[: args.max_frames]
    mark_output(out, "show")
    for frame in frames:
        picture = frame_picture(paths, frame, args.pred_dir, args.score_threshold)
        write_image(out / f"{frame}.png", picture)
        print(out / f"{frame}.png")
    return 0
