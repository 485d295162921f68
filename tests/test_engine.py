"""The training engine on a tiny fake detector: schedule, sampling, resume, non-finite steps,
checkpoint mismatch and a 2-process DDP run (gloo, CPU).

Run as a script (``python tests/test_engine.py ddp OUT``) it is the DDP worker of
:func:`test_ddp_two_processes`.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from monokd.training.checkpoint import CheckpointMismatchError, load_weights, read_checkpoint
from monokd.training.module import NonFiniteLossError
from monokd.training.sampling import EpochBatchSampler, shard
from monokd.training.schedule import lr_factor
from tests.helpers import FakeRegressor as FakeDetector, engine_cfg as tiny_cfg, run_fake


# --------------------------------------------------------------------------- weights (fakes: tests/helpers.py)
def weights(module) -> dict:
    return {k: v.clone() for k, v in module.model.state_dict().items()}


# --------------------------------------------------------------------------- schedule
def test_lr_factor_warmup_then_multistep():
    cfg = {"train": {"lr_milestones": [2, 3], "lr_gamma": 0.1, "warmup_epochs": 0.5}}
    # 4 batches per epoch: warm-up over the first 2 batches, then x0.1 from epoch 2, x0.01 from 3
    assert lr_factor(0, 0, 4, cfg) == pytest.approx(0.5)
    assert lr_factor(0, 1, 4, cfg) == pytest.approx(1.0)
    assert lr_factor(1, 3, 4, cfg) == pytest.approx(1.0)
    assert lr_factor(2, 0, 4, cfg) == pytest.approx(0.1)
    assert lr_factor(3, 2, 4, cfg) == pytest.approx(0.01)
    assert lr_factor(0, 0, 4, {"train": {}}) == 1.0


def test_lr_factor_one_cycle():
    cfg = {"train": {"lr_schedule": "onecycle", "epochs": 10, "div_factor": 10.0, "pct_start": 0.4}}
    assert lr_factor(0, 0, 10, cfg) == pytest.approx(0.1)  # starts at lr / div_factor
    assert lr_factor(2, 0, 10, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway up (cosine)
    assert lr_factor(4, 0, 10, cfg) == pytest.approx(1.0)  # the peak at 40 %
    assert lr_factor(7, 0, 10, cfg) == pytest.approx(1e-5 + (1 - 1e-5) * 0.5)  # halfway down
    assert lr_factor(9, 9, 10, cfg) == pytest.approx(1e-5, abs=1e-3)


# --------------------------------------------------------------------------- sampling
def test_sampler_order_depends_on_seed_and_epoch_only():
    a = EpochBatchSampler(10, 3, seed=1)
    b = EpochBatchSampler(10, 3, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert sorted(i for batch in a for _, i in batch) == list(range(10))
    assert all(e == 2 for batch in a for e, _ in batch)


def test_sampler_shards_evenly_and_resumes_after_done_batches():
    shards = [shard(list(range(7)), r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4  # padded: both ranks step 2 times
    assert set(shards[0]) | set(shards[1]) == set(range(7))
    s = EpochBatchSampler(7, 2, seed=0, rank=1, world_size=2)
    full = list(s)
    assert len(full) == len(s) == 2
    s.resume(0, 1)
    assert list(s) == full[1:]
    assert list(s) == full  # the skip applies once


# --------------------------------------------------------------------------- training runs
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    cfg = tiny_cfg(tmp_path)  # 6 frames, batch 2: 3 batches/epoch, 2 epochs, last.ckpt every 2
    full = run_fake(tmp_path, tmp_path / "full", cfg)

    class Killed(Exception):
        pass

    class KillAt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.batches_seen == 5:  # last.ckpt was written after batch 4 (epoch 1)
                raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_fake(tmp_path, out, cfg, callbacks=[KillAt()])
    assert read_checkpoint(out / "last.ckpt")["monokd"]["batches_seen"] == 4
    resumed = run_fake(tmp_path, out, cfg, resume=out / "last.ckpt")
    assert resumed.batches_seen == full.batches_seen == 6
    a, b = weights(full), weights(resumed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    # The data and dropout draws matter: a run with another seed ends elsewhere.
    other = run_fake(tmp_path, tmp_path / "other", tiny_cfg(tmp_path, seed=8))
    assert not torch.allclose(weights(other)["head.weight"], a["head.weight"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert [v["epoch"] for v in metrics["validations"]] == [0, 1]
    assert "Car/3d/moderate/R40@0.70" in metrics["final"]["metrics"]
    # best.ckpt is the validation with the highest monitor (the first of equals)
    scores = [v["monitor"] for v in metrics["validations"]]
    assert None not in scores and metrics["best"]["epoch"] == scores.index(max(scores))
    assert read_checkpoint(out / "best.ckpt")["epoch"] == metrics["best"]["epoch"]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"] == cfg["train"]


def test_plain_progress_numbers_each_validation_by_the_epoch_it_follows(tmp_path):
    import io

    from monokd.training.callbacks import PlainProgress

    # epochs 3, val_every 2: a validation inside trainer.fit after epoch 2, and the final one
    # of monokd.training.fit after it (where Lightning's current_epoch already counts epoch 3)
    stream = io.StringIO()
    cfg = tiny_cfg(tmp_path, epochs=3, val_every=2, ckpt_every_steps=0)
    run_fake(tmp_path, tmp_path / "out", cfg, callbacks=[PlainProgress(3, stream)])
    lines = stream.getvalue().splitlines()
    assert [line.split()[:4] for line in lines] == [
        ["epoch", "1/3", "step", "3/9"], ["epoch", "2/3", "step", "6/9"], ["val", "epoch", "2", "step"],
        ["epoch", "3/3", "step", "9/9"], ["val", "epoch", "3", "step"]]


def test_nonfinite_batches_are_skipped_counted_and_abort_after_limit(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1, batch_size=1, max_nonfinite=5, ckpt_every_steps=0, val_every=99)
    model = FakeDetector()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    module = run_fake(tmp_path, tmp_path / "nan", cfg, model=model, data={"n_train": 4, "nan": True})
    assert module.nonfinite_total == 4 and module.nonfinite_in_a_row == 4
    for key, value in model.state_dict().items():  # no optimiser update at all (not even decay)
        assert torch.equal(value, before[key]), key
    cfg = tiny_cfg(tmp_path, epochs=1, batch_size=1, max_nonfinite=5, ckpt_every_steps=0, val_every=99)
    with pytest.raises(NonFiniteLossError, match="5 non-finite training steps in a row"):
        run_fake(tmp_path, tmp_path / "abort", cfg, data={"n_train": 8, "nan": True})


def test_nonfinite_gradient_with_finite_loss_is_skipped(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1, batch_size=2, ckpt_every_steps=0, val_every=99)
    model = FakeDetector(sqrt_loss=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    module = run_fake(tmp_path, tmp_path / "grad", cfg, model=model, data={"n_train": 4})
    assert module.nonfinite_total == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_checkpoint_of_another_model_names_mismatched_keys(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1, val_every=99)
    run_fake(tmp_path, tmp_path / "a", cfg, data={"n_train": 2})
    checkpoint = read_checkpoint(tmp_path / "a" / "last.ckpt")
    assert checkpoint["hyper_parameters"]["cfg"]["train"]["seed"] == 7
    load_weights(FakeDetector(), checkpoint)  # the same model loads

    class Other(FakeDetector):
        def __init__(self):
            super().__init__(width=6)
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(Other(), checkpoint, source="a/last.ckpt")
    text = str(err.value)
    assert "a/last.ckpt" in text and "2 missing keys (extra.weight, extra.bias)" in text
    assert "shape mismatches" in text and "conv.weight (4, 3, 3, 3) vs model (6, 3, 3, 3)" in text
    with pytest.raises(CheckpointMismatchError, match="missing keys"):  # resuming fails the same way
        run_fake(tmp_path, tmp_path / "a", cfg, model=Other(), resume=tmp_path / "a" / "last.ckpt")


# --------------------------------------------------------------------------- DDP
class DumpRank(L.Callback):
    """Each rank saves its final state (the forked ranks' modules are not returned)."""

    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, pl_module):
        torch.save({"weights": weights(pl_module), "batches_seen": pl_module.batches_seen,
                    "nonfinite_total": pl_module.nonfinite_total, "world_size": trainer.world_size},
                   self.out / f"rank{trainer.global_rank}.pt")


def test_ddp_two_processes(tmp_path):
    # Forked ranks (gloo) start in seconds; `monokd train --devices 2` and torchrun differ
    # only in how the same DDP strategy is launched.
    cfg = tiny_cfg(tmp_path / "data", epochs=1, batch_size=1, ckpt_every_steps=1, start_method="fork")
    # Frame 1 has a NaN image: the rank that gets it cannot step, so neither may the other.
    run_fake(tmp_path / "data", tmp_path, cfg, devices=2, data={"n_train": 4, "nan": {1}},
             callbacks=[DumpRank(tmp_path)])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["batches_seen"] for r in ranks] == [2, 2]  # 4 frames / 2 ranks / batch 1
    assert [r["nonfinite_total"] for r in ranks] == [1, 1]  # both skipped the NaN step
    for key in ranks[0]["weights"]:  # DDP kept the replicas identical
        assert torch.equal(ranks[0]["weights"][key], ranks[1]["weights"][key]), key
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final"]["metrics"]  # rank 0 scored the gathered detections
    assert (tmp_path / "last.ckpt").is_file()


def test_lightning_advertisement_dropped_other_lines_kept(caplog):
    import logging

    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from monokd.training.fit import quiet_lightning

    quiet_lightning()
    quiet_lightning()  # idempotent: one filter
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert len([f for f in log.filters if type(f).__name__ == "_DropAdvertisement"]) == 1
    with caplog.at_level(logging.INFO, logger=log.name):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
