"""PatchNet's official checkpoints (xinzhuma/patchnet) in monokd's module names.

The official trainer saves ``{"epoch", "model_state", "optimizer_state"}``; ``model_state`` is
the state dict of ``lib/models/patchnet.py`` with the SE-ResNet-18 box backbone
(``experiments/patchnet/config_patchnet.yaml``). Its modules map one to one onto monokd's
PatchNet built with the KITTI recipe's official switches (``norm: batch``,
``center_conv_bias: true``, ``onehot_classes: [Car, Pedestrian, Cyclist]``, backbone
``strides: [1, 1, 1, 1]``): 237 tensors, 12,646,252 parameters on either side.

    center_reg_backbone.features.i      -> center_regressor.convs.i
    center_reg_head.i                   -> center_regressor.mlp.i
    box_est_backbone.conv1 / bn1        -> box_backbone.stem.0 / stem.1
    box_est_backbone.layerK.j.X         -> box_backbone.stages.(K-1).j.X  (X: conv1 bn1 conv2 bn2 shortcut)
    box_est_backbone.layerK.j.fc1 / fc2 -> box_backbone.stages.(K-1).j.se.1 / se.3
    box_est_headN.i                     -> heads.heads.(N-1).i

A key no rule names keeps its name, so that the strict load reports it as unexpected.
"""

from __future__ import annotations


import torch

from monokd.errors import CheckpointMismatchError
from monokd.models.official import check_official_state
from monokd.models.official import rename as official_rename

RULES = (
    (r"^center_reg_backbone\.features\.", "center_regressor.convs."),
    (r"^center_reg_head\.", "center_regressor.mlp."),
    (r"^box_est_backbone\.conv1\.", "box_backbone.stem.0."),
    (r"^box_est_backbone\.bn1\.", "box_backbone.stem.1."),
    (r"^box_est_backbone\.layer(\d)\.(\d+)\.fc1\.", lambda m: f"box_backbone.stages.{int(m[1]) - 1}.{m[2]}.se.1."),
    (r"^box_est_backbone\.layer(\d)\.(\d+)\.fc2\.", lambda m: f"box_backbone.stages.{int(m[1]) - 1}.{m[2]}.se.3."),
    (r"^box_est_backbone\.layer(\d)\.", lambda m: f"box_backbone.stages.{int(m[1]) - 1}."),
    (r"^box_est_head(\d)\.", lambda m: f"heads.heads.{int(m[1]) - 1}."),
)


def rename(key: str) -> str:
    """An official key in monokd's names (the first of RULES that matches; unchanged if none)."""
    return official_rename(key, RULES)


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official ``model_state`` -> monokd's PatchNet state dict (same tensors)."""
    return {rename(k): v for k, v in state.items()}


def official_state_dict(model: torch.nn.Module, checkpoint: dict, source: str) -> dict[str, torch.Tensor]:
    """``model``'s state dict from an official checkpoint's contents (``{"model_state": ...}``),
    renamed and checked strictly: CheckpointMismatchError (one line) names the missing,
    unexpected and mis-shaped keys. ``model`` needs the official layout (configs/patchnet_kitti.yaml:
    ``norm: batch``, ``center_conv_bias``, ``onehot_classes``, backbone ``strides: [1, 1, 1, 1]``)."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state"), dict):
        raise CheckpointMismatchError(f"{source}: not an official PatchNet checkpoint (no model_state)")
    state = from_official(checkpoint["model_state"])
    check_official_state(model, state, source, "an official PatchNet checkpoint for this config")
    return state
