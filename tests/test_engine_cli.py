"""``monokd train`` / ``evaluate --config --ckpt`` / ``predict`` end to end on 4 real KITTI
sample frames (2 train, 2 val) with a tiny MonoDETR."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from monokd.cli import main
from monokd.config import load_config
from tests.helpers import TINY_MONODETR as TINY, read_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kitti_root(kitti_samples, tmp_path_factory) -> Path:
    """The samples' training/ linked under a root with a 2-frame train and val split."""
    root = tmp_path_factory.mktemp("kitti")
    os.symlink(kitti_samples / "training", root / "training")
    frames = sorted(p.stem for p in (kitti_samples / "training" / "label_2").glob("*.txt"))[:4]
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("\n".join(frames[:2]) + "\n")
    (root / "ImageSets" / "val.txt").write_text("\n".join(frames[2:]) + "\n")
    return root


def tiny_args(root: Path, epochs: int) -> list[str]:
    items = TINY + [f"data.root={root}", f"train.epochs={epochs}", "train.batch_size=2", "train.val_every=1",
                    "eval.batch_size=2"]
    return ["--config", "configs/monodetr_synth.yaml"] + [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def trained(kitti_root, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *tiny_args(kitti_root, 1), "--out", str(out)]) == 0
    return out


def test_train_writes_config_checkpoints_logs_and_metrics(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.yaml", "last.ckpt", "metrics.json", "tensorboard"} <= names
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["monitor"] == load_config("configs/monodetr_synth.yaml")["train"]["monitor"]
    assert [v["epoch"] for v in metrics["validations"]] == [0]
    assert "Car/3d/moderate/R40@0.70" in metrics["final"]["metrics"]
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_auto_continues_the_run(trained, kitti_root):
    assert main(["train", *tiny_args(kitti_root, 2), "--out", str(trained), "--resume", "auto"]) == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert [v["epoch"] for v in metrics["validations"]] == [0, 1]  # epoch 0 was not trained again


def test_evaluate_checkpoint_writes_results_report_and_json(trained, kitti_root, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--config", str(trained / "config.yaml"), "--ckpt", str(trained / "last.ckpt"),
                 "--split", "val", "--out", str(out)]) == 0
    frames = (kitti_root / "ImageSets" / "val.txt").read_text().split()
    assert sorted(p.stem for p in (out / "data").glob("*.txt")) == frames
    assert "Car/3d/moderate/R40@0.70" in json.loads((out / "metrics.json").read_text())["flat"]
    assert "Car AP_R40@0.70" in (out / "report.txt").read_text()


def test_evaluate_with_another_model_names_the_mismatched_keys(trained, tmp_path, capsys):
    code = main(["evaluate", "--config", str(trained / "config.yaml"), "--set", "model.hidden_dim=64",
                 "--ckpt", str(trained / "last.ckpt"), "--out", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "shape mismatches" in err and "level_embed (3, 32) vs model (3, 64)" in err


def test_predict_on_images_with_one_calib_file(trained, kitti_root, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    frames = (kitti_root / "ImageSets" / "val.txt").read_text().split()
    for f in frames:
        os.symlink(kitti_root / "training" / "image_2" / f"{f}.png", images / f"{f}.png")
    calib = kitti_root / "training" / "calib" / f"{frames[0]}.txt"
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(trained / "last.ckpt"), "--images", str(images),
                 "--calib", str(calib), "--out", str(out)]) == 0  # the config comes from the checkpoint
    assert sorted(p.stem for p in (out / "data").glob("*.txt")) == frames
    assert sorted(p.stem for p in (out / "pictures").glob("*.png")) == frames
    for frame in frames:  # each picture shows its frame (boxes drawn over it), a legend row, the BEV beside
        picture = read_png(out / "pictures" / f"{frame}.png")
        image = read_png(images / f"{frame}.png")
        height, width = image.shape[:2]
        assert picture.shape[0] == height + 40 and picture.shape[1] > width
        assert (picture[:height, :width] == image).all(axis=-1).mean() > 0.5
    # per-image calib directory, missing file named
    assert main(["predict", "--ckpt", str(trained / "last.ckpt"), "--images", str(images),
                 "--calib", str(tmp_path), "--out", str(out), "--no-pictures"]) == 1
