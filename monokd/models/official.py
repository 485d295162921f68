"""The strict check of an official checkpoint's tensors after their renaming into monokd's names
(``official_state_dict`` of PatchNet and MonoDETR; ``monokd convert``)."""

from __future__ import annotations

import re

import torch

from monokd.errors import CheckpointMismatchError

_SHOWN = 5  # names listed per kind of mismatch


def check_official_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """Raise one CheckpointMismatchError line, ``<source>: not <what>: ...``, naming the missing,
    unexpected and mis-shaped keys of ``state`` against ``model.state_dict()``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{len(keys)} {kind} ({', '.join(keys[:_SHOWN])}{', ...' if len(keys) > _SHOWN else ''})"
             for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
             if keys]
    if parts:
        raise CheckpointMismatchError(f"{source}: not {what}: " + "; ".join(parts))


def rename(key: str, rules) -> str:
    """An official key in monokd's names: the first of ``rules`` ((regex, replacement) pairs)
    that matches, applied once; the key unchanged when none matches."""
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return new
    return key
