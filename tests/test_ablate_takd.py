"""``monokd ablate --method takd`` with the train / evaluate commands faked: per seed the LiDAR
teacher and the TA, then each row, distilled rows pointed at both."""

from __future__ import annotations

import json
import os

import pytest

from monokd.pipeline import ablate, stages


def test_takd_ablation_trains_teacher_and_ta_then_the_rows(tmp_path, monkeypatch):
    calls = []

    def fake(args, stage, env=None):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for name in ("config.yaml", "last.ckpt", "metrics.json"):
                open(os.path.join(out, name), "w").write("{}")
            return
        seed = int(out.split(os.sep + "seed")[1].split(os.sep)[0])
        value = {"lidar_teacher": 40.0, "ta": 30.0, "student": 10.0}.get(os.path.basename(out), 12.0) + seed
        open(os.path.join(out, "e.json"), "w").write(json.dumps({"flat": {"Car/3d/moderate/R40@0.70": value}}))

    monkeypatch.setattr(stages, "run_command", fake)
    monkeypatch.setattr(stages, "ensure_synth", lambda root, *a, **k: root)
    results = ablate.run_ablation("quick", 2, tmp_path / "runs", tmp_path / "res", data_root=tmp_path / "data",
                                  rows_spec="lidar_teacher,ta,student,+IMD,full", method="takd")
    trains = [c for c in calls if c[0] == "train"]
    assert len(trains) == 2 * 5
    by_out = {c[c.index("--out") + 1]: c for c in trains}
    seed0 = tmp_path / "runs" / "seed0"
    full = by_out[str(seed0 / "full")]
    assert full[full.index("--config") + 1].endswith("takd_synth.yaml")
    assert f"distill.teacher.ckpt={seed0 / 'lidar_teacher' / 'last.ckpt'}" in full
    assert f"distill.ta.ckpt={seed0 / 'ta' / 'last.ckpt'}" in full
    assert "model.image_channels=8" in full  # the quick preset's size of the takd model
    assert not any("distill.ta" in a for a in by_out[str(seed0 / "student")])
    assert by_out[str(seed0 / "ta")][by_out[str(seed0 / "ta")].index("--config") + 1].endswith("takd_ta_synth.yaml")
    rows = {r["name"]: r for r in results["rows"]}
    assert rows["lidar_teacher"]["mean"]["Car/3d/moderate/R40@0.70"] == pytest.approx(40.5)
    assert rows["lidar_teacher"]["label"] == "LiDAR teacher (pillars)"
    text = (tmp_path / "res" / "takd_ablation.md").read_text()
    assert text.startswith("# MonoTAKD ablation on preset `quick`")
    assert ablate.resolve_rows(None, "synth", *ablate.distill_rows("takd")[:2], frozen=["lidar_teacher", "ta"]) == [
        "lidar_teacher", "ta", "student", "+IMD", "+CMRD", "+SAM", "+FFM", "full"]
    with pytest.raises(Exception, match="unknown row"):
        ablate.resolve_rows("F+SA", "synth", *ablate.distill_rows("takd")[:2], frozen=["lidar_teacher", "ta"])
