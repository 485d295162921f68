"""What ``monokd train`` checks before it builds a model or a trainer, and what a checkpoint
records about the data it was trained on.

    cfg -> numeric settings (train.*, eval.batch_size, data.input_size) of the right kind
        -> train / val datasets (monokd.data.checks: files present and consistent)
        -> refused when empty (naming the split file, or the config key), or when train holds
           no object of data.classes; a warning when val holds none of the monitored class
        -> warning when train and val share frames
        -> for a distillation: the teacher checked (see check_teacher)
        -> provenance, stored in every checkpoint:
           {"train": {"split", "root", "count", "sha256", "ids"}, "val": {...},
            "unlabeled": {...} (with data.unlabeled: the raw frames, monokd.training.unlabeled),
            "role": {"depth_input", "lidar_input", "privileged_inputs"}, "notes": [...]}

The teacher check (one place, for every distillation method: it reads only
``distill.teacher`` and the teacher's checkpoint):

- the teacher must take privileged input (what its detector class declares from its config,
  monokd.models.contract: ground truth such as ADD's GT-depth MonoDETR, the CaDDN/PatchNet
  teachers and MonoTAKD's TA with ``depth_input: gt_pixel``, or a LiDAR sweep such as
  MonoTAKD's teacher), unless ``distill.teacher.allow_plain: true``;
- the teacher's training frames (recorded in its checkpoint, else read from its config's
  train split) must not include any of the student's validation frames, unless
  ``distill.teacher.allow_overlap: true`` (CMKD #18: a teacher trained on trainval inflates
  the student's val AP).

The same holds for every frozen model the distiller declares (MonoTAKD's teaching assistant,
``distill.ta``). An override lets the run go on; the run's log and metrics.json say so (``notes``).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from monokd.config import get, load_config, setting
from monokd.data.checks import check_classes
from monokd.data.kitti import KittiFormatError, read_split
from monokd.errors import ConfigError, MonokdWarning
from monokd.training.unlabeled import check_unlabeled

PROVENANCE_KEY = "provenance"  # the checkpoint's entry (see the module docstring)
_SHOWN = 5  # frame ids named in a message


def split_record(ids, split: str | None, root) -> dict | None:
    """{"split", "root", "count", "sha256" (of the sorted ids), "ids"}; None when ``ids`` is
    None (a dataset that does not list its frames)."""
    if ids is None:
        return None
    ordered = sorted(str(i) for i in ids)
    digest = hashlib.sha256("\n".join(ordered).encode()).hexdigest()
    return {"split": split, "root": str(root) if root is not None else None, "count": len(ordered),
            "sha256": digest, "ids": ordered}


def model_role(cfg: dict) -> dict:
    """{"depth_input", "lidar_input", "privileged_inputs"}: the privileged input a model takes
    (``model.depth_input``; whether it reads the LiDAR sweep; the batch keys its detector class
    declares privileged, none for a name the registry does not know); none = a plain
    monocular model."""
    from monokd.models import REGISTRY, detector_class
    from monokd.models.contract import POINTS

    known = get(cfg, "model.name") in REGISTRY
    privileged = list(detector_class(cfg).privileged_inputs_of(get(cfg, "model") or {})) if known else []
    return {"depth_input": get(cfg, "model.depth_input"), "lidar_input": POINTS in privileged,
            "privileged_inputs": privileged}


def is_privileged(role: dict | None) -> bool:
    """Whether a recorded role takes privileged input (roles recorded before
    ``privileged_inputs`` existed are read from their other two keys)."""
    return bool(role) and (role.get("depth_input") is not None or bool(role.get("lidar_input"))
                           or bool(role.get("privileged_inputs")))


# The numeric settings the engine reads: key -> (type, smallest allowed value).
NUMBERS = {
    "train.epochs": (int, 0), "train.max_steps": (int, -1), "train.batch_size": (int, 1),
    "train.num_workers": (int, 0), "train.seed": (int, 0), "train.val_every": (int, 1),
    "train.log_every": (int, 1), "train.ckpt_every_steps": (int, 0), "train.max_nonfinite": (int, 0),
    "train.lr": (float, 0.0), "train.weight_decay": (float, 0.0), "train.warmup_epochs": (float, 0.0),
    "train.lr_gamma": (float, 0.0), "train.grad_clip": (float, 0.0), "train.pct_start": (float, 0.0),
    "train.div_factor": (float, 0.0), "train.adam_beta2": (float, 0.0), "eval.batch_size": (int, 1),
}


def check_numbers(cfg: dict) -> None:
    """Every numeric setting of :data:`NUMBERS` that is set is a number of its kind, at least
    its minimum; ``eval.classes`` are KITTI classes; ``data.input_size`` is two positive
    integers."""
    for key, (kind, low) in NUMBERS.items():
        value = get(cfg, key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok or value < low:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{key}: expected {what} >= {low}, got {value!r}")
    if get(cfg, "eval.classes") is not None:
        check_classes(get(cfg, "eval.classes"), "eval.classes")
    size = get(cfg, "data.input_size")
    if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ConfigError(f"data.input_size: expected [W, H], two positive integers, got {size!r}")


def check_run(cfg: dict, datamodule) -> dict:
    """Check the settings, build and check the datamodule's datasets and the teacher;
    returns the provenance."""
    check_numbers(cfg)
    if get(cfg, "data.unlabeled") is not None:
        check_unlabeled(cfg)  # before any dataset is read: a method that cannot take them stops here
    train_split = setting(cfg, "data.train_split")
    val_split = setting(cfg, "data.val_split")
    train_set, val_set = datamodule.train_set, datamodule.val_set
    for key, split, dataset in (("data.train_split", train_split, train_set), ("data.val_split", val_split, val_set)):
        if len(dataset) == 0:
            raise ConfigError(f"{key}: {split!r}: the set is empty (no frames to "
                              f"{'train' if key == 'data.train_split' else 'validate'} on)")
    object_notes = _check_objects(cfg, train_split, train_set, val_split, val_set)
    root = get(cfg, "data.root")
    provenance = {"train": split_record(getattr(train_set, "ids", None), train_split, root),
                  "val": split_record(getattr(val_set, "ids", None), val_split, root),
                  "role": model_role(cfg), "notes": []}
    notes = provenance["notes"]
    notes.extend(object_notes)
    unlabeled = getattr(datamodule, "unlabeled_set", None)
    if unlabeled is not None:  # the guard has run (and shown its notes) at construction
        options = get(cfg, "data.unlabeled")
        provenance["unlabeled"] = split_record(unlabeled.ids, options.get("split"), options.get("root"))
        notes.extend(getattr(unlabeled, "notes", []))
    if provenance["train"] and provenance["val"]:
        shared = sorted(set(provenance["train"]["ids"]) & set(provenance["val"]["ids"]))
        if shared:
            notes.append(note(f"train ({train_split!r}) and val ({val_split!r}) share {len(shared)} of "
                              f"{provenance['val']['count']} validation frames ({_examples(shared)}): the "
                              "validation AP is not a held-out figure"))
    if get(cfg, "distill"):
        from monokd.distill import frozen_roles

        for role in frozen_roles(cfg):
            notes.extend(check_teacher(cfg, provenance["val"], role.name))
    return provenance


def _check_objects(cfg: dict, train_split, train_set, val_split, val_set) -> list[str]:
    """A training split without one object of ``data.classes`` is an error (nothing to learn);
    a validation split without one object of the monitored class warns (its AP is 0 and no
    best.ckpt is written). Datasets that do not count their objects are not checked."""
    train_counts = getattr(train_set, "class_counts", None)
    if getattr(train_set, "has_labels", False) and train_counts is not None:
        classes = list(get(cfg, "data.classes") or [])
        if classes and not any(train_counts.get(c) for c in classes):
            raise ConfigError(f"data.train_split: {train_split!r} holds no object of data.classes {classes} "
                              f"(it holds {dict(train_counts) or 'none'})")
    val_counts = getattr(val_set, "class_counts", None)
    monitor = str(setting(cfg, "train.monitor"))
    monitored = monitor.split("/")[0]
    if "@" not in monitor:  # not a class's AP (a model scoring itself, e.g. depth's delta1)
        return []
    if getattr(val_set, "has_labels", False) and val_counts is not None and not val_counts.get(monitored):
        return [note(f"data.val_split: {val_split!r} holds no {monitored!r} object: the monitored AP "
                     f"({monitor}) stays 0 and no best.ckpt is written")]
    return []


def check_teacher(cfg: dict, student_val: dict | None, role: str = "teacher") -> list[str]:
    """Refuse a plain teacher or one trained on the student's validation frames (see the
    module docstring); returns the notes of the overrides used."""
    from monokd.training.checkpoint import checkpoint_config, read_checkpoint, teacher_paths

    ckpt_path, config_path = teacher_paths(cfg, role)
    if not ckpt_path:
        return []  # build_teacher reports a missing checkpoint
    key = f"distill.{role}"
    allow_plain = bool(get(cfg, f"{key}.allow_plain", False))
    allow_overlap = bool(get(cfg, f"{key}.allow_overlap", False))
    checkpoint = read_checkpoint(ckpt_path)
    teacher_cfg = load_config(config_path) if config_path else checkpoint_config(checkpoint, ckpt_path)
    recorded = checkpoint.get(PROVENANCE_KEY) or {}
    notes = []
    if not is_privileged(model_role(teacher_cfg)):
        message = (f"{key}: {ckpt_path} is a plain model (model.depth_input is null and it reads no LiDAR: "
                   "it sees no ground-truth depth), so it has no depth knowledge the student lacks")
        if not allow_plain:
            raise ConfigError(f"{message}; train a teacher (e.g. configs/monodetr_teacher_*.yaml) or set "
                              f"{key}.allow_plain=true")
        notes.append(note(f"{message} (allowed by {key}.allow_plain)"))
    teacher_train = _teacher_train_ids(recorded, teacher_cfg)
    if student_val is None:
        return notes
    if teacher_train is None:
        notes.append(note(f"{key}: {ckpt_path} records no training frames and its config's train split "
                          "cannot be read: overlap with the validation frames is not checked"))
        return notes
    shared = sorted(set(teacher_train) & set(student_val["ids"]))
    if shared:
        message = (f"{key}: {ckpt_path} was trained on {len(shared)} of the student's "
                   f"{student_val['count']} validation frames ({_examples(shared)}; split "
                   f"{student_val['split']!r}): the student's validation AP would be inflated")
        if not allow_overlap:
            raise ConfigError(f"{message}; use a teacher trained without those frames or set "
                              f"{key}.allow_overlap=true")
        notes.append(note(f"{message} (allowed by {key}.allow_overlap)"))
    return notes


def warn_seen_frames(checkpoint: dict, ids, split: str, ckpt_path) -> int:
    """Warn when a checkpoint (the file's contents) is evaluated on frames it was trained on
    (from its recorded provenance); returns how many."""
    train = (checkpoint.get(PROVENANCE_KEY) or {}).get("train") or {}
    shared = sorted(set(train.get("ids") or ()) & set(ids or ()))
    if shared:
        note(f"{ckpt_path} was trained on {len(shared)} of the {len(ids)} frames of {split!r} "
             f"({_examples(shared)}): their AP is not a held-out figure")
    return len(shared)


def _teacher_train_ids(recorded: dict, teacher_cfg: dict) -> list[str] | None:
    """The teacher's training frame ids: from its checkpoint's provenance, else its config's
    train split file; None when neither is available."""
    train = recorded.get("train") or {}
    if train.get("ids") is not None:
        return list(train["ids"])
    root = get(teacher_cfg, "data.root")
    if root is None:
        return None

    path = Path(root) / "ImageSets" / f"{setting(teacher_cfg, 'data.train_split')}.txt"
    try:
        return read_split(path)
    except KittiFormatError:
        return None


def note(message: str) -> str:
    """Show ``message`` as a monokd warning (one line in the log) and return it."""
    warnings.warn(message, MonokdWarning, stacklevel=2)
    return message


def _examples(ids: list[str]) -> str:
    return ", ".join(ids[:_SHOWN]) + (", ..." if len(ids) > _SHOWN else "")
