"""benchmarks/train_speed.py: each model's recipe resolved with its frozen models untrained
from their configs, at the quick sizes; model names checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from monokd.config import load_config
from tests.helpers import benchmark_module


def test_a_distiller_gets_its_teachers_configs_at_the_same_sizes(tmp_path):
    root = tmp_path / "synth"
    with benchmark_module("train_speed") as speed:
        cfg = speed.recipe("takd", root, tmp_path, quick=True)
        assert cfg["data"]["input_size"] == [128, 64] and cfg["train"]["batch_size"] == 2
        for role, recipe in (("teacher", "takd_lidar_synth.yaml"), ("ta", "takd_ta_synth.yaml")):
            assert cfg["distill"][role]["ckpt"] is None
            frozen = load_config(cfg["distill"][role]["config"])
            assert frozen["model"] == load_config(speed.REPO / "configs" / recipe)["model"]
            assert frozen["data"]["input_size"] == [128, 64] and Path(frozen["data"]["root"]) == root
        assert speed.recipe("depth", root, tmp_path, quick=False)["data"]["depth_maps"] == "depth_2"
        assert speed.names("all", speed.MODELS) == list(speed.MODELS)
        assert speed.names("monodetr+add_monodetr", ()) == ["monodetr+add_monodetr"]
        with pytest.raises(SystemExit, match="unknown model 'nope'"):
            speed.names("monodetr,nope", ())


def test_profile_ops_share_out_the_step(tmp_path):
    """The top ops come sorted by self CPU time, their shares of the step's self CPU time add up
    to at most 1, and a convolutional network's step holds a convolution among them."""
    with benchmark_module("train_speed") as speed:
        root = speed.generate(tmp_path / "synth", num_train=2, num_val=1, seed=0, width=160, height=64)
        doc = speed.profile_all(["lidar_teacher"], root, tmp_path, steps=1, quick=True, threads=1)
    row = doc["models"]["lidar_teacher"]
    assert row["config"] == "configs/takd_lidar_synth.yaml" and set(row) == {"config", "fp32", "bf16"}
    for variant in ("fp32", "bf16"):
        ops = row[variant]["top_ops"]
        assert len(ops) == 10 and [o["ms"] for o in ops] == sorted((o["ms"] for o in ops), reverse=True)
        assert 0 < sum(o["share"] for o in ops) <= 1.0001
        assert all(not o["op"].startswith("aten::") and o["calls"] > 0 for o in ops)
        assert row[variant]["self_cpu_ms"] >= sum(o["ms"] for o in ops) - 0.1
    assert any("convolution" in o["op"] for o in row["fp32"]["top_ops"])
