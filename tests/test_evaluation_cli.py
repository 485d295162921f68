"""Result files and ``monokd evaluate``: directories, split files, JSON, errors, modes."""

import json
import sys
import types

import numpy as np
import pytest

from monokd.cli import main
from monokd.data.kitti import Object3D, write_label, write_split
from monokd.errors import KittiFormatError
from monokd.evaluation import evaluate_dirs, read_results, write_results


def car(score=None, z=20.0):
    return Object3D("Car", 0.0, 0, -0.3, np.array([100.0, 100, 200, 160]), 1.5, 1.6, 3.9,
                    np.array([1.0, 1.6, z]), -0.25, score)


@pytest.fixture
def dirs(tmp_path):
    gt_dir, det_dir = tmp_path / "label_2", tmp_path / "results"
    gt_dir.mkdir()
    for i in range(50):
        write_label(gt_dir / f"{i:06d}.txt", [car()])
    write_results(det_dir, {i: [car(score=0.8)] for i in range(50)})
    return gt_dir, det_dir


def test_write_results_layout(tmp_path):
    paths = write_results(tmp_path / "out", {"000007": [car(0.5)], 8: []})
    assert [p.name for p in paths] == ["000007.txt", "000008.txt"]
    assert (tmp_path / "out" / "000008.txt").read_text() == ""
    line = (tmp_path / "out" / "000007.txt").read_text().split()
    assert len(line) == 16 and line[-1] == "0.5000"
    with pytest.raises(ValueError, match="000009"):
        write_results(tmp_path / "out", {"000009": [car()]})


def test_evaluate_dirs_round_trip(dirs):
    gt_dir, det_dir = dirs
    r = evaluate_dirs(gt_dir, det_dir, classes=("Car",))
    assert r.flat["Car/3d/moderate/R40@0.70"] == pytest.approx(100.0)
    assert r.num_frames == 50


def test_missing_result_file_means_no_detections(dirs):
    gt_dir, det_dir = dirs
    for i in range(25):
        (det_dir / f"{i:06d}.txt").unlink()
    assert read_results(det_dir / "000000.txt") == []
    r = evaluate_dirs(gt_dir, det_dir, classes=("Car",))
    # 25 of 50 found: recall 0.5 is sample point 20 -> R40 = 20/40
    assert r.flat["Car/bbox/moderate/R40@0.70"] == pytest.approx(50.0)


def test_split_selects_frames(dirs, tmp_path):
    gt_dir, det_dir = dirs
    r = evaluate_dirs(gt_dir, det_dir, split_ids=["3", "000004"], classes=("Car",))
    assert r.num_frames == 2
    with pytest.raises(KittiFormatError, match="label file not found"):
        evaluate_dirs(gt_dir, det_dir, split_ids=["999999"])


def test_malformed_result_line_names_file_and_line(dirs):
    gt_dir, det_dir = dirs
    path = det_dir / "000002.txt"
    path.write_text(path.read_text() + "\nCar 0 0 0 1 2 3 4 1.5 1.6 3.9 1 1.6 20 0 oops\n")
    with pytest.raises(KittiFormatError) as err:
        evaluate_dirs(gt_dir, det_dir)
    assert err.value.line == 3 and err.value.field == "score" and "000002.txt" in str(err.value)
    path.write_text("Car 0 0 0 1 2 3 4 1.5 1.6 3.9 1 1.6 20 0\n")  # no score
    with pytest.raises(KittiFormatError, match="000002.txt:1"):
        evaluate_dirs(gt_dir, det_dir)


def test_cli_report_and_json(dirs, tmp_path, capsys):
    gt_dir, det_dir = dirs
    split = tmp_path / "val.txt"
    write_split(split, [f"{i:06d}" for i in range(50)])
    out = tmp_path / "ap.json"
    code = main(["evaluate", "--gt-dir", str(gt_dir), "--det-dir", str(det_dir), "--split", str(split),
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "Car AP@0.70, 0.70, 0.70:" in text and "Cyclist AP_R40@0.50, 0.25, 0.25:" in text
    flat = json.loads(out.read_text())["flat"]
    assert flat["Car/3d/moderate/R40@0.70"] == pytest.approx(100.0)
    assert flat["Car/bev/easy/R11@0.50"] == pytest.approx(100.0)
    assert flat["Pedestrian/3d/hard/R40@0.25"] == 0.0


def test_cli_classes_option(dirs, capsys):
    gt_dir, det_dir = dirs
    assert main(["evaluate", "--gt-dir", str(gt_dir), "--det-dir", str(det_dir), "--classes", "Car"]) == 0
    assert "Pedestrian" not in capsys.readouterr().out


def test_cli_malformed_file_is_an_error(dirs, capsys):
    gt_dir, det_dir = dirs
    (det_dir / "000001.txt").write_text("Car 0 0\n")
    assert main(["evaluate", "--gt-dir", str(gt_dir), "--det-dir", str(det_dir)]) == 1
    assert "000001.txt:1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--gt-dir", "a", "--det-dir", "b", "--config", "c.yaml", "--ckpt", "m.ckpt"],
    ["--gt-dir", "a"],
    ["--config", "c.yaml"],
    [],
    ["--gt-dir", "a", "--det-dir", "b", "--set", "x=1"],
])
def test_cli_modes_are_exclusive(argv, capsys):
    assert main(["evaluate", *argv]) == 2
    assert "error" in capsys.readouterr().err


def test_checkpoint_mode_calls_the_engine(monkeypatch):
    seen = {}
    fake = types.ModuleType("monokd.training.evaluate")
    fake.evaluate_checkpoint = lambda args: seen.update(vars(args)) or 0
    monkeypatch.setitem(sys.modules, "monokd.training.evaluate", fake)
    argv = ["evaluate", "--config", "c.yaml", "--ckpt", "m.ckpt", "--split", "val", "--set", "a.b=1",
            "--set", "c=2", "--out", "runs/x"]
    assert main(argv) == 0
    assert seen["config"] == "c.yaml" and seen["ckpt"] == "m.ckpt" and seen["split"] == "val"
    assert seen["set"] == ["a.b=1", "c=2"] and seen["out"] == "runs/x"


def test_checkpoint_alone_uses_its_own_config(monkeypatch):
    seen = {}
    fake = types.ModuleType("monokd.training.evaluate")
    fake.evaluate_checkpoint = lambda args: seen.update(vars(args)) or 3
    monkeypatch.setitem(sys.modules, "monokd.training.evaluate", fake)
    assert main(["evaluate", "--ckpt", "m.ckpt"]) == 3  # the engine's status is returned
    assert seen["config"] is None and seen["ckpt"] == "m.ckpt"


def test_checkpoint_mode_without_engine_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "monokd.training.evaluate", None)  # import fails
    assert main(["evaluate", "--config", "c.yaml", "--ckpt", "m.ckpt"]) == 2
    assert "evaluate_checkpoint" in capsys.readouterr().err
