"""`monokd synth`: write SynthKITTI in the KITTI layout (see docs/synthkitti.md)."""

from __future__ import annotations

import sys
import time

from monokd.data.synth.render import DEFAULT_SIZE
from monokd.data.synth.write import generate


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="dataset root to write (training/, ImageSets/)")
    parser.add_argument("--num-train", type=int, default=400, help="frames of the train split (ids first)")
    parser.add_argument("--num-val", type=int, default=100, help="frames of the val split (ids after train)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; frame i uses (seed, i)")
    parser.add_argument("--width", type=int, default=DEFAULT_SIZE[0], help="image width (px)")
    parser.add_argument("--height", type=int, default=DEFAULT_SIZE[1], help="image height (px)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering frames in parallel")
    parser.add_argument("--raw-drives", type=int, default=0,
                        help="also write this many drives in the KITTI raw layout (raw/, mapping/): every "
                             "object frame inside one, plus fresh unlabeled frames")
    parser.add_argument("--raw-frames", type=int, default=20, help="fresh (unlabeled) frames per raw drive")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out holding files synth did not write (a dataset of its own it rewrites)")
    parser.add_argument("--raw-val-drives", type=int, default=1,
                        help="the first this many raw drives hold the val frames (the leakage guard refuses them)")


def run(args) -> int:
    if args.width % 32 or args.height % 32:
        print(f"monokd synth: note: {args.width}x{args.height} is not divisible by 32; the detector's "
              "data layer will resize it", file=sys.stderr)
    start = time.perf_counter()
    root = generate(args.out, args.num_train, args.num_val, args.seed, args.width, args.height, args.workers,
                    args.raw_drives, args.raw_frames, args.raw_val_drives, overwrite=args.overwrite)
    total = args.num_train + args.num_val + args.raw_drives * args.raw_frames
    elapsed = time.perf_counter() - start
    raw = (f", {args.raw_drives} raw drives with {args.raw_frames} fresh frames each "
           f"({args.raw_val_drives} holding the val frames)") if args.raw_drives else ""
    print(f"wrote {total} frames ({args.num_train} train, {args.num_val} val{raw}) of {args.width}x{args.height} "
          f"to {root} in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f} frames/s)")
    return 0
