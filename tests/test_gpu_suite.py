"""benchmarks/gpu_suite.py: its tiny CPU run fills every section of the JSON; the deformable
attention is timed at the KITTI recipe's encoder sizes."""

from __future__ import annotations

import json
from pathlib import Path

from monokd.config import load_config
from tests.helpers import benchmark_module

REPO = Path(__file__).resolve().parents[1]


def test_attention_sizes_are_the_kitti_encoders():
    with benchmark_module("gpu_suite") as suite:
        size = suite.attn_sizes(load_config(REPO / "configs" / "monodetr_kitti.yaml"), tiny=False)
    # 1280 x 384 at strides 8, 16, 32, 64 (rounded up); every cell a query; 256 = 8 heads x 32
    assert size["shapes"] == [(48, 160), (24, 80), (12, 40), (6, 20)]
    assert size["queries"] == 7680 + 1920 + 480 + 120
    assert (size["batch"], size["heads"], size["head_dim"], size["points"]) == (16, 8, 32, 4)


def test_tiny_run_fills_every_section(tmp_path):
    out = tmp_path / "gpu_suite.json"
    with benchmark_module("gpu_suite") as suite:
        assert suite.main(["--tiny", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["tiny"] and doc["machine"]["device"] == "cpu"
    sections = doc["sections"]
    assert list(sections) == ["recipes", "deform_attn", "ddp", "seed_studies"]
    assert not [name for name, section in sections.items() if "error" in section]
    row = sections["recipes"]["monodetr"]
    assert row["config"] == "configs/monodetr_kitti.yaml" and "errors" not in row
    assert set(row["step_s"]) == {"fp32", "bf16"} and all(t > 0 for t in row["step_s"].values())
    assert sections["deform_attn"]["impls"]["pytorch"]["fwd_bwd_s"] > 0
    ddp = sections["ddp"]
    assert ddp["backend"] == "gloo" and [r["rank"] for r in ddp["ranks"]] == [0, 1]
    assert ddp["step_s"] > 0 and ddp["ddp_over_single"] > 0
    seeds = sections["seed_studies"]
    assert [r["processes"] for r in seeds["runs"]] == [1, 2]
    assert all(r["steps_per_s_total"] > 0 for r in seeds["runs"])
