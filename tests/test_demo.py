"""monokd demo: the report (tables, chart, learning curves, markdown), the stage markers and
their reuse, the stories (--student / --method), the lanes that run trainings side by side,
the plain progress lines, and the quick preset end to end."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from monokd.pipeline import demo, pictures, presets, stages, stories
from monokd.pipeline import report as demo_report
from monokd.viz import report
from tests.helpers import car, colour_mask, fake_commands, fake_root, flat, read_png, tallest_run

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


def test_bar_chart_draws_each_models_bars_to_scale(tmp_path):
    path = report.bar_chart({"teacher": flat(20.0), "baseline": flat(5.0), "ADD": {}}, tmp_path / "c" / "chart.png")
    chart = read_png(path)
    assert chart.shape == (374, 924, 3)  # (2 x 4.2) x 3.4 inches at 110 dpi: a panel per IoU
    for panel, teacher, baseline in ((chart[:, :462], 24.0, 9.0), (chart[:, 462:], 34.0, 19.0)):
        # the tallest bars are the moderate AP_BEV: flat(base) gives base + 10 (IoU 0.5) + 5 - 1
        grey, blue = tallest_run(colour_mask(panel, "#8c8c8c")), tallest_run(colour_mask(panel, "#1f77b4"))
        assert grey / blue == pytest.approx(teacher / baseline, rel=0.03)
        axes = tallest_run(colour_mask(panel, (0, 0, 0)))  # the y axis: 1.2 x the tallest value
        assert grey / axes == pytest.approx(1 / 1.2, rel=0.03)
    # ADD without metrics: no bar (its red only in the legend, drawn in the right panel)
    assert tallest_run(colour_mask(chart[:, :462], "#d62728")) == 0
    assert 0 < tallest_run(colour_mask(chart[:, 462:], "#d62728")) < 20


def solid_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``mask``'s pixels, which must fill that box."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert mask.sum() == (bottom - top) * (right - left), "not one solid rectangle"
    return int(top), int(bottom), int(left), int(right)


def test_prediction_grid_puts_each_models_image_over_its_bev(tmp_path):
    red, green, blue = (220, 30, 30), (30, 200, 30), (30, 30, 220)
    image_a, image_b = np.full((40, 130, 3), red, np.uint8), np.full((40, 130, 3), green, np.uint8)
    bev = np.full((60, 60, 3), blue, np.uint8)
    grid = report.prediction_grid({"a": (image_a, bev), "b": (image_b, bev)}, tmp_path / "fig" / "frame_000001.png")
    picture = read_png(grid)
    assert picture.shape == (583, 800, 3)  # 4 in a column, 4 x (40/130 + 60/60) + 0.6 in high, 100 dpi
    for column, own, other in ((picture[:, :400], red, green), (picture[:, 400:], green, red)):
        assert not colour_mask(column, other, 3).any()
        top, bottom, left, right = solid_box(colour_mask(column, own, 3))
        assert (right - left) / (bottom - top) == pytest.approx(130 / 40, rel=0.02)
        bev_top, bev_bottom, bev_left, bev_right = solid_box(colour_mask(column, blue, 3))
        assert bev_right - bev_left == pytest.approx(bev_bottom - bev_top, abs=1)  # the BEV stays square
        assert bottom < bev_top  # the image above its BEV, as wide
        assert (left, right) == (bev_left, bev_right)


def test_report_links_the_chart_and_the_frames(tmp_path):
    image = np.zeros((40, 130, 3), np.uint8)
    bev = np.full((60, 60, 3), 255, np.uint8)
    grid = report.prediction_grid({"a": (image, bev), "b": (image, bev)}, tmp_path / "fig" / "frame_000001.png")
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
    assert not stages.training_done(run)
    (run / "last.ckpt").write_bytes(b"x")
    (run / "metrics.json").write_text("{}")
    assert not stages.training_done(run)  # both are rewritten while a run goes on
    (run / stages.TRAIN_MARKER).write_text("")
    assert stages.training_done(run)
    (run / "last.ckpt").unlink()
    assert not stages.training_done(run)
    (run / "last.ckpt").write_bytes(b"x")
    assert stages.find_checkpoint(run) == run / "last.ckpt"
    (run / "best.ckpt").write_bytes(b"x")
    assert stages.find_checkpoint(run) == run / "best.ckpt"  # the best one wins


def test_evaluation_marker_is_the_json_with_flat(tmp_path):
    assert stages.evaluation_json(tmp_path / "none") is None
    (tmp_path / "other.json").write_text(json.dumps({"x": 1}))
    assert stages.evaluation_json(tmp_path) is None
    (tmp_path / "metrics.json").write_text(json.dumps({"flat": {"Car/3d/easy/R40@0.70": 3}}))
    assert stages.read_flat(tmp_path) == {"Car/3d/easy/R40@0.70": 3.0}


def test_train_and_evaluate_skip_finished_stages(tmp_path, monkeypatch):
    calls = []

    def fake(args, stage, **options):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for name in ("config.yaml", "last.ckpt", "metrics.json"):
                open(os.path.join(out, name), "w").write("{}")
        else:
            open(os.path.join(out, "eval.json"), "w").write(json.dumps({"flat": flat(1.0)}))

    monkeypatch.setattr(stages, "run_command", fake)
    ckpt = stages.train("cfg.yaml", tmp_path / "t", ["a.b=1"], seed=3)
    assert ckpt == tmp_path / "t" / "last.ckpt"
    assert calls[0][:7] == ["train", "--config", "cfg.yaml", "--out", str(tmp_path / "t"), "--resume", "auto"]
    assert calls[0][7:] == ["--seed", "3", "--set", "a.b=1"]
    assert stages.evaluate(tmp_path / "t", tmp_path / "e") == flat(1.0)
    assert calls[1][:3] == ["evaluate", "--config", str(tmp_path / "t" / "config.yaml")]
    stages.train("cfg.yaml", tmp_path / "t", ["a.b=1"], seed=3)
    stages.evaluate(tmp_path / "t", tmp_path / "e")
    assert len(calls) == 2  # both reused


def test_failed_training_names_the_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "run_command", lambda args, stage, **options: None)  # writes nothing
    with pytest.raises(stages.StageError, match="stage 'train teacher'"):
        stages.train("cfg.yaml", tmp_path / "t", [], stage="train teacher")


def test_presets_exist_and_name_the_three_recipes():
    for name in ("quick", "default", "synth"):
        preset = presets.load_preset(name)
        for model in stories.MODELS:
            assert presets.recipe(preset, model).is_file()
        items = presets.stage_overrides(preset, "add", "/data/x")
        assert items[0] == "data.root=/data/x"
    with pytest.raises(Exception, match="no such demo preset"):
        presets.load_preset("nope")


def test_preset_items_all_student_model_then_student_model(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("data: {num_train: 1, num_val: 1}\noverrides: {all: [a=1], caddn: [b=2], teacher: [c=3], "
                    "caddn.teacher: [d=4], monodetr.teacher: [e=5], baseline: [f=6]}\n")
    caddn = presets.load_preset(str(path), student="caddn")
    assert presets.preset_items(caddn, "overrides", "teacher") == ["a=1", "b=2", "c=3", "d=4"]
    assert presets.preset_items(caddn, "overrides", "baseline") == ["a=1", "b=2", "f=6"]
    monodetr = presets.load_preset(str(path), student="monodetr")
    assert presets.preset_items(monodetr, "overrides", "teacher") == ["a=1", "c=3", "e=5"]
    # the default preset's MonoDETR teacher schedule stays MonoDETR's own
    default = presets.load_preset("default", student="caddn")
    assert "train.lr_milestones=[7]" not in presets.stage_overrides(default, "teacher", "/d")
    assert "train.lr_milestones=[7]" in presets.stage_overrides(presets.load_preset("default"), "teacher", "/d")


def test_a_preset_may_name_its_story_and_replace_recipes(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("data: {num_train: 1, num_val: 1}\nmethod: kd0\nconfigs: {teacher: other_teacher.yaml}\n")
    with pytest.raises(presets.ConfigError, match="--method kd0: unknown"):
        presets.load_preset(str(path))
    preset = presets.load_preset(str(path), method="add")
    assert presets.recipe(preset, "teacher") == presets.CONFIG_DIR / "other_teacher.yaml"
    assert presets.recipe(preset, "add") == presets.CONFIG_DIR / "add_monodetr_synth.yaml"


def test_overrides_go_all_then_student_then_model(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("data: {num_train: 1, num_val: 1}\n"
                    "overrides: {all: [a=1], monodetr: [b=2], add: [c=3], teacher: [d=4], caddn: [e=5]}\n")
    preset = presets.load_preset(str(path))
    assert presets.stage_overrides(preset, "add", "/r") == ["data.root=/r", "a=1", "b=2", "c=3"]
    assert presets.stage_overrides(preset, "teacher", "/r") == ["data.root=/r", "a=1", "b=2", "d=4"]


def test_the_recipes_behind_the_readme_stay_the_story_recipes():
    """The demo sizes the synth recipes by --set items; it never swaps them."""
    plot = stories.story()
    assert [[m.name for m in wave] for wave in plot.waves] == [["teacher", "baseline"], ["add"]]
    assert {m.name: m.recipe for m in plot.models} == {
        "teacher": "monodetr_teacher_synth.yaml", "baseline": "monodetr_synth.yaml", "add": "add_monodetr_synth.yaml"}
    assert plot.model("add").teacher == "teacher"


@pytest.mark.parametrize("student, method, message", [
    ("caddn0", "add", "--student caddn0: unknown (did you mean 'caddn'? known: caddn, monodetr"),
    ("monodetr", "kd0", "--method kd0: unknown (known: add, takd"),
])
def test_unknown_student_or_method_is_a_one_line_error(student, method, message, capsys):
    from monokd.cli import main

    assert main(["demo", "--student", student, "--method", method, "--out", "/nonexistent/never"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"monokd demo: error: {message}") and len(err.strip().splitlines()) == 1
    assert not os.path.exists("/nonexistent/never")


def test_a_new_story_is_one_registry_entry(tmp_path, monkeypatch):
    plot = stories.Story(waves=((stories.Model("teacher", "monodetr_teacher_synth.yaml", "T", "teacher"),),
                             (stories.Model("student", "add_monodetr_synth.yaml", "S", "distilled", teacher="teacher"),)))
    monkeypatch.setitem(stories.STORIES, ("monodetr", "kd0"), plot)
    assert stories.story("monodetr", "kd0") is plot
    assert presets.recipe(presets.load_preset("quick", "monodetr", "kd0"), "student").name == "add_monodetr_synth.yaml"
    monkeypatch.setitem(stories.STORIES, ("other0", "add"), plot)
    with pytest.raises(presets.ConfigError, match="--student other0 --method kd0: no such demo"):
        stories.story("other0", "kd0")  # both names known, not the pair


# --------------------------------------------------------------------------- pipeline, faked


def test_pick_frames_prefers_frames_with_cars(tmp_path):
    root = fake_root(tmp_path)
    assert pictures.pick_frames(root, 2) == ["000002", "000001"]


def test_demo_pipeline_with_faked_commands(tmp_path, monkeypatch):
    root = fake_root(tmp_path / "data")
    (root / stages.SYNTH_MARKER).write_text("{}")
    calls = []
    fake = fake_commands(calls)

    def run(args, stage, **options):
        if stage == "train teacher":  # the teacher ends its wave last: the report keeps the story's order
            time.sleep(0.5)
        fake(args, stage, **options)

    monkeypatch.setattr(stages, "run_command", run)
    printed = io.StringIO()
    path = demo.run_demo(tmp_path / "out", "quick", data_root=root, stream=printed)
    # the teacher and the baseline in their lanes (trained, then evaluated), then ADD
    table_calls = [c for c in calls if "eval_boxes" not in c[c.index("--out") + 1]]
    assert sorted((c[0], os.path.basename(c[c.index("--out") + 1])) for c in table_calls[:4]) == [
        ("evaluate", "baseline"), ("evaluate", "teacher"), ("train", "baseline"), ("train", "teacher")]
    assert [(c[0], os.path.basename(c[c.index("--out") + 1])) for c in table_calls[4:]] == [
        ("train", "add"), ("evaluate", "add")]
    add = next(c for c in calls if c[0] == "train" and c[c.index("--out") + 1].endswith("add"))
    assert add[add.index("--config") + 1].endswith("add_monodetr_synth.yaml")
    assert f"distill.teacher.ckpt={tmp_path / 'out' / 'teacher' / 'best.ckpt'}" in add
    assert f"data.root={root}" in add
    # the preset's pictures_set items reach a second evaluation a model (its result files feed
    # the pictures); the table's evaluation and the trainings keep the recipes' decoding
    boxes = [c for c in calls if "eval_boxes" in c[c.index("--out") + 1]]
    assert len(boxes) == 3 and all(c[0] == "evaluate" for c in boxes)
    for call in calls:
        assert ("model.decode.threshold=0.0" in call) == (call in boxes)
    text = path.read_text()
    assert "| MonoDETR + ADD | 15.00 | 14.00 | 13.00 | 20.00 | 19.00 | 18.00 |" in text
    rows = [line.split(" |")[0] for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    assert rows[:4] == ["| model", "| Teacher (object-wise GT depth)", "| MonoDETR (baseline)", "| MonoDETR + ADD"]
    assert "![frame_000002](figures/frame_000002.png)" in text
    assert "![frame_000001](figures/frame_000001.png)" in text
    assert "![learning curves](figures/learning_curves.png)" in text
    # the sentence under the table: the steps (the last validation's), what it shows, the pointer
    assert ("single-seed runs of 30, 30, 30 steps (Teacher (object-wise GT depth), MonoDETR (baseline), "
            "MonoDETR + ADD)") in text
    assert "Teacher (object-wise GT depth) ahead of MonoDETR (baseline) and MonoDETR + ADD" in text
    assert "README's 5-seed runs at the recipe's schedule" in text and "docs/add.md" in text
    # the chart's bars in the roles' colours, to scale: IoU 0.7's moderate AP_BEV is base + 4
    chart = read_png(tmp_path / "out" / "figures" / "moderate_ap.png")
    left = chart[:, :chart.shape[1] // 2]
    teacher, add, baseline = (tallest_run(colour_mask(left, demo_report.ROLE_COLORS[role]))
                              for role in ("teacher", "distilled", "baseline"))
    assert (teacher / baseline, add / baseline) == pytest.approx((34 / 14, 19 / 14), rel=0.03)
    curves = read_png(tmp_path / "out" / "figures" / "learning_curves.png")
    assert all(colour_mask(curves, colour, 8).sum() > 50 for colour in demo_report.ROLE_COLORS.values())
    # the end of the run says where the report is and how long each stage took
    end = printed.getvalue()
    assert f"report: {path}" in end
    for stage in ("data", "train teacher", "evaluate add", "report", "total"):
        assert f"  {stage}" in end
    demo.run_demo(tmp_path / "out", "quick", data_root=root, stream=io.StringIO())
    assert len(calls) == 9  # the rerun reused every stage
    stages_table = path.read_text().split("## Stage times")[1]
    assert "| train add | | reused: done by an earlier run | |" in stages_table
    assert "| 0:00:00 |" not in stages_table  # a reused stage is not a measurement of zero


def test_anchor_head_story_pictures_lower_the_score_threshold(tmp_path, monkeypatch):
    # CaDDN decodes through its anchor head: its pictures' evaluation lowers
    # model.anchor_head.score_threshold, the table's keeps the recipe's; the sentence under the
    # table points at the story's own page, not at MonoDETR's README runs
    root = fake_root(tmp_path / "data")
    (root / stages.SYNTH_MARKER).write_text("{}")
    calls = []
    monkeypatch.setattr(stages, "run_command", fake_commands(calls))
    path = demo.run_demo(tmp_path / "out", "quick", data_root=root, student="caddn", stream=io.StringIO())
    boxes = [c for c in calls if "eval_boxes" in c[c.index("--out") + 1]]
    assert len(boxes) == 3
    for call in calls:
        assert ("model.anchor_head.score_threshold=0.01" in call) == (call in boxes)
        assert "model.decode.threshold=0.0" not in call
    text = path.read_text()
    assert "see the longer runs in docs/caddn.md" in text and "README's longer" not in text
    assert "Teacher (pixel-wise GT depth) ahead of CaDDN (baseline) and CaDDN + ADD" in text


def test_table_threshold_and_colours_per_model():
    # each detector class declares its key: its value, else the class's default
    assert demo_report.table_threshold({"model": {"name": "monodetr", "decode": {"topk": 30, "threshold": 0.3}}}) == 0.3
    assert demo_report.table_threshold({"model": {"name": "monodetr"}}) == 0.2
    assert demo_report.table_threshold({"model": {"name": "patchnet", "decode": {"min_score": 0.05}}}) == 0.05
    assert demo_report.table_threshold({"model": {"name": "caddn", "anchor_head": {"score_threshold": 0.3}}}) == 0.3
    assert demo_report.table_threshold({"model": {"name": "caddn", "anchor_head": {}}}) == 0.1
    assert demo_report.table_threshold({"model": {"name": "takd_student", "anchor_head": {"score_threshold": 0.4}}}) == 0.4
    assert demo_report.table_threshold({}) is None
    config = demo_report.run_config(presets.load_preset("quick", "caddn", "takd"), "lidar_teacher", Path("/nonexistent"))
    assert demo_report.table_threshold(config) == 0.1
    colors = demo_report.model_colors(stories.story("caddn", "takd").models)
    assert len(set(colors.values())) == 4  # the LiDAR teacher and the TA no longer share a grey


def test_read_curve_and_learning_curve_figure(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert demo_report.read_curve(run) == []
    history = [{"epoch": 1, "step": 20, "metrics": flat(4.0)}, {"epoch": 0, "step": 10, "metrics": flat(2.0)}]
    (run / "metrics.json").write_text(json.dumps({"validations": history}))
    curve = demo_report.read_curve(run)
    assert [step for step, _ in curve] == [10, 20]
    assert curve[1][1][report.metric_key("bev", "moderate", 0.5)] == 4.0 + 10 + 5 - 1
    path = report.learning_curves({"teacher": curve, "empty": []}, tmp_path / "f" / "curves.png")
    picture = read_png(path)
    assert picture.shape == (374, 1012, 3)  # (2 x 4.6) x 3.4 inches at 110 dpi: a panel per key
    # the teacher's line in the first colour of the cycle in both panels; "empty" draws no line
    for panel in (picture[:, :506], picture[:, 506:]):
        assert colour_mask(panel, "C0", 8).sum() > 50
        assert not colour_mask(panel, "C1", 8).any()


def test_pictures_show_the_top_k_by_score_whatever_the_threshold():
    objects = [car(0.0, 10.0, s) for s in (0.05, 0.3, 0.01, 0.12)]
    assert [o.score for o in pictures.top_predictions(objects, 3)] == [0.3, 0.12, 0.05]
    assert pictures.top_predictions(objects, 10)[-1].score == 0.01
    assert pictures.top_predictions([], 3) == []


# --------------------------------------------------------------------------- end to end


def _missing_pipeline() -> str | None:
    for module in ("monokd.commands.train", "monokd.training.evaluate", "monokd.data.synth", "monokd.models"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


@pytest.mark.slow
@pytest.mark.skipif(_missing_pipeline() is not None,
                    reason=f"monokd train / evaluate not available yet ({_missing_pipeline()} missing)")
def test_quick_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = demo.run_demo(tmp_path / "demo", "quick", stream=io.StringIO())
    printed = capsys.readouterr().out
    assert "[data] 12/12 frames rendered" in printed and "[data] 1/12 frames rendered" in printed
    text = path.read_text()
    for label in stories.LABELS.values():
        assert f"| {label} |" in text
    assert "Precision: `32`, every model." in text  # the quick preset's recipes train in fp32
    for name, size in (("moderate_ap.png", (374, 924, 3)), ("learning_curves.png", (374, 1012, 3))):
        picture = read_png(tmp_path / "demo" / "figures" / name)
        assert picture.shape == size and f"(figures/{name})" in text
        # every model in its role's colour (at least its legend entry: an AP may be 0)
        assert all(colour_mask(picture, colour, 8).any() for colour in demo_report.ROLE_COLORS.values())
    for model in stories.MODELS:  # two validations a run: the learning curve has two points
        assert len(demo_report.read_curve(tmp_path / "demo" / model)) == 2
        log = (tmp_path / "demo" / "logs" / f"{model}.log").read_text()
        assert "\r" not in log and "epoch 2/2 step" in log  # plain progress lines, no carriage returns
    frames = sorted((tmp_path / "demo" / "figures").glob("frame_*.png"))
    assert frames and all(f.name in text for f in frames)
    # a rerun reuses every stage: no checkpoint or result file is written again
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*")
               if p.suffix in (".ckpt", ".json", ".txt") and p.is_file()}
    assert any(p.suffix == ".ckpt" for p in written)
    demo.run_demo(tmp_path / "demo", "quick", stream=io.StringIO())
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
        stages.run_command(["train"], "train teacher")
    assert started[0].terminated


# --------------------------------------------------------------------------- lanes and progress


def test_display_plain_lines_off_a_terminal():
    from monokd.pipeline.lanes import Display

    out = io.StringIO()
    display = Display(["baseline", "add"], stream=out)
    assert not display.live  # a StringIO is no terminal
    display.show("add", "epoch 1/3 step 5/30 loss 9.00\n")
    display.show("add", "Lightning's chatter is not progress\n")
    display.status("baseline", "done")
    assert out.getvalue() == "[add] epoch 1/3 step 5/30 loss 9.00\n[baseline] done\n"


def test_display_on_a_terminal_rewrites_one_line_per_lane():
    from monokd.pipeline.lanes import Display

    out = io.StringIO()
    display = Display(["baseline", "add"], stream=out, live=True)
    display.show("add", "epoch 1/3 step 5/30")
    display.show("baseline", "epoch 1/3 step 10/30")
    text = out.getvalue()
    assert text.count("\x1b[2F") == 1  # the second drawing goes back up over both lines
    last = text.split("\x1b[2F")[-1]
    assert last == "\x1b[2Kbaseline | epoch 1/3 step 10/30\n\x1b[2Kadd      | epoch 1/3 step 5/30\n"


def test_lanes_run_children_side_by_side_and_log_their_output(tmp_path):
    from monokd.pipeline.lanes import Display, Lane, Lanes

    out = io.StringIO()
    lanes, display = Lanes(), Display(["a", "b"], stream=out)
    code = "import sys, time; time.sleep(0.5); print('epoch 1/1 step 1/1', sys.argv[1]); print('other')"
    used = {}

    def job(name):
        lane = Lane(name, tmp_path / f"{name}.log", lanes, display)
        code_ = lane.run([sys.executable, "-c", code, name])
        used[name] = lane.cpu_seconds
        return code_

    import time

    began = time.monotonic()
    assert lanes.side_by_side({"a": lambda: job("a"), "b": lambda: job("b")}) == {"a": 0, "b": 0}
    assert time.monotonic() - began < 5  # (generous) not a timing claim: both ran and ended
    assert sorted(out.getvalue().splitlines()) == ["[a] epoch 1/1 step 1/1 a", "[b] epoch 1/1 step 1/1 b"]
    assert (tmp_path / "a.log").read_text().splitlines()[1:] == ["epoch 1/1 step 1/1 a", "other"]
    # each child's own CPU time: its start-up, not the sleep
    assert all(0 < seconds < 0.5 for seconds in used.values())


def test_a_failing_lane_raises_after_the_others_end(tmp_path):
    from monokd.pipeline.lanes import Display, Lanes

    lanes, display = Lanes(), Display(["a", "b"], stream=io.StringIO())

    def fail():
        raise stages.StageError("stage 'train a' failed")

    done = []
    with pytest.raises(stages.StageError, match="train a"):
        lanes.side_by_side({"a": fail, "b": lambda: done.append(1)})
    assert done == [1]


def test_plain_progress_line():
    from types import SimpleNamespace

    from monokd.training.callbacks import PlainProgress

    progress = PlainProgress(every=5)
    trainer = SimpleNamespace(global_step=120, max_steps=-1, num_training_batches=50, max_epochs=12,
                              current_epoch=2, callback_metrics={"train/loss": 20.137, "train/lr": 1e-3},
                              is_global_zero=True)
    assert progress.line(trainer) == "epoch 3/12 step 120/600 loss 20.14 lr 1.0e-03"
    progress.started, progress.first_step = 0.0, 100
    import time

    progress.started = time.monotonic() - 40.0  # 20 steps in 40 s
    line = progress.line(trainer)
    assert line.startswith("epoch 3/12 step 120/600 loss 20.14 lr 1.0e-03 2.0") and "eta 0:16:" in line


def test_precision_line_names_each_models_precision(tmp_path):
    runs = {}
    for name, value in (("teacher", "auto"), ("baseline", "32"), ("add", "32")):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        (runs[name] / "config.yaml").write_text(f"train: {{precision: '{value}'}}\n")
    line = demo_report.precision_line(runs, {"teacher": "Teacher"})
    assert line.startswith("Precision: Teacher `auto` (here ") and line.endswith("baseline `32`, add `32`.")
    assert "bf16-mixed" in line or "32-true" in line
    (runs["teacher"] / "config.yaml").write_text("train: {precision: '32'}\n")
    assert demo_report.precision_line(runs, {}) == "Precision: `32`, every model."


def test_pictures_draw_the_car_ground_truth_only(tmp_path, monkeypatch):
    from monokd.data import kitti
    from monokd.viz import report as viz_report

    root = fake_root(tmp_path / "data", frames=("000000",))
    label = kitti.read_label(root / "training" / "label_2" / "000000.txt")
    person = kitti.parse_label_line("Pedestrian 0 0 0 10 10 20 40 1.7 0.6 0.8 1.0 1.6 12.0 0.0")
    kitti.write_label(root / "training" / "label_2" / "000000.txt", label + [car(1.0, 20.0), person])
    titles = []
    monkeypatch.setattr(viz_report, "prediction_grid", lambda panels, path, title: titles.append(title) or path)
    pictures.draw_pictures(root, {"baseline": tmp_path / "none"}, tmp_path / "figures", 1)
    assert titles == ["val frame 000000: Car ground truth green (1), each model's top 3 predictions red with their scores"]
