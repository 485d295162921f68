"""monokd ablate: row selection, run sharing, mean +- std aggregation, the markdown table."""

from __future__ import annotations

import pytest

from monokd.pipeline import ablate, presets, stages, statistics
from monokd.errors import ConfigError

PRESETS = {
    "baseline": ["distill=null"],
    "F+SA": ["distill.feature.enabled=true", "distill.feature.adapter=self_attention"],
    "SA-PE-gt": ["distill.feature.adapter=self_attention", "distill.feature.enabled=true"],
    "SA-PE-none": ["distill.feature.enabled=true", "distill.feature.pos_encoding=none"],
    "SA-PE-estimated": ["distill.feature.enabled=true", "distill.feature.pos_encoding=estimated"],
}
TABLES = {"table4": ["baseline", "F+SA"], "pe": ["SA-PE-none", "SA-PE-estimated", "SA-PE-gt"]}


def test_aggregate_mean_and_sample_std():
    stats = statistics.aggregate([{"a": 10.0, "b": 1.0}, {"a": 14.0, "b": 1.0}, {"a": 12.0}])
    assert stats["n"] == 3
    assert set(stats["mean"]) == {"a"}  # a key missing from one seed is left out
    assert stats["mean"]["a"] == pytest.approx(12.0)
    assert stats["std"]["a"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 2^2 + 0) / (3 - 1))


def test_aggregate_one_seed_has_zero_std():
    stats = statistics.aggregate([{"a": 7.5}])
    assert stats == {"mean": {"a": 7.5}, "std": {"a": 0.0}, "n": 1}
    assert statistics.aggregate([]) == {"mean": {}, "std": {}, "n": 0}


def test_resolve_rows_tables_names_and_defaults():
    defaults = ablate.ablation("add")["default_rows"]
    assert ablate.resolve_rows(None, "quick", PRESETS, TABLES, defaults=defaults) == ["baseline", "F+SA+R+CA"]
    assert ablate.resolve_rows(None, "synth", PRESETS, TABLES, defaults=defaults) == [
        "teacher", "baseline", "F+SA", "SA-PE-none", "SA-PE-estimated", "SA-PE-gt"]
    assert ablate.resolve_rows("table4,pe", "synth", PRESETS, TABLES) == [
        "baseline", "F+SA", "SA-PE-none", "SA-PE-estimated", "SA-PE-gt"]
    assert ablate.resolve_rows("teacher, F+SA,F+SA", "synth", PRESETS, TABLES) == ["teacher", "F+SA"]
    with pytest.raises(ConfigError, match="unknown row 'nope'"):
        ablate.resolve_rows("baseline,nope", "synth", PRESETS, TABLES)


def test_rows_with_the_same_overrides_share_a_run():
    names = ablate.run_names(["teacher", "baseline", "F+SA", "SA-PE-none", "SA-PE-gt"], PRESETS)
    assert names["SA-PE-gt"] == names["F+SA"] == "F_SA"  # same set, other order
    assert len({names["teacher"], names["baseline"], names["F+SA"], names["SA-PE-none"]}) == 4


def test_distiller_rows_cover_the_paper_tables():
    presets, tables, paper = ablate.distill_rows()
    pe_rows = ["SA-PE-none", "SA-PE-estimated", "SA-PE-gt"]
    for row in ["baseline", "F", "F+SA", "R", "R+CA", "F+R", "F+SA+R", "F+R+CA", "F+SA+R+CA", *pe_rows]:
        assert row in presets
    assert ablate.resolve_rows("pe", "synth", presets, tables) == pe_rows
    assert paper["teacher"] == (41.43, 28.15, 22.84)  # Table 4's first row: the frozen teacher
    # F+SA and "+SA w/ GT PE" are the same experiment in the paper (29.50 / 20.90 / 17.51)
    names = ablate.run_names(["F+SA", "SA-PE-gt"], presets)
    assert names["F+SA"] == names["SA-PE-gt"]
    assert paper["F+SA"] == paper["SA-PE-gt"]


def test_markdown_shows_mean_pm_std_and_the_paper_column():
    key = "Car/3d/moderate/R40@0.70"
    rows = [{"name": "baseline", "label": "MonoDETR (baseline)", "mean": {key: 12.0}, "std": {key: 2.0},
             "paper_ap3d": [27.63, 19.93, 16.7]},
            {"name": "teacher", "label": "Teacher", "mean": {key: 20.5}, "std": {key: 0.0}, "paper_ap3d": None}]
    text = ablate.markdown({"preset": "quick", "seeds": [0, 1, 2], "rows": rows})
    assert "| MonoDETR (baseline) | - | 12.00 ± 2.00 | - | - | - | - | 27.63/19.93/16.70 |" in text
    assert "| Teacher | - | 20.50 ± 0.00 | - | - | - | - | - |" in text
    assert "3 seed(s) [0, 1, 2]" in text
    assert text.count("R40 at IoU") == 2


def test_ablation_runs_each_seed_and_writes_json_and_markdown(tmp_path, monkeypatch):
    """The runner with ``monokd train`` / ``evaluate`` faked: one teacher a seed, rows with the
    same overrides trained once, the teacher's checkpoint given to distilled rows only."""
    import json
    import os


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
        value = {"teacher": 30.0, "baseline": 10.0}.get(os.path.basename(out), 20.0) + seed
        open(os.path.join(out, "e.json"), "w").write(json.dumps({"flat": {"Car/3d/moderate/R40@0.70": value}}))

    monkeypatch.setattr(stages, "run_command", fake)
    monkeypatch.setattr(stages, "ensure_synth", lambda root, *a, **k: root)
    results = ablate.run_ablation("quick", 2, tmp_path / "runs", tmp_path / "res",
                                  rows_spec="teacher,baseline,F+SA,SA-PE-gt", data_root=tmp_path / "data")
    trains = [c for c in calls if c[0] == "train"]
    assert len(trains) == 2 * 3  # per seed: teacher, baseline, F+SA (= SA-PE-gt)
    teacher_ckpt = str(tmp_path / "runs" / "seed0" / "teacher" / "last.ckpt")
    by_out = {c[c.index("--out") + 1]: c for c in trains}
    assert f"distill.teacher.ckpt={teacher_ckpt}" in by_out[str(tmp_path / "runs" / "seed0" / "F_SA")]
    assert not any("teacher.ckpt" in a for a in by_out[str(tmp_path / "runs" / "seed0" / "baseline")])
    assert "--seed" in by_out[str(tmp_path / "runs" / "seed1" / "baseline")]
    rows = {r["name"]: r for r in results["rows"]}
    key = "Car/3d/moderate/R40@0.70"
    assert rows["teacher"]["mean"][key] == pytest.approx(30.5)  # seeds 0 and 1
    assert rows["F+SA"]["std"][key] == pytest.approx(2 ** -0.5)
    assert rows["SA-PE-gt"]["per_seed"] == rows["F+SA"]["per_seed"]
    saved = json.loads((tmp_path / "res" / "add_ablation.json").read_text())
    assert saved["seeds"] == [0, 1] and [r["name"] for r in saved["rows"]] == ["teacher", "baseline", "F+SA", "SA-PE-gt"]
    text = (tmp_path / "res" / "add_ablation.md").read_text()
    assert "| MonoDETR (baseline) | - | 10.50 ± 0.71 |" in text
    ablate.run_ablation("quick", 2, tmp_path / "runs", tmp_path / "res", rows_spec="teacher,baseline,F+SA",
                        data_root=tmp_path / "data")
    assert len([c for c in calls if c[0] == "train"]) == 6  # everything reused


def test_paired_differences_with_a_hand_computed_t_interval():
    a = [{"m": 11.0}, {"m": 12.0}, {"m": 16.0}]
    b = [{"m": 10.0}, {"m": 10.0}, {"m": 13.0}]  # differences 1, 2, 3
    d = statistics.paired_differences(a, b, ["m"])["m"]
    assert d["per_seed"] == [1.0, 2.0, 3.0]
    assert d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / 3 ** 0.5  # t(0.975, 2) * std / sqrt(n)
    assert d["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert statistics.t_interval95([5.0]) is None
    with pytest.raises(ValueError, match="seeds"):
        statistics.paired_differences(a, b[:2], ["m"])


def test_caddn_preset_defaults_to_the_feature_and_pe_rows():

    preset = presets.load_preset("caddn_synth")
    assert (preset["student"], preset["method"]) == ("caddn", "add")
    assert [presets.recipe(preset, m).name for m in ("teacher", "baseline", "add")] == [
        "caddn_teacher_synth.yaml", "caddn_synth.yaml", "add_caddn_synth.yaml"]
    rows_of, tables, _ = ablate.distill_rows()
    rows = ablate.resolve_rows(preset.get("rows"), "caddn_synth", rows_of, tables)
    assert rows == ["teacher", "baseline", "F", "F+SA", *tables["pe"]]
    assert not any("response.enabled=true" in item for row in rows[1:] for item in rows_of[row])
