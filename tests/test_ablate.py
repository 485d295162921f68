"""monokd ablate: row selection, run sharing, mean +- std aggregation, the markdown table."""

from __future__ import annotations

import pytest

from monokd.engine import ablate
from monokd.errors import ConfigError

PRESETS = {
    "baseline": ["distill=null"],
    "F+SA": ["distill.feature.enabled=true", "distill.feature.adapter=self_attention"],
    "SA-PE-gt": ["distill.feature.adapter=self_attention", "distill.feature.enabled=true"],
    "SA-PE-none": ["distill.feature.enabled=true", "distill.feature.pos_encoding=none"],
    "SA-PE-estimated": ["distill.feature.enabled=true", "distill.feature.pos_encoding=estimated"],
}
TABLES = {"table4": ["baseline", "F+SA"]}


def test_aggregate_mean_and_sample_std():
    stats = ablate.aggregate([{"a": 10.0, "b": 1.0}, {"a": 14.0, "b": 1.0}, {"a": 12.0}])
    assert stats["n"] == 3
    assert set(stats["mean"]) == {"a"}  # a key missing from one seed is left out
    assert stats["mean"]["a"] == pytest.approx(12.0)
    assert stats["std"]["a"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 2^2 + 0) / (3 - 1))


def test_aggregate_one_seed_has_zero_std():
    stats = ablate.aggregate([{"a": 7.5}])
    assert stats == {"mean": {"a": 7.5}, "std": {"a": 0.0}, "n": 1}
    assert ablate.aggregate([]) == {"mean": {}, "std": {}, "n": 0}


def test_resolve_rows_tables_names_and_defaults():
    assert ablate.resolve_rows(None, "quick", PRESETS, TABLES) == ["baseline", "F+SA+R+CA"]
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
    for row in ["baseline", "F", "F+SA", "R", "R+CA", "F+R", "F+SA+R", "F+R+CA", "F+SA+R+CA", *ablate.PE_ROWS]:
        assert row in presets
    assert ablate.resolve_rows("pe", "synth", presets, tables) == ablate.PE_ROWS
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
