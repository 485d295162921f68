"""benchmarks/add_probe.py: the ridge probe, index agreement, and a run on tiny random checkpoints."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from monokd.models import build_detector
from tests.helpers import benchmark_module

TINY = {"model": {"name": "monodetr", "backbone": {"depth": 18}, "hidden_dim": 32, "dim_feedforward": 32,
                  "num_queries": 12, "enc_layers": 1, "dec_layers": 2, "num_feature_levels": 3},
        "data": {"classes": ["Car"], "input_size": [416, 128]}}


@pytest.fixture(scope="module")
def add_probe():
    with benchmark_module("add_probe") as module:
        yield module


def test_ridge_probe_recovers_a_linear_log_depth(add_probe):
    rng = np.random.default_rng(0)
    w = rng.normal(size=6)
    x = rng.normal(size=(400, 6))
    y = np.log(20.0) + 0.1 * x @ w
    out = add_probe.ridge_probe(x[:300], y[:300], x[300:], y[300:])
    assert out["median_abs_m"] < 0.05 and out["lambda"] <= 1.0
    noise = add_probe.ridge_probe(rng.normal(size=(300, 6)), y[:300], rng.normal(size=(100, 6)), y[300:])
    assert noise["median_abs_m"] > 10 * out["median_abs_m"]  # features that know nothing


def test_index_agreement_counts_objects_matched_to_the_same_query(add_probe):
    teacher = [{0: 3, 1: 5}, {0: 1}]
    student = [{0: 3, 1: 2}, {0: 1, 1: 4}]  # object 1 of frame 1: the teacher has no match
    assert add_probe.index_agreement(teacher, student) == {"fraction": 2 / 3, "objects": 3}


def _save(cfg: dict, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_detector(cfg)
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()},
                "hyper_parameters": {"cfg": cfg}}, path)
    return path


def test_probe_on_tiny_random_checkpoints(add_probe, synth_root, tmp_path):
    torch.set_num_threads(1)
    cfg = copy.deepcopy(TINY)
    cfg["data"]["root"] = str(synth_root)
    teacher_cfg = copy.deepcopy(cfg)
    teacher_cfg["model"]["depth_input"] = "gt_object"
    teacher = _save(teacher_cfg, tmp_path / "teacher.ckpt", 0)
    baseline = _save(cfg, tmp_path / "baseline.ckpt", 1)
    out = tmp_path / "probe"
    add_probe.main(["--ckpt", f"teacher={teacher}", "--ckpt", f"baseline={baseline}",
                    "--ckpt", f"teacher_again={teacher}", "--teacher", "teacher", "--no-ap", "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["reference_teacher"] == "teacher"
    models = results["models"]
    signals = {"encoder_input/0", "encoder_input/1", "encoder_input/2", "depth_memory",
               "queries/layer1", "queries/layer2"}
    assert set(models["teacher"]["probes"]) == set(models["baseline"]["probes"]) == signals
    for m in models.values():
        for probe in m["probes"].values():
            assert probe["n_train"] > 0 and probe["n_val"] > 0 and np.isfinite(probe["median_abs_m"])
    assert models["teacher"]["teacher"] and not models["baseline"]["teacher"]
    assert models["teacher_again"]["index_agreement"]["fraction"] == 1.0  # the same weights match alike
    assert models["teacher_again"]["probes"] == models["teacher"]["probes"]
    assert 0.0 <= models["baseline"]["index_agreement"]["fraction"] <= 1.0
    assert "| baseline |" in out.with_suffix(".md").read_text()
