"""A run's initial weights from a trained checkpoint (``model.init``): the two-stage start of
MonoTAKD's released code (``--pretrained_img_model``: the student starts from a trained camera
or TA model).

    file (monokd.weights.read_weights) -> its state dict: a monokd checkpoint's detector (the
        ``state_dict`` / ``model.`` wrapping removed; a distilled run's ``student.`` entries),
        an OpenPCDet ``model_state``, or a plain state dict
    -> every key renamed by each ``map`` rule [from, to] whose ``from`` prefixes it (a key may
       feed several targets: [["", "camera."], ["collapse.", "ta_collapse."]] starts both the
       student's collapse and its TA branch's from the TA's); a key no rule matches is unexpected
    -> strict: every renamed key must be a key of the model with the same shape, and every key
       of the model must be given unless it starts with one of ``keep`` (parts left at their
       initialisation, e.g. ``residual.``); otherwise one CheckpointMismatchError line.

OpenPCDet loads ``--pretrained_img_model`` with ``strict=False`` and only logs how many tensors
it took; here what is not loaded is a declared choice and listed in one line.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.models.official import check_exact
from monokd.schema import Section
from monokd.weights import read_weights

INIT_DEFAULTS = {"ckpt": None, "map": [["", ""]], "keep": []}
INIT = Section("model.init", INIT_DEFAULTS, paths=("ckpt",))
_WRAPPERS = ("state_dict", "model_state", "model")
_SHOWN = 6


def checkpoint_state(content: dict) -> dict[str, torch.Tensor]:
    """The detector's state dict inside a weights file's ``content`` (see the module docstring)."""
    for wrapper in _WRAPPERS:
        if isinstance(content.get(wrapper), dict):
            content = content[wrapper]
            break
    state = {k.removeprefix("model."): v for k, v in content.items()  # Lightning's module attribute
             if isinstance(v, torch.Tensor)}
    student = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
    return student or state  # a distilled run: its student alone


def mapped_state(state: dict[str, torch.Tensor], rules) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the state renamed by every matching [from, to] rule, the keys no rule matched)."""
    out, unmatched = {}, []
    for key, value in state.items():
        targets = [to + key[len(source):] for source, to in rules if key.startswith(source)]
        if not targets:
            unmatched.append(key)
        for target in targets:
            out[target] = value
    return out, unmatched


def initial_state(model: nn.Module, section: dict, source: str | None = None) -> tuple[dict, dict]:
    """(the state dict to load into ``model``, the record of what was loaded) for a ``model.init``
    section with a ``ckpt``.

    Raises:
        ConfigError: a malformed ``map`` rule.
        CheckpointMismatchError: an unreadable file, or a key that does not fit (one line).
    """
    rules = [tuple(rule) for rule in section.get("map") or []]
    if any(len(rule) != 2 or not all(isinstance(part, str) for part in rule) for rule in rules):
        raise ConfigError(f"model.init.map: {section.get('map')!r} must be a list of [from, to] key prefixes")
    keep = section.get("keep") or []
    if not isinstance(keep, list) or not all(isinstance(prefix, str) for prefix in keep):
        raise ConfigError(f"model.init.keep: {keep!r} must be a list of key prefixes")
    keep = tuple(keep)
    path = str(section["ckpt"])
    source = source or path
    content = read_weights(path, "initial weights file (model.init.ckpt)")
    if not isinstance(content, dict):
        raise CheckpointMismatchError(f"{source}: not a state dict ({type(content).__name__})")
    state, unmatched = mapped_state(checkpoint_state(content), rules)
    own = model.state_dict()
    kept = {k for k in own if k not in state and k.startswith(keep) and not k.endswith("num_batches_tracked")}
    given = {**state, **{f"{k} (no map rule)": torch.empty(0) for k in unmatched}}
    check_exact(own, given, source, "initial weights for this model (model.init)",
                "; model.init.map renames its keys, model.init.keep names the parts left at initialisation",
                optional=lambda key: key.endswith("num_batches_tracked") or key in kept)
    state = {k: v for k, v in state.items() if k in own}
    record = {"ckpt": path, "loaded": len(state), "kept": len(kept), "map": [list(r) for r in rules],
              "keep": list(keep)}
    return state, record


def load_initial(model: nn.Module, section: dict | None) -> dict | None:
    """Load ``model.init`` into ``model`` (strictly, see :func:`initial_state`); its record, with
    ``line``: one sentence naming what was loaded and what kept its initialisation; None
    without ``model.init.ckpt``."""
    if not section or not section.get("ckpt"):
        return None
    state, record = initial_state(model, section)
    model.load_state_dict(state, strict=False)
    kept = sorted({k.split(".")[0] + "." for k in model.state_dict() if k not in state
                   and not k.endswith("num_batches_tracked")})
    record["line"] = (f"model.init: {record['loaded']} tensors from {record['ckpt']}; "
                      f"{record['kept']} left at initialisation" + (f" ({', '.join(kept[:_SHOWN])})" if kept else ""))
    return record
