"""benchmarks/unlabeled_study.py without training: frozen models first, each arm's overrides
(the unlabeled frames only in +U arms), the paired differences and their re-rendering."""

import json

import pytest

from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def study():
    with benchmark_module("unlabeled_study") as module:
        yield module


def _flat(value: float) -> dict:
    return {f"Car/{k}/{d}/R40@{iou}": value for k in ("3d", "bev", "bbox") for d in ("easy", "moderate", "hard")
            for iou in ("0.70", "0.50")}


def test_frozen_models_first_then_paired_arms(study, monkeypatch, tmp_path):
    calls = []

    def fake(recipe, run_dir, overrides, seed, extra, stage):
        calls.append((run_dir.name, overrides))
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text("train: {precision: bf16-mixed}\n")  # what each run recorded
        plus = 2.0 * (seed - 10) if "_U-" in run_dir.name else 0.0  # +U arms gain 2, 4, 6 at seeds 11, 12, 13
        return _flat(10.0 + plus)

    monkeypatch.setattr(study, "train_and_score", fake)
    monkeypatch.setattr(study.stages, "ensure_synth", lambda *a, **k: None)
    out = tmp_path / "unlabeled_study"
    study.main(["--seeds", "11", "12", "13", "--data", str(tmp_path / "d"), "--runs", str(tmp_path / "r"),
                "--out", str(out)])
    names = [name for name, _ in calls]
    assert sorted(names[:3]) == ["caddn_teacher-s444", "lidar_teacher-s444", "ta-s444"]
    assert sorted(names[3:]) == sorted(f"{a}-s{s}" for a in ("takd", "takd_U", "add", "add_U") for s in (11, 12, 13))
    overrides = dict(calls)
    assert f"data.unlabeled.root={tmp_path / 'd' / 'raw'}" in overrides["takd_U-s11"]
    assert not any(o.startswith("data.unlabeled") for o in overrides["takd-s11"])
    assert f"distill.ta.ckpt={tmp_path / 'r' / 'ta-s444' / 'last.ckpt'}" in overrides["takd_U-s12"]
    assert not any("distill.ta" in o for o in overrides["add_U-s12"])
    results = json.loads(out.with_suffix(".json").read_text())
    diff = results["paired"]["takd+U - takd"]["Car/3d/moderate/R40@0.70"]
    assert diff["per_seed"] == [2.0, 4.0, 6.0] and diff["mean"] == pytest.approx(4.0)
    assert diff["ci95"] == pytest.approx([4.0 - 4.303 * 2 / 3 ** 0.5, 4.0 + 4.303 * 2 / 3 ** 0.5], abs=1e-3)
    assert "add+U - add" in results["paired"] and results["unlabeled_frames"] == 1600
    assert results["precision"] == "bf16-mixed"
    again = study.from_json(out.with_suffix(".json"))
    assert again["paired"] == results["paired"]
    assert "takd+U - takd, paired by seed (n=3" in out.with_suffix(".md").read_text()
