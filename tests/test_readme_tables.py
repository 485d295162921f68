"""benchmarks/readme_tables.py on tiny fake results: the tables' cells, the sentences computed
from the intervals, the short-schedule table, the README's marked block and nothing else."""

from __future__ import annotations

import json

import pytest

from monokd.errors import ConfigError
from tests.helpers import benchmark_module

KEYS = [f"Car/{k}/moderate/R40@{iou}" for iou in ("0.70", "0.50") for k in ("3d", "bev")]


@pytest.fixture(scope="module")
def tables():
    with benchmark_module("readme_tables") as module:
        yield module


def _model(n: int, mean: float, std: float) -> dict:
    return {"n": n, "mean": {k: mean for k in KEYS}, "std": {k: std for k in KEYS}}


def _diff(per_seed: list[float], ci) -> dict:
    mean = sum(per_seed) / len(per_seed)
    return {k: {"mean": mean, "std": 1.0, "per_seed": per_seed, "ci95": ci} for k in KEYS}


def _seed_study() -> dict:
    paired = {"add": _diff([1.0, 2.0, 3.0], [-0.48, 4.48])}
    paired["add"][KEYS[2]] = {"mean": 3.0, "std": 0.5, "per_seed": [2.5, 3.0, 3.5], "ci95": [1.76, 4.24]}
    paired["F"] = _diff([-4.0], None)
    return {"seeds": [1, 2, 3], "val_frames": 200, "precision": "bf16-mixed", "train_args": ["--set", "train.epochs=2"],
            "models": {"teacher": _model(1, 30.0, 0.0), "baseline": _model(3, 10.0, 1.5), "add": _model(3, 12.0, 2.0),
                       "F": _model(1, 6.0, 0.0)}, "paired": paired}


def _ablation() -> dict:
    rows = [{"name": "baseline", "label": "MonoDETR (baseline)", "n": 2, "paper_ap3d": [27.63, 19.93, 16.7],
             **_model(2, 10.0, 1.0), "paired": None},
            {"name": "F+SA+R+CA", "label": "(h) F +SA, R +CA", "n": 2, "paper_ap3d": [30.71, 21.94, 18.42],
             **_model(2, 11.0, 1.0), "paired": _diff([-2.0, -1.0], [-7.85, -4.0])}]
    return {"preset": "configs/demo_default.yaml", "seeds": [0, 1], "val_frames": 100, "precision": "32", "reference": "baseline",
            "train_args": {"baseline": {"recipe": "configs/x.yaml", "overrides": [], "extra": []}}, "rows": rows}


def test_a_seed_study_table_and_its_sentences(tables, tmp_path):
    path = tmp_path / "add_seeds_caddn.json"
    path.write_text(json.dumps(_seed_study()))
    text = tables.render("ADD on CaDDN", path, "seeds", "baseline")
    assert "seeds [1, 2, 3], 200 val frames, precision bf16-mixed, training arguments `--set train.epochs=2`" in text
    assert "| teacher | 1 | 30.00 | 30.00 | 30.00 | 30.00 |" in text
    assert "| baseline | 3 | 10.00 ± 1.50 | 10.00 ± 1.50 | 10.00 ± 1.50 | 10.00 ± 1.50 |" in text
    assert ("| ADD - baseline, paired | 3 | +2.00 ± 1.00 [-0.48, +4.48] | +2.00 ± 1.00 [-0.48, +4.48] | "
            "+3.00 ± 0.50 [+1.76, +4.24] | +2.00 ± 1.00 [-0.48, +4.48] |") in text
    assert "| F - baseline, paired | 1 | -4.00 | -4.00 | -4.00 | -4.00 |" in text
    assert ("- ADD - baseline: not shown (the interval includes zero) at AP3D@0.7, AP_BEV@0.7, AP_BEV@0.5; "
            "shown ahead at AP3D@0.5.") in text
    assert "- One seed, no interval (nothing shown): F - baseline." in text


def test_the_unlabeled_study_pairs_each_arm_with_its_own_labeled_arm(tables, tmp_path):
    path = tmp_path / "unlabeled_study.json"
    doc = {"seeds": [1, 2, 3], "val_frames": 200, "models": {"takd": _model(3, 10.0, 1.0), "takd+U": _model(3, 12.0, 1.0)},
           "paired": {"takd+U - takd": _diff([1.0, 2.0, 3.0], [0.5, 3.5])}}
    path.write_text(json.dumps(doc))
    text = tables.render("Unlabeled frames", path, "seeds", "takd")
    assert "| MonoTAKD + unlabeled frames | 3 | 12.00 ± 1.00 |" in text
    assert "| MonoTAKD + unlabeled frames - MonoTAKD, paired | 3 | +2.00 ± 1.00 [+0.50, +3.50] |" in text
    assert "- MonoTAKD + unlabeled frames - MonoTAKD: shown ahead at AP3D@0.7, AP_BEV@0.7, AP3D@0.5, AP_BEV@0.5." in text


def test_an_ablation_table_beside_the_paper(tables, tmp_path):
    path = tmp_path / "add_ablation.json"
    path.write_text(json.dumps(_ablation()))
    text = tables.render("ADD ablation", path, "ablation", "baseline")
    assert "| MonoDETR (baseline) | 2 | 10.00 ± 1.00 | 10.00 ± 1.00 | 10.00 ± 1.00 | 10.00 ± 1.00 | 19.93 |" in text
    assert "| (h) F +SA, R +CA | 2 | 11.00 ± 1.00 | 11.00 ± 1.00 | 11.00 ± 1.00 | 11.00 ± 1.00 | 21.94 (+2.01) |" in text
    assert "| (h) F +SA, R +CA - MonoDETR (baseline), paired | 2 | -1.50 ± 1.00 [-7.85, -4.00] |" in text
    assert "shown behind at AP3D@0.7, AP_BEV@0.7, AP3D@0.5, AP_BEV@0.5." in text
    assert "From [add_ablation.json](" in text and "preset `demo_default`, seeds [0, 1], 100 val frames, precision 32" in text
    assert "training arguments per row in the JSON" in text


def test_render_all_orders_sources_and_adds_the_short_schedule(tables, tmp_path):
    (tmp_path / "add_ablation.json").write_text(json.dumps(_ablation()))
    (tmp_path / "add_seeds_caddn_short.json").write_text(json.dumps(_seed_study()))
    (tmp_path / "add_seeds_caddn.json").write_text(json.dumps(_seed_study()))
    headings = [line for line in tables.render_all(tmp_path).split("\n") if line.startswith("### ")]
    assert headings == ["### ADD on CaDDN", "### ADD on CaDDN (short schedule)",
                        "### ADD ablation on MonoDETR (Table 4, Table 5's PE rows)"]


def test_readme_block_is_replaced_and_nothing_else(tables, tmp_path):
    (tmp_path / "add_seeds_caddn.json").write_text(json.dumps(_seed_study()))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nprose above\n{tables.BEGIN}\nold table\n{tables.END}\nprose below\n")
    assert tables.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# title\n\nprose above\n{tables.BEGIN}\n### ADD on CaDDN\n")
    assert text.endswith(f"{tables.END}\nprose below\n") and "old table" not in text
    tables.main(["--results", str(tmp_path), "--readme", str(readme)])
    assert readme.read_text() == text  # idempotent
    for broken in ("no markers\n", f"{tables.END}\n{tables.BEGIN}\n", f"{tables.BEGIN}\n{tables.BEGIN}\n{tables.END}\n"):
        readme.write_text(broken)
        with pytest.raises(ConfigError, match="expected one line"):
            tables.main(["--results", str(tmp_path), "--readme", str(readme)])
        assert readme.read_text() == broken
