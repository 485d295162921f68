"""MonoDETR's official checkpoints (ZrrSkywalker/MonoDETR, the 2022 code) in monokd's names.

The official trainer saves ``{"epoch", "model_state", "optimizer_state", ...}``; ``model_state``
is the state dict of ``lib/models/monodetr/monodetr.py`` built from ``configs/monodetr.yaml``
(ResNet-50, 4 levels, 3 + 3 layers, 50 queries, ``num_classes: 3``): 543 tensors. Its modules
map one to one onto monokd's MonoDETR built with the KITTI recipe (3 logits
[Pedestrian, Car, Cyclist]; 512 tensors), less 31 that monokd does not store:

- ``depthaware_transformer.decoder.bbox_embed.*`` and ``.decoder.dim_embed.*``: the official
  decoder holds the very heads ``bbox_embed`` and ``dim_embed_3d`` again (the iterative
  refinement's "hack"); dropped where equal to their twin (a file in which they differ is
  not an official checkpoint, and they stay, to be reported as unexpected);
- ``depth_predictor.depth_bin_values``: the 81 LID bin centres, a frozen parameter there and
  a buffer computed from ``model.depth`` here; dropped where they equal monokd's centres
  to 1e-4 m.

The renaming (module by module):

    backbone.0.body.*                                  -> backbone.*
    depthaware_transformer.level_embed                 -> level_embed
    depthaware_transformer.reference_points.*          -> decoder.reference_points.*
    depthaware_transformer.encoder.layers.i.norm1|norm2   -> encoder.layers.i.norm | ffn.norm
    depthaware_transformer.encoder.layers.i.linear1|2     -> encoder.layers.i.ffn.linear1|2
    depthaware_transformer.decoder.layers.i.norm2|norm1|norm3 -> decoder.layers.i.norm_self | norm_cross | ffn.norm
    depthaware_transformer.decoder.layers.i.linear1|2     -> decoder.layers.i.ffn.linear1|2
    depth_predictor.depth_head.0|1|3|4                 -> depth_predictor.depth_head.0.0|0.1|1.0|1.1
    depth_predictor.depth_encoder.layers.0.norm1|norm2|linear1|2 -> depth_encoder.norm | ffn.norm | ffn.linear1|2
    depth_predictor.depth_pos_embed.weight             -> depth_pos_embed.embed.weight
    bbox_embed.*                                       -> decoder.box_embed.*
    class_embed | dim_embed_3d | angle_embed | depth_embed -> heads.class_embed | dim_embed | angle_embed | depth_embed

(self_attn, cross_attn, cross_attn_depth, norm_depth, input_proj and query_embed keep their
names.) A key no rule names keeps its name, so that the strict load reports it.

The dimension heads: MonoDETR predicts absolute sizes (``meanshape: False``); monokd adds a
constant prior, the mean size of ``data.classes`` (heads.dims_prior), to the same head's
output. The prior is subtracted from the bias of each head's last layer (the one with 3
outputs), so that the converted heads predict exactly the official sizes.
"""

from __future__ import annotations

import re

import torch

from monokd.errors import CheckpointMismatchError
from monokd.geometry.depth import lid_bin_centers
from monokd.models.official import check_official_state
from monokd.models.official import rename as official_rename

_TRANSFORMER = r"^depthaware_transformer\."
RULES = (
    (r"^backbone\.0\.body\.", "backbone."),
    (_TRANSFORMER + r"level_embed$", "level_embed"),
    (_TRANSFORMER + r"reference_points\.", "decoder.reference_points."),
    (_TRANSFORMER + r"encoder\.layers\.(\d+)\.norm1\.", r"encoder.layers.\1.norm."),
    (_TRANSFORMER + r"encoder\.layers\.(\d+)\.norm2\.", r"encoder.layers.\1.ffn.norm."),
    (_TRANSFORMER + r"encoder\.layers\.(\d+)\.(linear[12])\.", r"encoder.layers.\1.ffn.\2."),
    (_TRANSFORMER + r"decoder\.layers\.(\d+)\.norm1\.", r"decoder.layers.\1.norm_cross."),
    (_TRANSFORMER + r"decoder\.layers\.(\d+)\.norm2\.", r"decoder.layers.\1.norm_self."),
    (_TRANSFORMER + r"decoder\.layers\.(\d+)\.norm3\.", r"decoder.layers.\1.ffn.norm."),
    (_TRANSFORMER + r"decoder\.layers\.(\d+)\.(linear[12])\.", r"decoder.layers.\1.ffn.\2."),
    (_TRANSFORMER + r"decoder\.layers\.", "decoder.layers."),
    (_TRANSFORMER + r"encoder\.layers\.", "encoder.layers."),
    (r"^depth_predictor\.depth_head\.([0134])\.",
     lambda m: "depth_predictor.depth_head." + {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1"}[m[1]] + "."),
    (r"^depth_predictor\.depth_encoder\.layers\.0\.norm1\.", "depth_encoder.norm."),
    (r"^depth_predictor\.depth_encoder\.layers\.0\.norm2\.", "depth_encoder.ffn.norm."),
    (r"^depth_predictor\.depth_encoder\.layers\.0\.(linear[12])\.", r"depth_encoder.ffn.\1."),
    (r"^depth_predictor\.depth_encoder\.layers\.0\.self_attn\.", "depth_encoder.self_attn."),
    (r"^depth_predictor\.depth_pos_embed\.weight$", "depth_pos_embed.embed.weight"),
    (r"^bbox_embed\.", "decoder.box_embed."),
    (r"^class_embed\.", "heads.class_embed."),
    (r"^dim_embed_3d\.", "heads.dim_embed."),
    (r"^angle_embed\.", "heads.angle_embed."),
    (r"^depth_embed\.", "heads.depth_embed."),
)
TWINS = ((_TRANSFORMER[1:].replace("\\", "") + "decoder.bbox_embed.", "bbox_embed."),
         (_TRANSFORMER[1:].replace("\\", "") + "decoder.dim_embed.", "dim_embed_3d."))
BIN_VALUES = "depth_predictor.depth_bin_values"


def rename(key: str) -> str:
    """An official key in monokd's names (the first of RULES that matches; unchanged if none)."""
    return official_rename(key, RULES)


def _redundant(key: str, state: dict[str, torch.Tensor], depth: dict) -> bool:
    for copy, original in TWINS:
        if key.startswith(copy):
            twin = state.get(original + key[len(copy):])
            return twin is not None and twin.shape == state[key].shape and torch.equal(twin, state[key])
    if key == BIN_VALUES:
        centres = lid_bin_centers(int(depth["num_bins"]), float(depth["min"]), float(depth["max"]))
        value = state[key].detach().to(centres)
        return value.shape == centres.shape and bool(torch.allclose(value, centres, rtol=0, atol=1e-4))
    return False


DIMS_BIAS = re.compile(r"^heads\.dim_embed\.\d+\.layers\.\d+\.bias$")


def from_official(state: dict[str, torch.Tensor], depth: dict | None = None,
                  dims_prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The official ``model_state`` -> monokd's MonoDETR state dict.

    ``depth``: ``model.depth`` (num_bins, min, max) that the bin centres are checked against
    (MonoDETR's 80 bins over [1e-3, 60] m by default); ``dims_prior`` (3,): the prior the
    monokd model adds to its dimension heads (``model.heads.dims_prior``; none: zeros)."""
    depth = depth or {"num_bins": 80, "min": 1e-3, "max": 60.0}
    out = {rename(k): v for k, v in state.items() if not _redundant(k, state, depth)}
    if dims_prior is not None:
        for key in [k for k in out if DIMS_BIAS.match(k) and tuple(out[k].shape) == (3,)]:
            out[key] = out[key] - dims_prior.to(out[key])
    return out


def official_state_dict(model: torch.nn.Module, checkpoint: dict, source: str) -> dict[str, torch.Tensor]:
    """``model``'s state dict from an official checkpoint's contents (``{"model_state": ...}``),
    renamed and checked strictly: CheckpointMismatchError (one line) names the missing,
    unexpected and mis-shaped keys. ``model`` needs 3 logits (``logit_classes: [Pedestrian, Car,
    Cyclist]``, configs/monodetr_kitti.yaml); ``geometric_depth: original`` decodes them exactly."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state"), dict):
        raise CheckpointMismatchError(f"{source}: not an official MonoDETR checkpoint (no model_state)")
    state = from_official(checkpoint["model_state"], model.depth_bins, model.heads.dims_prior)
    check_official_state(model, state, source, "an official MonoDETR (2022) checkpoint for this config")
    return state
