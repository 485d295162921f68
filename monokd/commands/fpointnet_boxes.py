"""``monokd fpointnet-boxes --input rgb_detection_val.txt --out DIR``: F-PointNet's 2-D detections
(the boxes of PatchNet's published numbers, ``rgb_detection_val.txt`` of xinzhuma/patchnet, or
the test-set file of the same format) -> one KITTI result file per frame with a detection
(``<frame>.txt``: type, the 2-D box, score; no 3-D estimate), the folder that
``data.proposals.results_dir`` reads (docs/patchnet.md). A malformed line is an error naming
the file and the line; DIR is written whole or not at all, and an existing non-empty DIR is
refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="rgb_detection_val.txt (or the test set's file)")
    parser.add_argument("--out", required=True, help="folder of <frame>.txt result files (new or empty)")


def convert_boxes(source: str | Path, out: str | Path) -> dict[str, int]:
    """Write the result files; returns {"frames": n, "boxes": m}."""
    from monokd.data.proposals import read_fpointnet_detections
    from monokd.errors import ConfigError
    from monokd.evaluation.results import write_results

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty folder; choose a new --out")
    detections = read_fpointnet_detections(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_results(staging, detections)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"frames": len(detections), "boxes": sum(len(v) for v in detections.values())}


def run(args: argparse.Namespace) -> int:
    counts = convert_boxes(args.input, args.out)
    print(f"{args.out}: {counts['boxes']} 2-D boxes in {counts['frames']} result files "
          f"(use as data.proposals.results_dir)")
    return 0
