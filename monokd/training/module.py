"""The Lightning module that trains and validates any detector (or distiller).

Optimisation is manual so that a non-finite step can be skipped without an optimiser
update on every rank alike: a non-finite loss skips the backward pass (the ranks agree
through an all-reduce), a non-finite gradient norm (already all-reduced by DDP, hence equal
on all ranks) drops the gradients so that AdamW leaves every parameter alone.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from monokd.config import setting
from monokd.training import validation as V
from monokd.training.checkpoint import MODEL_PREFIX, build_model, check_state_dict
from monokd.training.preflight import PROVENANCE_KEY
from monokd.training.schedule import beta1, build_optimizer, lr_factor, set_beta1, set_lr
from monokd.training.seeding import capture_rng, restore_rng
from monokd.training.unlabeled import frame_counts
from monokd.errors import MonokdError


class NonFiniteLossError(MonokdError, RuntimeError):
    """Too many non-finite training steps in a row."""


class DetectorModule(L.LightningModule):
    """Wraps ``model`` (built from ``cfg`` when not given); ``cfg`` is stored in the checkpoint."""

    def __init__(self, cfg: dict, model: nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.model = model if model is not None else build_model(cfg)
        self.automatic_optimization = False
        self.max_nonfinite = int(setting(cfg, "train.max_nonfinite"))
        self.grad_clip = float(setting(cfg, "train.grad_clip") or 0)
        self.monitor_key = str(setting(cfg, "train.monitor"))
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.batches_done = 0  # in the current epoch (the data position of a resume)
        self.batches_seen = 0  # in the whole run (the last.ckpt cadence)
        self.frames_seen = {"labeled": 0, "unlabeled": 0}  # in the whole run, all ranks (data.unlabeled)
        self.val_metrics: dict[str, float] | None = None
        self.val_monitor: float | None = None
        self._val_detections: dict = {}
        self._ground_truth: dict = {}
        self._rng_to_restore: dict | None = None
        self._grads_finite = True
        self.provenance: dict | None = None  # monokd.training.preflight.check_run's record

    # -- training ---------------------------------------------------------------------------
    def configure_optimizers(self):
        return build_optimizer(self.model, self.cfg)

    def on_train_epoch_start(self) -> None:
        self.batches_done = 0
        for module in self.model.modules():  # per-epoch schedules inside a network (e.g. BN momentum)
            if callable(getattr(module, "set_epoch", None)):
                module.set_epoch(int(self.current_epoch))

    def training_step(self, batch: dict, batch_idx: int):
        optimizer = self.optimizers()
        lr = float(setting(self.cfg, "train.lr")) * lr_factor(
            self.current_epoch, batch_idx, int(self.trainer.num_training_batches), self.cfg)
        set_lr(optimizer.optimizer, lr)
        momentum = beta1(self.current_epoch, batch_idx, int(self.trainer.num_training_batches), self.cfg)
        if momentum is not None:
            set_beta1(optimizer.optimizer, momentum)
        outputs = self.model(batch)
        losses = self.model.losses(outputs, batch)
        loss = losses["loss"]
        stepped = all_ranks_true(torch.isfinite(loss.detach()).all())
        if stepped:
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._grads_finite = True
            optimizer.step()  # on_before_optimizer_step may drop non-finite gradients
            stepped = self._grads_finite
        self.batches_done = batch_idx + 1
        self.batches_seen += 1
        self._count_step(stepped)
        self._count_frames(batch)
        batch_size = len(batch["frame_ids"])
        if stepped:
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
            for name, value in losses.items():
                if name != "loss" and torch.is_tensor(value) and value.numel() == 1:
                    self.log(f"train/{name}", value.detach(), batch_size=batch_size)
        self.log("train/lr", lr, batch_size=batch_size)
        self.log("train/nonfinite_total", float(self.nonfinite_total), prog_bar=self.nonfinite_total > 0,
                 batch_size=batch_size)
        return None

    def _count_frames(self, batch: dict) -> None:
        """Add the batch's labeled and unlabeled frames to :attr:`frames_seen` and log both
        (``train/frames_labeled``, ``train/frames_unlabeled``). Every rank's batch b holds the
        same counts (MixedEpochBatchSampler), so the run's totals are world_size times a rank's."""
        world = int(self.trainer.world_size) if self._trainer is not None else 1
        for key, count in zip(("labeled", "unlabeled"), frame_counts(batch)):
            self.frames_seen[key] += count * world
            self.log(f"train/frames_{key}", float(self.frames_seen[key]), batch_size=len(batch["frame_ids"]))

    def on_before_optimizer_step(self, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip if self.grad_clip > 0 else math.inf)
        self._grads_finite = bool(torch.isfinite(norm))
        if not self._grads_finite:
            for p in params:
                p.grad = None  # AdamW skips parameters without gradient: no update at all

    def _count_step(self, stepped: bool) -> None:
        if stepped:
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        if self.max_nonfinite > 0 and self.nonfinite_in_a_row >= self.max_nonfinite:
            raise NonFiniteLossError(
                f"training aborted: {self.nonfinite_in_a_row} non-finite training steps in a row "
                f"(loss or gradient NaN/inf; epoch {self.current_epoch}, batch {self.batches_done - 1}; "
                f"{self.nonfinite_total} skipped in all). Lower train.lr, set train.grad_clip, check "
                f"the data, or raise train.max_nonfinite.")

    # -- validation -------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_detections = {}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._val_detections.update(V.validation_records(self.model, batch))

    def on_validation_epoch_end(self) -> None:
        records = V.gather_detections(self._val_detections)
        self._val_detections = {}
        own = V.scores_itself(self.model)
        flat = None
        if self.trainer.is_global_zero:
            flat = self.model.summarise_scores(records) if own else self._kitti_metrics(records)
        flat = V.broadcast_object(flat)
        self.val_metrics = flat
        self.val_monitor = V.monitor_value(flat, self.monitor_key)
        # Identical on every rank already; syncing only keeps Lightning from warning.
        sync = self.trainer.world_size > 1
        if self.val_monitor is not None:
            self.log("val/monitor", self.val_monitor, prog_bar=True, sync_dist=sync)
        for key, value in flat.items():
            if own or "/R40@" in key:
                self.log(f"val/{key}", value, sync_dist=sync)

    def _kitti_metrics(self, detections: dict) -> dict[str, float]:
        """The flat KITTI AP of ``detections`` against the label_2 ground truth (read once)."""
        missing = [f for f in detections if f not in self._ground_truth]
        self._ground_truth.update(V.read_ground_truth(self.cfg, missing))
        result = V.score_detections(self.cfg, {f: self._ground_truth[f] for f in detections}, detections)
        return {k: float(v) for k, v in result.flat.items()}

    # -- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["monokd"] = {"rng": capture_rng(), "nonfinite_in_a_row": self.nonfinite_in_a_row,
                                "nonfinite_total": self.nonfinite_total, "batches_done": self.batches_done,
                                "batches_seen": self.batches_seen, "frames_seen": dict(self.frames_seen)}
        if self.provenance is not None:
            checkpoint[PROVENANCE_KEY] = self.provenance

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = {k[len(MODEL_PREFIX):]: v for k, v in checkpoint.get("state_dict", {}).items()
                 if k.startswith(MODEL_PREFIX)}
        if "state_dict" in checkpoint:
            check_state_dict(self.model, state, "the checkpoint")
        extra = checkpoint.get("monokd", {})
        self.nonfinite_in_a_row = extra.get("nonfinite_in_a_row", 0)
        self.nonfinite_total = extra.get("nonfinite_total", 0)
        self.batches_done = extra.get("batches_done", 0)
        self.batches_seen = extra.get("batches_seen", 0)
        self.frames_seen = {"labeled": 0, "unlabeled": 0, **extra.get("frames_seen", {})}
        self._rng_to_restore = extra.get("rng")

    def on_train_start(self) -> None:
        # Applied here, after the loaders are set up, so nothing between the restore and the
        # first resumed step draws from the generators.
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None


def all_ranks_true(flag: torch.Tensor) -> bool:
    """True when ``flag`` is true on every rank (so all ranks take the same branch)."""
    value = flag.detach().to(torch.float32).reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0)
