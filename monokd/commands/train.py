"""``monokd train``: train a detector, a teacher or a distilled student.

Writes into ``--out``: config.yaml (the resolved config), tensorboard/ (logs), last.ckpt
(for --resume), best.ckpt (highest ``train.monitor``, by default val Car 3-D moderate AP
R40) and metrics.json. A folder that holds a run is refused unless it is resumed
(``--resume auto``) or replaced (``--overwrite``); a second training into the same folder fails
at once; a resume whose config differs beyond the schedule's length is refused unless
``--resume-changed`` (monokd/training/rundir.py). Multi-GPU/multi-node through DDP: ``--devices N`` (Lightning
launches the processes) or ``torchrun --nproc_per_node N -m monokd.cli train ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monokd.config import load_config, set_key
from monokd.distill import preset_overrides
from monokd.training.callbacks import console_progress
from monokd.training.fit import fit, resolve_resume
from monokd.training.precision import CHOICES as PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML (configs/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config leaf, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--preset", default=None, metavar="ROW",
                        help="a named ablation row's overrides, applied before --set: ADD's (e.g. "
                             "paper-literal, depth-memory+gt-pairing; monokd.distill.add.PRESETS) or "
                             "MonoTAKD's (e.g. +IMD)")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="continue a run: 'auto' = OUT/last.ckpt if present, or a checkpoint path")
    parser.add_argument("--resume-changed", action="store_true",
                        help="resume although the config differs from the run's in more than train.epochs / "
                             "train.max_steps (the changed keys are recorded in metrics.json's notes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its checkpoints, metrics and logs are deleted)")
    parser.add_argument("--devices", type=int, default=None,
                        help="devices per node (default: all GPUs, else 1 CPU process; under torchrun: its processes)")
    parser.add_argument("--num-nodes", type=int, default=None, help="nodes (default: from torchrun, else 1)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="overrides train.precision (auto: bf16 autocast where the CPU or GPU has native bf16)")
    parser.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    parser.add_argument("--seed", type=int, default=None, help="overrides train.seed")


def run(args: argparse.Namespace) -> int:
    presets = preset_overrides(args.preset) if args.preset else []
    cfg = load_config(args.config, [*presets, *args.set])
    if args.seed is not None:
        set_key(cfg, f"train.seed={args.seed}")
    if args.precision is not None:  # recorded in the run's config.yaml like every other setting
        set_key(cfg, f"train.precision={args.precision}")
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    resume = resolve_resume(args.resume, out)
    plain, live = console_progress(cfg)
    fit(cfg, out, resume, args.devices, args.num_nodes, callbacks=plain, progress_bar=live,
        overwrite=args.overwrite, resume_changed=args.resume_changed, resume_auto=args.resume == "auto")
    return 0
