"""Every SynthKITTI recipe starts and finishes a real ``fit``: one epoch of two steps at tiny
sizes, its validation and checkpoints (a distilled recipe with its frozen models built untrained
from their recipes, as benchmarks/train_speed.py does). A key one model reads differently from the
engine, or a model the engine cannot start, fails here rather than in a user's first run."""

from __future__ import annotations

import pytest

from monokd.training.fit import fit
from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def speed():
    with benchmark_module("train_speed") as module:
        yield module


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory, speed):
    return speed.generate(tmp_path_factory.mktemp("synth") / "synth", num_train=4, num_val=2, seed=0, width=160, height=64)


@pytest.mark.parametrize("name", ["monodetr", "monodetr_teacher", "add_monodetr", "caddn", "add_caddn", "patchnet",
                                  "depth", "lidar_teacher", "ta", "takd"])
def test_the_recipe_trains_one_epoch(speed, synth_root, tmp_path, name):
    short = ["train.epochs=1", "train.val_every=1", "train.warmup_epochs=0", "train.lr_milestones=[]"]
    if name == "patchnet":
        short.append("data.proposals.eval=gt")  # no 2-D detector here: its GT boxes
    cfg = speed.recipe(name, synth_root, tmp_path, quick=True, models={name: (*speed.MODELS[name], short)})
    fit(cfg, tmp_path / "run", progress_bar=False)
    assert (tmp_path / "run" / "last.ckpt").is_file() and (tmp_path / "run" / "metrics.json").is_file()
