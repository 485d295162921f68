"""benchmarks/takd_seeds.py without training: order of the runs, the JSON schema, paired differences."""

import json

import pytest

from monokd.pipeline import stages
from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def takd_seeds():
    with benchmark_module("takd_seeds") as module:
        yield module


def _flat(value: float) -> dict:
    return {f"Car/{k}/{d}/R40@{iou}": value for k in ("3d", "bev", "bbox") for d in ("easy", "moderate", "hard")
            for iou in ("0.70", "0.50")}


def test_frozen_models_first_then_every_arm_and_seed(takd_seeds, monkeypatch, tmp_path):
    calls = []
    score = {"lidar_teacher": lambda s: 50.0, "ta": lambda s: 30.0, "student": lambda s: 10.0}

    def fake_run(arm, seed, runs, frozen_seed, root, extra, add_runs=None):
        calls.append((arm, seed))
        return _flat(score.get(arm, lambda s: 10.0 + (s - 1000))(seed))

    monkeypatch.setattr(takd_seeds, "train_and_evaluate", fake_run)
    monkeypatch.setattr(takd_seeds.stages, "ensure_synth", lambda *a, **k: None)
    out = tmp_path / "takd_seeds"
    takd_seeds.main(["--arms", "lidar_teacher", "ta", "student", "takd", "+IMD", "--seeds", "1001", "1002", "1003",
                     "--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert sorted(calls[:2]) == [("lidar_teacher", 444), ("ta", 444)]  # before any student
    assert sorted(calls[2:]) == sorted((a, s) for a in ("student", "takd", "+IMD") for s in (1001, 1002, 1003))
    results = json.loads(out.with_suffix(".json").read_text())
    assert list(results["models"]) == ["lidar_teacher", "ta", "student", "takd", "+IMD"]
    assert results["models"]["ta"]["seeds"] == [444] and results["models"]["takd"]["n"] == 3
    diff = results["takd_minus_student"]["Car/3d/moderate/R40@0.70"]
    assert diff["per_seed"] == [1.0, 2.0, 3.0] and diff["mean"] == pytest.approx(2.0)
    assert set(results["paired"]) == {"takd", "+IMD"}
    assert "MonoTAKD student (n=3)" in out.with_suffix(".md").read_text()
    again = takd_seeds.from_json(out.with_suffix(".json"))
    assert again["takd_minus_student"] == results["takd_minus_student"]


def test_row_seeds_run_ablation_rows_at_fewer_seeds_paired_at_their_own(takd_seeds, monkeypatch, tmp_path):
    calls = []

    def fake_run(arm, seed, runs, frozen_seed, root, extra, add_runs=None):
        calls.append((arm, seed))
        return _flat({"student": 10.0, "takd": 12.0, "+IMD": 15.0}.get(arm, 40.0) + (seed - 1001))

    monkeypatch.setattr(takd_seeds, "train_and_evaluate", fake_run)
    monkeypatch.setattr(takd_seeds.stages, "ensure_synth", lambda *a, **k: None)
    out = tmp_path / "takd_seeds"
    takd_seeds.main(["--arms", "lidar_teacher", "ta", "student", "takd", "+IMD", "--seeds", "1001", "1002", "1003",
                     "--row-seeds", "1002", "--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert sorted(calls[2:]) == sorted([("student", s) for s in (1001, 1002, 1003)] +
                                       [("takd", s) for s in (1001, 1002, 1003)] + [("+IMD", 1002)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["row_seeds"] == [1002] and results["models"]["+IMD"]["seeds"] == [1002]
    imd = results["paired"]["+IMD"]["Car/bev/moderate/R40@0.50"]
    assert imd["per_seed"] == [5.0] and imd["ci95"] is None  # +IMD 16 - student 11 at seed 1002
    assert results["takd_minus_student"]["Car/bev/moderate/R40@0.50"]["per_seed"] == [2.0, 2.0, 2.0]
    assert "+IMD - student, paired by seed (n=1" in out.with_suffix(".md").read_text()


def test_arms_map_to_recipes_and_unknown_arms_fail(takd_seeds, tmp_path):
    assert takd_seeds.arm_recipe("student") == ("configs/takd_synth.yaml", takd_seeds.PRESETS["student"])
    assert not takd_seeds.distilled("student") and takd_seeds.distilled("full") and not takd_seeds.distilled("ta")
    overrides = takd_seeds.frozen_overrides(tmp_path, 444)
    assert f"distill.ta.ckpt={tmp_path / 'ta-s444' / 'last.ckpt'}" in overrides
    with pytest.raises(SystemExit, match="unknown arm"):
        takd_seeds.arm_recipe("teacher")


def _finished(run_dir, value: float) -> None:
    """A run add_seeds.py trained and evaluated: marker, checkpoint, eval-last."""
    (run_dir / "eval-last").mkdir(parents=True)
    (run_dir / stages.TRAIN_MARKER).write_text("train")
    (run_dir / "last.ckpt").write_text("x")
    (run_dir / "eval-last" / "r.json").write_text(json.dumps({"flat": _flat(value)}))


def test_add_runs_share_the_ta_and_the_student_alone(takd_seeds, monkeypatch, tmp_path):
    add_runs, trained = tmp_path / "add_runs", []
    _finished(add_runs / "teacher-s444", 30.0)
    for seed in (1001, 1002):
        _finished(add_runs / f"baseline-s{seed}", 10.0 + seed - 1001)

    def fake_score(recipe, run_dir, overrides, seed, extra, stage):
        trained.append((run_dir.name, overrides))
        return _flat(50.0 if "lidar" in run_dir.name else 12.0 + seed - 1001)

    monkeypatch.setattr(takd_seeds, "train_and_score", fake_score)
    monkeypatch.setattr(takd_seeds.stages, "ensure_synth", lambda *a, **k: None)
    monkeypatch.setattr(takd_seeds, "recorded", lambda runs: {"precision": "32"})
    out = tmp_path / "takd_seeds"
    takd_seeds.main(["--arms", "lidar_teacher", "ta", "student", "takd", "--seeds", "1001", "1002",
                     "--runs", str(tmp_path / "runs"), "--add-runs", str(add_runs), "--out", str(out)])
    assert sorted(name for name, _ in trained) == ["lidar_teacher-s444", "takd-s1001", "takd-s1002"]
    takd_overrides = dict(trained)["takd-s1001"]
    assert f"distill.ta.ckpt={add_runs / 'teacher-s444' / 'last.ckpt'}" in takd_overrides
    assert f"distill.teacher.ckpt={tmp_path / 'runs' / 'lidar_teacher-s444' / 'last.ckpt'}" in takd_overrides
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["add_runs"] == str(add_runs) and results["models"]["ta"]["mean"]["Car/3d/moderate/R40@0.70"] == 30.0
    assert results["models"]["student"]["per_seed"]["1002"]["Car/3d/moderate/R40@0.70"] == 11.0
    assert results["takd_minus_student"]["Car/3d/moderate/R40@0.70"]["per_seed"] == [2.0, 2.0]
    assert "are `benchmarks/add_seeds.py --student caddn`'s runs" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="baseline-s1003: not trained and evaluated yet"):
        takd_seeds.main(["--arms", "student", "--seeds", "1003", "--runs", str(tmp_path / "runs"),
                         "--add-runs", str(add_runs), "--out", str(tmp_path / "again")])
