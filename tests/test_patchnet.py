"""PatchNet: patches (back-projection with a real KITTI calib, a plane at known depth),
box coding, the corner loss, 2-D proposals (jitter, result files), the paired teacher /
student batch, and a 4-frame overfit scored by the KITTI evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monokd.data.kitti import read_calib, read_depth, write_depth
from monokd.errors import KittiFormatError
from monokd.geometry.calib import project
from monokd.models.contract import SIGNALS
from monokd.models.patchnet import patches as P
from monokd.models.patchnet.coding import (angle_to_class, class_to_angle, class_to_size, mean_sizes,
                                           size_to_class)
from monokd.models.patchnet.losses import corner_loss
from tests.helpers import PATCHNET_SMALL as SMALL

def _hand_xyz(P2: np.ndarray, u: float, v: float, z: float) -> np.ndarray:
    """Solve P2 [X, Y, z, 1] = w [u, v, 1] for X, Y by hand (two linear equations)."""
    w = P2[2, 2] * z + P2[2, 3]
    a = np.array([[P2[0, 0], P2[0, 1]], [P2[1, 0], P2[1, 1]]])
    rhs = np.array([u * w - P2[0, 2] * z - P2[0, 3], v * w - P2[1, 2] * z - P2[1, 3]])
    return np.array([*np.linalg.solve(a, rhs), z])


def test_backprojection_matches_hand_computed_xyz(kitti_samples):
    P2 = read_calib(kitti_samples / "training" / "calib" / "000003.txt").P2
    depth = torch.zeros(1, 1, 375, 1242, dtype=torch.float64)
    pixels = [(0, 0, 5.0), (600, 180, 12.5), (1241, 374, 70.0), (321, 97, 33.3)]
    for u, v, z in pixels:
        depth[0, 0, v, u] = z
    xyz = P.backproject(depth, torch.from_numpy(P2)[None])
    for u, v, z in pixels:
        assert np.allclose(xyz[0, :, v, u].numpy(), _hand_xyz(P2, u, v, z), atol=1e-9)
        uv, _ = project(xyz[0, :, v, u].numpy()[None], P2)
        assert np.allclose(uv[0], [u, v], atol=1e-8)


def test_patch_of_a_plane_at_known_depth(kitti_samples):
    """A fronto-parallel plane Z = 15 m: the patch holds Z = 15 everywhere, its corners are
    the XYZ of the box corners, and the frustum rotation keeps distances to the camera."""
    P2 = torch.from_numpy(read_calib(kitti_samples / "training" / "calib" / "000003.txt").P2).double()[None]
    depth = torch.full((1, 1, 375, 1242), 15.0, dtype=torch.float64)
    box = torch.tensor([[400.0, 150.0, 520.0, 230.0]], dtype=torch.float64)
    patch = P.crop_patches(P.backproject(depth, P2), [box], 32)[0]
    assert torch.allclose(patch[2], torch.full((32, 32), 15.0, dtype=torch.float64))
    for (row, col), (u, v) in {(0, 0): (400, 150), (31, 31): (520, 230), (0, 31): (520, 150)}.items():
        assert np.allclose(patch[:, row, col].numpy(), _hand_xyz(P2[0].numpy(), u, v, 15.0), atol=1e-9)
    angle = P.frustum_angle(box, P2)
    rotated = P.rotate_about_y(patch[None], angle)[0]
    assert torch.allclose(rotated[0] ** 2 + rotated[2] ** 2, patch[0] ** 2 + patch[2] ** 2)
    centre = P.rotate_about_y(P.backproject(torch.full((1, 1, 375, 1242), 20.0, dtype=torch.float64), P2)[:, :, 190, 460],
                              angle)
    assert abs(float(centre[0, 0])) < 1e-6  # the box centre's ray now looks along +z
    mask = P.object_mask(patch[None], torch.ones(1, 32, 32, dtype=torch.bool))
    assert bool(mask.all())  # a plane: every pixel within mean(Z) + 0.5


def test_heading_and_size_coding_round_trip():
    angle = torch.linspace(-math.pi, math.pi - 1e-4, 997, dtype=torch.float64)
    cls, residual = angle_to_class(angle)
    assert int(cls.min()) == 0 and int(cls.max()) == 11
    assert float(residual.abs().max()) <= math.pi / 12 + 1e-9
    back = class_to_angle(cls, residual)
    assert torch.allclose(torch.remainder(back - angle + math.pi, 2 * math.pi) - math.pi, torch.zeros_like(angle), atol=1e-9)
    assert float(back.min()) >= -math.pi and float(back.max()) < math.pi
    assert int(angle_to_class(torch.tensor([0.0]))[0]) == 0 and int(angle_to_class(torch.tensor([math.pi / 6]))[0]) == 1
    dims = mean_sizes()[[0, 3, 5]] + torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.05, -0.1], [0.2, 0.0, 0.0]])
    cluster, res = size_to_class(dims, torch.tensor([0, 3, 5]))
    assert torch.allclose(class_to_size(cluster, res), dims)


def test_corner_loss_zero_for_perfect_box_and_symmetric_under_flip():
    torch.manual_seed(0)
    centre, dims, heading = torch.randn(5, 3) * 5, mean_sizes()[:5], torch.rand(5) * 6 - 3
    assert float(corner_loss(centre, dims, heading, centre, dims, heading)) == pytest.approx(0.0, abs=1e-6)
    assert float(corner_loss(centre, dims, heading + math.pi, centre, dims, heading)) == pytest.approx(0.0, abs=1e-5)
    other = (centre + torch.randn(5, 3), dims * 1.1, heading + 0.3)
    loss = corner_loss(*other, centre, dims, heading)
    assert float(loss) > 0.1
    assert float(corner_loss(*other, centre, dims, heading + math.pi)) == pytest.approx(float(loss), rel=1e-5)


def test_jitter_within_ratio():
    from monokd.data.proposals import jitter_boxes

    boxes = np.array([[100.0, 50.0, 200.0, 90.0]] * 2000)
    out = jitter_boxes(boxes, np.random.default_rng(0), 0.1)
    w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    cx = (out[:, 0] + out[:, 2]) / 2
    assert w.min() >= 90 - 1e-9 and w.max() <= 110 + 1e-9 and h.min() >= 36 - 1e-9 and h.max() <= 44 + 1e-9
    assert abs(cx - 150).max() <= 10 + 1e-9 and abs(cx - 150).max() > 9  # uses the whole range
    assert not np.allclose(out[0], out[1])


def test_result_file_proposals(tmp_path):
    from monokd.data.proposals import from_results

    affine = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    good = ("Car 0.00 0 -1.50 100.00 40.00 160.00 100.00 1.50 1.60 3.90 1.00 1.60 20.00 -1.50 0.8000\n"
            "Pedestrian 0.00 0 0.00 10.00 10.00 20.00 60.00 1.70 0.60 0.80 2.00 1.60 10.00 0.00 0.9000\n"
            "Car 0.00 0 -1.50 300.00 40.00 320.00 50.00 1.50 1.60 3.90 1.00 1.60 60.00 -1.50 0.7000\n")
    (tmp_path / "000001.txt").write_text(good)
    got = from_results(tmp_path / "000001.txt", ["Car"], affine, min_height=25, min_score=0.0)
    assert got["boxes"].tolist() == [[50.0, 20.0, 80.0, 50.0]]  # the 10-px-high car and the pedestrian dropped
    assert got["scores"].tolist() == [pytest.approx(0.8)] and got["target_index"].tolist() == [-1]
    assert len(from_results(tmp_path / "000002.txt", ["Car"], affine, 25, 0.0)["boxes"]) == 0  # missing: no box
    with pytest.raises(KittiFormatError, match="result directory not found"):
        from_results(tmp_path / "nowhere" / "000002.txt", ["Car"], affine, 25, 0.0)
    (tmp_path / "000003.txt").write_text(good.splitlines()[0] + "\nCar 0.00 0 -1.50 100.00 oops 160.00\n")
    with pytest.raises(KittiFormatError, match=r"000003\.txt:2"):
        from_results(tmp_path / "000003.txt", ["Car"], affine, 25, 0.0)


def _paired_cfg(root, pred_dir, depth_input=None, **data):
    return {"data": {"root": str(root), "classes": ["Car"], "input_size": [416, 128], "depth_maps": "depth_2",
                     "depth_pred_dir": str(pred_dir), "train_split": "train",
                     "proposals": {"train": "gt_jitter", "eval": "gt", "jitter": 0.1}, **data},
            "model": {**SMALL, "depth_input": depth_input}}


def _pred_dir(root, out, scale=1.0):
    for path in (root / "training" / "depth_2").glob("*.png"):
        write_depth(out / path.name, read_depth(path) * scale)
    return out


def test_paired_batch_same_boxes_same_jitter(synth_root, tmp_path):
    """One batch feeds the student (estimated depth) and the teacher (depth_2): both crop the
    same jittered boxes, so with the same weights and the same depth their outputs coincide
    cell by cell, and with different depths only the depth-derived parts differ."""
    from monokd.data.dataset import KittiDataset, collate
    from monokd.models import build_detector

    pred = _pred_dir(synth_root, tmp_path)
    cfg = _paired_cfg(synth_root, pred)
    batch = collate([KittiDataset(synth_root, "train", cfg)[i] for i in range(4)])
    jittered = torch.cat([p["boxes"] for p in batch["proposals"]])
    exact = torch.cat([t["boxes_2d"][p["target_index"]] for t, p in zip(batch["targets"], batch["proposals"])])
    assert len(jittered) > 0 and not torch.allclose(jittered, exact)
    student = build_detector(cfg).eval()
    teacher = build_detector(_paired_cfg(synth_root, pred, "gt_pixel")).eval()
    teacher.load_state_dict(student.state_dict())
    wanted = {"features", "masks", "pe_depth"}
    crops = []
    make_patches = student.make_patches
    student.make_patches = lambda depth, b: crops.append(depth) or make_patches(depth, b)
    with torch.no_grad():
        assert student(batch, signals={"features"})[SIGNALS].masks is None
        assert [d is batch["depth_pred"] for d in crops] == [True]  # no GT crop unless masks are asked for
        s, t = student(batch, signals=wanted), teacher(batch, signals=wanted)
        assert [d is batch["depth_maps"] for d in crops[1:]] == [False, True]
    assert torch.allclose(s["frustum_angle"], t["frustum_angle"])
    for a, b in zip(s[SIGNALS].features, t[SIGNALS].features):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    for key in ("masks", "pe_depth"):  # ADD's M^k and PE depth: from depth_2 in both
        for a, b in zip(getattr(s[SIGNALS], key), getattr(t[SIGNALS], key)):
            assert torch.equal(a, b)
    batch["depth_pred"] = batch["depth_pred"] * 1.2
    with torch.no_grad():
        s2 = student(batch, signals=wanted)
    assert not torch.allclose(s2["center"], t["center"])
    assert torch.equal(s2[SIGNALS].masks[0], t[SIGNALS].masks[0])


@pytest.mark.slow
def test_overfit_four_frames_gives_nonzero_ap(synth_root):
    from monokd.data.dataset import KittiDataset, collate
    from monokd.data.kitti import read_label
    from monokd.training.seeding import seed_everything
    from monokd.evaluation import evaluate
    from monokd.models import build_detector

    seed_everything(0)
    cfg = _paired_cfg(synth_root, synth_root / "training" / "depth_2", "gt_pixel", depth_pred_dir=None,
                      augment={"enabled": False})
    model = build_detector(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train = KittiDataset(synth_root, "train", cfg, augment=False)
    losses = []
    for _ in range(60):
        batch = collate([train[i] for i in range(len(train))])
        loss = model.losses(model(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    cfg["data"]["train_split"] = "none"  # the 'eval' proposals: the GT boxes as they are
    batch = collate([KittiDataset(synth_root, "train", cfg, augment=False)[i] for i in range(len(train))])
    model.eval()
    with torch.no_grad():
        detections = model.decode(model(batch), batch)
    gt = {f: read_label(synth_root / "training" / "label_2" / f"{f}.txt") for f in batch["frame_ids"]}
    result = evaluate(gt, dict(zip(batch["frame_ids"], detections)), ["Car"], min_height_scale=0.3413)
    assert result.flat["Car/3d/moderate/R40@0.50"] > 0


def _add_section(**feature):
    return {"method": "add", "feature": {"enabled": True, "source": "encoder_input", "adapter": "self_attention",
                                         "pos_encoding": "gt", "levels": [1, 2, 3], "embed_dim": 16, "heads": 2,
                                         **feature},
            "response": {"enabled": False}}


@pytest.mark.parametrize("feature", [{}, {"adapter": "conv"}, {"pos_encoding": "none"}, {"pos_encoding": "estimated"}])
def test_add_on_patchnet_feature_level(synth_root, tmp_path, feature):
    """ADD's feature loss on the paired batch: finite and positive, gradients reach the
    student and the adapters and never the teacher."""
    from monokd.data.dataset import KittiDataset, collate
    from monokd.distill import build_distiller
    from monokd.models import build_detector

    pred = _pred_dir(synth_root, tmp_path, scale=1.1)
    cfg = {**_paired_cfg(synth_root, pred), "distill": _add_section(**feature)}
    batch = collate([KittiDataset(synth_root, "train", cfg)[i] for i in range(4)])
    teacher = build_detector(_paired_cfg(synth_root, pred, "gt_pixel")).eval().requires_grad_(False)
    model = build_distiller(cfg, build_detector(cfg), teacher).train()
    terms = model.losses(model(batch), batch)
    assert torch.isfinite(terms["distill_feat"]) and float(terms["distill_feat"].detach()) > 0
    terms["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.feature_adapters.parameters())
    assert model.student.box_backbone.stages[1][0].conv1.weight.grad.abs().sum() > 0
    assert not any(k.startswith("teacher") for k in model.state_dict())


@pytest.mark.parametrize("name", ["patchnet_kitti", "patchnet_teacher_kitti", "add_patchnet_kitti", "patchnet_synth",
                                  "patchnet_teacher_synth", "add_patchnet_synth"])
def test_recipes_build(name):
    """Every PatchNet recipe names known keys: model, proposals and (ADD) distill options."""
    from pathlib import Path

    from monokd.config import load_config
    from monokd.data.proposals import proposal_config
    from monokd.distill.add.distiller import parse_options
    from monokd.models import build_detector

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    model = build_detector(cfg)
    proposal_config(cfg["data"]["proposals"])
    assert (model.depth_key == "depth_maps") == ("teacher" in name)
    if "add_" in name:
        options = parse_options(cfg["distill"])
        assert not options["response"]["enabled"] and cfg["data"]["depth_maps"] == "depth_2"
        assert max(options["feature"]["levels"]) < len(model.distill_spec.feature_channels)


def test_frames_without_boxes_and_a_single_box(synth_root, tmp_path):
    """No box: zero loss with a gradient path and no detection; one box: trains (no BatchNorm1d)."""
    from monokd.data.dataset import KittiDataset, collate
    from monokd.models import build_detector

    cfg = _paired_cfg(synth_root, synth_root / "training" / "depth_2", "gt_pixel", depth_pred_dir=None)
    batch = collate([KittiDataset(synth_root, "train", cfg)[0]])
    model = build_detector(cfg).train()
    single = {**batch, "proposals": [{k: v[:1] for k, v in batch["proposals"][0].items()}]}
    model.losses(model(single), single)["loss"].backward()
    empty = {**batch, "proposals": [{k: v[:0] for k, v in batch["proposals"][0].items()}]}
    terms = model.losses(model(empty), empty)
    assert float(terms["loss"].detach()) == 0.0 and terms["loss"].requires_grad
    model.eval()
    with torch.no_grad():
        assert model.decode(model(empty), {**empty, "flipped": torch.tensor([False])}) == [[]]


def test_demo_story_prepares_depth_and_boxes_first(tmp_path, monkeypatch):
    """`monokd demo --student patchnet`: depth front-end (train, predict, evaluate) and the
    MonoDETR 2-D boxes before the teacher; every PatchNet run points at both; a rerun reuses
    every stage (predict is called again but skips what it wrote)."""
    import io
    import json
    import os

    from monokd.pipeline import demo
    from tests.helpers import fake_root, flat

    root = fake_root(tmp_path / "data")
    (root / demo.SYNTH_MARKER).write_text("{}")
    calls = []

    def run(args, stage, **options):
        calls.append(args)
        out = args[args.index("--json") + 1] if "--json" in args else args[args.index("--out") + 1]
        if args[:2] == ["depth", "evaluate"]:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            open(out, "w").write(json.dumps({"abs_rel": 0.2, "rmse": 6.0, "delta1": 0.7, "images": 4}))
            return
        os.makedirs(out, exist_ok=True)
        if args[:2] == ["depth", "train"]:
            open(os.path.join(out, "metrics.json"), "w").write("{}")
        elif args[0] == "train":
            for name in ("config.yaml", "last.ckpt"):
                open(os.path.join(out, name), "w").write("{}")
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"validations": [
                {"epoch": 0, "step": 10, "metrics": flat(10.0)}]}))
        elif args[0] == "evaluate":
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"flat": flat(10.0)}))

    monkeypatch.setattr(demo, "run_command", run)
    out = tmp_path / "out"
    demo.run_demo(out, "quick", data_root=root, student="patchnet", stream=io.StringIO())
    stages = [(c[0], c[1]) if c[0] == "depth" else (c[0], os.path.basename(c[c.index("--out") + 1])) for c in calls]
    assert stages[:6] == [("depth", "train"), ("depth", "predict"), ("depth", "evaluate"), ("train", "boxes"),
                          ("evaluate", "boxes"), ("train", "teacher")]
    assert calls[3][calls[3].index("--config") + 1].endswith("monodetr_synth.yaml")
    patchnet_runs = [c for c in calls if c[0] == "train" and not c[c.index("--out") + 1].endswith("boxes")]
    assert len(patchnet_runs) == 3
    for call in patchnet_runs:
        assert call[call.index("--config") + 1].split("/")[-1].startswith(("patchnet", "add_patchnet"))
        assert f"data.depth_pred_dir={out / 'depth_pred'}" in call
        assert f"data.proposals.results_dir={out / 'eval' / 'boxes' / 'data'}" in call
        assert "model.patch_size=16" in call and "model.hidden_dim=32" not in call  # the student's own overrides
    calls.clear()
    demo.run_demo(out, "quick", data_root=root, student="patchnet", stream=io.StringIO())
    assert [c[:2] for c in calls] == [["depth", "predict"]]


def _story_cfg(preset_name, root, sets, model="baseline"):
    """The config a PatchNet run of the demo's story gets: its recipe, the preset's
    overrides and the prepare step's --set items."""
    from monokd.config import load_config
    from monokd.pipeline import demo

    preset = demo.load_preset(preset_name, "patchnet")
    return load_config(demo.recipe(preset, model), demo.stage_overrides(preset, model, root) + sets)


def test_quick_demo_evaluates_patchnet_on_gt_boxes_and_warns_on_empty_results(synth_root, tmp_path):
    """The quick preset's PatchNet runs read the GT 2-D boxes at evaluation (a 4-step box
    detector writes empty result files): its val frames get one proposal a car. The default
    preset's read the box detector's files; all of them empty is one MonokdWarning naming the
    folder, once, and every frame gets no proposal."""
    from monokd.data.dataset import KittiDataset
    from monokd.pipeline import demo
    from monokd.pipeline import patchnet_inputs
    from monokd.errors import MonokdWarning

    empty = tmp_path / "boxes" / "data"
    empty.mkdir(parents=True)
    for frame in (synth_root / "ImageSets" / "val.txt").read_text().split():
        (empty / f"{frame}.txt").write_text("")
    sets = [f"data.depth_pred_dir={synth_root / 'training' / 'depth_2'}", f"data.proposals.results_dir={empty}"]
    for model in ("teacher", "baseline", "add"):
        assert _story_cfg("quick", synth_root, sets, model)["data"]["proposals"]["eval"] == "gt"
    quick = KittiDataset(synth_root, "val", _story_cfg("quick", synth_root, sets))
    items = [quick[i] for i in range(len(quick))]
    assert sum(len(i["proposals"]["boxes"]) for i in items) > 0
    for item in items:
        assert item["proposals"]["target_index"].tolist() == list(range(len(item["targets"]["labels"])))
    assert patchnet_inputs.no_box_warning(demo.load_preset("quick", "patchnet"), synth_root, sets) is None

    default = KittiDataset(synth_root, "val", _story_cfg("default", synth_root, sets))
    assert default.cfg["proposals"]["eval"] == "results"
    with pytest.warns(MonokdWarning, match=f"{empty}: no 2-D box in its 4 result file") as caught:
        assert all(len(default[i]["proposals"]["boxes"]) == 0 for i in range(len(default)))
    assert len([w for w in caught if issubclass(w.category, MonokdWarning)]) == 1  # once a folder
    assert f"{empty}: no 2-D box" in patchnet_inputs.no_box_warning(demo.load_preset("default", "patchnet"),
                                                                    synth_root, sets)


def test_no_box_warning_only_for_a_folder_without_any_box(tmp_path):
    import warnings

    from monokd.data.proposals import count_result_boxes, warn_if_no_box
    from monokd.errors import MonokdWarning

    line = "Car 0.00 0 -1.50 100.00 40.00 160.00 100.00 1.50 1.60 3.90 1.00 1.60 20.00 -1.50 0.8000\n"
    full, empty = tmp_path / "full", tmp_path / "empty"
    for folder, texts in ((full, ["", line + line, "\n"]), (empty, ["", "\n", ""])):
        folder.mkdir()
        for k, text in enumerate(texts):
            (folder / f"{k:06d}.txt").write_text(text)
    assert count_result_boxes(full) == (2, 3) and count_result_boxes(empty) == (0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_no_box(full)  # a box somewhere: silent
    with pytest.warns(MonokdWarning, match=f"^{empty}: no 2-D box in its 3 result file"):
        warn_if_no_box(empty)


def test_demo_prepare_is_a_counted_logged_stage(tmp_path, monkeypatch, capsys):
    """The PatchNet story's prepare stage has its banner ([demo 2/5]: data, prepare, two
    waves, report), runs its commands in a lane whose output goes to OUT/logs/prepare.log,
    shows only their progress lines, prefixed `[prepare]`, and reports the depth front-end's
    val metrics and the box detector's 2-D AP and box count. With the default preset
    (PatchNet evaluated on the detector's boxes) and empty result files, the stage and the
    report say so, naming the folder."""
    import io
    import json
    import os
    import sys

    from monokd.data import kitti
    from monokd.pipeline import demo
    from tests.helpers import car, fake_root, flat

    root = fake_root(tmp_path / "data")
    (root / demo.SYNTH_MARKER).write_text("{}")
    lanes, empty_boxes = {}, []

    def run(args, stage, **options):
        out = args[args.index("--json") + 1] if "--json" in args else args[args.index("--out") + 1]
        lane = options.get("lane")
        lanes.setdefault(lane.name, lane.log)
        if args[:2] == ["depth", "train"]:  # one real child: its lines go to the log, its progress shows
            assert lane.run([sys.executable, "-c", "print('GPU available: False'); print('depth train: epoch 1')"]) == 0
        if args[:2] == ["depth", "evaluate"]:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            open(out, "w").write(json.dumps({"abs_rel": 0.25, "rmse": 5.5, "delta1": 0.75, "images": 3}))
            return
        os.makedirs(out, exist_ok=True)
        if args[:2] == ["depth", "train"]:
            open(os.path.join(out, "metrics.json"), "w").write("{}")
        elif args[0] == "train":
            for name in ("config.yaml", "last.ckpt"):
                open(os.path.join(out, name), "w").write("{}")
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"validations": [
                {"epoch": 0, "step": 10, "metrics": flat(10.0)}]}))
        elif args[0] == "evaluate":
            metrics = {**flat(10.0), "Car/bbox/easy/R40@0.70": 31.0, "Car/bbox/moderate/R40@0.70": 22.0,
                       "Car/bbox/hard/R40@0.70": 11.0}
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"flat": metrics}))
            found = [] if empty_boxes and out.endswith("boxes") else [car(0.5, 16.0, 0.9), car(3.0, 30.0, 0.1)]
            kitti.write_label(os.path.join(out, "data", "000002.txt"), found)

    monkeypatch.setattr(demo, "run_command", run)
    out, printed = tmp_path / "out", io.StringIO()
    report = demo.run_demo(out, "quick", data_root=root, student="patchnet", stream=printed).read_text()
    banners = [line for line in capsys.readouterr().out.splitlines() if line.startswith("=== [demo ")]
    assert [b.split("]")[0] for b in banners] == [f"=== [demo {k}/5" for k in range(1, 6)]
    assert banners[1].startswith("=== [demo 2/5] prepare: ") and str(out / "logs" / "prepare.log") in banners[1]
    assert lanes["prepare"] == out / "logs" / "prepare.log"
    log = (out / "logs" / "prepare.log").read_text()
    assert "GPU available: False" in log and "depth train: epoch 1" in log
    shown = printed.getvalue()
    assert "[prepare] depth train: epoch 1" in shown and "GPU available" not in shown
    assert "  prepare  " in shown  # a row of the stage times
    assert "AbsRel 0.250, RMSE 5.50 m, delta1 0.750 (3 images)" in report
    assert "Car AP_2D@0.7 R40 easy / moderate / hard 31.00 / 22.00 / 11.00; 2 boxes in its 1 result files" in report
    assert "evaluated on the ground truth's 2-D boxes (`data.proposals.eval=gt`" in report
    assert "**Warning:**" not in report
    assert report.count("see the longer runs in docs/patchnet.md.") == 1  # a pointer, no figures quoted

    empty_boxes.append(True)
    out, printed = tmp_path / "default", io.StringIO()
    report = demo.run_demo(out, "default", data_root=root, student="patchnet", stream=printed).read_text()
    folder = out / "eval" / "boxes" / "data"
    assert f"[prepare] warning: {folder}: no 2-D box in its 1 result file(s)" in printed.getvalue()
    assert "evaluated on the box detector's boxes (`data.proposals.eval=results`" in report
    assert f"**Warning:** {folder}: no 2-D box in its 1 result file(s)" in report
