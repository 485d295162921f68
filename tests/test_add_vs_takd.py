"""benchmarks/add_vs_takd.py: one student, two distillations, refused unless the student runs are shared."""

import json

import pytest

from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def add_vs_takd():
    with benchmark_module("add_vs_takd") as module:
        yield module


def _flat(value: float) -> dict:
    return {f"Car/{k}/{d}/R40@{iou}": value for k in ("3d", "bev") for d in ("easy", "moderate", "hard")
            for iou in ("0.70", "0.50")}


def _arm(values: dict) -> dict:
    return {"mean": {}, "seeds": list(values), "per_seed": {str(s): _flat(v) for s, v in values.items()}}


def _studies(takd_student: dict):
    add = {"val_frames": 200, "train_frames": 800,
           "models": {"teacher": _arm({444: 80.0}), "baseline": _arm({1001: 50.0, 1002: 48.0, 1003: 52.0}),
                      "add": _arm({1001: 53.0, 1002: 50.0, 1003: 56.0})}}
    takd = {"ci_method": "t", "models": {"lidar_teacher": _arm({444: 90.0}), "ta": _arm({444: 80.0}),
                                         "student": _arm(takd_student), "takd": _arm({1001: 55.0, 1002: 51.0})}}
    for study in (add, takd):
        for row in study["models"].values():
            row["mean"] = {k: sum(f[k] for f in row["per_seed"].values()) / len(row["per_seed"]) for k in _flat(0)}
    return add, takd


def test_paired_differences_over_the_shared_seeds(add_vs_takd, tmp_path):
    add, takd = _studies({1001: 50.0, 1002: 48.0, 1003: 52.0})
    paths = []
    for name, study in (("add", add), ("takd", takd)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(study))
    out = tmp_path / "cmp"
    add_vs_takd.main(["--add", str(paths[0]), "--takd", str(paths[1]), "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["seeds"] == [1001, 1002]  # seed 1003 has no MonoTAKD run
    assert results["ta_is_add_teacher"]
    metric = "Car/3d/moderate/R40@0.50"
    assert results["paired"]["add_minus_student"][metric]["per_seed"] == [3.0, 2.0]
    assert results["paired"]["takd_minus_student"][metric]["per_seed"] == [5.0, 3.0]
    assert results["paired"]["takd_minus_add"][metric]["per_seed"] == [2.0, 1.0]
    assert results["models"]["takd"]["mean"][metric] == pytest.approx(53.0)
    assert "MonoTAKD (LiDAR teacher + TA) - ADD (GT-depth teacher)" in out.with_suffix(".md").read_text()


def test_refuses_studies_on_different_student_runs(add_vs_takd):
    add, takd = _studies({1001: 50.0, 1002: 47.0, 1003: 52.0})
    with pytest.raises(SystemExit, match="seed 1002"):
        add_vs_takd.compare(add, takd)
