"""MonoDETR (Zhang et al. 2022): a depth-guided DETR for monocular 3-D detection, and ADD's
teacher variant that takes the object-wise ground-truth depth as an extra input.

    images -> ResNet C3..C5 -> per-level 1x1 conv + GN (+ a 3x3 s2 level on C5)
           -> depth predictor (stride 16: logits of K LID bins + background, weighted depth)
           -> depth encoder (1 layer) + depth positional encoding = depth memory
           -> visual encoder (deformable, all levels) = visual memory
           -> depth-aware decoder (depth cross-attn, self-attn, deformable cross-attn, FFN)
              with iterative 6-D box refinement
           -> per-layer heads; depth = mean(direct, geometric, depth map at the 3-D centre)

``model.depth_input: gt_object`` (the teacher) replaces the predicted depth that feeds the depth
positional encoding and the depth-map term of the fusion by the ground-truth object-wise depth
map (each GT 2-D box filled with its depth, nearer over farther, background = the background
bin's depth, max). The depth predictor still runs and is still supervised.

Switches between MonoDETR's official code and monokd's own choices (docs/monodetr.md, "The
KITTI recipe and the official code"): ``position_encoding`` (official | centred),
``depth_upsample`` (nearest | bilinear), ``depth_map_sampling`` (align_corners, padding),
``geometric_depth`` (input | original: the focal length and image height of the geometric
depth; heads.geometric_scale) and ``logit_classes`` (the class of each logit, e.g. MonoDETR's [Pedestrian, Car, Cyclist] while
training on Car alone; ``data.classes`` by default).

What a distiller may ask for (``forward(batch, signals=...)``, monokd/models/contract.py):
``features``, the maps entering the visual encoder (before any depth input); ``queries``
(L, B, Q, C); ``estimated_depth``, the depth map that feeds the depth positional encoding;
``depth_memory``, the depth memory as a (B, C, H/16, W/16) map, which carries the teacher's
GT depth through the depth positional encoding.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.errors import ConfigError
from monokd.geometry.depth import object_depth_map
from monokd.models.backbones.resnet import build_resnet
from monokd.models.contract import TARGETS, Detector, DistillSpec, attach_signals, signal_set
from monokd.models.monodetr.decode import HEADING_RAYS
from monokd.models.monodetr.depth_predictor import UPSAMPLE_MODES, DepthPredictor
from monokd.models.monodetr.heads import (GEOMETRIC_DEPTHS, MAP_SAMPLING_DEFAULT, PADDING_MODES, PredictionHeads,
                                          geometric_scale)
from monokd.models.monodetr.position_encoding import (POSITION_ENCODINGS, DepthPositionalEncoding,
                                                      sine_position_encoding)
from monokd.schema import Section
from monokd.models.monodetr.transformer import (DepthAwareDecoder, DepthAwareDecoderLayer, DepthEncoderLayer,
                                                VisualEncoder, VisualEncoderLayer, reset_transformer_parameters)

DEFAULTS = {
    "name": "monodetr", "num_classes": None, "logit_classes": None,
    "backbone": {"depth": 50, "weights": None, "frozen_stages": 1, "norm": "auto",
                 "widths": [64, 128, 256, 512]},
    "hidden_dim": 256, "num_feature_levels": 4, "nheads": 8, "enc_layers": 3, "dec_layers": 3,
    "dim_feedforward": 256, "dropout": 0.1, "enc_n_points": 4, "dec_n_points": 4, "num_queries": 50,
    "depth": {"num_bins": 80, "min": 1e-3, "max": 60.0},
    "depth_input": None,
    "gt_depth_decode": True,
    "decode": {"topk": 50, "threshold": 0.2, "heading_ray": "centre_3d"},
    "position_encoding": "centred",
    "depth_upsample": "bilinear",
    "depth_map_sampling": dict(MAP_SAMPLING_DEFAULT),
    "geometric_depth": "input",  # original: MonoDETR's focal and height of the original image
}
DEPTH_INPUTS = (None, "gt_object")
SECTION = Section("model", DEFAULTS, typed=True, paths=("backbone.weights",), free=("logit_classes",),
                  choices={"depth_input": DEPTH_INPUTS, "position_encoding": POSITION_ENCODINGS,
                           "depth_upsample": UPSAMPLE_MODES, "decode.heading_ray": HEADING_RAYS,
                           "depth_map_sampling.padding": PADDING_MODES, "geometric_depth": GEOMETRIC_DEPTHS})
# ``loss``: monokd.models.monodetr.losses.build_criterion's (weights per term, the matcher's costs)
LOSS_SECTION = Section("loss", {"weights": {}, "matcher": {}, "aux": True, "depth_bins": None},
                       free=("weights", "matcher", "depth_bins"))
PER_QUERY_KEYS = ("pred_logits", "pred_boxes", "pred_dims", "pred_angle", "pred_depth")


def model_config(cfg: dict) -> dict:
    """The ``model`` section with defaults filled in and checked (ConfigError names the key)."""
    out = SECTION.resolve(cfg)
    dim = out["hidden_dim"]
    if dim % 32:
        raise ConfigError(f"model.hidden_dim: {dim} must be a multiple of 32 (GroupNorm with 32 groups)")
    if dim % out["nheads"]:
        raise ConfigError(f"model.nheads: hidden_dim {dim} is not divisible by {out['nheads']} heads")
    if out["num_feature_levels"] < 3:
        raise ConfigError("model.num_feature_levels: at least 3 (the depth predictor reads strides 8, 16, 32)")
    return out


def logit_classes(cfg: dict, classes: list[str]) -> list[str]:
    """The class of each logit channel: ``model.logit_classes``, or ``data.classes``.

    MonoDETR's KITTI code has 3 logits [Pedestrian, Car, Cyclist] while it trains on Car only
    (Car is logit 1); ``data.classes`` must then be a subset of ``logit_classes``.
    """
    names = list(cfg["logit_classes"] or classes)
    if len(set(names)) != len(names):
        raise ConfigError(f"model.logit_classes: {names} names a class twice")
    missing = [c for c in classes if c not in names]
    if missing:
        raise ConfigError(f"model.logit_classes: {names} has no logit for data.classes {missing}")
    if cfg["num_classes"] is not None and cfg["num_classes"] != len(names):
        source = "model.logit_classes" if cfg["logit_classes"] else "data.classes"
        raise ConfigError(f"model.num_classes: {cfg['num_classes']} but {source} has {len(names)} entries "
                          f"{names} (set model.logit_classes to name each logit)")
    return names


class MonoDETR(Detector):
    """See the module docstring; ``forward(batch, signals) -> outputs`` per docs/architecture.md.

    Args:
        cfg: the ``model`` section (see DEFAULTS).
        classes: ``data.classes``, the trained classes (``model.logit_classes`` names the
            logits when they differ; a target's label indexes ``classes``).
        loss_cfg: the ``loss`` section, handed to the set criterion.
    """

    def __init__(self, cfg: dict, classes: list[str], loss_cfg: dict | None = None):
        super().__init__()
        cfg = model_config(cfg)
        self.cfg = cfg
        self.classes = list(classes)
        self.logit_classes = logit_classes(cfg, self.classes)
        self.register_buffer("label_to_logit", torch.tensor([self.logit_classes.index(c) for c in self.classes]),
                             persistent=False)
        if cfg["geometric_depth"] == "original":  # what forward reads beyond the image
            self.batch_inputs = ("images", "P2", "P2_original", "image_sizes")
        self.depth_input = cfg["depth_input"]
        self.gt_depth_decode = bool(cfg["gt_depth_decode"])
        self.depth_bins = {k: cfg["depth"][k] for k in ("num_bins", "min", "max")}
        dim, levels = cfg["hidden_dim"], cfg["num_feature_levels"]
        self.hidden_dim, self.num_feature_levels = dim, levels
        self.num_queries, self.num_decoder_layers = cfg["num_queries"], cfg["dec_layers"]

        self.backbone = build_resnet(cfg["backbone"])
        self.input_proj = _input_projections(self.backbone.num_channels, dim, levels)
        self.level_embed = nn.Parameter(torch.empty(levels, dim))
        self.depth_predictor = DepthPredictor(dim, self.depth_bins["num_bins"], self.depth_bins["min"],
                                              self.depth_bins["max"], cfg["depth_upsample"])
        self.depth_encoder = DepthEncoderLayer(dim, cfg["nheads"], cfg["dim_feedforward"], cfg["dropout"])
        self.depth_pos_embed = DepthPositionalEncoding(dim, self.depth_bins["max"])
        self.encoder = VisualEncoder(VisualEncoderLayer(dim, cfg["dim_feedforward"], cfg["dropout"], levels,
                                                        cfg["nheads"], cfg["enc_n_points"]), cfg["enc_layers"])
        self.decoder = DepthAwareDecoder(DepthAwareDecoderLayer(dim, cfg["dim_feedforward"], cfg["dropout"], levels,
                                                                cfg["nheads"], cfg["dec_n_points"]),
                                         cfg["dec_layers"], dim)
        self.query_embed = nn.Embedding(self.num_queries, 2 * dim)  # positional | content
        self.heads = PredictionHeads(dim, len(self.logit_classes), cfg["dec_layers"], self.classes,
                                     cfg["depth_map_sampling"])
        self._reset_parameters()
        self.criterion = _build_criterion(loss_cfg, len(self.logit_classes), self.depth_bins)

    def _reset_parameters(self) -> None:
        reset_transformer_parameters(self.encoder, self.decoder.layers)
        nn.init.xavier_uniform_(self.decoder.reference_points.weight, gain=1.0)
        nn.init.zeros_(self.decoder.reference_points.bias)
        nn.init.normal_(self.level_embed)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

    # ----------------------------------------------------------------------------------------

    def forward(self, batch: dict, signals=()) -> dict:
        images = batch["images"]
        input_h, input_w = images.shape[-2:]
        srcs = self.multi_scale_features(images)
        pos = [sine_position_encoding(s.shape[-2], s.shape[-1], self.hidden_dim, device=s.device, dtype=s.dtype,
                                      normalisation=self.cfg["position_encoding"]) for s in srcs]

        depth_logits, depth_features, weighted_depth = self.depth_predictor(srcs)
        depth = weighted_depth
        if self.depth_input == "gt_object":
            depth = self.gt_object_depth(batch, tuple(weighted_depth.shape[-2:]), input_w / weighted_depth.shape[-1])
        depth_memory = (self.depth_encoder(_tokens(depth_features), _tokens(pos[1]).expand(images.shape[0], -1, -1))
                        + _tokens(self.depth_pos_embed(depth)))

        # Python ints (not a tensor) so that tracing and export see fixed shapes, not data.
        spatial_shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        level_start = torch.tensor([0] + [h * w for h, w in spatial_shapes][:-1], device=images.device).cumsum(0)
        src_flat = torch.cat([_tokens(s) for s in srcs], 1)
        pos_flat = torch.cat([_tokens(p) + self.level_embed[i] for i, p in enumerate(pos)], 1)
        memory = self.encoder(src_flat, pos_flat.expand(images.shape[0], -1, -1), spatial_shapes, level_start)

        query_pos, tgt = self.query_embed.weight.split(self.hidden_dim, dim=1)
        batch_size = images.shape[0]
        hs, boxes = self.decoder(tgt[None].expand(batch_size, -1, -1), query_pos[None].expand(batch_size, -1, -1),
                                 memory, spatial_shapes, level_start, depth_memory)

        fy, image_h = geometric_scale(batch, self.cfg["geometric_depth"], input_h, torch.promote_types(hs.dtype, torch.float32))
        map_term = self.depth_map_term()
        layers = [self.heads(i, hs[i], boxes[i], depth, fy, image_h, map_term) for i in range(hs.shape[0])]
        outputs = dict(layers[-1])
        outputs["aux_outputs"] = layers[:-1]
        outputs["pred_depth_map_logits"] = depth_logits
        # depth_memory as a map: the one distilled signal the teacher's GT depth enters (ADD's
        # distill.feature.source=depth_memory); srcs are computed before any depth input.
        def memory_map() -> list[torch.Tensor]:
            return [depth_memory.transpose(1, 2).reshape(batch_size, self.hidden_dim, *depth.shape[-2:])]

        return attach_signals(outputs, signal_set(signals), features=srcs, queries=hs,
                              estimated_depth=depth[:, None].detach(), depth_memory=memory_map)

    def multi_scale_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[(B, C, H/8, W/8), (H/16), (H/32), (H/64), ...]: the maps entering the encoder."""
        feats = self.backbone(images)
        srcs = [proj(f) for proj, f in zip(self.input_proj, feats)]
        for proj in self.input_proj[len(feats):]:
            srcs.append(proj(feats[-1] if len(srcs) == len(feats) else srcs[-1]))
        return srcs

    def depth_map_term(self) -> str:
        """How the depth map enters the depth fusion (heads.fuse_depth): the teacher's GT map is
        sampled nearest, and at inference (``gt_depth_decode``) decoded from alone."""
        if self.depth_input != "gt_object":
            return "predicted"
        return "gt_only" if self.gt_depth_decode and not self.training else "gt"

    def gt_object_depth(self, batch: dict, map_size: tuple[int, int], stride: float) -> torch.Tensor:
        """(B, h, w) ground-truth object-wise depth map (teacher input); background = max depth."""
        if "targets" not in batch:
            raise ConfigError("model.depth_input=gt_object needs batch['targets'] (boxes_2d, depth) at "
                              "training and at inference")
        device = batch["images"].device
        maps = [object_depth_map(t["boxes_2d"].to(device), t["depth"].to(device), map_size, stride,
                                 background=float(self.depth_bins["max"]))
                for t in batch["targets"]]
        return torch.stack(maps).to(batch["images"].dtype)

    # ----------------------------------------------------------------------------------------
    # The detector interface (docs/architecture.md)

    def official_state_dict(self, checkpoint: dict, source: str = "checkpoint") -> dict:
        """This model's state dict from an official checkpoint's contents (monokd convert;
        monokd.models.monodetr.official): CheckpointMismatchError (one line) on another layout."""
        from monokd.models.monodetr.official import official_state_dict

        return official_state_dict(self, checkpoint, source)

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        return self.criterion(outputs, self.logit_targets(batch))

    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        """The teacher (``depth_input: gt_object``) reads the targets' boxes and depths."""
        return (TARGETS,) if model_config(model_cfg)["depth_input"] == "gt_object" else ()

    @classmethod
    def decode_threshold_of(cls, model_cfg: dict) -> tuple[str, float]:
        """(config key, value) of the score below which decode drops a query's box."""
        return "model.decode.threshold", float(model_config(model_cfg)["decode"]["threshold"])

    def decode(self, outputs: dict, batch: dict) -> list:
        """Top-k over all logits (as MonoDETR's pool), then only the trained classes are kept."""
        from monokd.models.monodetr.decode import decode_detections

        detections = decode_detections(outputs, batch, self.logit_classes, topk=int(self.cfg["decode"]["topk"]),
                                       threshold=float(self.cfg["decode"]["threshold"]),
                                       heading_ray=self.cfg["decode"]["heading_ray"])
        if self.logit_classes == self.classes:
            return detections
        return [[d for d in image if d.type in self.classes] for image in detections]

    def match_foreground(self, outputs: dict, batch: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        height, width = batch["images"].shape[-2:]
        targets = self.logit_targets(batch)["targets"]
        return self.criterion.matcher(outputs, targets, (float(width), float(height)))

    def logit_targets(self, batch: dict) -> dict:
        """``batch`` with each target's label (an index into ``data.classes``) mapped to its logit."""
        if self.logit_classes == self.classes:
            return batch
        targets = [{**t, "labels": self.label_to_logit.to(t["labels"].device)[t["labels"].long()]}
                   for t in batch["targets"]]
        return {**batch, "targets": targets}

    @property
    def distill_spec(self) -> DistillSpec:
        return DistillSpec(feature_channels=[self.hidden_dim] * self.num_feature_levels,
                           feature_strides=[8 * 2 ** i for i in range(self.num_feature_levels)],
                           query_dim=self.hidden_dim, num_decoder_layers=self.num_decoder_layers,
                           sources={"depth_memory": ([self.hidden_dim], [16])})

    @classmethod
    def from_config(cls, cfg: dict) -> "MonoDETR":
        return build_monodetr(cfg)


def _input_projections(channels: list[int], dim: int, levels: int) -> nn.ModuleList:
    """1x1 conv + GN per backbone level; extra levels by 3x3 stride-2 conv + GN, the first on C5."""
    projs = [nn.Sequential(nn.Conv2d(c, dim, 1), nn.GroupNorm(32, dim)) for c in channels[:levels]]
    cin = channels[-1]
    for _ in range(levels - len(channels)):
        projs.append(nn.Sequential(nn.Conv2d(cin, dim, 3, stride=2, padding=1), nn.GroupNorm(32, dim)))
        cin = dim
    return nn.ModuleList(projs)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def _build_criterion(loss_cfg: dict | None, num_classes: int, depth_bins: dict):
    from monokd.models.monodetr.losses import build_criterion

    return build_criterion(loss_cfg, num_classes, depth_bins)


def build_monodetr(cfg: dict) -> MonoDETR:
    """From the whole config: ``model`` (this model), ``data.classes`` and ``loss``."""
    classes = (cfg.get("data") or {}).get("classes")
    if not classes:
        raise ConfigError("data.classes: MonoDETR needs the list of class names (e.g. [Car])")
    return MonoDETR(cfg.get("model") or {}, list(classes), cfg.get("loss"))
