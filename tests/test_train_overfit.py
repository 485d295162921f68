"""The real MonoDETR through the engine: a tiny config overfits 4 frames (the loss falls by
more than half), and validation scores the decoded frames with the KITTI evaluation."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from torch.utils.data import Subset

from monokd.config import load_config
from monokd.training.datamodule import KittiDataModule
from monokd.training.fit import fit
from tests.helpers import TINY_MONODETR as TINY

@pytest.fixture(scope="module")
def frames_root(request):
    """4+ labelled frames: a tiny SynthKITTI when its generator exists, else the KITTI samples."""
    try:
        return request.getfixturevalue("synth_root")
    except pytest.skip.Exception:
        return request.getfixturevalue("kitti_samples")


class LossTrace(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if "train/loss" in trainer.callback_metrics:
            self.losses.append(float(trainer.callback_metrics["train/loss"]))


@pytest.mark.slow
def test_monodetr_overfits_four_frames(frames_root, tmp_path):
    from monokd.data.dataset import KittiDataset, collate

    torch.set_num_threads(1)
    cfg = load_config("configs/monodetr_synth.yaml", TINY + [f"data.root={frames_root}", "train.epochs=16",
                                                             "train.val_every=16"])
    split = "train" if (frames_root / "ImageSets" / "train.txt").is_file() else None
    frames = Subset(KittiDataset(None, split, cfg, augment=False), range(4))
    data = KittiDataModule(cfg, frames, frames, collate)
    trace = LossTrace()
    module = fit(cfg, tmp_path, datamodule=data, callbacks=[trace], progress_bar=False)
    assert len(trace.losses) == 16 and module.nonfinite_total == 0
    first, last = sum(trace.losses[:2]) / 2, sum(trace.losses[-2:]) / 2
    assert last < 0.5 * first, trace.losses
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    final, key = metrics["final"], cfg["train"]["monitor"]
    assert "Car/3d/moderate/R40@0.70" in final["metrics"]
    assert metrics["monitor"] == key and final["monitor"] == final["metrics"][key]
    # One validation, after the last step: it is the best, and best.ckpt holds its weights.
    assert final["epoch"] == 15 and metrics["best"] == final
    best = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=False)
    assert (best["epoch"], best["global_step"]) == (final["epoch"], final["step"])
    trained = module.state_dict()
    assert best["state_dict"].keys() == trained.keys()
    assert all(torch.equal(best["state_dict"][k], trained[k].cpu()) for k in trained)
