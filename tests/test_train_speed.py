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
