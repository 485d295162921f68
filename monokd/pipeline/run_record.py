"""What a finished run folder says about how it was made, read back for the results files:
its training precision, the ``--set`` items of its ``monokd train`` command and the number of
frames its evaluation scored. Nothing here is assumed from the study's own settings, so a
results file built from folders of several processes says what each run really did.

    run_dir/config.yaml       the resolved config (``train.precision``; absent before the key
                              existed: the schema's default, fp32)
    run_dir/TRAIN_MARKER      the command line that finished the training (``--set`` items,
                              ``--precision``, which overrides the config and is not saved in it)
    eval_dir/*.json           the evaluation (``num_frames``)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterable

import yaml

from monokd.pipeline.stages import TRAIN_MARKER, evaluation_json
from monokd.schema import TRAIN

# A study whose runs disagree (a precision, a frame count) records every value, sorted.
MIXED = "mixed"


def train_command(run_dir: str | Path) -> list[str] | None:
    """The tokens of the ``monokd train`` command that finished ``run_dir`` (its marker), or
    None for a folder without one (not trained by the stage runner, or unfinished)."""
    marker = Path(run_dir) / TRAIN_MARKER
    return marker.read_text().split() if marker.is_file() else None


def set_items(command: Iterable[str]) -> list[str]:
    """The ``--set`` items of a command's tokens, in order."""
    tokens = list(command)
    return [tokens[i + 1] for i, token in enumerate(tokens[:-1]) if token == "--set"]


def precision(run_dir: str | Path) -> str:
    """The precision ``run_dir`` trained at (``monokd.training.precision.CHOICES``): the
    command's ``--precision`` when it had one, else ``train.precision`` of its config.yaml,
    else the schema's default (runs older than the key trained in fp32). ``auto`` stays
    ``auto``: what it resolved to depended on the machine. FileNotFoundError without a config."""
    command = train_command(run_dir) or []
    if "--precision" in command[:-1]:
        return command[command.index("--precision") + 1]
    cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
    value = (cfg.get("train") or {}).get("precision")
    return str(value) if value is not None else str(TRAIN.defaults["precision"])


def evaluated_frames(eval_dir: str | Path) -> int | None:
    """How many frames the evaluation under ``eval_dir`` scored (its JSON's ``num_frames``)."""
    path = evaluation_json(eval_dir)
    if path is None:
        return None
    frames = json.loads(path.read_text()).get("num_frames")
    return int(frames) if frames is not None else None


def common(values: Iterable, what: str) -> dict:
    """``{what: v}`` when every value is ``v``; else ``{what: MIXED, what + "_values": [...]}``
    (the distinct values, sorted as text): a table must not claim one precision or one val
    size for runs that had several."""
    distinct = sorted({v for v in values}, key=str)
    if len(distinct) == 1:
        return {what: distinct[0]}
    if not distinct:
        return {what: None}
    return {what: MIXED, f"{what}_values": distinct}


def same_weights(a: str | Path, b: str | Path) -> bool:
    """Whether two checkpoint files hold the same model weights (every ``state_dict`` tensor
    equal): e.g. a run's ``best.ckpt`` and ``last.ckpt`` when its best validation was its last.
    Every student of a seed names the same teacher files, so the answer is kept per pair of
    files as they are (path, size, modification time)."""
    return _same_weights(*(_file_state(Path(p)) for p in (a, b)))


def _file_state(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _same_weights(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    import torch

    from monokd.weights import read_weights

    wa, wb = read_weights(a[0], "checkpoint")["state_dict"], read_weights(b[0], "checkpoint")["state_dict"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def canonical_checkpoint_items(items: Iterable[str]) -> list[str]:
    """``--set`` items with every ``KEY=RUN/x.ckpt`` whose file holds the same weights as
    ``RUN/last.ckpt`` written ``KEY=RUN/last.ckpt``: a student recorded with its teacher's
    ``best.ckpt`` learned from the teacher's last weights when the two are equal, so it
    compares equal to one recorded with ``last.ckpt``. Other items are kept as they are."""
    out = []
    for item in items:
        key, sep, path = item.partition("=")
        if sep and path.endswith(".ckpt") and Path(path).name != "last.ckpt":
            last = Path(path).parent / "last.ckpt"
            if Path(path).is_file() and last.is_file() and same_weights(path, last):
                item = f"{key}={last}"
        out.append(item)
    return out
