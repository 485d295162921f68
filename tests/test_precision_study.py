"""benchmarks/precision_study.py on fake run folders: pairing by seed, the recorded precisions,
the seed-spread verdict, settings that differ beyond the precision."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from monokd.pipeline import ablate, stages
from tests.helpers import benchmark_module

KEYS = ablate.SUMMARY_KEYS
T_975_2 = 4.302652729911275  # t(0.975, 2 degrees of freedom)


@pytest.fixture(scope="module")
def study():
    with benchmark_module("precision_study") as module:
        yield module


def _run(runs: Path, seed: int, folder: str, precision: str, value: float, extra: tuple = ()) -> None:
    """A finished run of ``monokd ablate``'s layout: marker, config, checkpoint, evaluation."""
    run = runs / f"seed{seed}" / folder
    run.mkdir(parents=True)
    items = [f"data.root=/data", f"train.precision={precision}", *extra]
    if folder != "teacher":
        items.append(f"distill.teacher.ckpt={runs}/seed{seed}/teacher/last.ckpt")
    (run / stages.TRAIN_MARKER).write_text(" ".join(["train", "--out", str(run), "--seed", str(seed),
                                                     *[t for i in items for t in ("--set", i)]]))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"precision": precision}}))
    (run / "last.ckpt").write_text("x")
    evaluation = runs / f"seed{seed}" / "eval" / folder
    evaluation.mkdir(parents=True)
    (evaluation / "r.json").write_text(json.dumps({"flat": {k: value for k in KEYS}, "num_frames": 100}))


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    bf16, fp32 = tmp_path / "abl_bf16", tmp_path / "abl_fp32"
    for seed, (low, full) in enumerate([(10.0, 9.0), (12.0, 10.0), (14.0, 11.0)]):  # differences 1, 2, 3
        _run(bf16, seed, "F_SA_R_CA", "bf16-mixed", low)
        _run(fp32, seed, "F_SA_R_CA", "32", full)
        _run(bf16, seed, "teacher", "bf16-mixed", 30.0 + seed)
        _run(fp32, seed, "teacher", "32", 30.0 + seed + (0.5 if seed == 1 else 0.0))
    _run(bf16, 0, "baseline", "bf16-mixed", 5.0)  # in one folder only: not compared
    _run(bf16, 3, "F_SA_R_CA", "bf16-mixed", 99.0)  # a seed the other folder has not finished
    return bf16, fp32


def test_paired_by_seed_with_the_recorded_precisions(study, tmp_path):
    bf16, fp32 = _folders(tmp_path)
    results = study.compare(bf16, fp32)
    assert (results["precision_a"], results["precision_b"]) == ("bf16-mixed", "32")
    assert results["val_frames"] == 100 and results["seeds"] == [0, 1, 2] and results["differing_settings"] == {}
    assert [r["row"] for r in results["rows"]] == ["teacher", "F+SA+R+CA"]
    row = results["rows"][1]
    d = row["paired"][KEYS[0]]
    assert d["per_seed"] == [1.0, 2.0, 3.0] and d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    assert d["ci95"] == pytest.approx([2.0 - T_975_2 / math.sqrt(3), 2.0 + T_975_2 / math.sqrt(3)])
    # seed spread: bf16 std 2, fp32 std 1 -> sqrt((4 + 1) / 2) = 1.58 < |2|: beyond it
    assert row["seed_spread"][KEYS[0]] == pytest.approx(math.sqrt(2.5))
    assert row["within_seed_spread"][KEYS[0]] is False and row["ci95_includes_zero"][KEYS[0]] is True
    teacher = results["rows"][0]  # differences 0, -0.5, 0 within a spread of ~0.76
    assert teacher["within_seed_spread"][KEYS[0]] is True
    text = study.markdown(results)
    assert "| F+SA+R+CA | 3 | 12.00 ± 2.00 | 10.00 ± 1.00 | +2.00 [-0.48, +4.48] ✗ |" in text


def test_settings_beyond_the_precision_are_flagged(study, tmp_path):
    bf16, fp32 = _folders(tmp_path)
    _run(bf16, 5, "F_SA_R_CA", "bf16-mixed", 1.0, extra=("train.lr=2e-3",))
    _run(fp32, 5, "F_SA_R_CA", "32", 1.0)
    results = study.compare(bf16, fp32)
    assert list(results["differing_settings"]) == ["seed5/F_SA_R_CA"]
    assert "train.lr=2e-3" in results["differing_settings"]["seed5/F_SA_R_CA"]["a"]
    with pytest.raises(SystemExit, match="share no"):
        study.compare(bf16, tmp_path / "nothing")


def test_main_writes_json_and_markdown(study, tmp_path):
    bf16, fp32 = _folders(tmp_path)
    assert study.main([str(bf16), str(fp32), "--out", str(tmp_path / "res" / "precision_study")]) == 0
    saved = json.loads((tmp_path / "res" / "precision_study.json").read_text())
    assert saved["rows"][1]["paired"][KEYS[3]]["mean"] == pytest.approx(2.0)
    assert (tmp_path / "res" / "precision_study.md").read_text().startswith("# Training precision: bf16-mixed vs 32")
    assert study.main([str(bf16), str(fp32), "--out", str(tmp_path / "res" / "noted"), "--note", "A: heads in fp32."]) == 0
    assert json.loads((tmp_path / "res" / "noted.json").read_text())["note"] == "A: heads in fp32."
    assert "\nA: heads in fp32.\n" in (tmp_path / "res" / "noted.md").read_text()


def _depth_run(runs: Path, seed: int, precision: str, abs_rel: float) -> None:
    """A finished depth front-end run: its val errors as `monokd depth evaluate --json` writes them."""
    run = runs / f"seed{seed}" / "depth"
    run.mkdir(parents=True)
    (run / stages.TRAIN_MARKER).write_text(f"depth train --out {run} --seed {seed} --set train.precision={precision}")
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"precision": precision}}))
    (run / "last.ckpt").write_text("x")
    evaluation = runs / f"seed{seed}" / "eval" / "depth"
    evaluation.mkdir(parents=True)
    (evaluation / "depth.json").write_text(json.dumps({"abs_rel": abs_rel, "rmse": 10 * abs_rel, "delta1": 1 - abs_rel,
                                                        "images": 100}))


def test_depth_front_end_rows_compare_its_errors(study, tmp_path):
    bf16, fp32 = _folders(tmp_path)
    for seed, (low, full) in enumerate([(0.12, 0.11), (0.14, 0.13), (0.10, 0.10)]):  # differences .01 .01 0
        _depth_run(bf16, seed, "bf16-mixed", low)
        _depth_run(fp32, seed, "32", full)
    results = study.compare(bf16, fp32)
    depth = next(r for r in results["rows"] if r["run"] == "depth")
    assert depth["metrics"] == ["abs_rel", "rmse", "delta1"] and depth["n"] == 3
    assert depth["paired"]["abs_rel"]["per_seed"] == pytest.approx([0.01, 0.01, 0.0])
    assert depth["paired"]["rmse"]["mean"] == pytest.approx(0.2 / 3)
    assert depth["paired"]["delta1"]["mean"] == pytest.approx(-0.02 / 3)
    # seed spread sqrt((0.02^2 + 0.0153^2) / 2) = 0.0178 > 0.0067; half-width 4.303 * 0.00577 / sqrt(3) = 0.0143
    assert depth["seed_spread"]["abs_rel"] == pytest.approx(math.sqrt((0.02 ** 2 + statistics.stdev([0.11, 0.13, 0.10]) ** 2) / 2))
    assert results["val_frames"] == 100  # the depth JSON's `images` counted like the detectors' frames
    detector = next(r for r in results["rows"] if r["run"] == "F_SA_R_CA")
    assert detector["metrics"] == list(KEYS)
    text = study.markdown(results)
    assert "| depth | 3 | 0.120 ± 0.020 | 0.113 ± 0.015 | +0.007 [-0.008, +0.021] ✓ | +0.07 [-0.08, +0.21] ✓ |" in text


def _study_run(runs: Path, name: str, seed: int, precision: str, value: float, teacher: Path) -> None:
    """A finished run of a seed study's layout (add_seeds.py): <name>-s<seed>/, evaluated in eval-last/."""
    run = runs / f"{name}-s{seed}"
    run.mkdir(parents=True)
    items = ["data.root=/data", f"train.precision={precision}"]
    if name == "add":
        items.append(f"distill.teacher.ckpt={teacher}/last.ckpt")
    (run / stages.TRAIN_MARKER).write_text(" ".join(["train", "--out", str(run), "--seed", str(seed),
                                                     *[t for i in items for t in ("--set", i)]]))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"precision": precision}}))
    (run / "last.ckpt").write_text("x")
    (run / "eval-last").mkdir()
    (run / "eval-last" / "r.json").write_text(json.dumps({"flat": {k: value for k in KEYS}, "num_frames": 100}))


def test_a_seed_study_layout_pairs_by_seed_and_skips_the_shared_teacher(study, tmp_path):
    bf16, fp32 = tmp_path / "caddn_bf16", tmp_path / "caddn_full"
    fp32.mkdir()
    _study_run(fp32, "teacher", 444, "32", 50.0, fp32 / "teacher-s444")
    bf16.mkdir()
    (bf16 / "teacher-s444").symlink_to(fp32 / "teacher-s444")  # one frozen teacher for both arms
    for seed, (low, full) in zip((1001, 1002, 1003), [(10.0, 9.0), (12.0, 10.0), (14.0, 11.0)]):
        for name in ("baseline", "add"):
            _study_run(bf16, name, seed, "bf16-mixed", low, bf16 / "teacher-s444")
            _study_run(fp32, name, seed, "32", full, fp32 / "teacher-s444")
    results = study.compare(bf16, fp32)
    assert [r["row"] for r in results["rows"]] == ["baseline", "add"]  # the teacher is one run: not a row
    assert results["seeds"] == [1001, 1002, 1003] and results["differing_settings"] == {}
    assert results["rows"][1]["paired"][KEYS[0]]["per_seed"] == [1.0, 2.0, 3.0]
    assert (results["precision_a"], results["precision_b"]) == ("bf16-mixed", "32")
