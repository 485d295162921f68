"""The monocular depth front-end: SILog, metrics, overfitting, predict (resumable) and the
``data.depth_pred_dir`` reader."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from monokd.config import load_config
from monokd.data.kitti import read_depth, write_depth
from monokd.models.depth.losses import silog_loss, valid_depth
from monokd.models.depth.metrics import average, image_metrics
from monokd.models.depth.model import DepthNet

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_silog_zero_for_exact_and_scale_term():
    gt = torch.tensor([[[[2.0, 4.0], [8.0, 0.0]]]])
    valid = valid_depth(gt, 1.0, 80.0)
    assert valid.sum() == 3  # 0 = no depth
    pred = gt.clamp(min=1.0)
    assert float(silog_loss(pred, gt, valid)) < 1e-4
    # a global scale s: g = log s everywhere -> L = alpha * sqrt((1 - lambda)) * |log s|
    loss = silog_loss(2 * pred, gt, valid, lam=0.85, alpha=10.0)
    assert float(loss) == pytest.approx(10 * math.sqrt(0.15) * math.log(2), rel=1e-4)


def test_metrics_hand_computed():
    gt = torch.tensor([[[[10.0, 20.0, 0.0]]]])
    pred = torch.tensor([[[[12.0, 20.0, 5.0]]]])
    m = average(image_metrics(pred, gt, 1.0, 80.0))
    assert m["abs_rel"] == pytest.approx((0.2 + 0.0) / 2)
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 2))
    assert m["delta1"] == pytest.approx(1.0)  # 12/10 = 1.2 < 1.25


def test_output_bounded_and_shaped():
    cfg = {"backbone": {"depth": 18}, "decoder_channels": [16, 16, 8, 8], "min_depth": 2.0, "max_depth": 50.0}
    with torch.no_grad():
        depth = DepthNet(cfg)({"images": torch.randn(2, 3, 64, 96)})["depth"]
    assert depth.shape == (2, 1, 64, 96)
    assert float(depth.min()) >= 2.0 - 1e-4 and float(depth.max()) <= 50.0 + 1e-3


def _tiny_cfg(root):
    return load_config(REPO / "configs" / "depth_synth.yaml", [
        f"data.root={root}", "data.train_split=train", "data.val_split=train", "data.input_size=[208,64]",
        "data.augment.enabled=false", "model.decoder_channels=[32,16,16,16]", "train.batch_size=2",
        "train.epochs=12", "train.val_every=12", "train.lr_milestones=[]", "train.lr=1.0e-3"])


@pytest.mark.slow
def test_overfits_four_frames_then_predicts_resumably(synth_root, tmp_path):
    """Trained through the engine (monokd.training.fit): AbsRel < 0.3 on the 4 frames it
    trained on (an untrained network's constant ~9 m output scores about 0.6 there); then
    predict reads the engine's checkpoint, writes uint16 PNGs (depth_2 format, original size),
    skips frames already written, and reports the overlap."""
    from monokd.models.depth.model import training_config
    from monokd.serving import depth_maps as D
    from monokd.training.fit import fit

    cfg = training_config(_tiny_cfg(synth_root))
    module = fit(cfg, tmp_path / "run", progress_bar=False)
    metrics = module.val_metrics
    assert metrics["abs_rel"] < 0.3 and metrics["images"] == 4
    logs = []

    out = tmp_path / "pred"
    meta = D.predict(tmp_path / "run" / "last.ckpt", ["train", "val"], out, log=logs.append)
    assert meta["splits"]["train"]["trained_on"] == 4 and meta["splits"]["val"]["trained_on"] == 0
    frames = sorted(p.stem for p in out.glob("*.png"))
    assert len(frames) == 8
    gt = read_depth(synth_root / "training" / "depth_2" / f"{frames[0]}.png")
    pred = read_depth(out / f"{frames[0]}.png")
    assert pred.shape == gt.shape and pred.max() <= 80.0 + 1 / 256
    # resumable: a frame already written is not predicted again
    marker = np.full_like(gt, 7.0)
    write_depth(out / f"{frames[0]}.png", marker)
    logs.clear()
    D.predict(tmp_path / "run" / "last.ckpt", ["train"], out, log=logs.append)
    assert np.allclose(read_depth(out / f"{frames[0]}.png"), 7.0)
    assert any("4 already written" in line for line in logs)
    # the folder of maps scores like the in-memory validation (same frames, uint16 rounding)
    write_depth(out / f"{frames[0]}.png", pred)
    scored = D.evaluate_dir(out, synth_root, "train")
    assert scored["abs_rel"] == pytest.approx(metrics["abs_rel"], abs=0.02)


def _tiny_net_cfg(root):
    return load_config(REPO / "configs" / "depth_synth.yaml", [
        f"data.root={root}", "data.input_size=[96,32]", "model.decoder_channels=[8,8,8,8]"])


def test_validation_is_the_depth_metrics_and_the_monitor_reads_them(synth_root):
    """The engine validates the depth front-end by its own scores: per frame AbsRel / RMSE /
    delta1 (equal to image_metrics of its prediction), averaged over frames; the recipe's
    monitor is one of them."""
    from monokd.models.depth.model import build_depth_net, training_config
    from monokd.data.dataset import build_dataset
    from monokd.data.dataset import collate
    from monokd.training import validation as V

    cfg = training_config(_tiny_net_cfg(synth_root))
    torch.manual_seed(0)
    model = build_depth_net(cfg).eval()
    batch = collate([build_dataset(cfg, "val", train=False)[i] for i in range(2)])
    assert V.scores_itself(model)
    records = V.validation_records(model, batch)
    with torch.no_grad():
        pred = model(batch)["depth"]
    expected = image_metrics(pred, batch["depth_maps"], model.min_depth, model.max_depth)
    assert list(records) == batch["frame_ids"] and list(records.values()) == expected
    flat = model.summarise_scores(records)
    assert flat["abs_rel"] == pytest.approx((expected[0]["abs_rel"] + expected[1]["abs_rel"]) / 2)
    assert flat["images"] == 2 and V.monitor_value(flat, cfg["train"]["monitor"]) == flat["delta1"]


def test_a_checkpoint_of_the_former_loop_still_predicts_and_is_refused_for_resume(synth_root, tmp_path, capsys):
    from monokd.cli import main
    from monokd.models.depth.model import build_depth_net
    from monokd.serving.depth_maps import load_depth_net

    cfg = _tiny_net_cfg(synth_root)
    model = build_depth_net(cfg)
    old = tmp_path / "run" / "last.ckpt"
    old.parent.mkdir()
    torch.save({"cfg": cfg, "state_dict": model.state_dict(), "optimizer": {}, "epoch": 1, "history": [],
                "train_split": "train", "train_frames": ["000000", "000001"]}, old)
    loaded, loaded_cfg, trained = load_depth_net(old)
    assert loaded_cfg == cfg and trained == {"split": "train", "ids": ["000000", "000001"]}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert main(["depth", "train", "--config", str(REPO / "configs" / "depth_synth.yaml"), "--out",
                 str(old.parent), "--resume", "--set", f"data.root={synth_root}"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "former `monokd depth train` loop" in lines[0] and str(old) in lines[0]


def test_depth_pred_dir_read_like_depth_2(synth_root, tmp_path):
    from monokd.data.dataset import KittiDataset, collate

    ids = (synth_root / "ImageSets" / "val.txt").read_text().split()
    for frame in ids:
        depth = read_depth(synth_root / "training" / "depth_2" / f"{frame}.png")
        write_depth(tmp_path / f"{frame}.png", depth * 0.5)
    cfg = {"data": {"input_size": [416, 128], "depth_maps": "depth_2", "depth_pred_dir": str(tmp_path)}}
    batch = collate([KittiDataset(synth_root, "val", cfg, augment=False)[0]])
    gt, est = batch["depth_maps"], batch["depth_pred"]
    assert est.shape == gt.shape == (1, 1, 128, 416)
    assert torch.allclose(est, gt * 0.5, atol=1 / 256)
    (tmp_path / f"{ids[1]}.png").unlink()
    from monokd.errors import KittiFormatError

    with pytest.raises(KittiFormatError, match=f"{ids[1]}.png"):
        KittiDataset(synth_root, "val", cfg, augment=False)[1]


def test_depth_evaluate_cli(synth_root, tmp_path, capsys):
    """`monokd depth evaluate`: depth_2 against itself is exact; a missing map names its file."""
    from monokd.cli import main

    gt_dir = synth_root / "training" / "depth_2"
    out = tmp_path / "m.json"
    assert main(["depth", "evaluate", "--pred-dir", str(gt_dir), "--root", str(synth_root), "--split", "val",
                 "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["abs_rel"] == 0.0 and metrics["rmse"] == 0.0 and metrics["delta1"] == 1.0 and metrics["images"] == 4
    assert main(["depth", "evaluate", "--pred-dir", str(tmp_path), "--root", str(synth_root), "--split", "val"]) == 1
    assert str(tmp_path) in capsys.readouterr().err
