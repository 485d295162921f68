"""``monokd predict`` / ``monokd export`` on a detector they cannot serve (PatchNet, untrained:
refused in one line, nothing written), the pictures' score threshold and legend."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from monokd.cli import main
from monokd.data.kitti import Object3D
from monokd.commands import predict
from monokd.outputs import MARK
from monokd.serving.servable import decode_threshold, extra_inputs, unserved
from monokd.viz import draw
from monokd.viz.bev import GT_COLOR, PRED_COLOR
from tests.helpers import CADDN_TINY, PATCHNET_SMALL as SMALL, TINY_MONODETR, caddn_model

torch.set_num_threads(1)


def patchnet_cfg(depth_input=None) -> dict:
    return {"data": {"classes": ["Car"], "input_size": [416, 128], "depth_pred_dir": "depth_pred",
                     "proposals": {"train": "gt_jitter", "eval": "gt"}},
            "model": {**SMALL, "depth_input": depth_input}}


@pytest.fixture(scope="module")
def patchnet_ckpt(tmp_path_factory) -> Path:
    from monokd.models import build_detector

    torch.manual_seed(0)
    cfg = patchnet_cfg()
    model = build_detector(cfg)
    path = tmp_path_factory.mktemp("patchnet") / "last.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()},
                "hyper_parameters": {"cfg": cfg}}, path)
    return path


def one_error_line(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"monokd {command}: error: "), lines
    return lines[0]


def test_patchnet_declares_its_inputs():
    from monokd.models import build_detector

    assert extra_inputs(build_detector(patchnet_cfg())) == ["depth_pred", "proposals"]
    teacher = patchnet_cfg("gt_pixel")
    assert "teacher" in unserved(build_detector(teacher), teacher)


def test_patchnet_export_refuses_onnx_and_writes_nothing(patchnet_ckpt, tmp_path, capsys):
    out = tmp_path / "a" / "export"
    assert main(["export", "--ckpt", str(patchnet_ckpt), "--out", str(out)]) == 1
    line = one_error_line(capsys, "export")
    assert f"{patchnet_ckpt}: PatchNet needs a depth map (data.depth_pred_dir) and 2-D boxes" in line
    assert "--no-onnx" in line and "batch['depth_pred']" not in line
    assert not (tmp_path / "a").exists()
    # --no-onnx: the whole rest, and nothing else
    assert main(["export", "--ckpt", str(patchnet_ckpt), "--out", str(out), "--no-onnx"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARK, "config.yaml", "export.json", "student.ckpt",
                                                      "student.safetensors"]


def test_patchnet_predict_refused_before_writing(patchnet_ckpt, kitti_samples, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(kitti_samples / "training" / "image_2" / "000000.png", images / "000000.png")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(patchnet_ckpt), "--images", str(images), "--calib",
                 str(kitti_samples / "training" / "calib" / "000000.txt"), "--out", str(out)]) == 1
    line = one_error_line(capsys, "predict")
    assert "PatchNet needs a depth map" in line and "predict on new images is not supported" in line
    assert "monokd evaluate --ckpt" in line
    assert not out.exists()


def car(score: float | None) -> Object3D:
    return Object3D("Car", 0.0, 0, 0.0, np.array([100.0, 100.0, 200.0, 160.0]), 1.5, 1.6, 3.9,
                    np.array([0.0, 1.6, 15.0]), 0.0, score)


def test_default_score_threshold_is_the_models(kitti_samples, tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    assert parser.get_default("score_threshold") is None
    helps = {a.dest: a.help for a in parser._actions}
    assert "default: none hidden, i.e. the model's own decode threshold" in helps["score_threshold"]
    # every decoded box is drawn by default (0.15: above CaDDN's 0.1, below the old hidden 0.2)
    decoded = [car(0.9), car(0.15), car(0.05)]
    drawn = []
    monkeypatch.setattr(predict, "render_frame_picture",
                        lambda image, P2, gt, preds, **kw: drawn.append((gt, preds)) or image)
    image = kitti_samples / "training" / "image_2" / "000000.png"
    dataset = SimpleNamespace(paths=[image], calib_files=["c"], _P2={"c": None})
    predict.draw_pictures(dataset, {"000000": decoded}, tmp_path)
    assert drawn[-1] == (None, decoded)
    predict.draw_pictures(dataset, {"000000": decoded}, tmp_path, score_threshold=0.1)
    assert [o.score for o in drawn[-1][1]] == [0.9, 0.15]


def test_legend_shows_ground_truth_only_when_drawn():
    assert draw.legend_entries(None, [car(0.5)]) == [("prediction", PRED_COLOR)]
    assert draw.legend_entries([], []) == [("prediction", PRED_COLOR)]
    assert draw.legend_entries([car(None)], None) == [("ground truth", GT_COLOR)]
    assert [n for n, _ in draw.legend_entries([car(None)], [car(0.5)])] == ["ground truth", "prediction"]


def test_each_family_declares_its_decode_threshold():
    from monokd.config import load_config
    from monokd.models import build_detector

    monodetr = build_detector(load_config("configs/monodetr_synth.yaml", TINY_MONODETR + ["model.decode.threshold=0.3"]))
    assert decode_threshold(monodetr) == ("model.decode.threshold", 0.3)
    assert decode_threshold(caddn_model()) == ("model.anchor_head.score_threshold", 0.1)  # the head's default
    student = build_detector({"data": {"classes": ["Car"]}, "model": {
        **CADDN_TINY, "name": "takd_student", "camera": "caddn", "anchor_head": {"score_threshold": 0.05}}})
    assert decode_threshold(student) == ("model.anchor_head.score_threshold", 0.05)
    assert decode_threshold(build_detector(patchnet_cfg())) == ("model.decode.min_score", 0.0)
    assert decode_threshold(torch.nn.Linear(2, 2)) is None


def test_pictures_note_names_the_threshold_and_warns_below_it(recwarn):
    from monokd.errors import MonokdWarning

    model = SimpleNamespace(decode_threshold=("model.anchor_head.score_threshold", 0.1))
    assert predict.pictures_note(model) == "every box the model decoded (model.anchor_head.score_threshold = 0.1)"
    assert predict.pictures_note(model, 0.3) == "boxes scoring at least 0.3 (--score-threshold)"
    assert not recwarn.list
    predict.pictures_note(model, 0.05)
    (warning,) = [w for w in recwarn.list if issubclass(w.category, MonokdWarning)]
    assert "--set model.anchor_head.score_threshold=0.05" in str(warning.message)
