"""``monokd depth train | predict | evaluate``: the monocular depth front-end (docs/patchnet.md).

- ``train --config configs/depth_synth.yaml --out runs/depth``: trains the DepthNet of
  monokd.models.depth on ``data.train_split`` against its depth_2 maps with the SILog loss;
  after every ``train.val_every`` epochs scores ``data.val_split`` (AbsRel, RMSE, delta1);
  writes last.ckpt (resumed with ``--resume``, at epoch granularity) and metrics.json. The
  checkpoint records the frames it trained on.
- ``predict --ckpt CKPT --split val --split train --out DIR``: one uint16 PNG per frame
  (metres x 256, the depth_2 format, at the original image size) into DIR, with progress; a
  frame whose PNG exists is skipped, so an interrupted run resumes. DIR/meta.json records the
  checkpoint, and for each split how many of its frames the network trained on: a depth
  network that predicts frames it trained on flatters every result computed from them
  (the default recipes train on ``train`` and predict the disjoint ``val``).
- ``evaluate --pred-dir DIR --root ROOT --split val``: the metrics of any folder of depth
  PNGs (this front-end's, or a user's DORN maps) against depth_2.

A detector reads such a folder through ``data.depth_pred_dir`` (batch key ``depth_pred``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from monokd.config import load_config, merge, setting
from monokd.errors import CheckpointMismatchError, KittiFormatError

# Depth training sees the frame as it is: a scale/crop augmentation would make objects look
# nearer or farther than their depth, so only flip and photometric noise stay on.
DATA_OVERRIDES = {"depth_maps": "depth_2", "augment": {"scale_prob": 0.0, "shift": 0.0}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="depth_command", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train the depth network on depth_2")
    train.add_argument("--config", required=True, help="depth recipe YAML (e.g. configs/depth_*.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, repeatable")
    train.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt if present")
    predict = sub.add_parser("predict", help="write depth PNGs (metres x 256) for the frames of splits")
    predict.add_argument("--ckpt", required=True, help="checkpoint of `monokd depth train`")
    predict.add_argument("--split", action="append", default=None, help="split name (repeatable; default val)")
    predict.add_argument("--root", default=None, help="KITTI root (default: the checkpoint's data.root)")
    predict.add_argument("--out", required=True, help="output folder of the depth PNGs")
    predict.add_argument("--batch-size", type=int, default=4, help="frames per batch (default 4)")
    evaluate = sub.add_parser("evaluate", help="AbsRel / RMSE / delta1 of a folder of depth PNGs")
    evaluate.add_argument("--pred-dir", required=True, help="folder of predicted depth PNGs (<frame>.png)")
    evaluate.add_argument("--root", required=True, help="KITTI root with the ground-truth depth_2 maps")
    evaluate.add_argument("--split", default="val", help="ImageSets split to evaluate (default val)")
    evaluate.add_argument("--min-depth", type=float, default=1.0, help="nearest depth scored, metres (default 1)")
    evaluate.add_argument("--max-depth", type=float, default=80.0, help="farthest depth scored, metres (default 80)")
    evaluate.add_argument("--json", default=None, help="also write the metrics to this JSON file")


def depth_dataset(cfg: dict, split: str, train: bool, root=None, with_gt: bool = True):
    from monokd.data.dataset import KittiDataset

    data = merge(cfg.get("data") or {}, DATA_OVERRIDES if with_gt else {"depth_maps": None})
    return KittiDataset(root or data.get("root"), split, {**cfg, "data": data}, augment=None if train else False)


def _loader(dataset, batch_size: int | None = None, **kwargs) -> DataLoader:
    from monokd.data.dataset import collate

    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    return DataLoader(dataset, collate_fn=collate, **kwargs)


# --- training -------------------------------------------------------------------------------
def train(cfg: dict, out: str | Path, resume: bool = False, log=print) -> dict:
    """Train; returns the last validation metrics ({} when none ran)."""
    from monokd.training.sampling import EpochBatchSampler, SeededDataset
    from monokd.training.schedule import build_optimizer, lr_factor, set_lr
    from monokd.training.seeding import seed_everything
    from monokd.models.depth.losses import silog_loss, valid_depth
    from monokd.models.depth.model import LOSS_SECTION, build_depth_net

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(setting(cfg, "train.seed"))
    seed_everything(seed)
    model = build_depth_net(cfg)
    optimizer = build_optimizer(model, cfg)
    train_split = str(setting(cfg, "data.train_split"))
    dataset = depth_dataset(cfg, train_split, train=True)
    epochs, val_every = int(setting(cfg, "train.epochs")), int(setting(cfg, "train.val_every") or 0)
    loss_cfg = LOSS_SECTION.resolve(cfg.get("loss"))
    lam, alpha = float(loss_cfg["silog_lambda"]), float(loss_cfg["silog_alpha"])
    history, start = [], 0
    last = out / "last.ckpt"
    if resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = int(state["epoch"]), list(state["history"])
        log(f"depth train: resumed from {last} at epoch {start}")
    sampler = EpochBatchSampler(len(dataset), int(setting(cfg, "train.batch_size")), seed)
    loader = _loader(SeededDataset(dataset, seed), batch_sampler=sampler)
    metrics: dict = {}
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        model.train()
        losses, began = [], time.time()
        for step, batch in enumerate(loader):
            set_lr(optimizer, float(setting(cfg, "train.lr")) * lr_factor(epoch, step, len(sampler), cfg))
            pred = model(batch["images"])
            gt = batch["depth_maps"]
            loss = silog_loss(pred, gt, valid_depth(gt, model.min_depth, model.max_depth), lam, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - began, 1)}
        if val_every and ((epoch + 1) % val_every == 0 or epoch + 1 == epochs):
            metrics = validate(model, cfg)
            record.update({f"val/{k}": v for k, v in metrics.items()})
        history.append(record)
        log("depth train: " + " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        torch.save({"cfg": cfg, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1, "history": history, "train_split": train_split,
                    "train_frames": list(dataset.ids)}, out / "last.ckpt.tmp")
        os.replace(out / "last.ckpt.tmp", last)
    (out / "metrics.json").write_text(json.dumps({"history": history, "val": metrics}, indent=2) + "\n")
    return metrics


@torch.no_grad()
def validate(model, cfg: dict, split: str | None = None) -> dict:
    """Average AbsRel / RMSE / delta1 over ``split`` (default ``data.val_split``), at input size."""
    from monokd.models.depth.metrics import average, image_metrics
    from monokd.training.validation import eval_batch_size

    dataset = depth_dataset(cfg, split or str(setting(cfg, "data.val_split")), train=False)
    was_training = model.training
    model.eval()
    per_image = []
    for batch in _loader(dataset, eval_batch_size(cfg)):
        per_image += image_metrics(model(batch["images"]), batch["depth_maps"], model.min_depth, model.max_depth)
    model.train(was_training)
    return average(per_image)


# --- prediction -----------------------------------------------------------------------------
def load_depth_net(ckpt: str | Path):
    """(model in eval mode, checkpoint dict) of a ``monokd depth train`` checkpoint."""
    from monokd.training.checkpoint import check_state_dict
    from monokd.models.depth.model import build_depth_net

    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "state_dict" not in state or "cfg" not in state:
        raise CheckpointMismatchError(f"{path}: not a `monokd depth train` checkpoint")
    model = build_depth_net(state["cfg"])
    check_state_dict(model, state["state_dict"], str(path))
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


@torch.no_grad()
def predict(ckpt: str | Path, splits: list[str], out: str | Path, root=None, batch_size: int = 4,
            log=print) -> dict:
    """Write ``out/<frame>.png`` for every frame of ``splits``; returns the meta.json content."""
    from monokd.data.augment import warp
    from monokd.data.kitti import write_depth

    model, state = load_depth_net(ckpt)
    cfg, out = state["cfg"], Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trained_on = set(state.get("train_frames") or [])
    meta = {"ckpt": str(ckpt), "train_split": state.get("train_split"), "splits": {}}
    for split in splits:
        dataset = depth_dataset(cfg, split, train=False, root=root, with_gt=False)
        todo = [i for i, f in enumerate(dataset.ids) if not (out / f"{f}.png").is_file()]
        seen = sum(f in trained_on for f in dataset.ids)
        meta["splits"][split] = {"frames": len(dataset.ids), "trained_on": seen}
        if seen:
            print(f"monokd depth predict: warning: {seen} of the {len(dataset.ids)} frames of '{split}' were "
                  "training frames of this depth network; results on them are flattered", file=sys.stderr)
        log(f"depth predict: {split}: {len(dataset.ids)} frames, {len(dataset.ids) - len(todo)} already written")
        subset = torch.utils.data.Subset(dataset, todo)
        done = 0
        for batch in _loader(subset, batch_size):
            depth = model(batch["images"]).numpy()
            for b, frame in enumerate(batch["frame_ids"]):
                width, height = (int(v) for v in batch["image_sizes"][b])
                original = warp(depth[b, 0], batch["input_to_original"][b].numpy().astype(np.float64), (width, height))
                tmp = out / f".{frame}.tmp.png"
                write_depth(tmp, original)
                os.replace(tmp, out / f"{frame}.png")
            done += len(batch["frame_ids"])
            log(f"depth predict: {split}: {done}/{len(todo)}")
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def evaluate_dir(pred_dir: str | Path, root: str | Path, split: str, min_depth: float = 1.0,
                 max_depth: float = 80.0) -> dict:
    """Metrics of the PNGs in ``pred_dir`` against ``root``'s depth_2 (original resolution)."""
    from monokd.data.kitti import KittiPaths, read_depth, read_split
    from monokd.models.depth.metrics import average, image_metrics

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


def run(args: argparse.Namespace) -> int:
    if args.depth_command == "train":
        train(load_config(args.config, args.set), args.out, args.resume)
    elif args.depth_command == "predict":
        predict(args.ckpt, args.split or ["val"], args.out, args.root, args.batch_size)
    else:
        metrics = evaluate_dir(args.pred_dir, args.root, args.split, args.min_depth, args.max_depth)
        print(json.dumps(metrics, indent=2))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
