"""CaDDN: the GT-depth teacher's one-hot distribution, the depth loss, the depth head, the
frustum, and (with monokd.models.bev) the whole detector."""

from __future__ import annotations

import math

import pytest
import torch

from monokd.geometry.depth import depth_to_lid_bin
from monokd.models.caddn.depth_head import DepthHead
from monokd.models.caddn.frustum import block_mean_depth, frustum_features, gt_pixel_distribution
from monokd.models.caddn.losses import depth_loss, focal_loss
from monokd.models.contract import SIGNALS
from tests.helpers import caddn_model as _model

torch.set_num_threads(1)
BINS = {"num_bins": 8, "min": 2.0, "max": 46.8}


def test_gt_pixel_distribution_with_zeros_and_nans():
    depth = torch.zeros(1, 1, 4, 8)
    depth[0, 0, :2, :2] = torch.tensor([[10.0, 0.0], [float("nan"), 20.0]])  # block 0: mean of 10 and 20 only
    depth[0, 0, :2, 2:4] = float("nan")                                    # block 1: no valid pixel
    depth[0, 0, :2, 4:6] = 60.0                                            # block 2: beyond the range
    depth[0, 0, :2, 6:8] = torch.tensor([[3.0, -1.0], [float("inf"), 0.0]])  # block 3: only the 3 m pixel
    depth[0, 0, 2:, :2] = 2.0                                              # block 4: the range's first depth
    mean = block_mean_depth(depth, (2, 4))
    assert mean[0, 0, 0].tolist() == [15.0, 0.0, 60.0, 3.0] and mean[0, 0, 1, 0] == 2.0
    dist = gt_pixel_distribution(depth, (2, 4), **{"num_bins": 8, "depth_min": 2.0, "depth_max": 46.8})
    assert dist.shape == (1, 9, 2, 4) and torch.isfinite(dist).all()
    assert torch.equal(dist.sum(dim=1), torch.ones(1, 2, 4))  # one-hot everywhere
    bins = dist.argmax(dim=1)[0]
    expected_15 = int(depth_to_lid_bin(torch.tensor(15.0), 8, 2.0, 46.8))
    # LID edges for 8 bins over [2, 46.8]: d_i = 2 + 1.2444 i (i + 1) / 2 -> 15 m lies in bin 4 (14.4 .. 20.7)
    assert expected_15 == 4 and bins[0].tolist() == [4, 8, 8, 0]
    assert bins[1].tolist() == [0, 8, 8, 8]  # 2 m -> bin 0; empty blocks -> the dropped bin
    with pytest.raises(ValueError, match="whole number"):
        gt_pixel_distribution(depth, (3, 4), 8, 2.0, 46.8)


def test_frustum_drops_the_last_bin():
    features = torch.randn(2, 3, 4, 5)
    dist = torch.softmax(torch.randn(2, 7, 4, 5), dim=1)
    frustum = frustum_features(features, dist)
    assert frustum.shape == (2, 3, 6, 4, 5)
    assert torch.allclose(frustum[1, 2, 5, 3, 4], features[1, 2, 3, 4] * dist[1, 5, 3, 4])
    assert torch.allclose(frustum.sum(dim=2), features * (1 - dist[:, None, -1]), atol=1e-6)


def test_focal_loss_and_foreground_weighting():
    logits = torch.zeros(1, 4, 2, 2)  # uniform: p = 1/4 for every class
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    expected = -0.25 * 0.75 ** 2 * math.log(0.25)
    assert torch.allclose(focal_loss(logits, target, 0.25, 2.0), torch.full((1, 2, 2), expected))
    depth = torch.full((1, 1, 8, 8), 2.5)  # bin 0 of 3 bins over [2, 46.8] everywhere
    targets = [{"boxes_2d": torch.tensor([[0.0, 0.0, 4.0, 4.0]])}]  # covers feature cell (0, 0) at stride 4
    bins = {"num_bins": 3, "min": 2.0, "max": 46.8}
    loss = depth_loss(logits, depth, targets, 4, bins, {"weight": 1.0, "fg_weight": 13.0, "bg_weight": 1.0})
    assert loss.item() == pytest.approx(expected * (13 + 3) / 4)
    perfect = torch.full((1, 4, 2, 2), -20.0)
    perfect[:, 0] = 20.0
    assert depth_loss(perfect, depth, targets, 4, bins).item() < 1e-6


def test_depth_head_shapes_and_batch_of_one():
    head = DepthHead(32, num_bins=8, channels=16, rates=(1, 2, 3)).train()
    logits = head(torch.randn(1, 32, 4, 13), (16, 52))  # a batch of one trains (no BN on the pooled map)
    assert logits.shape == (1, 9, 16, 52)
    logits.sum().backward()
    assert head.aspp.pooling[1].weight.grad is not None


# --- the whole detector (needs monokd.models.bev) -------------------------------------------
LIDAR_TO_RECT = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]])


def _batch(batch_size=2, seed=0):
    """Random images with one car 12 m ahead (input 192 x 64, a KITTI-like camera)."""
    gen = torch.Generator().manual_seed(seed)
    P2 = torch.tensor([[110.0, 0, 96, 0], [0, 110.0, 32, 0], [0, 0, 1, 0]])
    target = {"labels": torch.tensor([0]), "boxes_2d": torch.tensor([[70.0, 22.0, 110.0, 50.0]]),
              "location": torch.tensor([[0.5, 1.65, 12.0]]), "dims": torch.tensor([[1.5, 1.6, 3.9]]),
              "rotation_y": torch.tensor([0.3]), "depth": torch.tensor([11.25])}
    depth = torch.rand(batch_size, 1, 64, 192, generator=gen) * 30
    depth[:, :, :16] = 0.0
    depth[:, :, 20, :7] = float("nan")
    return {"images": torch.randn(batch_size, 3, 64, 192, generator=gen), "P2": P2.expand(batch_size, 3, 4).clone(),
            "lidar_to_rect": LIDAR_TO_RECT.expand(batch_size, 4, 4).clone(), "depth_maps": depth,
            "targets": [dict(target) for _ in range(batch_size)],
            "input_to_original": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(batch_size, 2, 3).clone(),
            "image_sizes": torch.tensor([[192, 64]] * batch_size), "flipped": torch.zeros(batch_size, dtype=torch.bool)}


def test_caddn_lifts_a_second_time_only_when_estimated_bev_depth_is_asked_for():
    model = _model().train()
    lifts = []
    lift = model.lift.forward
    model.lift.forward = lambda *args: lifts.append(1) or lift(*args)
    model(_batch())
    assert len(lifts) == 1
    outputs = model(_batch(), signals={"estimated_bev_depth"})
    assert len(lifts) == 3 and outputs[SIGNALS].estimated_bev_depth.shape == (2, 1, 32, 32)
    assert outputs[SIGNALS].features is None  # not asked for


def test_forward_shapes_spec_and_losses():
    model = _model().train()
    batch = _batch()
    assert SIGNALS not in model(batch)  # nothing asked, no second lift
    outputs = model(batch, signals={"features", "estimated_bev_depth"})
    assert outputs["pred_depth_logits"].shape == (2, 13, 16, 48)
    assert [tuple(f.shape) for f in outputs[SIGNALS].features] == [(2, 16, 32, 32), (2, 32, 16, 16)]
    assert outputs[SIGNALS].estimated_bev_depth.shape == (2, 1, 32, 32)
    spec = model.distill_spec
    assert spec.feature_spaces == ["bev", "bev"] and spec.feature_strides == [1, 2] and spec.query_dim is None
    terms = model.losses(outputs, batch)
    assert set(terms) == {"loss_cls", "loss_box", "loss_dir", "loss_depth", "loss"} and torch.isfinite(terms["loss"])
    bev = model.bev_features(batch)["bev"]  # MonoTAKD's entry points
    assert bev.shape == (2, 16, 32, 32) and model.detect_from_bev(bev, batch)["pred_cls"].shape[:3] == (2, 32, 32)


def test_teacher_lifts_gt_depth_and_needs_depth_maps():
    from monokd.errors import ConfigError

    teacher = _model("gt_pixel").eval()
    batch = _batch()
    lifted = teacher.bev_features(batch)
    assert lifted["depth_logits"] is None
    assert torch.equal(lifted["depth_distribution"].sum(dim=1), torch.ones(2, 16, 48))
    assert "pred_depth_logits" not in teacher(batch) and "loss_depth" not in teacher.losses(teacher(batch), batch)
    del batch["depth_maps"]
    with pytest.raises(ConfigError, match="depth_maps"):
        teacher(batch)
    with pytest.raises(ConfigError, match="depth_input"):
        _model("gt_object")


def test_add_gradients_reach_student_and_adapters_never_teacher():
    from monokd.distill.add.distiller import ADDDistiller, parse_options
    from monokd.errors import ConfigError

    torch.manual_seed(0)
    student, teacher = _model(), _model("gt_pixel")
    options = parse_options({"feature": {"heads": 1, "embed_dim": 8}, "response": {"enabled": False}})
    distiller = ADDDistiller(student, teacher, options).train()
    batch = _batch()
    terms = distiller.losses(distiller(batch), batch)
    assert terms["distill_feat"] > 0
    terms["loss"].backward()
    assert student.backbone.conv1.weight.grad.abs().sum() > 0
    assert student.depth_head.classifier.weight.grad.abs().sum() > 0
    for adapter in distiller.feature_adapters.values():
        assert adapter.q_proj.weight.grad.abs().sum() > 0 and adapter.pos_encoding.embedding.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(n.startswith("teacher") for n in distiller.state_dict())
    estimated = parse_options({"feature": {"heads": 1, "embed_dim": 8, "pos_encoding": "estimated"},
                               "response": {"enabled": False}})
    distiller = ADDDistiller(student, teacher, estimated).train()
    assert torch.isfinite(distiller.losses(distiller(batch), batch)["distill_feat"])
    with pytest.raises(ConfigError, match="no decoder"):
        ADDDistiller(student, teacher, parse_options({"feature": {"heads": 1}, "response": {"enabled": True}}))


def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from monokd.serving.export import export_onnx, onnx_max_abs_diff

    model = _model().eval()
    batch = _batch(1, seed=3)
    assert model.onnx_opset >= 20  # 5-D (volumetric) GridSample: opset 20
    export_onnx(model, tmp_path / "caddn.onnx", batch["images"], batch["P2"], model.onnx_opset, batch["lidar_to_rect"])
    assert onnx_max_abs_diff(model, tmp_path / "caddn.onnx", batch["images"], batch["P2"], batch["lidar_to_rect"]) < 1e-4


@pytest.mark.slow
def test_caddn_overfits_four_synth_frames(synth_root, tmp_path):
    """40 steps of the synth recipe (narrower, smaller input) on 4 frames: the loss falls and
    the validation on the same frames finds cars (non-zero AP)."""
    import json

    import lightning as L
    from torch.utils.data import Subset

    pytest.importorskip("monokd.models.bev.anchor_head")

    from monokd.config import load_config
    from monokd.data.dataset import KittiDataset, collate
    from monokd.training.datamodule import KittiDataModule
    from monokd.training.fit import fit

    cfg = load_config("configs/caddn_synth.yaml", [
        f"data.root={synth_root}", "data.input_size=[256, 80]", "data.augment.enabled=false",
        "model.bev_backbone.layer_nums=[1, 1]", "model.depth_head.channels=16", "model.image_channels=8",
        "model.anchor_head.score_threshold=0.05", "train.batch_size=4", "train.lr=3.0e-3", "train.pct_start=0.3",
        "train.epochs=40", "train.val_every=40", "train.num_workers=0", "train.ckpt_every_steps=0",
        "train.log_every=1", "train.seed=0"])
    frames = Subset(KittiDataset(None, "train", cfg, augment=False), range(4))
    losses = []

    class Trace(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(trainer.callback_metrics["train/loss"]))

    torch.manual_seed(0)
    module = fit(cfg, tmp_path, datamodule=KittiDataModule(cfg, frames, frames, collate), callbacks=[Trace()],
                 progress_bar=False)
    assert len(losses) == 40 and module.nonfinite_total == 0
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses
    metrics = json.loads((tmp_path / "metrics.json").read_text())["final"]["metrics"]
    assert max(metrics[f"Car/{kind}/moderate/R40@0.50"] for kind in ("bev", "3d")) > 0, metrics
