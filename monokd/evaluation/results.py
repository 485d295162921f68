"""KITTI result files: the test-server layout (one ``<frame>.txt`` a frame, label_2 lines
with a 16th field, the score) read for evaluation and written from detections."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Mapping, Sequence

from monokd.data.kitti import Object3D, parse_label_line, read_label, read_lines, write_label
from monokd.errors import KittiFormatError, MonokdWarning
from monokd.evaluation.kitti_ap import DEFAULT_CLASSES, compile_kernels, evaluate
from monokd.evaluation.report import EvalResult
from monokd.evaluation.tables import frame_id


def read_results(path: str | Path) -> list[Object3D]:
    """Detections of one result file; a missing file means no detections.

    Raises KittiFormatError (file, line, field) for a malformed line, including one
    without a score.
    """
    path = Path(path)
    if not path.exists():
        return []
    objects = []
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        obj = parse_label_line(text, path, number)
        if obj.score is None:
            raise KittiFormatError(path, number, "score", "a result line needs 16 fields, the last the score")
        objects.append(obj)
    return objects


def frames_of_dir(gt_dir: str | Path) -> list[str]:
    """Frame ids of all label files in a directory, sorted (none is an error)."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise KittiFormatError(gt_dir, None, None, "label directory not found")
    frames = sorted(p.stem for p in gt_dir.glob("*.txt") if not p.name.startswith("."))
    if not frames:
        raise KittiFormatError(gt_dir, None, None, "holds no label files (<frame>.txt)")
    return frames


_SHOWN = 5  # frames named in a message


def result_frames(det_dir: str | Path) -> tuple[Path, list[str]]:
    """(folder, frame ids) of the result files in ``det_dir``, or in ``det_dir/data`` when only
    it holds them (the layout monokd evaluate/predict write). Only ``<digits>.txt`` names are
    result files (not report.txt). None is an error."""
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise KittiFormatError(det_dir, None, None, "result directory not found")
    for candidate in (det_dir, det_dir / "data"):
        frames = sorted(p.stem for p in candidate.glob("*.txt") if p.stem.isdigit()) if candidate.is_dir() else []
        if frames:
            return candidate, frames
    raise KittiFormatError(det_dir, None, None, f"holds no result file (<frame>.txt), nor does {det_dir / 'data'}")


def require_results(det_dir: str | Path, frames: Sequence[str], missing_as_empty: bool = False) -> list[str]:
    """The frames of ``frames`` without a result file in ``det_dir``: an error naming how many
    and the first few (the devkit refuses a missing file; a silent miss would lower the AP)
    unless ``missing_as_empty`` (then they count as frames without detections)."""
    missing = [frame_id(f) for f in frames if not (Path(det_dir) / f"{frame_id(f)}.txt").is_file()]
    if missing and not missing_as_empty:
        shown = ", ".join(f"{f}.txt" for f in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise KittiFormatError(det_dir, None, None, f"no result file for {len(missing)} of the {len(frames)} frames "
                                                    f"scored ({shown}); give --missing-as-empty to count them as "
                                                    "frames without detections")
    return missing


def locate_results(det_dir: str | Path, frames: Sequence[str]) -> Path:
    """The directory holding the result files of ``frames``: ``det_dir`` itself, or
    ``det_dir/data`` (the layout monokd evaluate/predict write) when only that holds them.

    A missing result file means no detections for that frame, but a directory holding none
    for any frame is an error: it would score an all-zero AP without a word.
    """
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise KittiFormatError(det_dir, None, None, "result directory not found")
    names = [f"{frame_id(f)}.txt" for f in frames]
    for candidate in (det_dir, det_dir / "data"):
        if candidate.is_dir() and any((candidate / n).is_file() for n in names):
            return candidate
    example = names[0] if names else "<frame>.txt"
    raise KittiFormatError(det_dir, None, None, f"holds no result file for any of the {len(names)} frames "
                                                f"(e.g. {example}), nor does {det_dir / 'data'}")


def load_dirs(gt_dir: str | Path, det_dir: str | Path, split_ids: Sequence[str] | None = None):
    """Ground truth and detections of the frames (``split_ids``, or every label file).

    Returns (gt_annos, dt_annos): frame id -> list[Object3D]. A missing label file is an
    error; a missing result file means no detections (see :func:`locate_results`).
    """
    frames = [frame_id(f) for f in split_ids] if split_ids is not None else frames_of_dir(gt_dir)
    if not frames:
        raise KittiFormatError("<split>", None, "id", "no frames to evaluate")
    gt_annos = {f: read_label(Path(gt_dir) / f"{f}.txt") for f in frames}
    det_dir = locate_results(det_dir, frames)
    dt_annos = {f: read_results(det_dir / f"{f}.txt") for f in frames}
    return gt_annos, dt_annos


def evaluate_dirs(gt_dir: str | Path, det_dir: str | Path, split_ids: Sequence[str] | None = None,
                  classes: Sequence[str] = DEFAULT_CLASSES, **kwargs) -> EvalResult:
    """:func:`monokd.evaluation.evaluate` of a label directory and a result directory."""
    warm_up = threading.Thread(target=compile_kernels, daemon=True)  # JIT while reading files
    warm_up.start()
    gt_annos, dt_annos = load_dirs(gt_dir, det_dir, split_ids)
    present = {o.type.lower() for objects in gt_annos.values() for o in objects}
    absent = [c for c in classes if c.lower() not in present]
    if absent:  # their AP is 0 by definition, not a measurement
        warnings.warn(f"{gt_dir}: no ground-truth object of {', '.join(absent)} in the {len(gt_annos)} frames: "
                      "their AP reads 0", MonokdWarning, stacklevel=2)
    warm_up.join()
    return evaluate(gt_annos, dt_annos, classes, **kwargs)


def write_results(out_dir: str | Path, detections: Mapping[str, Sequence[Object3D]]) -> list[Path]:
    """One result file per frame (an empty file for a frame without detections).

    Every detection needs a score (the 16th field). Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, objects in detections.items():
        frame = frame_id(key)
        for o in objects:
            if o.score is None:
                raise ValueError(f"frame {frame}: detection of type {o.type} has no score")
        path = out_dir / f"{frame}.txt"
        write_label(path, list(objects))
        written.append(path)
    return written
