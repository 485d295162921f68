"""``monokd convert``: an official implementation's checkpoint -> a monokd checkpoint.

    monokd convert --config configs/caddn_kitti.yaml --ckpt checkpoint_epoch_80.pth --out caddn_official.ckpt

The detector of ``--config`` is built, the file's tensors are mapped to its keys by the
detector's ``official_state_dict(contents, source)`` (each model documents the layouts it
reads; CaDDN: OpenPCDet's ``model_state``) and checked strictly (a missing, extra or
mis-shaped key is one error line), and the result is written as a baseline checkpoint
(``state_dict`` with the ``model.`` prefix, ``hyper_parameters.cfg`` = the config), which
evaluate, predict, export and a distillation's ``teacher.ckpt`` read like any other. The file
is written under a temporary name and renamed; an existing ``--out`` is kept unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the recipe the official weights were trained with")
    parser.add_argument("--ckpt", required=True, help="the official checkpoint file")
    parser.add_argument("--out", required=True, help="the monokd checkpoint to write")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    import torch

    from monokd.config import load_config
    from monokd.errors import CheckpointMismatchError, ConfigError
    from monokd.models import build_detector
    from monokd.training.checkpoint import MODEL_PREFIX

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out}: exists; pass --overwrite to replace it")
    cfg = load_config(args.config, args.set)
    model = build_detector(cfg)
    if not hasattr(model, "official_state_dict"):
        raise ConfigError(f"{args.config}: model.name {cfg['model']['name']!r} reads no official checkpoint")
    path = Path(args.ckpt)
    if not path.is_file():
        raise CheckpointMismatchError(f"{path}: checkpoint not found")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file name
        raise CheckpointMismatchError(f"{path}: not a readable PyTorch file ({type(err).__name__})") from None
    state = model.official_state_dict(contents, str(path))
    model.load_state_dict(state, strict=False)  # checked by official_state_dict (num_batches_tracked optional)
    checkpoint = {"state_dict": {MODEL_PREFIX + k: v for k, v in model.state_dict().items()},
                  "hyper_parameters": {"cfg": cfg}, "converted_from": str(path)}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".partial")
    torch.save(checkpoint, staging)
    os.replace(staging, out)
    print(f"wrote {out}: {len(state)} tensors from {path}")
    return 0
