"""CaDDN's official weight layouts -> monokd's state-dict keys, strictly.

Two layouts, both read from files the user passes (nothing is downloaded):

* torchvision's DeepLabV3-ResNet-101 state dict (``deeplabv3_resnet101_coco-586e9e4e.pth``, the
  COCO weights CaDDN starts from), given as ``model.backbone.weights``: its trunk
  ``backbone.*`` and its DeepLabHead ``classifier.*`` load into CaDDN's ``backbone`` and
  ``depth_head``. As in OpenPCDet's DDNTemplate, ``aux_classifier.*`` is dropped and the last
  1x1 conv ``classifier.4`` (21 COCO classes) is left at its initialisation when its number of
  classes differs from D + 1; every other key must be there, with its shape.
* an OpenPCDet CaDDN checkpoint (``{"model_state": ...}``, ``tools/train.py``'s), converted by
  ``monokd convert`` through :meth:`monokd.models.caddn.model.CaDDN.official_state_dict`:

      vfe.ffn.ddn.model.backbone.*          -> backbone.*
      vfe.ffn.ddn.model.classifier.*        -> depth_head.* (the DeepLabHead table below)
      vfe.ffn.channel_reduce.{conv,bn}.*    -> reduce.{0,1}.*
      map_to_bev_module.block.{conv,bn}.*   -> collapse.block.{0,1}.*
      backbone_2d.blocks.i.j.*              -> bev_backbone.stages.i.(j - 1).*  (j = 0 is ZeroPad2d)
      backbone_2d.deblocks.i.*              -> bev_backbone.upsamples.i.*
      dense_head.conv_{cls,box,dir_cls}.*   -> head.conv_{cls,box,dir}.*
      global_step                           -> dropped (the detector's step counter)

DeepLabHead (torchvision) -> monokd's DepthHead (monokd.models.caddn.depth_head)::

    classifier.0.convs.{0..3}.{0,1}   -> aspp.branches.{0..3}.{0,1}
    classifier.0.convs.4.{1,2}        -> aspp.pooling.{1,2}      (needs depth_head.pooling_norm)
    classifier.0.project.{0,1}        -> aspp.project.0.{0,1}
    classifier.{1,2}                  -> head.{0,1}
    classifier.4                      -> classifier

A mismatch is one :class:`monokd.errors.CheckpointMismatchError` line naming the missing,
unexpected and mis-shaped keys (``num_batches_tracked`` is optional on both sides).
"""

from __future__ import annotations

import re
from pathlib import Path

from monokd.errors import CheckpointMismatchError
from monokd.models.official import check_exact, map_keys, openpcdet_bev_backbone_key
from monokd.weights import read_weights

_HEAD_RULES = (
    (r"^classifier\.0\.convs\.([0-3])\.", r"aspp.branches.\1."),
    (r"^classifier\.0\.convs\.4\.", "aspp.pooling."),
    (r"^classifier\.0\.project\.", "aspp.project.0."),
    (r"^classifier\.1\.", "head.0."),
    (r"^classifier\.2\.", "head.1."),
    (r"^classifier\.4\.", "classifier."),
)
_OPENPCDET_PREFIXES = (
    ("vfe.ffn.ddn.model.backbone.", "backbone."),
    ("vfe.ffn.channel_reduce.conv.", "reduce.0."),
    ("vfe.ffn.channel_reduce.bn.", "reduce.1."),
    ("map_to_bev_module.block.conv.", "collapse.block.0."),
    ("map_to_bev_module.block.bn.", "collapse.block.1."),
    ("backbone_2d.deblocks.", "bev_backbone.upsamples."),
    ("dense_head.conv_cls.", "head.conv_cls."),
    ("dense_head.conv_box.", "head.conv_box."),
    ("dense_head.conv_dir_cls.", "head.conv_dir."),
)
_OPENPCDET_DROPPED = ("global_step",)


def _hint(converted: dict, own: dict) -> str:
    key = "depth_head.aspp.pooling.2.weight"
    if key in converted and key not in own:
        return "; its image-pooling branch has a batch norm: set model.depth_head.pooling_norm: true"
    return ""


def _optional(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def read_state(path: str | Path) -> dict:
    """The tensors of a weights file (a plain state dict, or wrapped in ``state_dict`` /
    ``model`` / ``model_state``), on the CPU."""
    path = Path(path)
    state = read_weights(path, "weights file")  # missing, truncated, pickled objects: one line each
    for wrapper in ("model_state", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def is_deeplabv3(state: dict) -> bool:
    """Whether ``state`` has torchvision DeepLabV3's layout (``backbone.*`` and ``classifier.0.convs.*``)."""
    return any(k.startswith("classifier.0.convs.") for k in state) and any(k.startswith("backbone.") for k in state)


def head_key(key: str) -> str | None:
    """torchvision DeepLabHead key (``classifier.…``) -> monokd DepthHead key, None if none."""
    for pattern, replacement in _HEAD_RULES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def deeplabv3_state(model, state: dict, source: str) -> dict:
    """torchvision DeepLabV3 ``state`` -> monokd keys of ``model.backbone`` and
    ``model.depth_head`` (``classifier`` left out when its class count differs), checked strictly.

    Raises:
        CheckpointMismatchError naming the missing / unexpected / mis-shaped keys.
    """
    out, unknown = {}, []
    for key, value in state.items():
        if key.startswith("aux_classifier."):
            continue
        if key.startswith("backbone."):
            out[key] = value
        elif key.startswith("classifier.") and head_key(key) is not None:
            out["depth_head." + head_key(key)] = value
        else:
            unknown.append(key)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "depth_head."))}
    classifier = [k for k in own if k.startswith("depth_head.classifier.")]
    if all(k in out and out[k].shape[0] != own[k].shape[0] for k in classifier):
        for k in classifier:  # another number of classes: kept at its initialisation (OpenPCDet's rule)
            out.pop(k), own.pop(k)
    check_exact(own, {**out, **{k: state[k] for k in unknown}}, source,
                "a torchvision DeepLabV3 state dict for this depth network (model.backbone.weights)", _hint(out, own),
                _optional)
    return {k: v for k, v in out.items() if k in own}


def load_deeplabv3(model, state: dict, source: str) -> None:
    """Load a torchvision DeepLabV3 state dict into ``model.backbone`` and ``model.depth_head``."""
    converted = deeplabv3_state(model, state, source)
    model.load_state_dict(converted, strict=False)


def openpcdet_key(key: str) -> str | None:
    """OpenPCDet CaDDN ``model_state`` key -> monokd CaDDN key (None: not a CaDDN key)."""
    if key.startswith("vfe.ffn.ddn.model.classifier."):
        mapped = head_key(key[len("vfe.ffn.ddn.model."):])
        return None if mapped is None else "depth_head." + mapped
    if key.startswith("backbone_2d.blocks."):
        return openpcdet_bev_backbone_key(key)
    for old, new in _OPENPCDET_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def openpcdet_state(model, state: dict, source: str) -> dict:
    """An OpenPCDet CaDDN ``model_state`` -> ``model``'s state dict, checked strictly."""
    out, unknown = map_keys(state, openpcdet_key, lambda key: key in _OPENPCDET_DROPPED
                            or key.startswith("vfe.ffn.ddn.model.aux_classifier."))
    own = model.state_dict()
    check_exact(own, {**out, **{k: state[k] for k in unknown}}, source,
                "an OpenPCDet CaDDN checkpoint for this config", _hint(out, own), _optional)
    return {k: v for k, v in out.items() if k in own}
