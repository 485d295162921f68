"""benchmarks/add_seeds.py without training: the protocol, the JSON schema, paired CIs."""

import json
from pathlib import Path

import pytest

from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def add_seeds():
    with benchmark_module("add_seeds") as module:
        yield module


def _flat(value: float) -> dict:
    names = [f"Car/{k}/{d}/R40@{iou}" for k in ("3d", "bev", "bbox") for d in ("easy", "moderate", "hard")
             for iou in ("0.70", "0.50")]
    return {n: value for n in names}


def test_power_protocol_trains_the_teacher_first_then_every_arm_and_seed(add_seeds, monkeypatch, tmp_path):
    calls, synth = [], []
    # AP = 10 for the baseline, 10 + seed offset for the ADD arms: differences 1..5 per seed
    score = {"teacher": lambda s: 30.0, "baseline": lambda s: 10.0}

    def fake_run(arm, seed, runs, teacher_seed, root, extra, teacher_ckpt="last.ckpt"):
        calls.append((arm, seed, teacher_ckpt))
        return _flat(score.get(arm, lambda s: 10.0 + (s - 1000))(seed))

    monkeypatch.setattr(add_seeds, "train_and_evaluate", fake_run)
    monkeypatch.setattr(add_seeds.demo, "ensure_synth", lambda root, n_train, n_val, seed=0: synth.append((n_train, n_val)))
    out = tmp_path / "add_seeds"
    add_seeds.main(["--protocol", "power", "--jobs", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert synth == [(800, 1000)]
    assert calls[0] == ("teacher", 444, "last.ckpt")  # before any student
    seeds = [1001, 1002, 1003, 1004, 1005]
    arms = ["teacher", "baseline", "add", "depth-memory+gt-pairing"]
    # seed-major: an interrupted study leaves whole paired seeds
    assert calls[1:] == [(a, s, "last.ckpt") for s in seeds for a in arms[1:]]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["val_frames"] == 1000 and results["seeds"] == seeds and results["teacher_seed"] == 444
    assert not results["shares_teacher_seed"]
    assert list(results["models"]) == arms and results["models"]["teacher"]["seeds"] == [444]
    assert set(results["paired"]) == {"add", "depth-memory+gt-pairing"}
    diff = results["paired"]["depth-memory+gt-pairing"]["Car/3d/moderate/R40@0.70"]
    assert diff["per_seed"] == [1.0, 2.0, 3.0, 4.0, 5.0] and diff["mean"] == pytest.approx(3.0)
    half = 2.7764451051977987 * (2.5 ** 0.5) / 5 ** 0.5  # t(0.975, 4) * std / sqrt(5), std^2 = 2.5
    assert diff["ci95"] == pytest.approx([3.0 - half, 3.0 + half])
    assert results["add_minus_baseline"] == results["paired"]["add"]
    text = out.with_suffix(".md").read_text()
    assert "1000 frames" in text and "depth-memory+gt-pairing - baseline" in text and "CI [" in text


def test_finished_only_summarises_whole_finished_seeds_without_training(add_seeds, monkeypatch, tmp_path):
    monkeypatch.setattr(add_seeds, "train_and_evaluate", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(add_seeds.demo, "ensure_synth", lambda *a, **k: pytest.fail("generated data"))
    runs = tmp_path / "runs"
    finished = {("teacher", 444): 30.0, ("baseline", 1001): 10.0, ("paper-literal", 1001): 12.0,
                ("baseline", 1002): 11.0, ("paper-literal", 1002): 14.0, ("baseline", 1003): 9.0}  # 1003 half done
    for (arm, seed), ap in finished.items():
        run = runs / add_seeds.run_folder(arm, seed)
        (run / "eval-last").mkdir(parents=True)
        (run / add_seeds.demo.TRAIN_MARKER).write_text("")
        (run / "last.ckpt").write_text("")
        (run / "eval-last" / "metrics.json").write_text(json.dumps({"flat": _flat(ap)}))
    out = tmp_path / "partial"
    add_seeds.main(["--protocol", "power", "--arms", "teacher", "baseline", "paper-literal", "--finished-only",
                    "--runs", str(runs), "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["partial"] and results["seeds"] == [1001, 1002]
    assert results["planned_seeds"] == [1001, 1002, 1003, 1004, 1005]
    assert results["paired"]["paper-literal"]["Car/3d/moderate/R40@0.70"]["per_seed"] == [2.0, 3.0]
    assert results["paired_seeds"] == {"paper-literal": [1001, 1002]}
    assert results["models"]["teacher"]["n"] == 1 and results["models"]["baseline"]["seeds"] == [1001, 1002, 1003]
    # an arm behind the others is paired over the seeds it shares with the baseline
    for seed, ap in ((1001, 10.5),):
        run = runs / add_seeds.run_folder("add", seed)
        (run / "eval-last").mkdir(parents=True)
        (run / add_seeds.demo.TRAIN_MARKER).write_text("")
        (run / "last.ckpt").write_text("")
        (run / "eval-last" / "metrics.json").write_text(json.dumps({"flat": _flat(ap)}))
    add_seeds.main(["--protocol", "power", "--arms", "teacher", "baseline", "paper-literal", "add", "--finished-only",
                    "--runs", str(runs), "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["seeds"] == [1001] and results["paired_seeds"] == {"paper-literal": [1001, 1002], "add": [1001]}
    assert results["paired"]["paper-literal"]["Car/3d/moderate/R40@0.70"]["per_seed"] == [2.0, 3.0]
    assert results["paired"]["add"]["Car/3d/moderate/R40@0.70"]["per_seed"] == [0.5]
    text = out.with_suffix(".md").read_text()
    assert "| 1002 | 30.00 / 30.00 / 30.00 |" not in text  # the teacher has no seed 1002
    assert "| 1002 | - | 11.00 / 11.00 / 11.00 | 14.00 / 14.00 / 14.00 | - | +3.00 / +3.00 / +3.00 | - |" in text
    assert "over the finished runs of seeds [1001, 1002, 1003, 1004, 1005]" in text and "over 2 seeds [1001, 1002]" in text and "over 1 seed [1001] (one seed" in text
    # before any whole seed: the teacher alone, no paired difference
    add_seeds.main(["--protocol", "power", "--arms", "teacher", "baseline", "paper-literal", "--finished-only",
                    "--seeds", "1003", "--runs", str(runs), "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["seeds"] == [] and results["paired"] == {} and results["models"]["paper-literal"]["n"] == 0
    assert results["models"]["baseline"]["n"] == 1
    text = out.with_suffix(".md").read_text()
    assert "| ADD `paper-literal` (n=0) | - / - / - |" in text
    assert "**Partial study** (`--finished-only`): 0 of the planned seeds [1003]" in text


def test_unknown_arm_fails_before_training(add_seeds, monkeypatch, tmp_path):
    monkeypatch.setattr(add_seeds, "train_and_evaluate", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(add_seeds.demo, "ensure_synth", lambda *a, **k: None)
    with pytest.raises(SystemExit, match="unknown arm"):
        add_seeds.main(["--arms", "baseline", "F+XX", "--out", str(tmp_path / "x")])


def test_caddn_student_uses_the_caddn_recipes(add_seeds, monkeypatch, tmp_path):
    calls = []

    def fake_train(recipe, run_dir, overrides, seed, extra, stage=None):
        calls.append((Path(recipe).name, any(o.startswith("distill.teacher.ckpt=") for o in overrides)))

    monkeypatch.setattr(add_seeds.demo, "train", fake_train)
    monkeypatch.setattr(add_seeds.demo, "evaluation_json", lambda path: {})
    monkeypatch.setattr(add_seeds.demo, "read_flat", lambda path: _flat(1.0))
    monkeypatch.setattr(add_seeds.demo, "ensure_synth", lambda *a, **k: None)
    try:
        assert add_seeds.main(["--student", "caddn", "--seeds", "7", "--teacher-seed", "7", "--runs", str(tmp_path / "runs"),
                               "--data", str(tmp_path / "data"), "--out", str(tmp_path / "caddn")]) == 0
    finally:
        add_seeds.use_student("monodetr")
    assert calls == [("caddn_teacher_synth.yaml", False), ("caddn_synth.yaml", False),
                     ("add_caddn_synth.yaml", True)]
    results = json.loads((tmp_path / "caddn.json").read_text())
    assert results["student"] == "caddn" and set(results["models"]) == {"teacher", "baseline", "add"}
    assert "baseline CaDDN" in (tmp_path / "caddn.md").read_text()


def test_default_outputs_legacy_study_apart_and_from_json_rerenders_in_place(add_seeds, monkeypatch, tmp_path):
    monkeypatch.setattr(add_seeds, "train_and_evaluate", lambda arm, seed, *a, **k: _flat(10.0 + (arm == "add")))
    monkeypatch.setattr(add_seeds.demo, "ensure_synth", lambda *a, **k: None)
    monkeypatch.setattr(add_seeds, "REPO", tmp_path)
    add_seeds.main(["--seeds", "1", "2"])  # legacy protocol: not the powered study's add_seeds
    results_dir = tmp_path / "benchmarks" / "results"
    assert sorted(p.name for p in results_dir.iterdir()) == ["add_seeds_legacy.json", "add_seeds_legacy.md"]
    legacy = results_dir / "add_seeds_legacy.json"
    before = json.loads(legacy.read_text())
    legacy.with_suffix(".md").write_text("stale")
    add_seeds.main(["--from-json", str(legacy)])
    assert json.loads(legacy.read_text()) == before and "stale" not in legacy.with_suffix(".md").read_text()
    assert before["paired"]["add"]["Car/3d/moderate/R40@0.70"]["per_seed"] == [1.0, 1.0]
