"""``monokd demo --method takd``: the MonoTAKD story (LiDAR teacher and TA, then the camera
student alone and the MonoTAKD student), with the train / evaluate commands faked."""

from __future__ import annotations

import io
import json
import os
import sys

from monokd.pipeline import demo
from tests.helpers import car, fake_root, flat

SCORES = {"lidar_teacher": 40.0, "ta": 30.0, "camera": 10.0, "takd": 14.0}


def fake_commands(calls):
    from monokd.data import kitti

    def run(args, stage, **options):
        calls.append(args)
        out = args[args.index("--out") + 1]
        name = os.path.basename(out)
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for file in ("config.yaml", "last.ckpt"):
                open(os.path.join(out, file), "w").write("{}")
            history = [{"epoch": e, "step": 10 * (e + 1), "metrics": flat(SCORES[name] - 2 + e)} for e in range(2)]
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"validations": history}))
            return
        open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"flat": flat(SCORES[name])}))
        kitti.write_label(os.path.join(out, "data", "000002.txt"), [car(0.5, 16.0, 0.9)])
    return run


def test_method_takd_picks_the_caddn_story_and_wires_teacher_and_ta(tmp_path, monkeypatch):
    preset = demo.load_preset("quick", None, "takd")
    assert preset["student"] == "caddn" and [m.name for m in preset["story"].models] == [
        "lidar_teacher", "ta", "camera", "takd"]
    assert demo.load_preset("quick")["story"] is demo.story()  # the default story is unchanged
    assert demo.story().method == "ADD" and not any(m.ta for m in demo.story().models)
    root = fake_root(tmp_path / "data")
    (root / demo.SYNTH_MARKER).write_text("{}")
    calls = []
    monkeypatch.setattr(demo, "run_command", fake_commands(calls))
    figures = []  # the BEV feature figure needs real checkpoints: recorded, not drawn
    monkeypatch.setattr(demo, "takd_bev_figure", lambda root, runs, plot, out: figures.append(runs) or
                        (out / "bev_features.png"))
    path = demo.run_demo(tmp_path / "out", "quick", data_root=root, method="takd", stream=io.StringIO())
    trained = [os.path.basename(c[c.index("--out") + 1]) for c in calls if c[0] == "train"]
    assert sorted(trained[:2]) == ["lidar_teacher", "ta"] and sorted(trained[2:]) == ["camera", "takd"]
    takd = next(c for c in calls if c[0] == "train" and c[c.index("--out") + 1].endswith("takd"))
    assert takd[takd.index("--config") + 1].endswith("takd_synth.yaml")
    out = tmp_path / "out"
    for item in (f"distill.teacher.ckpt={out / 'lidar_teacher' / 'last.ckpt'}",
                 f"distill.ta.ckpt={out / 'ta' / 'last.ckpt'}",
                 "model.image_channels=8"):
        assert item in takd
    lidar = next(c for c in calls if c[0] == "train" and c[c.index("--out") + 1].endswith("lidar_teacher"))
    assert "model.image_channels=8" not in lidar  # the camera sizes do not reach the LiDAR model
    text = path.read_text()
    assert text.startswith("# monokd demo: MonoTAKD on SynthKITTI")
    assert len(figures) == 1 and "![BEV features](figures/bev_features.png)" in text
    for label in ("LiDAR teacher (pillars)", "TA (camera, GT depth)", "CaDDN (student alone)", "CaDDN + MonoTAKD"):
        assert f"| {label} |" in text


def test_the_pictures_second_evaluation_says_what_it_is_for(tmp_path, monkeypatch):
    """Each model's second evaluation (low threshold, for the pictures' boxes only) is
    announced as such, and its command's lines show after demo.PICTURES_TAG."""
    root = fake_root(tmp_path / "data")
    (root / demo.SYNTH_MARKER).write_text("{}")
    calls, tags = [], {}
    run = fake_commands(calls)

    def tagged(args, stage, **options):
        tags[args[args.index("--out") + 1]] = options["lane"].tag
        run(args, stage, **options)

    monkeypatch.setattr(demo, "run_command", tagged)
    monkeypatch.setattr(demo, "takd_bev_figure", lambda root, runs, plot, out: None)
    printed = io.StringIO()
    demo.run_demo(tmp_path / "out", "quick", data_root=root, method="takd", stream=printed)
    out = tmp_path / "out"
    assert tags[str(out / "eval_boxes" / "ta")] == demo.PICTURES_TAG
    assert tags[str(out / "eval" / "ta")] == "" and tags[str(out / "ta")] == ""
    again = f"[ta] evaluating again, at a low score threshold, only for the pictures' boxes ({out / 'eval_boxes' / 'ta'}"
    assert again in printed.getvalue() and "  pictures' boxes ta  " in printed.getvalue()  # its stage-time row
    display = demo.Display(["ta"], stream=io.StringIO(), live=False)
    lane = demo.Lane("ta", tmp_path / "ta.log", demo.Lanes(), display).tagged(demo.PICTURES_TAG)
    assert lane.run([sys.executable, "-c", "print('evaluating ta/last.ckpt on val (4 frames)')"]) == 0
    assert display.stream.getvalue() == "[ta] pictures' boxes only: evaluating ta/last.ckpt on val (4 frames)\n"
    assert (tmp_path / "ta.log").read_text().endswith("\nevaluating ta/last.ckpt on val (4 frames)\n")
