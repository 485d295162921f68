"""PatchNet's switches between the official code (xinzhuma/patchnet) and monokd's own choices,
the official checkpoints of PatchNet and MonoDETR, MonoDETR's geometric-depth normaliser and the
F-PointNet 2-D detections converter (docs/patchnet.md, docs/monodetr.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from monokd.errors import CheckpointMismatchError, KittiFormatError
from monokd.models.contract import SIGNALS
from monokd.models.patchnet import patches as P
from monokd.models.patchnet.heads import BoxBackbone, bn_momentum, masked_max_pool
from monokd.models.patchnet.losses import corner_loss
from monokd.models.patchnet.model import PatchNet

DATA = Path(__file__).resolve().parent / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OFFICIAL_SWITCHES = {"backbone": {"strides": [1, 1, 1, 1]}, "norm": "batch", "init": "xavier", "center_conv_bias": True,
                     "onehot_classes": ["Car", "Pedestrian", "Cyclist"], "crop": "pixel_span", "depth_shift": 0.2,
                     "bn_momentum": {"initial": 0.5, "gamma": 0.1, "milestones": [10, 20], "min": 0.01},
                     "decode": {"score": "detection_2d"}, "corner_loss": {"flip_min": "batch_mean"}}


def _official_state(name: str) -> dict[str, torch.Tensor]:
    """Zero tensors with the official key names and shapes, recorded from the official source."""
    recorded = json.loads((DATA / f"official_{name}_keys.json").read_text())
    return {k: torch.zeros(shape) for k, shape in recorded["keys"].items()}


# --- 11: the box backbone at full resolution, pooled under the pixel mask -----------------------

def test_official_backbone_keeps_32x32_and_pools_under_the_pixel_mask():
    backbone = BoxBackbone([8, 8, 8, 16], [1, 1, 1, 1], 4, strides=[1, 1, 1, 1])
    outs = backbone(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 32)] * 4 and backbone.strides == [1, 1, 1, 1]
    # one masked pixel (5, 6); a larger value at (4, 4), outside the mask but inside its 4x4 cell
    features = torch.zeros(1, 1, 32, 32)
    features[0, 0, 5, 6], features[0, 0, 4, 4] = 1.0, 7.0
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 5, 6] = True
    assert masked_max_pool(features, mask).item() == 1.0  # the pixel mask: only (5, 6)
    cells = F.max_pool2d(features, 8)  # monokd's 4x4 cells of 8x8 pixels: the cell holding (5, 6) holds (4, 4)
    assert masked_max_pool(cells, mask).item() == 7.0


def test_patchnet_pools_its_last_map_under_the_object_mask():
    torch.manual_seed(0)
    model = PatchNet({**OFFICIAL_SWITCHES, "backbone": {"widths": [8, 8, 8, 16], "blocks": [1, 1, 1, 1],
                                                        "se_reduction": 4, "strides": [1, 1, 1, 1]},
                      "center_channels": [8, 8, 16], "center_hidden": [16, 8], "head_hidden": [16, 8]}, ["Car"]).eval()
    batch = _patch_batch()
    captured = {}
    model.heads.register_forward_hook(lambda m, args, out: captured.update(pooled=args[0]))
    with torch.no_grad():
        out = model(batch, signals=("features",))
    last = out[SIGNALS].features[-1]
    assert last.shape[-2:] == (32, 32)
    expected = last.masked_fill(~out["mask"][:, None], float("-inf")).flatten(2).max(-1).values
    assert torch.equal(captured["pooled"][:, :16], expected)
    assert torch.equal(captured["pooled"][:, 16:], torch.tensor([[1.0, 0.0, 0.0]] * 2))  # Car at 0 of 3


# --- 14: the crop rule ---------------------------------------------------------------------------

def test_pixel_span_crop_on_a_hand_made_map():
    """A map holding u + 100 v (bilinear reproduces it exactly): the official crop spans the whole
    pixels int(x1)..int(x2)-1, int(y1)..int(y2)-1; the continuous one spans x1..x2, y1..y2."""
    v, u = torch.meshgrid(torch.arange(20.0), torch.arange(30.0), indexing="ij")
    maps = (u + 100 * v)[None, None]
    box = torch.tensor([[2.7, 1.2, 9.9, 5.5]])
    t = torch.linspace(0, 1, 32)
    span = P.crop_patches(maps, [box], 32, "pixel_span")[0, 0]
    expected = (2 + 6 * t)[None, :] + 100 * (1 + 3 * t)[:, None]
    assert torch.allclose(span, expected, atol=1e-4)
    continuous = P.crop_patches(maps, [box], 32, "continuous")[0, 0]
    assert torch.allclose(continuous, (2.7 + 7.2 * t)[None, :] + 100 * (1.2 + 4.3 * t)[:, None], atol=1e-4)
    # the official operation itself: slice the whole pixels, F.interpolate(bilinear, align_corners=True)
    torch.manual_seed(0)
    noise = torch.randn(1, 3, 20, 30)
    official = F.interpolate(noise[:, :, 1:5, 2:9], size=(32, 32), mode="bilinear", align_corners=True)
    assert torch.allclose(P.crop_patches(noise, [box], 32, "pixel_span"), official, atol=1e-5)
    assert P.pixel_span(torch.tensor([[3.2, 4.0, 3.9, 4.5]])).tolist() == [[3.0, 4.0, 3.0, 4.0]]  # one pixel kept


# --- 12: the score -------------------------------------------------------------------------------

def _patch_batch(n: int = 2) -> dict:
    """A depth map of a near box in front of a far wall, ``n`` 2-D boxes on it, one GT car each."""
    P2 = torch.tensor([[[700.0, 0.0, 60.0, 0.0], [0.0, 700.0, 40.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    depth = torch.full((1, 1, 80, 120), 30.0)
    depth[..., 30:50, 50:75] = 12.0
    boxes = torch.tensor([[48.0, 28.0, 77.0, 52.0], [49.5, 29.5, 76.2, 50.8]])[:n]
    targets = {"location": torch.tensor([[0.2, 1.0, 12.8]]), "dims": torch.tensor([[1.5, 1.6, 3.9]]),
               "rotation_y": torch.tensor([0.3]), "labels": torch.tensor([0])}
    return {"P2": P2, "depth_pred": depth, "frame_ids": ["0"], "flipped": torch.tensor([False]),
            "input_to_original": torch.eye(3)[:2][None], "image_sizes": torch.tensor([[120, 80]]),
            "targets": [targets],
            "proposals": [{"boxes": boxes, "labels": torch.zeros(n, dtype=torch.long),
                           "scores": torch.tensor([0.9, 0.6])[:n], "target_index": torch.zeros(n, dtype=torch.long)}]}


@pytest.mark.parametrize("score", ["detection_2d", "combined"])
def test_score_is_the_2d_detections_in_the_official_decoding(score):
    torch.manual_seed(0)
    small = {"backbone": {"widths": [8, 8, 8, 16], "blocks": [1, 1, 1, 1], "se_reduction": 4},
             "center_channels": [8, 8, 16], "center_hidden": [16, 8], "head_hidden": [16, 8],
             "decode": {"score": score}}
    model = PatchNet(small, ["Car"]).eval()
    batch = _patch_batch()
    with torch.no_grad():
        detections = model.decode(model(batch), batch)[0]
    scores = [d.score for d in detections]
    if score == "detection_2d":
        assert scores == pytest.approx([0.9, 0.6], abs=1e-7)
    else:
        assert all(s < s2 for s, s2 in zip(scores, [0.9, 0.6])) and all(s > 0 for s in scores)


# --- 16: normalisation, init, momentum schedule, depth shift --------------------------------------

def test_official_norm_init_and_momentum_schedule():
    model = PatchNet(OFFICIAL_SWITCHES, ["Car"])
    norms = [m for m in model.heads.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 6 and not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) + 1e-6
            assert m.bias is None or not m.bias.any()
    assert [bn_momentum(e, OFFICIAL_SWITCHES["bn_momentum"]) for e in (0, 9, 10, 19, 20, 99)] == pytest.approx(
        [0.5, 0.5, 0.05, 0.05, 0.01, 0.01])
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {0.5}
    model.set_epoch(12)
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {0.05}
    single = _patch_batch(1)
    model.train().losses(model(single), single)["loss"].backward()  # BatchNorm1d with one box trains


def test_depth_shift_moves_patch_and_target_together():
    """The official shift: within +-0.2 d; the mean-removed patch (hence every feature) and the
    centre loss do not change, the stage-1 centre's z moves by the shift."""
    small = {"backbone": {"widths": [8, 8, 8, 16], "blocks": [1, 1, 1, 1], "se_reduction": 4},
             "center_channels": [8, 8, 16], "center_hidden": [16, 8], "head_hidden": [16, 8], "dropout": 0.0}
    torch.manual_seed(0)
    plain = PatchNet(small, ["Car"]).train()
    shifted = PatchNet({**small, "depth_shift": 0.2}, ["Car"]).train()
    shifted.load_state_dict(plain.state_dict())
    batch = _patch_batch()
    ref = plain(batch, signals=("features",))
    torch.manual_seed(3)
    out = shifted(batch, signals=("features",))
    shift = out["depth_shift"]
    distance = math.hypot(*P.rotate_about_y(torch.tensor([[0.2, 1.0 - 0.75, 12.8]]), out["frustum_angle"][:1])[0, ::2])
    assert shift.abs().max() > 0 and (shift.abs() <= 0.2 * distance + 1e-5).all()
    assert torch.allclose(out[SIGNALS].features[-1], ref[SIGNALS].features[-1], atol=1e-4)
    assert torch.allclose(out["stage1_center"][:, 2] - ref["stage1_center"][:, 2], shift, atol=1e-4)
    assert torch.allclose(shifted.losses(out, batch)["center"], plain.losses(ref, batch)["center"], atol=1e-4)


# --- 17: the corner loss -------------------------------------------------------------------------

def _rectangle_corners(centre, h, w, l, heading):
    """Independent corners: x along the heading (length), z across (width), y from +h/2 down to -h/2."""
    c, s = math.cos(heading), math.sin(heading)
    out = []
    for dy in (h / 2, -h / 2):
        for dx, dz in ((l / 2, w / 2), (l / 2, -w / 2), (-l / 2, -w / 2), (-l / 2, w / 2)):
            out.append([centre[0] + c * dx + s * dz, centre[1] + dy, centre[2] - s * dx + c * dz])
    return np.array(out)


def test_corner_loss_switches_on_hand_made_boxes():
    h, w, l = 1.5, 1.6, 3.9
    centre = torch.zeros(2, 3)
    dims = torch.tensor([[h, w, l]] * 2)
    gt_heading = torch.tensor([0.0, 0.0])
    heading = torch.tensor([0.4, math.pi - 0.1])  # box 0 near the GT, box 1 near the flipped GT
    per = []
    for i in range(2):
        pred = _rectangle_corners([0, 0, 0], h, w, l, float(heading[i]))
        per.append((np.abs(pred - _rectangle_corners([0, 0, 0], h, w, l, 0.0)).mean(),
                    np.abs(pred - _rectangle_corners([0, 0, 0], h, w, l, math.pi)).mean()))
    per_box = np.mean([min(a, b) for a, b in per])
    batch_mean = min(np.mean([a for a, _ in per]), np.mean([b for _, b in per]))
    assert corner_loss(centre, dims, heading, centre, dims, gt_heading).item() == pytest.approx(per_box, rel=1e-5)
    assert corner_loss(centre, dims, heading, centre, dims, gt_heading,
                       flip_min="batch_mean").item() == pytest.approx(batch_mean, rel=1e-5)
    assert batch_mean > per_box + 0.1
    # the official bug: the box is built h long, w wide and l tall; a heading error costs less
    bug = corner_loss(centre[:1], dims[:1], heading[:1], centre[:1], dims[:1], gt_heading[:1], "official_bug")
    swapped = np.abs(_rectangle_corners([0, 0, 0], l, w, h, 0.4) - _rectangle_corners([0, 0, 0], l, w, h, 0.0)).mean()
    assert bug.item() == pytest.approx(swapped, rel=1e-5) and bug.item() < 0.6 * per[0][0]


# --- strict loads of official checkpoints -------------------------------------------------------

def _kitti(name: str) -> dict:
    from monokd.config import load_config

    return load_config(CONFIGS / f"{name}.yaml")


def test_official_patchnet_checkpoint_converts_and_loads_strictly(tmp_path):
    from monokd.cli import main
    from monokd.training.checkpoint import load_detector

    state = _official_state("patchnet")
    assert len(state) == 237 and sum(v.numel() for k, v in state.items() if "num_batches" not in k and
                                     "running" not in k) == 12_646_252
    torch.save({"epoch": 100, "model_state": state, "optimizer_state": None}, tmp_path / "official.pth")
    out = tmp_path / "patchnet.ckpt"
    assert main(["convert", "--ckpt", str(tmp_path / "official.pth"),
                 "--config", str(CONFIGS / "patchnet_kitti.yaml"), "--out", str(out)]) == 0
    model, cfg = load_detector(out)
    assert cfg["model"]["norm"] == "batch" and model.box_backbone.strides == [1, 1, 1, 1]
    assert not model.heads.heads[2][0].weight.any()


def test_official_patchnet_missing_key_is_refused_in_one_line(tmp_path, capsys):
    from monokd.cli import main
    from monokd.models import build_detector

    state = _official_state("patchnet")
    del state["box_est_head2.4.weight"]
    state["box_est_head9.0.weight"] = torch.zeros(1)
    model = build_detector(_kitti("patchnet_kitti"))
    with pytest.raises(CheckpointMismatchError, match=r"1 missing keys \(heads\.heads\.1\.4\.weight\).*"
                                                      r"1 unexpected keys \(heads\.heads\.8\.0\.weight\)"):
        model.official_state_dict({"model_state": state}, "official.pth")
    with pytest.raises(CheckpointMismatchError, match="official.pth: not an official PatchNet checkpoint"):
        model.official_state_dict(state, "official.pth")
    torch.save({"model_state": state}, tmp_path / "official.pth")
    out = tmp_path / "patchnet.ckpt"
    assert main(["convert", "--ckpt", str(tmp_path / "official.pth"),
                 "--config", str(CONFIGS / "patchnet_kitti.yaml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing keys (heads.heads.1.4.weight)" in err and not out.exists()


def test_official_monodetr_state_loads_strictly_and_twins_are_dropped():
    from monokd.geometry.depth import lid_bin_centers
    from monokd.models import build_detector

    state = _official_state("monodetr")
    assert len(state) == 543 and state["class_embed.0.weight"].shape == (3, 256)
    state["depth_predictor.depth_bin_values"] = lid_bin_centers(80, 1e-3, 60.0)
    with torch.device("meta"):
        model = build_detector(_kitti("monodetr_kitti"))
    prior = torch.tensor([1.52563191462, 1.62856739989, 3.88311640418])
    model.heads.dims_prior = prior  # the meta model's buffer holds no values
    mapped = model.official_state_dict({"model_state": state}, "official")
    model.load_state_dict(mapped, strict=True, assign=True)
    assert len(mapped) == 512
    assert torch.allclose(mapped["heads.dim_embed.2.layers.1.bias"], -prior)  # the prior folded into the bias
    broken = dict(state)
    broken["depthaware_transformer.decoder.bbox_embed.1.layers.0.bias"] = torch.ones(256)  # not the twin
    del broken["query_embed.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"1 missing keys \(query_embed\.weight\); 1 unexpected keys "
                                                      r"\(depthaware_transformer\.decoder\.bbox_embed\.1\.layers\.0\.bias\)"):
        model.official_state_dict({"model_state": broken}, "official")


# --- MonoDETR's geometric depth ------------------------------------------------------------------

def test_geometric_depth_original_uses_the_original_focal_and_height():
    from monokd.models.monodetr.heads import fuse_depth, geometric_scale

    batch = {"P2": torch.tensor([[[743.6, 0.0, 620.0, 0.0], [0.0, 743.6, 190.0, 0.0], [0.0, 0.0, 1.0, 0.0]]]),
             "P2_original": torch.tensor([[[721.5, 0.0, 609.5, 0.0], [0.0, 721.5, 172.8, 0.0], [0.0, 0.0, 1.0, 0.0]]]),
             "image_sizes": torch.tensor([[1242, 375]])}
    boxes = torch.tensor([[[0.5, 0.5, 0.05, 0.05, 0.05, 0.05]]])  # t + b = 0.1 of the height
    depth_out = torch.tensor([[[0.0, 0.0]]])  # direct depth 1 / 0.5 - 1 = 1 m
    depth_map = torch.full((1, 4, 4), 4.0)
    for mode, expected_geo in (("input", 1.5 * 743.6 / (0.1 * 384)), ("original", 1.5 * 721.5 / (0.1 * 375))):
        focal, height = geometric_scale(batch, mode, 384, torch.float32)
        fused = fuse_depth(depth_out, torch.tensor([[1.5]]), boxes, depth_map, focal, height)[0, 0, 0]
        assert fused.item() == pytest.approx((1.0 + expected_geo + 4.0) / 3, rel=1e-6)


# --- 13: F-PointNet's 2-D detections ---------------------------------------------------------------

def test_fpointnet_detections_become_result_files(tmp_path):
    from monokd.cli import main
    from monokd.data.proposals import from_results
    from monokd.evaluation.results import read_results
    from monokd.outputs import MARK

    source = tmp_path / "rgb_detection_val.txt"
    source.write_text("dataset/KITTI/object/training/image_2/000001.png 2 0.98 100.5 150.25 300.0 220.75\n"
                      "dataset/KITTI/object/training/image_2/000001.png 1 0.40 10 20 30 80\n\n"
                      "dataset/KITTI/object/training/image_2/000003.png 2 0.75 500 170 560 190\n")
    out = tmp_path / "fpointnet_val"
    assert main(["fpointnet-boxes", "--input", str(source), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARK, "000001.txt", "000003.txt"]
    first = read_results(out / "000001.txt")
    assert [(o.type, o.score) for o in first] == [("Car", 0.98), ("Pedestrian", 0.4)]
    assert first[0].box2d.tolist() == [100.5, 150.25, 300.0, 220.75]
    proposals = from_results(out / "000001.txt", ["Car"], np.eye(3), 25.0, 0.0)
    assert proposals["boxes"].tolist() == [[100.5, 150.25, 300.0, 220.75]] and proposals["scores"].tolist() == [pytest.approx(0.98)]
    assert from_results(out / "000003.txt", ["Car"], np.eye(3), 25.0, 0.0)["boxes"].shape == (0, 4)  # 20 px < 25


@pytest.mark.parametrize("line, where", [("a.png 2 0.5 1 2 x 4", "field 'x2'"), ("a.png 7 0.5 1 2 3 4", "field 'class id'"),
                                         ("a.png 2 0.5 1 2 3", "expected 7 fields")])
def test_fpointnet_malformed_line_names_file_and_line(tmp_path, capsys, line, where):
    from monokd.cli import main
    from monokd.data.proposals import read_fpointnet_detections

    source = tmp_path / "rgb_detection_val.txt"
    source.write_text("a.png 2 0.9 1 2 30 40\n" + line + "\n")
    with pytest.raises(KittiFormatError, match=f"{source}:2: .*{where}" if "field" in where else f"{source}:2: {where}"):
        read_fpointnet_detections(source)
    assert main(["fpointnet-boxes", "--input", str(source), "--out", str(tmp_path / "out")]) == 1
    assert f"{source}:2:" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- the recipes --------------------------------------------------------------------------------

def test_kitti_recipes_are_official_and_synth_recipes_monokd():
    for name in ("patchnet_kitti", "patchnet_teacher_kitti", "add_patchnet_kitti"):
        cfg = _kitti(name)
        model = cfg["model"]
        assert {k: model[k] for k in ("crop", "norm", "init", "center_conv_bias", "depth_shift")} == {
            "crop": "pixel_span", "norm": "batch", "init": "xavier", "center_conv_bias": True, "depth_shift": 0.2}
        assert model["backbone"]["strides"] == [1, 1, 1, 1] and model["decode"]["score"] == "detection_2d"
        assert model["corner_loss"] == {"size_order": "hwl", "flip_min": "batch_mean"}
        assert cfg["data"]["filter"]["drop_unknown"] is True
    for name in ("patchnet_synth", "patchnet_teacher_synth", "add_patchnet_synth"):
        model = _kitti(name)["model"]
        assert model["crop"] == "continuous" and model["norm"] == "layer" and model["bn_momentum"] is None
        assert model["backbone"]["strides"] == [1, 2, 2, 2] and model["corner_loss"]["flip_min"] == "per_box"


def test_training_module_applies_the_momentum_schedule_each_epoch(monkeypatch):
    from monokd.training.module import DetectorModule

    cfg = _kitti("patchnet_kitti")
    module = DetectorModule(cfg)
    monkeypatch.setattr(DetectorModule, "current_epoch", property(lambda self: 25))
    module.on_train_epoch_start()
    assert {m.momentum for m in module.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {0.01}
