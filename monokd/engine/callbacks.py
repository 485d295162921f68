"""Callbacks of a training run: ``last.ckpt`` (for resuming), the best checkpoint by the
monitored AP, and ``metrics.json``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import lightning as L


def save_atomically(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary name, then rename: a run killed while
    writing never leaves a truncated ``last.ckpt`` behind. All ranks must call it."""
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    trainer.strategy.barrier("save_atomically")
    if trainer.is_global_zero:
        os.replace(tmp, path)


class LastCheckpoint(L.Callback):
    """Writes ``out/last.ckpt`` every ``every_steps`` training batches (0: never mid-epoch)
    and at the end of every epoch."""

    def __init__(self, out: str | Path, every_steps: int = 0):
        self.path = Path(out) / "last.ckpt"
        self.every_steps = int(every_steps or 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        done = batch_idx + 1
        # The epoch-end save follows the last batch; saving here too would only add an
        # ambiguous "finished epoch, not yet validated" state.
        if done >= trainer.num_training_batches or not self.every_steps:
            return
        if pl_module.batches_seen % self.every_steps == 0:
            save_atomically(trainer, self.path)

    def on_train_epoch_end(self, trainer, pl_module):
        save_atomically(trainer, self.path)


class BestCheckpoint(L.Callback):
    """Writes ``out/best.ckpt`` whenever the monitored validation metric improves."""

    def __init__(self, out: str | Path, monitor: str = "val/monitor"):
        self.path = Path(out) / "best.ckpt"
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch: int | None = None

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if math.isfinite(value) and value > self.best:
            self.best, self.best_epoch = value, int(trainer.current_epoch)
            save_atomically(trainer, self.path)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best", -math.inf)
        self.best_epoch = state.get("best_epoch")


class MetricsJson(L.Callback):
    """Appends each validation's flat AP dict to ``out/metrics.json`` (rank 0), and writes
    ``final`` (the last validation), ``best`` (the validation with the highest monitor) and
    ``notes`` (the warnings of monokd.engine.preflight, e.g. an allowed teacher overlap)."""

    def __init__(self, out: str | Path, monitor_key: str):
        self.path = Path(out) / "metrics.json"
        self.monitor_key = monitor_key
        self.history: list[dict] = []

    def on_validation_end(self, trainer, pl_module):
        metrics = getattr(pl_module, "val_metrics", None)
        if trainer.sanity_checking or metrics is None:
            return
        entry = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step),
                 "monitor": pl_module.val_monitor, "metrics": metrics}
        self.history = [e for e in self.history if e["epoch"] != entry["epoch"]] + [entry]
        if trainer.is_global_zero:
            notes = list((getattr(pl_module, "provenance", None) or {}).get("notes", []))
            self.write(nonfinite_total=int(getattr(pl_module, "nonfinite_total", 0)), notes=notes)

    def write(self, **extra) -> None:
        scored = [e for e in self.history if e.get("monitor") is not None]
        best = max(scored, key=lambda e: e["monitor"]) if scored else None
        doc = {"monitor": self.monitor_key, "validations": self.history,
               "final": self.history[-1] if self.history else None, "best": best, **extra}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.path)

    def state_dict(self) -> dict:
        return {"history": json.loads(json.dumps(self.history))}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
