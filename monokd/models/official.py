"""The strict check of an official checkpoint's tensors after their renaming into monokd's names
(``official_state_dict`` of CaDDN, PatchNet and MonoDETR; ``monokd convert``), and that renaming."""

from __future__ import annotations

import re

import torch

from monokd.errors import CheckpointMismatchError

_SHOWN = 6  # names listed per kind of mismatch


def _listing(kind: str, names) -> str:
    names = sorted(names)
    return f"{len(names)} {kind} ({', '.join(names[:_SHOWN])}{', ...' if len(names) > _SHOWN else ''})"


def check_exact(expected: dict, state: dict, source: str, what: str, hint: str = "",
                optional=lambda key: False) -> None:
    """Raise one CheckpointMismatchError line, ``<source>: not <what>: ...`` (then ``hint``),
    unless ``state`` has exactly ``expected``'s keys and shapes; a key for which ``optional``
    is true may be absent on either side."""
    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected and not optional(k)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = [_listing(kind, names) for kind, names in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if names]
        raise CheckpointMismatchError(f"{source}: not {what}: " + "; ".join(parts) + hint)


def check_official_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """:func:`check_exact` of ``state`` against ``model.state_dict()`` (every key required)."""
    check_exact(model.state_dict(), state, source, what)


def map_keys(state: dict, mapper, skip=lambda key: False) -> tuple[dict, list[str]]:
    """(monokd-named tensors, unmapped official keys) of an official ``state``: ``mapper(key)``
    is the key's monokd name, or None for a key it does not know; keys ``skip`` accepts are
    dropped (tensors monokd has no use for)."""
    out, unknown = {}, []
    for key, value in state.items():
        if skip(key):
            continue
        mapped = mapper(key)
        if mapped is None:
            unknown.append(key)
        else:
            out[mapped] = value
    return out, unknown


def rename(key: str, rules) -> str:
    """An official key in monokd's names: the first of ``rules`` ((regex, replacement) pairs)
    that matches, applied once; the key unchanged when none matches."""
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return new
    return key


def openpcdet_bev_backbone_key(key: str) -> str | None:
    """OpenPCDet's ``backbone_2d.blocks.<stage>.<index>.<rest>`` -> monokd's BEV backbone key
    ``bev_backbone.stages.<stage>.<index - 1>.<rest>`` (index 0 is OpenPCDet's zero padding,
    which holds no weights: None); None for any other key."""
    match = re.match(r"^backbone_2d\.blocks\.(\d+)\.(\d+)\.(.+)$", key)
    if match is None:
        return None
    stage, index, rest = match.groups()
    return None if int(index) == 0 else f"bev_backbone.stages.{stage}.{int(index) - 1}.{rest}"
