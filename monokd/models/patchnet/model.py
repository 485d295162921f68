"""PatchNet (Ma et al., ECCV 2020, "Rethinking Pseudo-LiDAR Representation"): one 3-D box per
2-D box, from a patch of back-projected depth; and ADD's teacher variant fed depth_2.

    batch: depth (B, 1, H, W) [depth_pred, or depth_maps for depth_input=gt_pixel], P2,
           proposals (B dicts: boxes (N_b, 4) input px, labels, scores, target_index)
      -> patches.py: back-project every pixel to rectified XYZ; crop + resize each box to
         S x S (32); rotate to the frustum centre; mask Z < mean(Z) + 0.5; remove the masked
         mean                                                             (N, 3, S, S)
      -> CenterRegressor: offset of the centre from the masked mean; stage-1 centre
      -> patch - offset -> BoxBackbone (SE-ResNet-18 variant): 4 stages   (N, C_k, S/2^k, S/2^k)
      -> masked max-pool (512) ++ class one-hot -> DistanceHeads (z < 30, 30-50, > 50 m)
      -> centre residual, 12 heading bins + residuals, 8 size clusters + residuals
         (F-PointNet's coding, coding.py), in the frustum-rotated frame

Decoding (one Object3D per 2-D box): centre and heading rotated back by the frustum angle,
location = bottom centre, 2-D box = the input box mapped to the original image, score =
2-D score x 3-D confidence, the confidence being the probability of the chosen heading bin
times that of the chosen size cluster (PatchNet has no score head; a GT 2-D box scores 1).

Distillation signals (monokd/models/contract.py, no decoder): the ``features`` are the 4 stage
outputs, in the "given" space (patch cells, one "image" per box): ``masks[k]`` (N, h_k, w_k) =
the cells holding a pixel of PatchNet's object mask computed on the GT depth (depth_2 in the
batch, cropped a second time only when masks or pe_depth are asked for; the detector's own
mask without it), ``pe_depth[k]`` (N, 1, h_k, w_k) = the mean GT depth of each cell (0 where
none), and ``estimated_pe_depth[k]`` the same from the model's own input depth (ADD's
"estimated" PE). Teacher and student of one batch crop the same boxes, so their cells are
aligned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monokd.errors import ConfigError
from monokd.models.contract import DEPTH_MAPS, P2, PROPOSALS, Detector, DistillSpec, attach_signals, signal_set
from monokd.models.patchnet import patches as P
from monokd.models.patchnet.coding import NUM_HEADING_BIN, SIZE_CLUSTERS, size_cluster_of
from monokd.models.patchnet.heads import BoxBackbone, CenterRegressor, DistanceHeads, cell_mask, masked_max_pool
from monokd.models.patchnet.losses import DEFAULT_WEIGHTS, PatchNetLoss
from monokd.schema import Section

DEFAULTS = {
    "name": "patchnet", "num_classes": None,
    "depth_input": None,  # None: batch["depth_pred"] (estimated); gt_pixel: batch["depth_maps"] (depth_2)
    "patch_size": 32, "threshold_offset": 0.5,
    "center_channels": [128, 128, 256], "center_hidden": [256, 128],
    "backbone": {"widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2], "se_reduction": 16},
    "head_hidden": [512, 256], "dropout": 0.5, "distance_edges": [30.0, 50.0],
    "decode": {"min_score": 0.0},
}
DEPTH_INPUTS = {None: "depth_pred", "gt_pixel": "depth_maps"}
BOX_KEYS = ("center", "stage1_center", "heading_scores", "heading_residuals_normalized", "size_scores",
            "size_residuals_normalized")


SECTION = Section("model", DEFAULTS, typed=True, choices={"depth_input": tuple(DEPTH_INPUTS)})
LOSS_SECTION = Section("loss", DEFAULT_WEIGHTS)  # a weight per term (monokd.models.patchnet.losses)


def model_config(cfg: dict) -> dict:
    """The ``model`` section over DEFAULTS; unknown keys and values raise ConfigError naming the key."""
    out = SECTION.resolve(cfg)
    if len(out["backbone"]["widths"]) != len(out["backbone"]["blocks"]):
        raise ConfigError("model.backbone: widths and blocks need one entry per stage")
    return out


class PatchNet(Detector):
    """See the module docstring; ``forward(batch) -> outputs`` (one row per 2-D box)."""

    def __init__(self, cfg: dict, classes: list[str], loss_cfg: dict | None = None):
        super().__init__()
        cfg = model_config(cfg)
        if cfg["num_classes"] is not None and cfg["num_classes"] != len(classes):
            raise ConfigError(f"model.num_classes: {cfg['num_classes']} but data.classes has {len(classes)}")
        self.cfg, self.classes = cfg, list(classes)
        self.depth_key = DEPTH_INPUTS[cfg["depth_input"]]
        self.patch_size, self.offset = int(cfg["patch_size"]), float(cfg["threshold_offset"])
        self.num_size_cluster = len(SIZE_CLUSTERS)
        self.register_buffer("size_cluster", size_cluster_of(self.classes), persistent=False)
        n_cls, backbone = len(self.classes), cfg["backbone"]
        self.center_regressor = CenterRegressor(cfg["center_channels"], n_cls, cfg["center_hidden"], cfg["dropout"])
        self.box_backbone = BoxBackbone(backbone["widths"], backbone["blocks"], backbone["se_reduction"])
        out = 3 + 2 * NUM_HEADING_BIN + 4 * self.num_size_cluster
        self.heads = DistanceHeads(backbone["widths"][-1] + n_cls, cfg["head_hidden"], out, cfg["dropout"],
                                   cfg["distance_edges"])
        self.criterion = PatchNetLoss(loss_cfg, self.size_cluster)

    # ----------------------------------------------------------------------------------------
    def input_depth(self, batch: dict) -> torch.Tensor:
        if self.depth_key not in batch:
            source = "data.depth_pred_dir" if self.depth_key == "depth_pred" else "data.depth_maps: depth_2"
            raise ConfigError(f"PatchNet (model.depth_input={self.cfg['depth_input']}) needs batch['{self.depth_key}']: "
                              f"set {source}")
        return batch[self.depth_key]

    def make_patches(self, depth: torch.Tensor, batch: dict):
        """(patches (N, 3, S, S) frustum-rotated XYZ, valid (N, S, S), depth patches (N, 1, S, S),
        frustum angle (N,))."""
        if "proposals" not in batch:
            raise ConfigError("PatchNet needs batch['proposals'] (data.proposals)")
        boxes = [p["boxes"].to(depth.device) for p in batch["proposals"]]
        image_index = torch.cat([torch.full((len(b),), i, device=depth.device, dtype=torch.long)
                                 for i, b in enumerate(boxes)])
        maps = torch.cat([P.backproject(depth, batch["P2"]), (depth > 0).to(depth.dtype)], 1)
        crops = P.crop_patches(maps, boxes, self.patch_size)  # X, Y, Z, validity
        angle = P.frustum_angle(torch.cat(boxes).to(depth.dtype), batch["P2"].to(depth.device)[image_index])
        return P.rotate_about_y(crops[:, :3], angle), P.patch_valid(crops[:, 2:4]), crops[:, 2:3], angle

    def forward(self, batch: dict, signals=()) -> dict:
        signals = signal_set(signals)
        xyz, valid, depth_patches, angle = self.make_patches(self.input_depth(batch), batch)
        labels = torch.cat([p["labels"] for p in batch["proposals"]]).to(xyz.device)
        one_hot = F.one_hot(labels, len(self.classes)).to(xyz.dtype)
        mask = P.object_mask(xyz, valid, self.offset)
        mean = P.masked_mean(xyz, mask)
        keep = valid[:, None].to(xyz.dtype)
        x = (xyz - mean[..., None, None]) * keep
        offset = self.center_regressor(x, mask, one_hot) if len(x) else xyz.new_zeros(0, 3)
        stage1 = mean + offset
        features = self.box_backbone((x - offset[..., None, None]) * keep)
        pooled = torch.cat([masked_max_pool(features[-1], mask), one_hot], 1)
        raw = self.heads(pooled, stage1[:, 2]) if len(x) else pooled.new_zeros(0, self.heads.heads[0][-1].out_features)
        outputs = self.parse(raw)
        outputs["stage1_center"] = stage1
        outputs["center"] = outputs["center_boxnet"] + stage1
        outputs.update({"frustum_angle": angle, "labels": labels, "mask": mask,
                        "scores_2d": torch.cat([p["scores"] for p in batch["proposals"]]).to(xyz.device)})
        outputs["box_features"] = features  # the losses tie their zero to them when no box has a target
        if signals:
            self.attach_distill_signals(outputs, signals, batch, features, mask, depth_patches, valid)
        return outputs

    def parse(self, raw: torch.Tensor) -> dict:
        nh, ns = NUM_HEADING_BIN, self.num_size_cluster
        return {"center_boxnet": raw[:, :3], "heading_scores": raw[:, 3:3 + nh],
                "heading_residuals_normalized": raw[:, 3 + nh:3 + 2 * nh],
                "size_scores": raw[:, 3 + 2 * nh:3 + 2 * nh + ns],
                "size_residuals_normalized": raw[:, 3 + 2 * nh + ns:].reshape(-1, ns, 3)}

    @torch.no_grad()
    def attach_distill_signals(self, outputs: dict, signals: frozenset[str], batch: dict, features, mask,
                               depth_patches, valid) -> None:
        """The ``features`` and ADD's M^k, GT PE depth and estimated PE depth per level, those
        asked for (see the module docstring); the GT depth is cropped only for masks / pe_depth."""
        sizes = [tuple(f.shape[-2:]) for f in features]
        values = {"features": features}
        if "estimated_pe_depth" in signals:
            values["estimated_pe_depth"] = [_cell_depth(depth_patches, valid, size) for size in sizes]
        if signals & {"masks", "pe_depth"}:
            if DEPTH_MAPS in batch and self.depth_key != DEPTH_MAPS:
                xyz, valid, depth_patches, _ = self.make_patches(batch[DEPTH_MAPS], batch)
                mask = P.object_mask(xyz, valid, self.offset)
            values["masks"] = [cell_mask(mask, size) for size in sizes]
            values["pe_depth"] = [_cell_depth(depth_patches, valid, size) for size in sizes]
        attach_signals(outputs, signals, **values)

    # ----------------------------------------------------------------------------------------
    # The detector interface (docs/architecture.md)

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        return self.criterion(outputs, batch)

    @classmethod
    def inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        """A depth map and 2-D boxes per image, no image."""
        return (P2, DEPTH_INPUTS[model_config(model_cfg)["depth_input"]], PROPOSALS)

    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        """The teacher (``depth_input: gt_pixel``) reads the frame's depth_2 map."""
        depth_key = DEPTH_INPUTS[model_config(model_cfg)["depth_input"]]
        return (depth_key,) if depth_key == DEPTH_MAPS else ()

    @classmethod
    def decode_threshold_of(cls, model_cfg: dict) -> tuple[str, float]:
        """(config key, value) of the score below which decode drops a box."""
        return "model.decode.min_score", float(model_config(model_cfg)["decode"]["min_score"])

    def decode(self, outputs: dict, batch: dict) -> list:
        from monokd.models.patchnet.decode import decode_patches

        return decode_patches(outputs, batch, self.classes, float(self.cfg["decode"]["min_score"]))

    @property
    def distill_spec(self) -> DistillSpec:
        return DistillSpec(feature_channels=list(self.box_backbone.channels),
                           feature_strides=list(self.box_backbone.strides), query_dim=None, num_decoder_layers=0,
                           feature_spaces=["given"] * len(self.box_backbone.channels))

    @classmethod
    def from_config(cls, cfg: dict) -> "PatchNet":
        return build_patchnet(cfg)


def _cell_depth(depth_patches: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, h, w) mean valid depth of each cell of an h x w grid over the patch (0 where none)."""
    weight = valid[:, None].to(depth_patches.dtype)
    total = F.adaptive_avg_pool2d(depth_patches * weight, size)
    count = F.adaptive_avg_pool2d(weight, size)
    return torch.where(count > 0, total / count.clamp(min=1e-6), torch.zeros_like(total))


def build_patchnet(cfg: dict) -> PatchNet:
    """From the whole config: ``model`` (this model), ``data.classes`` and ``loss``."""
    classes = (cfg.get("data") or {}).get("classes")
    if not classes:
        raise ConfigError("data.classes: PatchNet needs the list of class names (e.g. [Car])")
    return PatchNet(cfg.get("model") or {}, list(classes), cfg.get("loss"))
