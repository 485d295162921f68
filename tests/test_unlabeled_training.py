"""Training on unlabeled frames: detection terms from labeled frames only, distillation terms
on every frame (MonoTAKD, ADD on CaDDN), the teacher's boxes as an unlabeled frame's
foreground, the refusals, and the frame counts of the engine."""

from __future__ import annotations

import math

import pytest
import torch

from monokd.distill.add.distiller import ADDDistiller
from monokd.distill.add.distiller import parse_options as add_options
from monokd.distill.add.masks import bev_feature_masks
from monokd.distill.takd.distiller import TAKDDistiller
from monokd.distill.takd.distiller import parse_options as takd_options
from monokd.errors import ConfigError
from monokd.models.bev.detections import detections_as_targets
from monokd.models.takd.model import TAKDStudent
from monokd.models.takd.model import takd_options as student_options
from monokd.training.unlabeled import check_unlabeled, frame_counts
from tests.helpers import caddn_model

torch.set_num_threads(1)
DETECTION = ("loss_cls", "loss_box", "loss_dir", "loss_depth")
SIZE = (160, 64)
# LiDAR -> rect of a KITTI-like rig: x_r = -y, y_r = -z - 0.08, z_r = x - 0.27
LIDAR_TO_RECT = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]])


def _batch(batch_size=2, seed=0):
    """Random 192 x 64 images and depth, one car 12 m ahead in each frame (labeled)."""
    gen = torch.Generator().manual_seed(seed)
    P2 = torch.tensor([[110.0, 0, 96, 0], [0, 110.0, 32, 0], [0, 0, 1, 0]])
    target = {"labels": torch.tensor([0]), "boxes_2d": torch.tensor([[70.0, 22.0, 110.0, 50.0]]),
              "location": torch.tensor([[0.5, 1.65, 12.0]]), "dims": torch.tensor([[1.5, 1.6, 3.9]]),
              "rotation_y": torch.tensor([0.3]), "depth": torch.tensor([11.25])}
    depth = torch.rand(batch_size, 1, 64, 192, generator=gen) * 30
    return {"images": torch.randn(batch_size, 3, 64, 192, generator=gen), "P2": P2.expand(batch_size, 3, 4).clone(),
            "lidar_to_rect": LIDAR_TO_RECT.expand(batch_size, 4, 4).clone(), "depth_maps": depth,
            "targets": [dict(target) for _ in range(batch_size)],
            "input_to_original": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(batch_size, 2, 3).clone(),
            "image_sizes": torch.tensor([[192, 64]] * batch_size), "flipped": torch.zeros(batch_size, dtype=torch.bool),
            "frame_ids": [f"{i:06d}" for i in range(batch_size)]}


def _flags(*labeled: bool) -> torch.Tensor:
    return torch.tensor(labeled, dtype=torch.bool)


def _grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_caddn_losses_are_those_of_its_labeled_frames_alone():
    torch.manual_seed(0)
    model = caddn_model().train()
    batch = {**_batch(3), "labeled": _flags(True, False, True)}
    outputs = model(batch)
    terms = model.losses(outputs, batch)
    alone = {k: (v[[0, 2]] if torch.is_tensor(v) else v) for k, v in batch.items() if k != "labeled"}
    alone["targets"] = [batch["targets"][0], batch["targets"][2]]
    expected = model.losses({k: v[[0, 2]] for k, v in outputs.items()}, alone)
    assert set(terms) == set(expected) == {*DETECTION, "loss"}
    for key in terms:
        assert torch.equal(terms[key], expected[key]), key
    everything = model.losses(outputs, {**batch, "labeled": _flags(True, True, True)})
    assert not torch.equal(everything["loss_cls"], terms["loss_cls"])  # frame 1 counts when labeled


def test_an_unlabeled_batch_gives_zero_detection_terms_and_no_gradient():
    torch.manual_seed(0)
    model = caddn_model().train()
    batch = {**_batch(2), "labeled": _flags(False, False)}
    terms = model.losses(model(batch), batch)
    assert set(terms) == {*DETECTION, "loss"} and all(v.item() == 0.0 for v in terms.values())
    terms["loss"].backward()
    grads = _grads(model)
    assert grads and all(float(g.abs().sum()) == 0.0 for g in grads.values())


def _distill_only_gradients(build, batch) -> tuple[dict, dict, dict]:
    """(terms, gradients of ``loss``, gradients of the distillation terms alone) of the same
    distiller on the same batch."""
    distiller = build().train()
    terms = distiller.losses(distiller(batch), batch)
    terms["loss"].backward()
    total = _grads(distiller)
    distiller = build().train()
    again = distiller.losses(distiller(batch), batch)
    sum(v for k, v in again.items() if k.startswith("distill_")).backward()
    return terms, total, _grads(distiller)


def _takd():
    torch.manual_seed(0)
    student = TAKDStudent(caddn_model(), student_options({"sam": {"dilations": [1, 2]}}))
    teacher, ta = caddn_model("gt_pixel"), caddn_model("gt_pixel")  # a depth-fed stand-in for the LiDAR teacher
    return TAKDDistiller(student, teacher, ta, takd_options({"method": "takd", "gt_loss": {"enabled": True},
                                                            "logit": {"score_threshold": 0.0}}))


def test_takd_unlabeled_batch_distils_on_every_frame_and_detects_on_none():
    batch = {**_batch(2), "labeled": _flags(False, False)}
    terms, total, distill_only = _distill_only_gradients(_takd, batch)
    for key in ("distill_imd", "distill_cmrd", "distill_logit_cls", "distill_logit_box"):
        assert terms[key].item() > 0, key
    assert all(terms[k].item() == 0.0 for k in DETECTION)
    assert set(total) == set(distill_only)
    for name, grad in total.items():
        assert torch.allclose(grad, distill_only[name], atol=1e-7, rtol=1e-5), name
    labeled = {**batch, "labeled": _flags(True, False)}
    distiller = _takd().train()
    assert distiller.losses(distiller(labeled), labeled)["loss_cls"].item() > 0


def _add_on_caddn():
    torch.manual_seed(0)
    options = add_options({"feature": {"heads": 1, "embed_dim": 8}, "response": {"enabled": False}})
    return ADDDistiller(caddn_model(), caddn_model("gt_pixel"), options)


def test_add_on_caddn_unlabeled_batch_distils_features_and_detects_on_none():
    batch = {**_batch(2), "labeled": _flags(False, False)}
    terms, total, distill_only = _distill_only_gradients(_add_on_caddn, batch)
    assert terms["distill_feat"].item() > 0 and all(terms[k].item() == 0.0 for k in DETECTION)
    assert set(distill_only) <= set(total)
    for name, grad in total.items():  # the detection-only parameters get exactly zero
        assert torch.allclose(grad, distill_only.get(name, torch.zeros_like(grad)), atol=1e-7, rtol=1e-5), name


# --- an unlabeled frame's foreground: the teacher's boxes of score >= 0.5 -----------------------
def test_confident_detections_become_targets_by_hand():
    batch = _batch(1)
    # LiDAR box centre (12.27, -0.5, -0.7), l 3.9, w 1.6, h 1.5, heading 0; and a weak one
    boxes = torch.tensor([[12.27, -0.5, -0.7, 3.9, 1.6, 1.5, 0.0], [8.0, 3.0, -0.7, 3.9, 1.6, 1.5, 0.0]])
    target = detections_as_targets(boxes, torch.tensor([0.7, 0.49]), torch.tensor([0, 0]), batch, 0, 0.5)
    # LIDAR_TO_RECT: x_r = -y, y_r = -z - 0.08, z_r = x - 0.27; location = the bottom centre
    assert torch.allclose(target["location"], torch.tensor([[0.5, 1.37, 12.0]]), atol=1e-5)
    assert torch.allclose(target["dims"], torch.tensor([[1.5, 1.6, 3.9]]))
    assert torch.allclose(target["rotation_y"], torch.tensor([-math.pi / 2]))
    assert torch.allclose(target["depth"], torch.tensor([12.0])) and target["labels"].tolist() == [0]
    x1, y1, x2, y2 = target["boxes_2d"][0].tolist()
    assert 0 <= x1 < 96 < x2 <= 191 and 0 <= y1 < y2 <= 63  # around the principal point column (x_r 0.5 m)


def test_add_builds_an_unlabeled_frames_foreground_from_the_teachers_confident_boxes():
    distiller = _add_on_caddn()
    batch = {**_batch(2), "labeled": _flags(True, False)}
    kept = {"labels": torch.tensor([0]), "location": torch.tensor([[-3.0, 1.6, 10.0]]),
            "dims": torch.tensor([[1.5, 1.6, 3.9]]), "rotation_y": torch.tensor([0.0]), "depth": torch.tensor([10.0]),
            "boxes_2d": torch.tensor([[10.0, 20.0, 40.0, 50.0]])}
    asked = []
    distiller.teacher.pseudo_targets = lambda outputs, b, score: asked.append(score) or [None, kept]
    mixed = distiller.with_pseudo_targets(batch, teacher_outputs={})
    assert asked == [0.5]
    assert mixed["targets"][0] is batch["targets"][0] and mixed["targets"][1] is kept
    grid = distiller.feature_spec.bev_grid
    mask = bev_feature_masks(mixed["targets"], batch["lidar_to_rect"], grid, 1, grid.bev_shape(1))
    gt = bev_feature_masks([kept], LIDAR_TO_RECT[None], grid, 1, grid.bev_shape(1))
    assert torch.equal(mask[1], gt[0]) and mask[1].any() and not torch.equal(mask[0], mask[1])
    everyone = {**batch, "labeled": _flags(True, True)}
    assert distiller.with_pseudo_targets(everyone, {}) is everyone


def test_caddn_pseudo_targets_keep_only_confident_boxes():
    model = caddn_model().eval()
    batch = _batch(1)
    boxes = torch.tensor([[12.27, -0.5, -0.7, 3.9, 1.6, 1.5, 0.0], [8.0, 3.0, -0.7, 3.9, 1.6, 1.5, 0.0]])
    model.head.decode = lambda outputs: [(boxes, torch.tensor([0.9, 0.2]), torch.tensor([0, 0]))]
    (target,) = model.pseudo_targets({}, batch, 0.5)
    assert torch.allclose(target["location"], torch.tensor([[0.5, 1.37, 12.0]]), atol=1e-5)


# --- what train refuses -------------------------------------------------------------------------
def _cfg(tmp_path, model: dict, distill: dict | None, teacher: dict | None = None) -> dict:
    cfg = {"data": {"classes": ["Car"], "unlabeled": {"root": "raw"}}, "model": model}
    if distill is not None:
        cfg["distill"] = distill
    if teacher is not None:
        import yaml

        path = tmp_path / "teacher.yaml"
        path.write_text(yaml.safe_dump({"data": {"classes": ["Car"]}, "model": teacher}))
        cfg["distill"]["teacher"] = {"config": str(path)}
    return cfg


def _refusal(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        check_unlabeled(cfg)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.unlabeled: ")
    return message


def test_add_on_monodetr_is_refused_in_one_line(tmp_path):
    cfg = _cfg(tmp_path, {"name": "monodetr"}, {"method": "add"},  # ADD's defaults, response on
               teacher={"name": "monodetr", "depth_input": "gt_object"})
    message = _refusal(cfg)
    assert "distill.teacher ('monodetr') reads the frame's labels" in message
    cfg = _cfg(tmp_path, {"name": "caddn"}, {"method": "add", "response": {"enabled": False}},
               teacher={"name": "caddn", "depth_input": "gt_pixel"})
    check_unlabeled(cfg)  # ADD on CaDDN: the teacher reads depth maps only


def test_methods_and_students_that_cannot_take_unlabeled_frames_are_refused(tmp_path):
    assert "needs a distillation" in _refusal(_cfg(tmp_path, {"name": "caddn"}, None))
    assert "distill.response" in _refusal(_cfg(tmp_path, {"name": "caddn"}, {"method": "add"}))
    message = _refusal(_cfg(tmp_path, {"name": "monodetr"}, {"method": "add", "response": {"enabled": False}}))
    assert "the student ('monodetr') declares no detection loss masked" in message
    check_unlabeled(_cfg(tmp_path, {"name": "takd_student"}, {"method": "takd"}))


def test_frame_counts():
    assert frame_counts({"frame_ids": ["a", "b", "c"], "labeled": _flags(True, False, False)}) == (1, 2)
    assert frame_counts({"frame_ids": ["a", "b"]}) == (2, 0)


# --- the engine: mixed batches, their resume, the provenance, the counts ------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """4 train + 2 val frames, 3 raw drives of 2 fresh frames (val in drive 1: 4 unlabeled frames)."""
    from monokd.cli import main

    root = tmp_path_factory.mktemp("synth_raw")
    assert main(["synth", "--out", str(root), "--num-train", "4", "--num-val", "2", "--width", str(SIZE[0]),
                 "--height", str(SIZE[1]), "--raw-drives", "3", "--raw-frames", "2"]) == 0
    return root


def _synth_cfg(root) -> dict:
    return {"data": {"root": str(root), "input_size": list(SIZE), "depth_maps": "depth_2", "load_points": True,
                     "augment": {"enabled": False},
                     "unlabeled": {"root": str(root / "raw"), "split": "unlabeled", "share": 0.5}},
            "train": {"batch_size": 2, "seed": 3}}


def test_the_data_module_mixes_unlabeled_frames_and_resumes_where_it_stopped(synth):
    from monokd.training.datamodule import KittiDataModule

    cfg = _synth_cfg(synth)
    batches = list(KittiDataModule(cfg).train_dataloader())
    assert [b["labeled"].tolist() for b in batches] == [[True, False]] * 4  # one pass over the 4 labeled frames
    unlabeled = [b["frame_ids"][1] for b in batches]
    assert all("/" in f for f in unlabeled) and all("/" not in b["frame_ids"][0] for b in batches)
    resumed = KittiDataModule(cfg)
    resumed.load_state_dict({"epoch": 0, "batches_done": 2})
    assert [b["frame_ids"] for b in resumed.train_dataloader()] == [b["frame_ids"] for b in batches[2:]]


def test_the_checkpoint_records_the_unlabeled_split(synth, monkeypatch):
    from monokd.training import preflight
    from monokd.training.datamodule import KittiDataModule

    monkeypatch.setattr(preflight, "check_unlabeled", lambda cfg: None)  # the method checks: tests above
    datamodule = KittiDataModule(_synth_cfg(synth))
    record = preflight.check_run(_synth_cfg(synth), datamodule)["unlabeled"]
    assert record["split"] == "unlabeled" and record["root"] == str(synth / "raw")
    assert record["ids"] == sorted(datamodule.unlabeled_set.ids) and record["count"] == 4
    leaking = _synth_cfg(synth)
    leaking["data"]["unlabeled"]["split"] = "all"  # the val drive too: the guard refuses at check_run
    with pytest.raises(ConfigError, match=r"lie in drives that hold frames of the val split.*_drive_0001_sync"):
        preflight.check_run(leaking, KittiDataModule(leaking))


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_frame_counts_are_logged_and_survive_a_resume():
    from monokd.training.module import DetectorModule

    module = DetectorModule({}, model=torch.nn.Linear(1, 1))
    for flags in ((True, False), (False, False), (True, True)):
        module._count_frames({"frame_ids": ["f"] * len(flags), "labeled": _flags(*flags)})
    assert module.frames_seen == {"labeled": 3, "unlabeled": 3}
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    resumed = DetectorModule({}, model=torch.nn.Linear(1, 1))
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.frames_seen == {"labeled": 3, "unlabeled": 3}
