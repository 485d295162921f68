"""``monokd demo --unlabeled N``: the distilled model (only) trains on the raw drives' fresh
frames; a story whose method cannot take them is refused before anything is trained. The
train / evaluate commands are faked (the quick preset's real run: docs/unlabeled.md)."""

from __future__ import annotations

import io
import json
import os

import pytest

from monokd.data import kitti
from monokd.errors import ConfigError, MonokdError
from monokd.pipeline import demo, stages, takd_figure
from tests.helpers import car, fake_root, flat


def _fake_commands(calls):
    def run(args, stage, **options):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for file in ("config.yaml", "last.ckpt"):
                open(os.path.join(out, file), "w").write("{}")
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"validations": [
                {"epoch": 0, "step": 1, "metrics": flat(10.0)}]}))
            return
        open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"flat": flat(10.0)}))
        kitti.write_label(os.path.join(out, "data", "000002.txt"), [car(0.5, 16.0, 0.9)])
    return run


def _root(tmp_path, raw: bool = True):
    root = fake_root(tmp_path / "data")
    (root / stages.SYNTH_MARKER).write_text("{}")
    if raw:
        (root / "raw" / "ImageSets").mkdir(parents=True)
        (root / "raw" / "ImageSets" / "unlabeled.txt").write_text("")
    return root


def _train_calls(calls) -> dict[str, list[str]]:
    return {os.path.basename(c[c.index("--out") + 1]): c for c in calls if c[0] == "train"}


def test_only_the_distilled_model_trains_on_the_unlabeled_frames(tmp_path, monkeypatch):
    root, calls = _root(tmp_path), []
    monkeypatch.setattr(stages, "run_command", _fake_commands(calls))
    monkeypatch.setattr(takd_figure, "takd_bev_figure", lambda root, runs, plot, out: out / "bev_features.png")
    demo.run_demo(tmp_path / "out", "quick", data_root=root, method="takd", stream=io.StringIO(), unlabeled=8)
    trained = _train_calls(calls)
    items = [f"data.unlabeled.root={root / 'raw'}", "data.unlabeled.split=unlabeled"]
    assert all(item in trained["takd"] for item in items)
    for name in ("lidar_teacher", "ta", "camera"):
        assert not any(a.startswith("data.unlabeled") for a in trained[name]), name


def test_a_story_that_needs_labels_on_every_frame_is_refused_before_training(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "run_command", _fake_commands(calls))
    with pytest.raises(ConfigError, match=r"distill.teacher \('monodetr'\) reads the frame's labels"):
        demo.run_demo(tmp_path / "out", "quick", data_root=_root(tmp_path), student="monodetr", method="add",
                      stream=io.StringIO(), unlabeled=8)
    assert calls == []
    demo.check_unlabeled_story(demo.load_preset("quick", "caddn", "add"), tmp_path)  # ADD on CaDDN may


def test_a_dataset_without_raw_drives_is_not_extended(tmp_path):
    root = _root(tmp_path, raw=False)
    with pytest.raises(MonokdError, match="SynthKITTI without raw drives"):
        stages.ensure_synth(root, 3, 1, raw_drives=2, raw_fresh=8)
    assert stages.ensure_synth(root, 3, 1) == root
