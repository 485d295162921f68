"""benchmarks/train_losses.py on a TensorBoard log written here (two launches of one run)."""

import json

import pytest

from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def train_losses():
    with benchmark_module("train_losses") as module:
        yield module


def test_first_and_last_means_across_a_resumed_runs_files(train_losses, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "add-s1"
    for launch, steps in enumerate((range(0, 6), range(6, 10))):  # resumed after step 5
        writer = SummaryWriter(str(run / "tensorboard" / f"launch{launch}"))
        for step in steps:
            writer.add_scalar("train/center", float(10 - step), step)
            writer.add_scalar("train/lr", 0.1, step)
        writer.close()
    out = tmp_path / "losses"
    train_losses.main([str(run), "--first", "2", "--last", "3", "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["tags"] == ["center"]  # lr is not a loss
    assert results["runs"]["add-s1"]["center"] == {"first": 9.5, "last": 2.0, "n": 10}  # (10+9)/2, (3+2+1)/3
    assert "| add-s1 | 9.500 -> 2.000 |" in out.with_suffix(".md").read_text()
