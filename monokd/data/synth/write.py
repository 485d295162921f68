"""Write SynthKITTI to disk in the exact KITTI layout.

    OUT/training/{image_2,calib,label_2,velodyne,depth_2}/NNNNNN.{png,txt,bin}
    OUT/ImageSets/{train,val,trainval}.txt

and, with ``raw_drives``, the same frames inside drives of the KITTI raw layout plus fresh
frames, with the devkit's mapping files (monokd.data.synth.raw_drives).

Frame i is rendered from the seed sequence (seed, i), so its content does not depend on the
number of frames or of workers.
"""

from __future__ import annotations

import json
import multiprocessing
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from monokd.atomic import write_text
from monokd.data.kitti import (KittiPaths, write_calib, write_depth, write_image, write_label,
                               write_split, write_velodyne)
from monokd.data.synth.raw_drives import write_raw_drives
from monokd.data.synth.render import DEFAULT_SIZE, render_frame
from monokd.errors import ConfigError
from monokd.outputs import check_output, mark_output

MANIFEST = ".monokd-synth.json"


def frame_seed(seed: int, index: int) -> list[int]:
    """The seed of frame ``index`` of a dataset of ``seed`` (a SeedSequence entropy list)."""
    return [int(seed), int(index)]


def write_frame(root: Path, index: int, seed: int, width: int, height: int) -> int:
    """Render frame ``index`` and write its five files; returns its number of label lines."""
    frame = render_frame(frame_seed(seed, index), width, height)
    paths, name = KittiPaths(Path(root)), f"{index:06d}"
    write_image(paths.file("image_2", name), frame.image)
    write_depth(paths.file("depth_2", name), frame.depth)
    write_calib(paths.file("calib", name), frame.calib)
    write_label(paths.file("label_2", name), frame.objects)
    write_velodyne(paths.file("velodyne", name), frame.points)
    return len(frame.objects)


def _write_frame_star(args):
    return write_frame(*args)


def generate(out_dir, num_train: int, num_val: int, seed: int = 0, width: int = DEFAULT_SIZE[0],
             height: int = DEFAULT_SIZE[1], workers: int = 1, raw_drives: int = 0, raw_fresh: int = 20,
             raw_val_drives: int = 1, overwrite: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Render ``num_train + num_val`` frames into ``out_dir`` (train ids first, then val);
    with ``raw_drives`` > 0 also that many raw drives, each with ``raw_fresh`` fresh frames,
    the val frames in the first ``raw_val_drives``. An ``out_dir`` holding files that are not
    a SynthKITTI's (its MANIFEST), e.g. a real KITTI root whose frames 000000... these would
    replace, is a ConfigError unless ``overwrite`` (monokd.outputs). ``progress(done, total)``
    is called after each labelled frame is written."""
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ConfigError(f"--num-train/--num-val: need at least one frame, got num_train={num_train}, num_val={num_val}")
    if width < 32 or height < 32:
        raise ConfigError(f"--width/--height: image size {width}x{height} is too small (at least 32x32)")
    if raw_drives < 0 or (raw_drives and not (raw_fresh >= 0 and 1 <= raw_val_drives <= raw_drives)):
        raise ConfigError(f"--raw-drives/--raw-frames/--raw-val-drives: need raw-drives >= 0, raw-frames >= 0 and "
                          f"1 <= raw-val-drives <= raw-drives, got {raw_drives}, {raw_fresh}, {raw_val_drives}")
    check_output(out_dir, "synth", overwrite, own=MANIFEST)
    root = Path(out_dir)
    mark_output(root, "synth")  # an interrupted dataset (no MANIFEST yet) is still its own
    for kind in ("image_2", "calib", "label_2", "velodyne", "depth_2"):
        (root / "training" / kind).mkdir(parents=True, exist_ok=True)
    total = num_train + num_val
    jobs = [(root, i, seed, width, height) for i in range(total)]
    parallel = workers > 1 and total > 1
    with multiprocessing.get_context("spawn").Pool(min(workers, total)) if parallel else nullcontext() as pool:
        written = pool.imap_unordered(_write_frame_star, jobs, chunksize=1) if parallel else map(_write_frame_star, jobs)
        for done, _ in enumerate(written, 1):
            if progress is not None:
                progress(done, total)
    ids = [f"{i:06d}" for i in range(total)]
    paths = KittiPaths(root)
    write_split(paths.split("train"), ids[:num_train])
    write_split(paths.split("val"), ids[num_train:])
    write_split(paths.split("trainval"), ids)
    manifest = {"generator": "monokd.data.synth", "num_train": num_train, "num_val": num_val, "seed": seed,
                "width": width, "height": height}
    if raw_drives:
        write_raw_drives(root, ids[:num_train], ids[num_train:], seed, width, height, raw_drives, raw_fresh,
                         raw_val_drives if num_val else 0, workers)
        manifest.update(raw_drives=raw_drives, raw_fresh=raw_fresh, raw_val_drives=raw_val_drives)
    write_text(root / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return root
