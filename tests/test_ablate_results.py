"""``monokd ablate``'s results read back from run folders: paired differences to the baseline,
the precision each run recorded, runs of several processes in one folder, no retraining."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from monokd.pipeline import ablate, presets, run_record, stages

ROWS = "teacher,baseline,F+SA+R+CA"
KEYS = ablate.SUMMARY_KEYS
# AP of each run folder at seeds 0, 1, 2 (every summary key alike): F+SA+R+CA - baseline = 1, 2, 3
VALUES = {"teacher": [30.0, 31.0, 32.0], "baseline": [10.0, 11.0, 13.0], "F_SA_R_CA": [11.0, 13.0, 16.0]}
T_975_2 = 4.302652729911275  # t(0.975, 2 degrees of freedom)


def _preset(tmp_path: Path, name: str, seed: int, extra: list[str] = ()) -> str:
    """The quick preset at ``seed``, with ``extra`` items for every run, as a YAML file."""
    preset = yaml.safe_load((presets.CONFIG_DIR / "demo_quick.yaml").read_text())
    preset["seed"] = seed
    preset["overrides"]["all"] = [*preset["overrides"]["all"], *extra]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(preset))
    return str(path)


def _fake_commands(calls: list):
    """``monokd train`` writes config.yaml (its ``train.precision`` from the --set items, as
    the real one resolves it) and a checkpoint; ``monokd evaluate`` a JSON from VALUES."""
    def fake(args, stage, env=None):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            items = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
            precision = [i.split("=", 1)[1] for i in items if i.startswith("train.precision=")]
            cfg = {"train": {"precision": precision[-1]}} if precision else {"train": {}}
            Path(out, "config.yaml").write_text(yaml.safe_dump(cfg))
            Path(out, "last.ckpt").write_text("x")
            return
        seed = int(out.split(os.sep + "seed")[1].split(os.sep)[0])
        value = VALUES[os.path.basename(out)][seed]
        Path(out, "e.json").write_text(json.dumps({"flat": {k: value for k in KEYS}, "num_frames": 4}))
    return fake


def _no_commands(args, stage, env=None):
    raise AssertionError(f"nothing may run: {args}")


@pytest.fixture
def fake_stages(monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "run_command", _fake_commands(calls))
    monkeypatch.setattr(stages, "ensure_synth", lambda root, *a, **k: root)
    return calls


def test_every_row_is_paired_with_the_baseline_and_a_rerun_trains_nothing(tmp_path, fake_stages, monkeypatch):
    preset = _preset(tmp_path, "p", 0, ["train.precision=bf16-mixed"])
    out, res = tmp_path / "runs", tmp_path / "res"
    ablate.run_ablation(preset, 3, out, res, ROWS, tmp_path / "data")
    assert len([c for c in fake_stages if c[0] == "train"]) == 9
    (res / "add_ablation.json").unlink()
    monkeypatch.setattr(stages, "run_command", _no_commands)
    results = ablate.run_ablation(preset, 3, out, res, ROWS, tmp_path / "data")  # from the folders alone
    assert json.loads((res / "add_ablation.json").read_text()) == json.loads(json.dumps(results))
    assert results["seeds"] == [0, 1, 2] and results["val_frames"] == 4 and results["precision"] == "bf16-mixed"
    assert results["reference"] == "baseline" and not results["partial"] and results["mismatched_runs"] == {}
    rows = {r["name"]: r for r in results["rows"]}
    assert rows["baseline"]["paired"] is None
    for key in KEYS:
        d = rows["F+SA+R+CA"]["paired"][key]
        assert d["per_seed"] == [1.0, 2.0, 3.0] and d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
        assert d["ci95"] == pytest.approx([2.0 - T_975_2 / 3 ** 0.5, 2.0 + T_975_2 / 3 ** 0.5])
        assert rows["teacher"]["paired"][key]["per_seed"] == [20.0, 20.0, 19.0]
    args = results["train_args"]["F+SA+R+CA"]
    assert args["recipe"] == "configs/add_monodetr_synth.yaml"
    row_items = ablate.distill_rows()[0]["F+SA+R+CA"]
    assert "train.precision=bf16-mixed" in args["overrides"] and args["overrides"][-len(row_items):] == row_items
    text = (res / "add_ablation.md").read_text()
    assert "; precision bf16-mixed; n = 3 seed(s) [0, 1, 2]." in text
    assert ("| (h) F +SA, R +CA | 3 | " + " | ".join(["+2.00 ± 1.00 [-0.48, +4.48]"] * 4) + " | 21.94 (+2.01) |") in text


def test_the_precision_is_what_each_run_recorded(tmp_path, fake_stages, monkeypatch):
    preset = _preset(tmp_path, "p", 0, ["train.precision=bf16-mixed"])
    out = tmp_path / "runs"
    ablate.run_ablation(preset, 2, out, tmp_path / "res", ROWS, tmp_path / "data")
    config = out / "seed1" / "baseline" / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"precision": "32"}}))  # what that run really did
    monkeypatch.setattr(stages, "run_command", _no_commands)
    results = ablate.run_ablation(preset, 2, out, tmp_path / "res", ROWS, tmp_path / "data")
    assert results["precision"] == run_record.MIXED and results["precision_values"] == ["32", "bf16-mixed"]
    rows = {r["name"]: r for r in results["rows"]}
    assert rows["baseline"]["precision"] == "mixed" and rows["teacher"]["precision"] == "bf16-mixed"
    assert "precision MIXED ['32', 'bf16-mixed']" in (tmp_path / "res" / "add_ablation.md").read_text()


def test_run_record_precision_config_then_command_then_default(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    assert run_record.precision(run) == "32"  # runs older than the key trained in fp32
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"precision": "bf16-mixed"}}))
    assert run_record.precision(run) == "bf16-mixed"
    (run / stages.TRAIN_MARKER).write_text("train --config c.yaml --set train.lr=1 --precision 16-mixed --seed 3\n")
    assert run_record.precision(run) == "16-mixed"  # the flag overrides the config and is not saved in it
    assert run_record.set_items(run_record.train_command(run)) == ["train.lr=1"]
    assert run_record.common([4, 4], "val_frames") == {"val_frames": 4}
    assert run_record.common([], "val_frames") == {"val_frames": None}


def test_seeds_of_two_processes_are_read_as_one_study(tmp_path, fake_stages, monkeypatch):
    """Seeds 0-1 from a preset at seed 0, seed 2 from its copy at seed 2, one --out: the first
    preset over 3 seeds reads all of them and trains nothing."""
    out, data = tmp_path / "runs", tmp_path / "data"
    first, second = _preset(tmp_path, "s0", 0), _preset(tmp_path, "s2", 2)
    ablate.run_ablation(first, 2, out, tmp_path / "res_a", ROWS, data)
    ablate.run_ablation(second, 1, out, tmp_path / "res_b", ROWS, data)
    monkeypatch.setattr(stages, "run_command", _no_commands)
    results = ablate.run_ablation(first, 3, out, tmp_path / "res", ROWS, data)
    assert results["seeds"] == [0, 1, 2] and results["mismatched_runs"] == {}
    assert results["precision"] == "32"  # no train.precision in the configs: the default
    paired = {r["name"]: r for r in results["rows"]}["F+SA+R+CA"]["paired"][KEYS[0]]
    assert paired["per_seed"] == [1.0, 2.0, 3.0]


def test_finished_only_reports_whole_seeds_and_trains_nothing(tmp_path, fake_stages, monkeypatch):
    out, data = tmp_path / "runs", tmp_path / "data"
    preset = _preset(tmp_path, "p", 0)
    ablate.run_ablation(preset, 2, out, tmp_path / "res", ROWS, data)
    (out / "seed2" / "teacher").mkdir(parents=True)  # a seed another process has only begun
    monkeypatch.setattr(stages, "run_command", _no_commands)
    results = ablate.run_ablation(preset, 3, out, tmp_path / "res", ROWS, data, finished_only=True)
    assert results["seeds"] == [0, 1] and results["planned_seeds"] == [0, 1, 2] and results["partial"]
    assert "partial: the seeds of [0, 1, 2]" in (tmp_path / "res" / "add_ablation.md").read_text()
    with pytest.raises(stages.StageError, match="no seed"):
        ablate.run_ablation(preset, 1, tmp_path / "empty", tmp_path / "res", ROWS, data, finished_only=True)


def test_runs_made_with_other_settings_are_flagged(tmp_path, fake_stages, monkeypatch):
    out, data = tmp_path / "runs", tmp_path / "data"
    ablate.run_ablation(_preset(tmp_path, "s0", 0), 2, out, tmp_path / "res", ROWS, data)
    ablate.run_ablation(_preset(tmp_path, "s2", 2, ["train.lr=5.0e-3"]), 1, out, tmp_path / "res", ROWS, data)
    monkeypatch.setattr(stages, "run_command", _no_commands)
    results = ablate.run_ablation(_preset(tmp_path, "s0", 0), 3, out, tmp_path / "res", ROWS, data)
    assert sorted(results["mismatched_runs"]) == ["seed2/F_SA_R_CA", "seed2/baseline", "seed2/teacher"]
    assert results["mismatched_runs"]["seed2/baseline"] == {"missing": [], "unexpected": ["train.lr=5.0e-3"]}
    assert "**Warning**: runs trained with other settings" in (tmp_path / "res" / "add_ablation.md").read_text()


def test_studies_evaluate_and_hand_on_the_last_checkpoint_not_the_best(tmp_path, monkeypatch):
    """A run whose best validation is not its last: ``stages.train`` returns ``last.ckpt`` (what
    a student learns from) and ``stages.evaluate`` scores it, though ``best.ckpt`` is newer."""
    calls = []

    def fake(args, stage, env=None):
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if args[0] == "train":
            (out / "last.ckpt").write_text("last")
            (out / "best.ckpt").write_text("best")  # newer: find_checkpoint would pick it
        else:
            (out / "e.json").write_text(json.dumps({"flat": {k: 1.0 for k in KEYS}, "num_frames": 4}))

    monkeypatch.setattr(stages, "run_command", fake)
    run = tmp_path / "run"
    assert stages.train("recipe.yaml", run, [], 0) == run / "last.ckpt"
    stages.evaluate(run, tmp_path / "eval")
    assert calls[-1][calls[-1].index("--ckpt") + 1] == str(run / "last.ckpt")


def test_a_teacher_recorded_as_best_ckpt_reads_as_its_last_only_with_equal_weights(tmp_path):
    import torch

    teacher = tmp_path / "seed0" / "teacher"
    teacher.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.arange(4.0)}}, teacher / "last.ckpt")
    torch.save({"state_dict": {"w": torch.arange(4.0)}}, teacher / "best.ckpt")
    items = [f"distill.teacher.ckpt={teacher / 'best.ckpt'}", "train.lr=2", "distill.teacher.config=x.yaml"]
    assert run_record.canonical_checkpoint_items(items) == [f"distill.teacher.ckpt={teacher / 'last.ckpt'}", *items[1:]]
    torch.save({"state_dict": {"w": torch.arange(4.0) + 1}}, teacher / "best.ckpt")
    assert run_record.canonical_checkpoint_items(items) == items
    (teacher / "last.ckpt").unlink()  # nothing to compare with: kept as recorded
    assert run_record.canonical_checkpoint_items(items) == items
