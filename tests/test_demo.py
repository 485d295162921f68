"""monokd demo: the report (tables, chart, markdown), the stage markers and their reuse, and
(once training exists) the quick preset end to end."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from monokd.engine import demo
from monokd.viz import report

KEY = "Car/{}/{}/R40@{}"


def flat(base: float) -> dict[str, float]:
    """Fake evaluation metrics: AP = base + offsets that differ per key."""
    out = {}
    for i, iou in enumerate(("0.70", "0.50")):
        for j, metric in enumerate(("3d", "bev")):
            for k, level in enumerate(report.LEVELS):
                out[KEY.format(metric, level, iou)] = base + 10 * i + 5 * j - k
    return out


def test_metric_key_and_cells():
    assert report.metric_key("bev", "hard", 0.5) == "Car/bev/hard/R40@0.50"
    assert report.format_cell(12.345) == "12.35"
    assert report.format_cell((3.0, 0.456)) == "3.00 ± 0.46"
    assert report.format_cell(None) == "-"
    assert report.format_cell(float("nan")) == "-"


def test_metric_table_rows_and_columns():
    text = report.metric_table([("teacher", flat(20.0)), ("baseline", {})], 0.7)
    lines = text.splitlines()
    assert lines[0] == "Car R40 at IoU 0.7"
    assert lines[2] == "| model | AP3D easy | AP3D mod | AP3D hard | AP_BEV easy | AP_BEV mod | AP_BEV hard |"
    assert lines[4] == "| teacher | 20.00 | 19.00 | 18.00 | 25.00 | 24.00 | 23.00 |"
    assert lines[5] == "| baseline | - | - | - | - | - | - |"
    loose = report.metric_table([("teacher", flat(20.0))], 0.5).splitlines()[4]
    assert loose == "| teacher | 30.00 | 29.00 | 28.00 | 35.00 | 34.00 | 33.00 |"


def test_bar_chart_writes_a_png(tmp_path):
    path = report.bar_chart({"teacher": flat(20.0), "baseline": flat(5.0), "ADD": {}}, tmp_path / "c" / "chart.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[1] > image.shape[0] > 100  # two panels side by side


def test_prediction_grid_and_report(tmp_path):
    image = np.zeros((40, 130, 3), np.uint8)
    bev = np.full((60, 60, 3), 255, np.uint8)
    grid = report.prediction_grid({"a": (image, bev), "b": (image, bev)}, tmp_path / "fig" / "frame_000001.png")
    assert grid.read_bytes()[:4] == b"\x89PNG"
    chart = report.bar_chart({"teacher": flat(20.0)}, tmp_path / "fig" / "chart.png")
    path = report.write_report(tmp_path / "report.md", {"Teacher": flat(20.0), "Baseline": flat(3.0)}, chart,
                               [grid], {"train teacher": 65.0, "report": 2.0}, notes=["Preset `quick`."])
    text = path.read_text()
    assert "| Teacher | 20.00 | 19.00 | 18.00 | 25.00 | 24.00 | 23.00 |" in text
    assert "| Baseline | 13.00 | 12.00 | 11.00 | 18.00 | 17.00 | 16.00 |" in text  # the 0.5 table
    assert "![moderate AP](fig/chart.png)" in text
    assert "![frame_000001](fig/frame_000001.png)" in text
    assert "| train teacher | 0:01:05 |" in text and "| total | 0:01:07 |" in text


# --------------------------------------------------------------------------- stage markers


def test_training_marker_needs_the_exit_marker_and_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert not demo.training_done(run)
    (run / "last.ckpt").write_bytes(b"x")
    (run / "metrics.json").write_text("{}")
    assert not demo.training_done(run)  # both are rewritten while a run goes on
    (run / demo.TRAIN_MARKER).write_text("")
    assert demo.training_done(run)
    (run / "last.ckpt").unlink()
    assert not demo.training_done(run)
    (run / "last.ckpt").write_bytes(b"x")
    assert demo.find_checkpoint(run) == run / "last.ckpt"
    (run / "best.ckpt").write_bytes(b"x")
    assert demo.find_checkpoint(run) == run / "best.ckpt"  # the best one wins


def test_evaluation_marker_is_the_json_with_flat(tmp_path):
    assert demo.evaluation_json(tmp_path / "none") is None
    (tmp_path / "other.json").write_text(json.dumps({"x": 1}))
    assert demo.evaluation_json(tmp_path) is None
    (tmp_path / "metrics.json").write_text(json.dumps({"flat": {"Car/3d/easy/R40@0.70": 3}}))
    assert demo.read_flat(tmp_path) == {"Car/3d/easy/R40@0.70": 3.0}


def test_train_and_evaluate_skip_finished_stages(tmp_path, monkeypatch):
    calls = []

    def fake(args, stage, env=None):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for name in ("config.yaml", "last.ckpt", "metrics.json"):
                open(os.path.join(out, name), "w").write("{}")
        else:
            open(os.path.join(out, "eval.json"), "w").write(json.dumps({"flat": flat(1.0)}))

    monkeypatch.setattr(demo, "run_command", fake)
    ckpt = demo.train("cfg.yaml", tmp_path / "t", ["a.b=1"], seed=3)
    assert ckpt == tmp_path / "t" / "last.ckpt"
    assert calls[0][:7] == ["train", "--config", "cfg.yaml", "--out", str(tmp_path / "t"), "--resume", "auto"]
    assert calls[0][7:] == ["--seed", "3", "--set", "a.b=1"]
    assert demo.evaluate(tmp_path / "t", tmp_path / "e") == flat(1.0)
    assert calls[1][:3] == ["evaluate", "--config", str(tmp_path / "t" / "config.yaml")]
    demo.train("cfg.yaml", tmp_path / "t", ["a.b=1"], seed=3)
    demo.evaluate(tmp_path / "t", tmp_path / "e")
    assert len(calls) == 2  # both reused


def test_failed_training_names_the_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "run_command", lambda args, stage, env=None: None)  # writes nothing
    with pytest.raises(demo.StageError, match="stage 'train teacher'"):
        demo.train("cfg.yaml", tmp_path / "t", [], stage="train teacher")


def test_presets_exist_and_name_the_three_recipes():
    for name in ("quick", "default"):
        preset = demo.load_preset(name)
        for model in demo.MODELS:
            assert demo.recipe(preset, model).name.endswith(".yaml")
        items = demo.stage_overrides(preset, "add", "/data/x")
        assert items[0] == "data.root=/data/x"
    with pytest.raises(Exception, match="no such demo preset"):
        demo.load_preset("nope")


# --------------------------------------------------------------------------- pipeline, faked


P2 = np.array([[200.0, 0, 208, 0], [0, 200.0, 64, 0], [0, 0, 1, 0]])


def car(x: float, z: float, score: float | None = None):
    from monokd.data.kitti import Object3D

    return Object3D("Car", 0.0, 0, 0.0, np.array([100.0, 40, 160, 90]), 1.5, 1.6, 3.9,
                    np.array([x, 1.6, z]), 0.3, score)


def fake_root(root, frames=("000000", "000001", "000002")):
    """A KITTI-layout root of blank 416x128 frames; frame k holds k cars."""
    from monokd.data import kitti

    calib = kitti.Calibration(P2, P2, P2, P2)
    for k, frame in enumerate(frames):
        kitti.write_image(root / "training" / "image_2" / f"{frame}.png", np.full((128, 416, 3), 90, np.uint8))
        kitti.write_calib(root / "training" / "calib" / f"{frame}.txt", calib)
        kitti.write_label(root / "training" / "label_2" / f"{frame}.txt", [car(2.0 * i, 15.0 + 5 * i) for i in range(k)])
    kitti.write_split(root / "ImageSets" / "train.txt", list(frames))
    kitti.write_split(root / "ImageSets" / "val.txt", list(frames))
    return root


def fake_commands(calls):
    """A stand-in for ``monokd train`` / ``monokd evaluate`` writing their documented outputs."""
    from monokd.data import kitti

    def run(args, stage, env=None):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for name in ("config.yaml", "best.ckpt", "metrics.json"):
                open(os.path.join(out, name), "w").write("{}")
            return
        base = {"teacher": 30.0, "baseline": 10.0, "add": 15.0}[os.path.basename(out)]
        open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"flat": flat(base)}))
        kitti.write_label(os.path.join(out, "data", "000002.txt"), [car(0.5, 16.0, 0.9), car(3.0, 30.0, 0.1)])
    return run


def test_pick_frames_prefers_frames_with_cars(tmp_path):
    root = fake_root(tmp_path)
    assert demo.pick_frames(root, 2) == ["000002", "000001"]


def test_demo_pipeline_with_faked_commands(tmp_path, monkeypatch):
    root = fake_root(tmp_path / "data")
    (root / demo.SYNTH_MARKER).write_text("{}")
    calls = []
    monkeypatch.setattr(demo, "run_command", fake_commands(calls))
    path = demo.run_demo(tmp_path / "out", "quick", data_root=root)
    assert [c[0] for c in calls] == ["train"] * 3 + ["evaluate"] * 3
    add = calls[2]
    assert add[add.index("--config") + 1].endswith("add_monodetr_synth.yaml")
    assert f"distill.teacher.ckpt={tmp_path / 'out' / 'teacher' / 'best.ckpt'}" in add
    assert f"data.root={root}" in add
    text = path.read_text()
    assert "| MonoDETR + ADD | 15.00 | 14.00 | 13.00 | 20.00 | 19.00 | 18.00 |" in text
    assert "![frame_000002](figures/frame_000002.png)" in text
    assert "![frame_000001](figures/frame_000001.png)" in text
    assert (tmp_path / "out" / "figures" / "moderate_ap.png").is_file()
    demo.run_demo(tmp_path / "out", "quick", data_root=root)
    assert len(calls) == 6  # the rerun reused every stage


# --------------------------------------------------------------------------- end to end


def _missing_pipeline() -> str | None:
    for module in ("monokd.engine.train", "monokd.engine.evaluate", "monokd.data.synth", "monokd.models"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


@pytest.mark.slow
@pytest.mark.skipif(_missing_pipeline() is not None,
                    reason=f"monokd train / evaluate not available yet ({_missing_pipeline()} missing)")
def test_quick_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = demo.run_demo(tmp_path / "demo", "quick")
    text = path.read_text()
    for label in demo.LABELS.values():
        assert f"| {label} |" in text
    assert (tmp_path / "demo" / "figures" / "moderate_ap.png").read_bytes()[:4] == b"\x89PNG"
    frames = sorted((tmp_path / "demo" / "figures").glob("frame_*.png"))
    assert frames and all(f.name in text for f in frames)
    # a rerun reuses every stage: no checkpoint or result file is written again
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*")
               if p.suffix in (".ckpt", ".json", ".txt") and p.is_file()}
    assert any(p.suffix == ".ckpt" for p in written)
    demo.run_demo(tmp_path / "demo", "quick")
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_an_interrupted_stage_stops_its_child(monkeypatch):
    """Ctrl-C / SIGTERM during a stage must not leave the training running."""
    import subprocess

    started = []

    class Child:
        def __init__(self, command, env=None):
            started.append(self)
            self.terminated = False

        def wait(self, timeout=None):
            if not self.terminated:
                raise KeyboardInterrupt
            return -15

        def terminate(self):
            self.terminated = True

    monkeypatch.setattr(subprocess, "Popen", Child)
    with pytest.raises(KeyboardInterrupt):
        demo.run_command(["train"], "train teacher")
    assert started[0].terminated
