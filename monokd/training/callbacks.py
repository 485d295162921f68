"""Callbacks of a training run: ``last.ckpt`` (for resuming), the best checkpoint by the
monitored AP, ``metrics.json``, and plain-line progress for logs and pipes."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import lightning as L

from monokd.atomic import atomic_path, write_json
from monokd.config import setting
from monokd.timing import hms


def save_atomically(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` through :func:`monokd.atomic.atomic_path`: a run killed or
    out of disk while writing never leaves a truncated ``last.ckpt`` (nor its temporary)
    behind, and the previous one stays. All ranks must call it (rank 0 writes)."""
    with atomic_path(path, publish=trainer.is_global_zero) as tmp:
        trainer.save_checkpoint(tmp, weights_only=False)
        trainer.strategy.barrier("save_atomically")


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
    ``notes`` (the warnings of monokd.training.preflight, e.g. an allowed teacher overlap) and
    ``frames_seen`` (labeled and unlabeled training frames so far)."""

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
            self.write(nonfinite_total=int(getattr(pl_module, "nonfinite_total", 0)), notes=notes,
                       frames_seen=dict(getattr(pl_module, "frames_seen", {})))

    def write(self, **extra) -> None:
        scored = [e for e in self.history if e.get("monitor") is not None]
        best = max(scored, key=lambda e: e["monitor"]) if scored else None
        doc = {"monitor": self.monitor_key, "validations": self.history,
               "final": self.history[-1] if self.history else None, "best": best, **extra}
        write_json(self.path, doc)

    def state_dict(self) -> dict:
        return {"history": json.loads(json.dumps(self.history))}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))


class PlainProgress(L.Callback):
    """Progress as plain lines, for a log file or a pipe (Lightning's bar rewrites one line
    with carriage returns, which a file keeps as one endless line). Every ``every`` training
    batches and at each epoch's end: ``epoch 3/12 step 120/600 loss 20.14 lr 1.0e-03 1.9
    s/step eta 0:15:12``; after each validation: ``val epoch 3 step 120 Car/3d/... 12.34``,
    numbered like the training lines before it (1-based). Rank 0 only."""

    def __init__(self, every: int = 10, stream=None):
        self.every = max(int(every or 1), 1)
        self.stream = stream
        self.started: float | None = None
        self.first_step = 0
        self.epoch: int | None = None  # 1-based: the epoch whose weights a validation scores

    def _print(self, trainer, text: str) -> None:
        if trainer.is_global_zero:
            print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_start(self, trainer, pl_module):
        self.started, self.first_step = time.monotonic(), int(trainer.global_step)

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch = int(trainer.current_epoch) + 1

    def _total_steps(self, trainer) -> int:
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        return int(trainer.num_training_batches) * int(trainer.max_epochs or 1)

    def line(self, trainer) -> str:
        """The progress line at the current step."""
        step, total = int(trainer.global_step), self._total_steps(trainer)
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", f"step {step}/{total}"]
        metrics = trainer.callback_metrics
        for key, name, fmt in (("train/loss", "loss", "{:.2f}"), ("train/lr", "lr", "{:.1e}")):
            if key in metrics:
                parts.append(f"{name} {fmt.format(float(metrics[key]))}")
        done = step - self.first_step
        if self.started is not None and done > 0:
            per_step = (time.monotonic() - self.started) / done
            left = int(per_step * max(total - step, 0))
            parts += [f"{per_step:.2f} s/step", f"eta {hms(left)}"]
        return " ".join(parts)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.every == 0 or batch_idx + 1 >= trainer.num_training_batches:
            self._print(trainer, self.line(trainer))

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        value = getattr(pl_module, "val_monitor", None)
        key = getattr(pl_module, "monitor_key", "val/monitor")
        shown = "n/a" if value is None else f"{float(value):.2f}"
        # A validation after trainer.fit (the last epoch's, monokd.training.fit) sees
        # current_epoch already counting the finished epoch; the epoch trained last is meant.
        epoch = self.epoch if self.epoch is not None else int(trainer.current_epoch) + 1
        self._print(trainer, f"val epoch {epoch} step {trainer.global_step} {key} {shown}")


def console_progress(cfg: dict) -> tuple[list | None, bool]:
    """(callbacks, live bar) of a training started from the command line: a terminal gets
    Lightning's live bar; a file or a pipe plain lines (no carriage returns)."""
    live = sys.stdout.isatty()
    return (None if live else [PlainProgress(int(setting(cfg, "train.log_every") or 10))]), live
