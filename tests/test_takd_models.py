"""MonoTAKD's three real models from the synth recipes: one BEV grid, and one distillation step
on a real SynthKITTI batch (frozen teacher and TA, finite losses, NaN depth)."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("monokd.models.bev.anchor_head", reason="the BEV anchor head (monokd.models.bev) has not landed")

from monokd.config import load_config  # noqa: E402
from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.distill import build_distiller  # noqa: E402
from monokd.models import build_detector  # noqa: E402

SMALL = ["model.backbone.depth=18", "model.image_channels=8", "model.depth_head.channels=8"]


def _cfg(name: str, root) -> dict:
    extra = [] if "lidar" in name else SMALL
    return load_config(f"configs/{name}.yaml", [f"data.root={root}"] + extra)


@pytest.fixture(scope="module")
def models(synth_root):
    torch.manual_seed(0)
    teacher = build_detector(_cfg("takd_lidar_synth", synth_root)).eval()
    ta = build_detector(_cfg("takd_ta_synth", synth_root)).eval()
    cfg = _cfg("takd_synth", synth_root)
    student = build_detector(cfg)
    return cfg, teacher, ta, student


@pytest.fixture(scope="module")
def batch(synth_root, models):
    cfg = models[0]
    dataset = KittiDataset(synth_root, "train", cfg)
    return collate([dataset[0]])


def test_lidar_teacher_ta_and_student_share_one_bev_grid(models, batch):
    _, teacher, ta, student = models
    assert teacher.grid == ta.grid == student.camera.grid
    assert torch.equal(teacher.grid.cell_centres(), student.camera.grid.cell_centres())
    with torch.no_grad():
        shapes = {tuple(m.bev_features(batch)["bev"].shape) for m in (teacher, ta, student.eval())}
    assert shapes == {(1, 32, *teacher.grid.bev_shape())}
    # a LiDAR point lands in the cell whose metric centre holds it (the camera lifting reads the
    # same BEVGrid.voxel_centres, so the same cell is the same place for all three)
    point = torch.tensor([[20.3, -4.1, -0.5]])
    rect = point @ batch["lidar_to_rect"][0, :3, :3].T + batch["lidar_to_rect"][0, :3, 3]
    bev = teacher.pillars.eval()([torch.cat([rect, torch.ones(1, 1)], 1)], batch["lidar_to_rect"][:1])
    j, i = bev[0].abs().sum(0).nonzero()[0].tolist()
    assert torch.allclose(teacher.grid.cell_centres()[j, i], point[0, :2], atol=teacher.grid.voxel_size[0] / 2)


def test_student_without_branches_equals_caddn(synth_root, models, batch):
    cfg = _cfg("takd_synth", synth_root)
    cfg["model"]["takd"] = {"residual": False, "ffm": False}
    torch.manual_seed(0)
    student = build_detector(cfg).eval()
    camera_cfg = copy.deepcopy(cfg)
    camera_cfg["model"] = {k: v for k, v in cfg["model"].items() if k not in ("takd", "camera")}
    camera_cfg["model"]["name"] = "caddn"
    torch.manual_seed(0)
    camera = build_detector(camera_cfg).eval()
    # the same seed gives the same initial weights: the `student` row of benchmarks/takd_seeds.py
    # trains exactly as CaDDN does, so the two studies can share their student-alone runs
    ours_init, theirs_init = student.state_dict(), camera.state_dict()
    assert [k[len("camera."):] for k in ours_init] == list(theirs_init)
    assert all(torch.equal(a, b) for a, b in zip(ours_init.values(), theirs_init.values()))
    camera.load_state_dict({k[len("camera."):]: v for k, v in student.state_dict().items()})
    with torch.no_grad():
        ours, theirs = student(batch), camera(batch)
    for key in ("pred_cls", "pred_boxes", "pred_dir"):
        assert torch.equal(ours[key], theirs[key])


def test_one_distillation_step_on_real_models(models, batch):
    cfg, teacher, ta, student = models
    distiller = build_distiller(cfg, student, teacher, ta=ta).train()
    frozen = [copy.deepcopy(m.state_dict()) for m in (teacher, ta)]
    nan_batch = {**batch, "depth_maps": batch["depth_maps"].clone()}
    nan_batch["depth_maps"][:, :, :10] = float("nan")
    optimizer = torch.optim.AdamW(distiller.parameters(), lr=1e-3)
    terms = distiller.losses(distiller(nan_batch), nan_batch)
    assert {"distill_imd", "distill_cmrd", "distill_logit_cls", "distill_logit_box", "loss_depth"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values()), terms
    terms["loss"].backward()
    optimizer.step()
    for model, before in zip((teacher, ta), frozen):
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("dataset", ["kitti", "synth"])
def test_recipes_share_grid_channels_and_anchors(dataset):
    cfgs = {name: load_config(f"configs/{name}_{dataset}.yaml") for name in ("takd_lidar", "takd_ta", "takd")}
    for key in ("grid", "bev_channels", "anchor_head"):
        values = [cfg["model"].get(key) for cfg in cfgs.values()]
        assert values[0] is not None and all(v == values[0] for v in values), (key, values)
    assert cfgs["takd_ta"]["model"]["depth_input"] == "gt_pixel" and not cfgs["takd"]["model"].get("depth_input")
    assert cfgs["takd"]["distill"]["teacher"] == {"ckpt": f"runs/takd_lidar_{dataset}/last.ckpt"}
    # the TA: built from its checkpoint's config (synth), or the student's own branch started from it (KITTI)
    ta_run = f"runs/takd_ta_{dataset}/last.ckpt"
    assert (cfgs["takd"]["distill"].get("ta") == {"ckpt": ta_run} if dataset == "synth"
            else cfgs["takd"]["model"]["init"]["ckpt"] == ta_run)
    assert cfgs["takd"]["data"]["load_points"] and cfgs["takd"]["data"]["depth_maps"]


def test_student_exports_to_onnx_with_its_residual_branch_and_ffm(models, batch, tmp_path):
    """The deployed student (camera + residual branch with the deformable SAM + FFM) in ONNX."""
    pytest.importorskip("onnxruntime")
    from monokd.serving.export import export_onnx, onnx_max_abs_diff

    student = models[3].eval()
    assert student.ffm is not None and student.onnx_opset >= 20
    path = tmp_path / "takd.onnx"
    export_onnx(student, path, batch["images"], batch["P2"], student.onnx_opset, batch["lidar_to_rect"])
    assert onnx_max_abs_diff(student, path, batch["images"], batch["P2"], batch["lidar_to_rect"]) < 1e-4
