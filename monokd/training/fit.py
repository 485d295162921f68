"""Fitting a config: the Lightning trainer monokd builds (callbacks, logger, DDP topology,
precision) and :func:`fit`, the one training entry point of every detector and distiller.

Writes into ``out``: config.yaml (the resolved config), tensorboard/ (logs), last.ckpt
(for resume), best.ckpt (highest ``train.monitor``) and metrics.json. Multi-GPU/multi-node
through DDP: ``devices`` (Lightning launches the processes) or torchrun's environment.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from monokd.config import save_config, setting
from monokd.models.contract import Detector
from monokd.models.initial import load_initial
from monokd.training.allocator import keep_freed_memory
from monokd.training.callbacks import BestCheckpoint, LastCheckpoint, MetricsJson
from monokd.training.checkpoint import check_state_dict, model_state, read_checkpoint
from monokd.training.datamodule import KittiDataModule
from monokd.training.module import DetectorModule
from monokd.training.precision import resolve_precision
from monokd.training.preflight import check_numbers, check_run, note
from monokd.training.rundir import RunLock, check_resumed_config, check_run_folder, clear_run, is_first_process
from monokd.training.schedule import check_schedule
from monokd.training.seeding import seed_everything



class _DropAdvertisement(logging.Filter):
    """Lightning's "Tip: ... try installing litlogger" line: an advertisement, printed on every
    run of every command; nothing a monokd user can act on (monokd logs to TensorBoard)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud" not in record.getMessage()


def quiet_lightning() -> None:
    """Silence Lightning's noise that says nothing about the run (idempotent): the litlogger
    advertisement and the deprecation warning Lightning's own pytree helper raises with the
    installed torch (lightning/pytorch/utilities/_pytree.py, not our code)."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdvertisement) for f in log.filters):
        log.addFilter(_DropAdvertisement())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def _launch_topology(devices, num_nodes) -> tuple:
    """(accelerator, devices, num_nodes): torchrun's environment wins when present."""
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if "LOCAL_WORLD_SIZE" in os.environ and "WORLD_SIZE" in os.environ:
        local = int(os.environ["LOCAL_WORLD_SIZE"])
        return accelerator, local, int(os.environ["WORLD_SIZE"]) // local
    if devices is None:
        devices = torch.cuda.device_count() if accelerator == "gpu" else 1
    return accelerator, int(devices), int(num_nodes or 1)


def build_trainer(cfg: dict, out: Path, devices=None, num_nodes=None, precision: str | None = None,
                  callbacks: list | None = None, progress_bar: bool = True) -> L.Trainer:
    quiet_lightning()
    accelerator, devices, num_nodes = _launch_topology(devices, num_nodes)
    distributed = devices * num_nodes > 1
    # train.start_method: "popen" (re-run the command, the default), "spawn" or "fork"
    strategy = DDPStrategy(find_unused_parameters=bool(setting(cfg, "train.find_unused_parameters")),
                           process_group_backend="nccl" if accelerator == "gpu" else "gloo",
                           start_method=str(setting(cfg, "train.start_method"))) \
        if distributed else "auto"
    monitor = str(setting(cfg, "train.monitor"))
    own = [LastCheckpoint(out, int(setting(cfg, "train.ckpt_every_steps") or 0)),
           BestCheckpoint(out), MetricsJson(out, monitor)]
    return L.Trainer(
        default_root_dir=str(out), accelerator=accelerator, devices=devices, num_nodes=num_nodes,
        strategy=strategy, precision=resolve_precision(precision or setting(cfg, "train.precision")),
        max_epochs=int(setting(cfg, "train.epochs")), max_steps=int(setting(cfg, "train.max_steps") or -1),
        check_val_every_n_epoch=int(setting(cfg, "train.val_every") or 1),
        limit_val_batches=setting(cfg, "train.limit_val_batches"),
        num_sanity_val_steps=0, enable_checkpointing=False, use_distributed_sampler=False,
        logger=TensorBoardLogger(str(out), name="tensorboard", version="", default_hp_metric=False),
        log_every_n_steps=int(setting(cfg, "train.log_every")),
        callbacks=own + list(callbacks or []), enable_progress_bar=progress_bar,
        deterministic=bool(setting(cfg, "train.deterministic")),
        benchmark=False)


def fit(cfg: dict, out: str | Path, resume: str | Path | None = None, devices=None, num_nodes=None,
        precision: str | None = None, model=None, datamodule: KittiDataModule | None = None,
        callbacks: list | None = None, progress_bar: bool = True, overwrite: bool = False,
        resume_changed: bool = False, resume_auto: bool = False) -> DetectorModule:
    """Train ``cfg`` into ``out``; returns the trained module. ``model``/``datamodule`` default
    to the ones the config describes; ``precision`` (monokd.training.precision.CHOICES)
    overrides ``train.precision``.

    Nothing is written into ``out`` before every check has passed: monokd.training.rundir's
    (the folder's lock; a run already there, unless ``overwrite``; ``resume_auto``: ``--resume
    auto`` found no checkpoint; a resume's config, unless ``resume_changed``, and weights) and
    monokd.training.preflight's (the settings, the data, the teacher)."""
    out = Path(out)
    check_numbers(cfg)
    check_schedule(cfg)
    first = is_first_process()
    lock = RunLock(out) if first else None
    try:
        if first:
            check_run_folder(out, resume, overwrite, resume_auto)
        checkpoint, resume_note = _read_resumed(resume, cfg, resume_changed)
        seed_everything(int(setting(cfg, "train.seed")))
        datamodule = datamodule or KittiDataModule(cfg)
        provenance = check_run(cfg, datamodule)  # bad data fails here, before the model exists
        module = DetectorModule(cfg, model)
        module.provenance = provenance
        if checkpoint is not None:  # the weights fit, before anything is written
            check_state_dict(module.model, model_state(checkpoint), str(resume))
            del checkpoint
        else:  # a fresh run starts from the trained weights its detector declares, if any
            _start_from(module, cfg, provenance)
        if resume_note:
            provenance["notes"].append(note(resume_note))
        trainer = build_trainer(cfg, out, devices, num_nodes, precision, callbacks, progress_bar)
        keep_freed_memory()
        if trainer.is_global_zero:
            if overwrite and resume is None:
                clear_run(out)
            save_config(cfg, out / "config.yaml")
        # The data position of an interrupted epoch travels in the data module's state, which
        # Lightning's check for a "resumable dataloader" does not look at.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None,
                    weights_only=True)
        _validate_last_epoch(trainer, module, datamodule)
    finally:
        if lock is not None:
            lock.release(tidy=True)  # a folder this run made and left empty goes (a failed start)
    return module


def _start_from(module: DetectorModule, cfg: dict, provenance: dict) -> None:
    """Load the trained weights the detector declares a fresh run starts from
    (``Detector.initial_weights_of``; a distiller's student), recorded in the provenance."""
    detector = getattr(module.model, "student", module.model)
    section = detector.initial_weights_of(cfg.get("model") or {}) if isinstance(detector, Detector) else None
    record = load_initial(detector, section)
    if record is not None:
        provenance["notes"].append(note(record.pop("line")))
        provenance["init"] = record


def _read_resumed(resume, cfg: dict, allow_changed: bool) -> tuple[dict | None, str | None]:
    """(the checkpoint to resume, the note of an allowed config change) or (None, None); a
    config changed beyond the schedule's length is refused unless ``allow_changed``."""
    if not resume:
        return None, None
    checkpoint = read_checkpoint(resume)
    stored = (checkpoint.get("hyper_parameters") or {}).get("cfg")
    return checkpoint, check_resumed_config(stored, cfg, resume, allow_changed)


def _validate_last_epoch(trainer: L.Trainer, module: DetectorModule, datamodule) -> None:
    """The final weights are always scored (with the usual metrics.json and best.ckpt): also
    when ``val_every`` does not divide ``epochs``, and when ``train.max_steps`` ends the run
    mid-epoch, after the last validation."""
    if trainer.interrupted or trainer.limit_val_batches == 0:
        return
    every = trainer.check_val_every_n_epoch or 1
    finished = trainer.current_epoch  # epochs completed
    history = next((c.history for c in trainer.callbacks if isinstance(c, MetricsJson)), [])
    last_scored = history[-1]["step"] if history else None
    stopped_by_steps = 0 < (trainer.max_steps or -1) <= trainer.global_step and last_scored != trainer.global_step
    if (finished > 0 and finished % every != 0) or stopped_by_steps:
        trainer.validate(module, datamodule=datamodule, verbose=False)


def resolve_resume(resume: str | None, out: Path) -> Path | None:
    if resume is None:
        return None
    if resume == "auto":
        last = out / "last.ckpt"
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: checkpoint not found")
    return path
