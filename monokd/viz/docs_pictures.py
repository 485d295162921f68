"""The pictures of docs/pictures: two real KITTI frames and two SynthKITTI frames.

    python -m monokd.viz.docs_pictures --out docs/pictures

Real frames come from ``shared/data/kitti_samples`` beside the repository (skipped with a
message if absent); the synthetic ones from a tiny SynthKITTI generated in a temporary
directory. Pictures are shrunk and palette-coded to stay small (< 300 KB) in git.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from monokd.data.kitti import KittiPaths, read_split
from monokd.viz.draw import frame_picture

KITTI_SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kitti_samples"
REAL_FRAMES = ("000003", "000001")
MAX_BYTES = 300_000


def save_small(path: Path, picture: np.ndarray, max_width: int = 1200) -> int:
    """Write ``picture`` as a palette PNG no wider than ``max_width``; returns its size in bytes."""
    import cv2
    from PIL import Image

    if picture.shape[1] > max_width:
        height = round(picture.shape[0] * max_width / picture.shape[1])
        picture = cv2.resize(picture, (max_width, height), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    for colors in (256, 128, 64, 32):
        Image.fromarray(picture).quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size < MAX_BYTES:
            break
    return path.stat().st_size


def real_pictures(out: Path, root: Path = KITTI_SAMPLES) -> list[Path]:
    if not (root / "training" / "image_2").is_dir():
        print(f"skipped the real KITTI frames: {root} not found", file=sys.stderr)
        return []
    written = []
    for frame in REAL_FRAMES:
        path = out / f"kitti_{frame}.png"
        size = save_small(path, frame_picture(KittiPaths(root), frame))
        print(f"{path} ({size // 1024} KB)")
        written.append(path)
    return written


def synth_pictures(out: Path, count: int = 2) -> list[Path]:
    try:
        from monokd.data.synth import generate
    except ImportError as err:
        print(f"skipped the SynthKITTI frames: {err}", file=sys.stderr)
        return []
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, num_train=2, num_val=count, seed=0, width=416, height=128)
        paths = KittiPaths(Path(tmp))
        for frame in read_split(paths.split("val"))[:count]:
            picture = frame_picture(paths, frame)
            path = out / f"synth_{frame}.png"
            size = save_small(path, picture)
            print(f"{path} ({size // 1024} KB)")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/pictures")
    args = parser.parse_args(argv)
    out = Path(args.out)
    real_pictures(out)
    synth_pictures(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
