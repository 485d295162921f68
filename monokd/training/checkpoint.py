"""Checkpoints: reading them, checking them against a model, and building the model they hold.

A checkpoint is a Lightning checkpoint whose ``hyper_parameters["cfg"]`` is the resolved
configuration of the run and whose ``state_dict`` keys are ``model.<detector key>``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from monokd.config import apply_overrides, get, load_config
from monokd.errors import CheckpointMismatchError, ConfigError

MODEL_PREFIX = "model."
STUDENT_PREFIX = "student."  # a distiller's student inside its state dict
_SHOWN = 5  # names listed per kind of mismatch


def student_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's entries of a distiller's state dict (``student.`` prefix removed); a
    baseline detector's state dict is returned as is."""
    student = {k[len(STUDENT_PREFIX):]: v for k, v in state.items() if k.startswith(STUDENT_PREFIX)}
    return student if student else dict(state)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at ``path`` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointMismatchError(f"{path}: not a readable monokd checkpoint ({first})") from None


def checkpoint_config(checkpoint: dict, path: str | Path = "<checkpoint>", overrides: list[str] | None = None) -> dict:
    """The resolved config stored in a checkpoint by ``monokd train``, with ``key=value``
    overrides (a command's ``--set`` when it has no ``--config``) applied to a copy."""
    cfg = (checkpoint.get("hyper_parameters") or {}).get("cfg")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: the checkpoint stores no config; pass --config")
    cfg = stored_spelling(cfg)
    return apply_overrides(cfg, overrides, str(path)) if overrides else cfg


def stored_spelling(cfg: dict) -> dict:
    """A stored config in today's spelling: the flat ``distill.<role>_{config, ckpt}`` that
    older runs stored beside (or instead of) ``distill.<role>.{config, ckpt}`` moved into the
    nested form (a copy when anything moves)."""
    distill = cfg.get("distill")
    if not isinstance(distill, dict):
        return cfg
    from monokd.distill import frozen_roles  # the distillers import the training-free models only

    roles = {role.name for role in frozen_roles(cfg)}
    flat = [k for k in distill if k.rpartition("_")[0] in roles and k.rpartition("_")[2] in ("config", "ckpt")]
    if not flat:
        return cfg
    cfg = copy.deepcopy(cfg)
    for key in flat:
        role, _, what = key.rpartition("_")
        value = cfg["distill"].pop(key)
        nested = cfg["distill"].get(role) if isinstance(cfg["distill"].get(role), dict) else {}
        cfg["distill"][role] = {**nested, what: nested.get(what) or value}
    return cfg


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The detector's own state dict (the ``model.`` prefix removed)."""
    state = checkpoint.get("state_dict", checkpoint)
    return {k[len(MODEL_PREFIX):] if k.startswith(MODEL_PREFIX) else k: v for k, v in state.items()}


def _listing(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    return f"{len(names)} {kind} ({shown})"


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointMismatchError` naming missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [_listing(kind, names) for kind, names in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if names]
        raise CheckpointMismatchError(
            f"{source} does not fit the model ({type(model).__name__}): " + "; ".join(parts)
            + ". Was it trained with another model or config?")


def load_weights(model: nn.Module, checkpoint: dict, source: str = "checkpoint") -> nn.Module:
    """Load a checkpoint's detector weights into ``model`` strictly (checked first)."""
    state = model_state(checkpoint)
    check_state_dict(model, state, source)
    model.load_state_dict(state)
    return model


def build_model(cfg: dict) -> nn.Module:
    """The network a config describes: a detector, or a distiller wrapping a student and a
    frozen teacher when the config has a ``distill`` section."""
    from monokd.models import build_detector

    if not get(cfg, "distill"):
        return build_detector(cfg)
    from monokd.distill import build_distiller, frozen_roles

    # Each frozen model the method declares; an optional one only if configured (the distiller
    # says which of its losses needs which). The build order draws the random initialisations
    # a seed reproduces: optional frozen models, then the student, then the required ones.
    roles = frozen_roles(cfg)
    frozen = {role.name: build_teacher(cfg, role.name) if any(teacher_paths(cfg, role.name)) else None
              for role in roles if not role.required}
    student = build_detector(cfg)
    frozen.update({role.name: build_teacher(cfg, role.name) for role in roles if role.required})
    return build_distiller(cfg, student, **frozen)


def teacher_paths(cfg: dict, role: str = "teacher") -> tuple[str | None, str | None]:
    """(checkpoint, config) of a distillation's frozen model: ``distill.<role>.{ckpt, config}``
    (``role`` "ta": MonoTAKD's teaching assistant)."""
    nested = get(cfg, f"distill.{role}")
    nested = nested if isinstance(nested, dict) else {}
    return nested.get("ckpt"), nested.get("config")


def build_teacher(cfg: dict, role: str = "teacher") -> nn.Module:
    """The frozen teacher (or TA) of a distillation config: its checkpoint's weights, in the
    model of the config stored in that checkpoint, unless ``distill.<role>.config`` names
    one (then a checkpoint that does not fit it is a CheckpointMismatchError naming that key
    and the model keys where the two configs differ)."""
    from monokd.models import build_detector

    ckpt_path, teacher_cfg_path = teacher_paths(cfg, role)
    checkpoint = read_checkpoint(ckpt_path) if ckpt_path else None
    if teacher_cfg_path:
        teacher_cfg = load_config(teacher_cfg_path)
    elif checkpoint is not None:
        teacher_cfg = checkpoint_config(checkpoint, ckpt_path)
    else:
        raise ConfigError(f"distill.{role}: give distill.{role}.ckpt (or distill.{role}.config for an untrained one)")
    teacher = build_detector(teacher_cfg)
    if checkpoint is not None:
        try:
            load_weights(teacher, checkpoint, source=str(ckpt_path))
        except CheckpointMismatchError as err:
            if not teacher_cfg_path:
                raise
            where = _differences(teacher_cfg, checkpoint) or f" ({err})"
            raise CheckpointMismatchError(
                f"distill.{role}.config: {teacher_cfg_path} does not describe the model in {ckpt_path}{where}; "
                f"drop distill.{role}.config to build it from the config stored in the checkpoint") from None
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _differences(given: dict, checkpoint: dict) -> str:
    """`` (they differ at model.a, model.b)``: the model keys where ``given`` and the config
    stored in ``checkpoint`` differ; empty when it stores none or they agree."""
    stored = (checkpoint.get("hyper_parameters") or {}).get("cfg")
    if not isinstance(stored, dict):
        return ""
    keys = sorted(_changed(given.get("model") or {}, stored.get("model") or {}, "model"))
    if not keys:
        return ""
    return f" (they differ at {', '.join(keys[:_SHOWN])}{', ...' if len(keys) > _SHOWN else ''})"


def _changed(a: dict, b: dict, prefix: str) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _changed(x, y, f"{prefix}.{key}")
        elif x != y:
            out.append(f"{prefix}.{key}")
    return out


def load_detector(ckpt_path: str | Path, cfg: dict | None = None, overrides: list[str] | None = None,
                  checkpoint: dict | None = None) -> tuple[nn.Module, dict]:
    """The detector of a checkpoint, weights loaded, in eval mode, and its config (the one
    stored in the checkpoint with ``overrides`` applied, unless ``cfg`` is given). For a
    distilled checkpoint this is the student alone: inference never needs the teacher or
    the adapters. ``checkpoint``: the file's contents when already read."""
    from monokd.models import build_detector

    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    if cfg is None:
        cfg = checkpoint_config(checkpoint, ckpt_path, overrides)
    model = build_detector(cfg)
    state = model_state(checkpoint)
    if get(cfg, "distill"):
        state = student_state(state)
    check_state_dict(model, state, str(ckpt_path))
    model.load_state_dict(state)
    return model.eval(), cfg
