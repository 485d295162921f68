"""``monokd fpointnet-boxes --input rgb_detection_val.txt --out DIR [--overwrite]``: F-PointNet's
2-D detections (the boxes of PatchNet's published numbers, ``rgb_detection_val.txt`` of
xinzhuma/patchnet, or the test-set file of the same format) -> one KITTI result file per frame
with a detection (``<frame>.txt``: type, the 2-D box, score; no 3-D estimate), the folder that
``data.proposals.results_dir`` reads (docs/patchnet.md). A malformed line is an error naming
the file and the line. DIR is written whole or not at all and replaced whole (no stale frame
of an earlier file stays); a DIR holding files this command did not write is refused unless
``--overwrite`` (monokd.outputs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

COMMAND = "fpointnet-boxes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="rgb_detection_val.txt (or the test set's file)")
    parser.add_argument("--out", required=True, help="folder of <frame>.txt result files (new, empty, or its own)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out holding files this command did not write")


def convert_boxes(source: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, int]:
    """Write the result files; returns {"frames": n, "boxes": m}."""
    from monokd.data.proposals import read_fpointnet_detections
    from monokd.evaluation.results import write_results
    from monokd.outputs import check_output, mark_output

    out = Path(out)
    check_output(out, COMMAND, overwrite)
    detections = read_fpointnet_detections(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_results(staging, detections)
        mark_output(staging, COMMAND)
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"frames": len(detections), "boxes": sum(len(v) for v in detections.values())}


def _replace(staging: Path, out: Path) -> None:
    """``staging`` renamed onto ``out``; an existing ``out`` is moved aside first and removed
    only once the new folder is in place (put back if it cannot be)."""
    if not os.path.lexists(out):
        os.replace(staging, out)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, holder / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(holder / out.name, out)
        shutil.rmtree(holder, ignore_errors=True)
        raise
    shutil.rmtree(holder, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    counts = convert_boxes(args.input, args.out, args.overwrite)
    print(f"{args.out}: {counts['boxes']} 2-D boxes in {counts['frames']} result files "
          f"(use as data.proposals.results_dir)")
    return 0
