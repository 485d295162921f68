"""The seed studies' records (benchmarks/add_seeds.py, takd_seeds.py, add_vs_takd.py): the
precision and val frames their runs recorded, and ``--short``, which keeps a short-schedule
study beside the full schedule's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import benchmark_module


def _flat(value: float) -> dict:
    return {f"Car/{k}/{d}/R40@{iou}": value for k in ("3d", "bev", "bbox") for d in ("easy", "moderate", "hard")
            for iou in ("0.70", "0.50")}


@pytest.fixture(scope="module")
def modules():
    with benchmark_module("takd_seeds") as takd, benchmark_module("add_vs_takd") as versus, \
            benchmark_module("add_seeds") as add, benchmark_module("_results") as results:
        yield {"takd": takd, "versus": versus, "add": add, "results": results}


def _fake_run(run_dir: Path, precision: str | None, value: float, frames: int = 200) -> dict:
    """A trained and evaluated seed-study run: config.yaml (its precision) and eval-last."""
    (run_dir / "eval-last").mkdir(parents=True, exist_ok=True)
    train = {"precision": precision} if precision else {"epochs": 2}
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"train": train}))
    (run_dir / "eval-last" / "e.json").write_text(json.dumps({"flat": _flat(value), "num_frames": frames}))
    return _flat(value)


def test_recorded_reads_precision_and_frames_from_the_runs(modules, tmp_path):
    recorded = modules["results"].recorded
    _fake_run(tmp_path / "a", "bf16-mixed", 1.0)
    _fake_run(tmp_path / "b", "bf16-mixed", 1.0)
    assert recorded([tmp_path / "a", tmp_path / "b", tmp_path / "missing"]) == {"precision": "bf16-mixed",
                                                                                 "val_frames": 200}
    _fake_run(tmp_path / "c", None, 1.0, frames=100)  # a run older than the precision key: fp32
    assert recorded([tmp_path / "a", tmp_path / "c"]) == {"precision": "mixed", "precision_values": ["32", "bf16-mixed"],
                                                          "val_frames": "mixed", "val_frames_values": [100, 200]}
    assert recorded([tmp_path / "missing"]) == {}
    assert modules["results"].short_name(tmp_path / "x", True).name == "x_short"
    assert modules["results"].short_name(tmp_path / "x_short", True).name == "x_short"
    assert modules["results"].short_name(tmp_path / "x", False).name == "x"


def test_takd_study_records_the_precision_its_runs_trained_at(modules, monkeypatch, tmp_path):
    takd = modules["takd"]
    runs = tmp_path / "runs"
    monkeypatch.setattr(takd, "train_and_evaluate", lambda arm, seed, runs_dir, *a: _fake_run(
        runs_dir / takd.run_folder(arm, seed), "bf16-mixed", 10.0 + (arm == "takd") * seed, frames=50))
    monkeypatch.setattr(takd.stages, "ensure_synth", lambda *a, **k: None)
    out = tmp_path / "takd_seeds"
    takd.main(["--arms", "lidar_teacher", "ta", "student", "takd", "--seeds", "1", "2", "--runs", str(runs),
               "--train-arg=--set", "--train-arg=train.epochs=2", "--num-val", "200", "--out", str(out), "--short"])
    assert not out.with_suffix(".json").exists()
    results = json.loads((tmp_path / "takd_seeds_short.json").read_text())
    assert results["precision"] == "bf16-mixed" and results["val_frames"] == 50  # what the runs say, not --num-val
    assert results["seeds"] == [1, 2] and results["train_args"] == ["--set", "train.epochs=2"]
    paired = results["paired"]["takd"]["Car/3d/moderate/R40@0.70"]
    assert set(paired) == {"mean", "std", "per_seed", "ci95"} and paired["per_seed"] == [1.0, 2.0]
    assert "Training precision: bf16-mixed." in (tmp_path / "takd_seeds_short.md").read_text()


def test_short_from_json_copies_a_study_and_leaves_it_in_place(modules, monkeypatch, tmp_path):
    add = modules["add"]
    monkeypatch.setattr(add, "train_and_evaluate", lambda arm, seed, *a, **k: _flat(10.0 + (arm == "add")))
    monkeypatch.setattr(add.stages, "ensure_synth", lambda *a, **k: None)
    try:
        add.main(["--student", "caddn", "--seeds", "1", "2", "--runs", str(tmp_path / "none"),
                  "--out", str(tmp_path / "add_seeds_caddn")])
        old = json.loads((tmp_path / "add_seeds_caddn.json").read_text())
        for key in ("precision", "train_args"):  # as an older study wrote it: neither recorded
            old.pop(key)
        (tmp_path / "add_seeds_caddn.json").write_text(json.dumps(old))
        add.main(["--student", "caddn", "--from-json", str(tmp_path / "add_seeds_caddn.json"), "--short"])
    finally:
        add.use_student("monodetr")
    assert json.loads((tmp_path / "add_seeds_caddn.json").read_text()) == old  # untouched
    short = json.loads((tmp_path / "add_seeds_caddn_short.json").read_text())
    assert short["precision"] is None and short["train_args"] is None and short["paired"] == old["paired"]
    assert "Training precision: not recorded." in (tmp_path / "add_seeds_caddn_short.md").read_text()


def test_add_vs_takd_short_reads_and_writes_the_short_files(modules, monkeypatch, tmp_path):
    versus = modules["versus"]
    arm = lambda values: {"mean": {}, "seeds": list(values), "per_seed": {str(s): _flat(v) for s, v in values.items()}}  # noqa: E731
    student = {1: 10.0, 2: 12.0}
    add = {"val_frames": 200, "precision": "32", "train_args": ["--set", "train.epochs=2"],
           "models": {"teacher": arm({9: 80.0}), "baseline": arm(student), "add": arm({1: 11.0, 2: 14.0})}}
    takd = {"precision": "32", "train_args": ["--set", "train.epochs=2"],
            "models": {"lidar_teacher": arm({9: 90.0}), "ta": arm({9: 80.0}), "student": arm(student),
                       "takd": arm({1: 13.0, 2: 13.0})}}
    for study in (add, takd):
        for row in study["models"].values():
            row["mean"] = {k: sum(f[k] for f in row["per_seed"].values()) / len(row["per_seed"]) for k in _flat(0)}
    (tmp_path / "add_seeds_caddn_short.json").write_text(json.dumps(add))
    (tmp_path / "takd_seeds_short.json").write_text(json.dumps(takd))
    monkeypatch.setattr(versus, "RESULTS", tmp_path)
    assert versus.main(["--short", "--out", str(tmp_path / "add_vs_takd")]) == 0
    results = json.loads((tmp_path / "add_vs_takd_short.json").read_text())
    assert results["precision"] == "32" and results["train_args"]["takd"] == ["--set", "train.epochs=2"]
    assert results["paired"]["takd_minus_add"]["Car/3d/moderate/R40@0.70"]["per_seed"] == [2.0, -1.0]
    text = (tmp_path / "add_vs_takd_short.md").read_text()
    assert "Every training: `--set train.epochs=2`. Training precision: 32." in text
