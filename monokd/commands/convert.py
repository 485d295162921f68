"""``monokd convert boxes | weights``: official files into monokd's formats.

- ``boxes --input rgb_detection_val.txt --out DIR``: F-PointNet's 2-D detections (the boxes
  of PatchNet's published numbers, ``rgb_detection_val.txt`` of xinzhuma/patchnet, or the
  test-set file of the same format) -> one KITTI result file per frame with a detection
  (``<frame>.txt``: type, the 2-D box, score; no 3-D estimate), the folder that
  ``data.proposals.results_dir`` reads. A malformed line is an error naming the file and
  the line; DIR is written whole or not at all, and an existing non-empty DIR is refused.
- ``weights --official FILE --config RECIPE --out FILE.ckpt``: an official checkpoint
  (``{"model_state": ...}`` as the official trainers save it; PatchNet of xinzhuma/patchnet,
  MonoDETR of the 2022 ZrrSkywalker/MonoDETR) -> a monokd checkpoint that ``monokd evaluate
  --ckpt``, ``predict`` and ``distill.teacher.ckpt`` read. The model is built from RECIPE with
  the settings the official weights fit (each ``monokd.models.<name>.official.LAYOUT``, printed
  and stored in the checkpoint's config); the renamed weights are loaded strictly: a missing,
  unexpected or mis-shaped key is an error that names them, and nothing is written.

Why a command and not detection at ``--ckpt``: an official checkpoint carries no config
(neither the data settings nor the model's), so a converted file pairs the weights with the
recipe they were checked against once; every other command then reads one format.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import tempfile
from pathlib import Path

OFFICIAL = {"patchnet": "monokd.models.patchnet.official", "monodetr": "monokd.models.monodetr.official"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="convert_command", required=True, metavar="ACTION")
    boxes = sub.add_parser("boxes", help="F-PointNet 2-D detections -> KITTI result files (data.proposals)")
    boxes.add_argument("--input", required=True, help="rgb_detection_val.txt (or the test set's file)")
    boxes.add_argument("--out", required=True, help="folder of <frame>.txt result files (new or empty)")
    weights = sub.add_parser("weights", help="an official checkpoint -> a monokd checkpoint")
    weights.add_argument("--official", required=True, help="official checkpoint (.pth with model_state)")
    weights.add_argument("--config", required=True, help="monokd recipe of the model (e.g. configs/patchnet_kitti.yaml)")
    weights.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    weights.add_argument("--out", required=True, help="monokd checkpoint to write (must not exist)")


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


def official_state(path: str | Path) -> dict:
    """The ``model_state`` of an official checkpoint file (or the file's dict of tensors)."""
    import torch

    from monokd.errors import CheckpointMismatchError
    from monokd.training.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointMismatchError(f"{path}: holds no 'model_state' dict of tensors (an official checkpoint does)")
    return state


def convert_weights(official: str | Path, config: str | Path, overrides: list[str], out: str | Path) -> dict:
    """Build, load strictly and write; returns the converted model's config."""
    import torch

    from monokd.config import get, load_config, set_key
    from monokd.errors import ConfigError
    from monokd.models import build_detector
    from monokd.training.checkpoint import MODEL_PREFIX, check_state_dict

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out}: exists; choose a new --out")
    cfg = load_config(config, overrides)
    name = get(cfg, "model.name")
    if name not in OFFICIAL:
        raise ConfigError(f"{config}: model.name {name!r} has no official checkpoint converter (known: {sorted(OFFICIAL)})")
    layout = importlib.import_module(OFFICIAL[name])
    for item in layout.LAYOUT:
        set_key(cfg, item, source=f"the official {name} layout")
    model = build_detector(cfg)
    state = layout.convert(official_state(official), model)
    check_state_dict(model, state, f"{official} (official {name}, renamed)")
    model.load_state_dict(state)
    payload = {"state_dict": {MODEL_PREFIX + k: v for k, v in model.state_dict().items()},
               "hyper_parameters": {"cfg": cfg}, "converted_from": str(official)}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, out)
    return cfg


def run(args: argparse.Namespace) -> int:
    if args.convert_command == "boxes":
        counts = convert_boxes(args.input, args.out)
        print(f"{args.out}: {counts['boxes']} 2-D boxes in {counts['frames']} result files "
              f"(use as data.proposals.results_dir)")
        return 0
    cfg = convert_weights(args.official, args.config, args.set, args.out)
    name = cfg["model"]["name"]
    layout = importlib.import_module(OFFICIAL[name]).LAYOUT
    print(f"{args.out}: official {name} weights loaded strictly into {args.config} with {', '.join(layout)}")
    return 0
