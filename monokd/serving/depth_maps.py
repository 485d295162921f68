"""The depth front-end's maps: reading its checkpoint, writing its predictions as depth PNGs
(``monokd depth predict``) and scoring any folder of depth PNGs (``monokd depth evaluate``).

A map is one uint16 PNG per frame, metres x 256 at the original image size (the KITTI
depth_2 format), which a detector reads through ``data.depth_pred_dir``. Predicting a frame
the network trained on flatters every result computed from it, so the maps' ``meta.json``
records, per split, how many of its frames were training frames.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from monokd.atomic import write_text
from monokd.config import get
from monokd.data.augment import warp
from monokd.data.dataset import KittiDataset, collate
from monokd.data.kitti import KittiPaths, read_depth, read_split, write_depth
from monokd.errors import CheckpointMismatchError, KittiFormatError
from monokd.models.depth.metrics import average, image_metrics
from monokd.models.depth.model import DepthNet, build_depth_net
from monokd.outputs import check_output, mark_output
from monokd.training.checkpoint import check_state_dict, load_detector, read_checkpoint
from monokd.training.preflight import PROVENANCE_KEY

COMMAND = "depth predict"  # the name its output folders are marked with (monokd.outputs)


def is_loop_checkpoint(checkpoint: dict) -> bool:
    """A checkpoint of the depth front-end's former training loop (keys ``cfg``,
    ``state_dict``, ``train_frames``; no Lightning ``hyper_parameters``)."""
    return isinstance(checkpoint, dict) and "cfg" in checkpoint and "hyper_parameters" not in checkpoint


def load_depth_net(ckpt: str | Path) -> tuple[torch.nn.Module, dict, dict]:
    """(network in eval mode, its config, ``{"split", "ids"}`` of its training frames) of a
    ``monokd depth train`` checkpoint; one of the former loop's format loads too."""
    checkpoint = read_checkpoint(ckpt)
    if is_loop_checkpoint(checkpoint):
        model = build_depth_net(checkpoint["cfg"])
        check_state_dict(model, checkpoint["state_dict"], str(ckpt))
        model.load_state_dict(checkpoint["state_dict"])
        trained = {"split": checkpoint.get("train_split"), "ids": list(checkpoint.get("train_frames") or [])}
        return model.eval(), checkpoint["cfg"], trained
    model, cfg = load_detector(ckpt, checkpoint=checkpoint)
    if not isinstance(model, DepthNet):
        raise CheckpointMismatchError(f"{ckpt}: not a `monokd depth train` checkpoint (model.name "
                                      f"{get(cfg, 'model.name')!r})")
    train = (checkpoint.get(PROVENANCE_KEY) or {}).get("train") or {}
    return model, cfg, {"split": train.get("split"), "ids": list(train.get("ids") or [])}


def prediction_dataset(cfg: dict, split: str, root=None):
    """The frames of ``split`` as the network sees them (no augmentation, no depth maps)."""
    data = {**(cfg.get("data") or {}), "depth_maps": None}
    return KittiDataset(root or data.get("root"), split, {**cfg, "data": data}, augment=False)


@torch.no_grad()
def predict(ckpt: str | Path, splits: list[str], out: str | Path, root=None, batch_size: int = 4,
            log=print, overwrite: bool = False) -> dict:
    """Write ``out/<frame>.png`` for every frame of ``splits`` that has none yet (so an
    interrupted run resumes); returns the meta.json content (the checkpoint, its training
    split, per split its frame count and how many of them it trained on). An ``out`` holding
    files this did not write is a ConfigError unless ``overwrite`` (monokd.outputs): a PNG
    there would be kept as if predicted."""
    check_output(out, COMMAND, overwrite)
    model, cfg, trained = load_depth_net(ckpt)
    out = Path(out)
    mark_output(out, COMMAND)
    trained_on = set(trained["ids"])
    meta = {"ckpt": str(ckpt), "train_split": trained["split"], "splits": {}}
    for split in splits:
        dataset = prediction_dataset(cfg, split, root)
        todo = [i for i, f in enumerate(dataset.ids) if not (out / f"{f}.png").is_file()]
        seen = sum(f in trained_on for f in dataset.ids)
        meta["splits"][split] = {"frames": len(dataset.ids), "trained_on": seen}
        if seen:
            print(f"monokd depth predict: warning: {seen} of the {len(dataset.ids)} frames of '{split}' were "
                  "training frames of this depth network; results on them are flattered", file=sys.stderr)
        log(f"depth predict: {split}: {len(dataset.ids)} frames, {len(dataset.ids) - len(todo)} already written")
        done = 0
        for batch in DataLoader(Subset(dataset, todo), batch_size=batch_size, collate_fn=collate):
            depth = model.predict(batch["images"]).numpy()
            for b, frame in enumerate(batch["frame_ids"]):
                width, height = (int(v) for v in batch["image_sizes"][b])
                original = warp(depth[b, 0], batch["input_to_original"][b].numpy().astype(np.float64), (width, height))
                tmp = out / f".{frame}.tmp.png"
                write_depth(tmp, original)
                os.replace(tmp, out / f"{frame}.png")
            done += len(batch["frame_ids"])
            log(f"depth predict: {split}: {done}/{len(todo)}")
    write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


def evaluate_dir(pred_dir: str | Path, root: str | Path, split: str, min_depth: float = 1.0,
                 max_depth: float = 80.0) -> dict:
    """AbsRel / RMSE / delta1 (``monokd.models.depth.metrics``) of the PNGs in ``pred_dir``
    against ``root``'s depth_2 maps at the original resolution; a map of another size is a
    KittiFormatError naming its file."""
    paths = KittiPaths(Path(root))
    per_image = []
    for frame in read_split(paths.split(split)):
        gt = read_depth(paths.file("depth_2", frame), nan_policy="zero")
        pred = read_depth(Path(pred_dir) / f"{frame}.png")
        if pred.shape != gt.shape:
            raise KittiFormatError(Path(pred_dir) / f"{frame}.png", None, "size",
                                   f"{pred.shape} but depth_2 is {gt.shape}")
        per_image += image_metrics(torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None],
                                   min_depth, max_depth)
    return average(per_image)
