"""CaDDN (Reading et al., "Categorical Depth Distribution Network for Monocular 3D Object
Detection", CVPR 2021), and ADD's CaDDN teacher that lifts the pixel-wise GT depth instead.

    images (B, 3, H, W)
      -> ResNet (DeepLabV3 trunk: layer3/4 dilated) -> C2 (stride 4) or C4 (stride 8), C5
      -> image features: 1x1 conv + BN + ReLU on C2 (or C4)      F (B, C, H/s, W/s)
      -> depth head: DeepLabV3 ASPP on C5, upsampled             (B, D + 1, H/s, W/s) logits
      -> depth distribution P = softmax(logits)   |   one-hot GT bins (depth_input: gt_pixel)
      -> frustum G = F (x) P[:, :D]                               (B, C, D, H/s, W/s)
      -> frustum-to-voxel (grid_sample at the voxel centres)      (B, C, NZ, NY, NX)
      -> BEV collapse (C * NZ -> C_bev, 1x1 conv)                 (B, C_bev, NY, NX)     = bev_features
      -> BEV backbone (stages k: (B, F_k, NY/S_k, NX/S_k); upsampled and concatenated)
      -> anchor head: class scores, 7-D residual boxes, direction bins                  = detect_from_bev
    losses: anchor head (focal cls, smooth-L1 boxes, direction CE) + depth (monokd.models.caddn.losses,
            the student only: the teacher's distribution is given, its depth head is not run)

``model.feature_layer`` picks the trunk stage the image features are read from: ``layer1``
(C2, s = 4: CaDDN's) or ``layer3`` (C4: s = 8 with DeepLabV3's dilated layer3, the
``feat_extract_layer: layer3`` of MonoTAKD's released student, 1024 channels for a ResNet-50).

The voxel grid, lifting, collapse, BEV backbone and anchor head are monokd.models.bev's (shared
with MonoTAKD's teaching assistant and student, which reuse this class through
``bev_features(batch)`` and ``detect_from_bev(bev, batch)``). ADD distils the BEV backbone's
stage outputs (the ``features`` signal, levels in the "bev" space of the grid); the
``estimated_bev_depth`` signal (ADD's "estimated" PE) lifts the predicted distribution a second
time, only when asked for.

``model.depth_input: gt_pixel`` (the teacher) needs ``batch["depth_maps"]`` (data.depth_maps) at
training and at inference; ``monokd predict`` refuses it.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.geometry.grid import BEVGrid
from monokd.models.backbones.resnet import build_resnet
from monokd.models.bev.anchor_head import SECTION as ANCHOR_HEAD
from monokd.models.bev.anchor_head import HEAD_OUTPUTS, score_threshold
from monokd.models.bev.frustum_to_voxel import CONVENTIONS
from monokd.models.caddn.depth_head import DepthHead
from monokd.models.caddn.frustum import frustum_features, gt_pixel_distribution
from monokd.models.caddn.losses import DEFAULTS as DEPTH_LOSS_DEFAULTS
from monokd.models.caddn.losses import depth_loss
from monokd.models.caddn.weights import is_deeplabv3, load_deeplabv3, openpcdet_state, read_state
from monokd.models.contract import (DEPTH_MAPS, LABELED, Detector, DistillSpec, attach_signals, labeled_index,
                                    signal_set)
from monokd.schema import Section

DEFAULTS = {
    "name": "caddn",
    "backbone": {"depth": 101, "weights": None, "frozen_stages": -1, "norm": "auto",
                 "dilation": [False, True, True], "widths": [64, 128, 256, 512]},
    "feature_layer": "layer1",  # the trunk stage of the image features (layer1: C2, stride 4)
    "image_channels": 64,  # the 1x1 reduction of the feature layer
    # pooling_norm: the ASPP image-pooling branch as torchvision's (conv, BN), so DeepLabV3 loads
    "depth_head": {"channels": 256, "rates": [12, 24, 36], "dropout": 0.5, "pooling_norm": False},
    "depth": {"num_bins": 80, "min": 2.0, "max": 46.8},
    "depth_input": None,
    "grid": {"point_cloud_range": [2, -30.08, -3, 46.8, 30.08, 1], "voxel_size": [0.16, 0.16, 0.16]},
    # where the frustum's bins and pixels are sampled (monokd.models.bev.frustum_to_voxel): monokd,
    # openpcdet (OpenPCDet's CaDDN) or trailab (TRAILab/CaDDN)
    "frustum_sampling": "monokd",
    "bev_channels": 64,  # the collapse's output
    # the collapse's batch norm; OpenPCDet's Conv2DCollapse: PyTorch's defaults (1e-5, 0.1)
    "collapse_bn": {"eps": 1e-3, "momentum": 0.01},
    # momentum of the batch norms after the lifting (collapse, BEV backbone); None keeps theirs
    # (OpenPCDet's 0.01, a 100-step memory: fine over 80 KITTI epochs, stale in a short run)
    "bev_bn_momentum": None,
    "bev_backbone": {"layer_nums": [10, 10, 10], "layer_strides": [2, 2, 2], "num_filters": [64, 128, 256],
                     "upsample_strides": [1, 2, 4], "num_upsample_filters": [128, 128, 128]},
    "anchor_head": {},  # monokd.models.bev.anchor_head's section
}
DEPTH_INPUTS = (None, "gt_pixel")
FEATURE_LAYERS = ("layer1", "layer2", "layer3")  # C2, C3, C4 of the trunk
SECTION = Section("model", DEFAULTS, typed=True, paths=("backbone.weights",), whole=("bev_backbone", "grid"),
                  sections={"anchor_head": ANCHOR_HEAD},
                  choices={"depth_input": DEPTH_INPUTS, "frustum_sampling": CONVENTIONS,
                           "feature_layer": FEATURE_LAYERS})
LOSS_SECTION = Section("loss", {"depth": DEPTH_LOSS_DEFAULTS})  # the depth distribution loss's weights
ONNX_OPSET = 20  # the first opset whose GridSample takes the 5-D (volumetric) frustum


def model_config(cfg: dict) -> dict:
    """The ``model`` section over DEFAULTS (sub-sections merged); unknown keys raise ConfigError."""
    out = SECTION.resolve(cfg)
    depth = out["depth"]
    if not 0 < float(depth["min"]) < float(depth["max"]) or int(depth["num_bins"]) < 1:
        raise ConfigError(f"model.depth: need 0 < min < max and num_bins >= 1; got {depth}")
    return out


class CaDDN(Detector):
    """See the module docstring; ``forward(batch, signals) -> outputs`` per docs/architecture.md.

    Args:
        cfg: the ``model`` section (see DEFAULTS).
        classes: ``data.classes``.
        loss_cfg: the ``loss`` section (``depth``: monokd.models.caddn.losses.DEFAULTS).
    """

    onnx_opset = ONNX_OPSET

    def __init__(self, cfg: dict, classes: list[str], loss_cfg: dict | None = None):
        super().__init__()
        from monokd.models.bev.anchor_head import AnchorHead
        from monokd.models.bev.backbone import BEVBackbone
        from monokd.models.bev.collapse import BEVCollapse
        from monokd.models.bev.frustum_to_voxel import FrustumToVoxel

        cfg = model_config(cfg)
        self.cfg, self.classes = cfg, list(classes)
        self.depth_input = cfg["depth_input"]
        self.depth_bins = {k: float(cfg["depth"][k]) for k in ("min", "max")}
        self.depth_bins["num_bins"] = int(cfg["depth"]["num_bins"])
        self.depth_loss_cfg = LOSS_SECTION.resolve(loss_cfg)["depth"]
        self.grid = BEVGrid.from_config(cfg["grid"], "model.grid")

        backbone_cfg, deeplab = self._backbone_weights(cfg["backbone"])
        self.backbone = build_resnet(backbone_cfg)
        self.feature_index = FEATURE_LAYERS.index(cfg["feature_layer"])
        self.feature_stride = self.backbone.stage_strides[self.feature_index]
        channels = int(cfg["image_channels"])
        self.reduce = nn.Sequential(nn.Conv2d(self.backbone.stage_channels[self.feature_index], channels, 1,
                                              bias=False),
                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        head = cfg["depth_head"]
        self.depth_head = DepthHead(self.backbone.stage_channels[-1], self.depth_bins["num_bins"],
                                    int(head["channels"]), tuple(head["rates"]), float(head["dropout"]),
                                    bool(head["pooling_norm"]))
        if deeplab is not None:
            load_deeplabv3(self, deeplab, str(cfg["backbone"]["weights"]))
        self.lift = FrustumToVoxel(self.grid, (self.depth_bins["min"], self.depth_bins["max"],
                                               self.depth_bins["num_bins"]), cfg["frustum_sampling"])
        self.collapse = BEVCollapse(channels, self.grid.grid_size[2], int(cfg["bev_channels"]),
                                    float(cfg["collapse_bn"]["eps"]), float(cfg["collapse_bn"]["momentum"]))
        self.bev_backbone = BEVBackbone(cfg["bev_backbone"], int(cfg["bev_channels"]), self.grid,
                                        "model.bev_backbone")
        self.head = AnchorHead(cfg["anchor_head"], self.grid, self.bev_backbone.out_channels, self.classes)
        if cfg["bev_bn_momentum"] is not None:
            for module in (*self.collapse.modules(), *self.bev_backbone.modules()):
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = float(cfg["bev_bn_momentum"])

    @staticmethod
    def _backbone_weights(section: dict) -> tuple[dict, dict | None]:
        """(backbone section for build_resnet, torchvision DeepLabV3 state or None). A DeepLabV3
        file (trunk and head, monokd.models.caddn.weights) is loaded after the depth head is
        built; any other file goes to build_resnet (a torchvision ResNet, trunk only)."""
        section = dict(section)
        if not section.get("weights"):
            return section, None
        state = read_state(section["weights"])
        if not is_deeplabv3(state):
            return section, None
        if section.get("norm", "auto") == "auto":
            section["norm"] = "frozen"
        section["weights"] = None
        return section, state

    def official_state_dict(self, checkpoint: dict, source: str = "checkpoint") -> dict:
        """This model's state dict from an official checkpoint's contents: OpenPCDet's CaDDN
        (``{"model_state": ...}``; monokd.models.caddn.weights). Raises
        CheckpointMismatchError (one line) on another layout or a missing / extra key."""
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state"), dict):
            raise CheckpointMismatchError(f"{source}: not an OpenPCDet checkpoint (no model_state)")
        return openpcdet_state(self, checkpoint["model_state"], source)

    # ----------------------------------------------------------------------------------------

    def depth_distribution(self, batch: dict, features: torch.Tensor, c5: torch.Tensor):
        """(logits or None, (B, D + 1, h, w) distribution) at the image features' size."""
        if self.depth_input == "gt_pixel":
            return None, self.gt_distribution(batch, features)
        logits = self.depth_head(c5, tuple(features.shape[-2:]))
        return logits, logits.softmax(dim=1)

    def gt_distribution(self, batch: dict, features: torch.Tensor, who: str = "model.depth_input=gt_pixel"):
        """(B, D + 1, h, w) one-hot LID bins of ``batch["depth_maps"]`` at the image features' size
        (each block's mean valid depth, monokd.models.caddn.frustum); ``who`` names the reader in
        the error when the batch has no depth map."""
        if batch.get("depth_maps") is None:
            raise ConfigError(f"{who} needs batch['depth_maps'] (set data.depth_maps: depth_2 or auto)")
        bins = self.depth_bins
        distribution = gt_pixel_distribution(batch["depth_maps"].to(features.device), tuple(features.shape[-2:]),
                                             bins["num_bins"], bins["min"], bins["max"])
        return distribution.to(features.dtype)

    def lift_gt_depth(self, batch: dict, features: torch.Tensor, who: str) -> torch.Tensor:
        """(B, C, h, w) image features lifted with the one-hot GT-depth bins (as ``depth_input:
        gt_pixel`` lifts them) -> voxels (B, C, NZ, NY, NX); the gradient flows into ``features``."""
        frustum = frustum_features(features, self.gt_distribution(batch, features, who))
        return self.lift(frustum, batch["lidar_to_rect"], batch["P2"], tuple(batch["images"].shape[-2:]))

    def bev_features(self, batch: dict) -> dict:
        """images -> depth distribution -> frustum -> voxels -> BEV: ``bev`` (B, C_bev, NY, NX),
        ``depth_logits`` (B, D + 1, h, w) (None for gt_pixel), ``depth_distribution``,
        ``image_features`` (B, C, h, w) at ``feature_stride``."""
        images = batch["images"]
        stages = self.backbone.stages(images)
        features = self.reduce(stages[self.feature_index])
        c5 = stages[-1]
        logits, distribution = self.depth_distribution(batch, features, c5)
        frustum = frustum_features(features, distribution)
        voxels = self.lift(frustum, batch["lidar_to_rect"], batch["P2"], tuple(images.shape[-2:]))
        return {"bev": self.collapse(voxels), "depth_logits": logits, "depth_distribution": distribution,
                "image_features": features}

    def detect_from_bev(self, bev: torch.Tensor, batch: dict, signals=()) -> dict:
        """BEV (B, C_bev, NY, NX) -> BEV backbone -> anchor head: ``pred_cls``, ``pred_boxes``,
        ``pred_dir``; the signals ``features`` (the stage outputs) and ``bev`` (the input) when
        asked for."""
        features, stages = self.bev_backbone(bev)
        outputs = self.head(features)
        return attach_signals(outputs, signal_set(signals), features=list(stages), bev=bev)

    def forward(self, batch: dict, signals=()) -> dict:
        signals = signal_set(signals)
        lifted = self.bev_features(batch)
        outputs = self.detect_from_bev(lifted["bev"], batch, signals)
        if lifted["depth_logits"] is not None:
            outputs["pred_depth_logits"] = lifted["depth_logits"]
            attach_signals(outputs, signals, estimated_bev_depth=lambda: self.bev_depth_map(
                lifted["depth_distribution"], batch))
        return outputs

    @torch.no_grad()
    def bev_depth_map(self, distribution: torch.Tensor, batch: dict) -> torch.Tensor:
        """(B, 1, NY, NX) the depth the student itself sees in BEV: the predicted distribution
        lifted alone (a 1-channel frustum), its maximum over height; where it exceeds 0.1 the
        cell's forward distance (rect z of the cell centre at the camera's height), else 0."""
        occupancy = self.lift(distribution[:, None, :-1], batch["lidar_to_rect"], batch["P2"],
                              tuple(batch["images"].shape[-2:])).amax(dim=2)  # (B, 1, NY, NX)
        cells = self.grid.cell_centres(device=occupancy.device)  # (NY, NX, 2) LiDAR x, y
        lidar = torch.cat([cells, torch.zeros_like(cells[..., :1]), torch.ones_like(cells[..., :1])], -1)
        rect_z = torch.einsum("yxk,bk->byx", lidar, batch["lidar_to_rect"][:, 2].to(lidar))
        return torch.where(occupancy > 0.1, rect_z[:, None].to(occupancy), torch.zeros_like(occupancy))

    # ----------------------------------------------------------------------------------------
    # The detector interface (docs/architecture.md)

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_box``, ``loss_dir`` (the anchor head), ``loss_depth`` (with a
        depth head) and ``loss``, over the labeled frames of ``batch`` only (an unlabeled
        frame's empty targets mean unknown, not background): the terms of the labeled frames
        as a batch of their own; with none, every term is 0 (weight 0 on the outputs, so every
        parameter stays in the graph for DDP yet gets no gradient)."""
        from monokd.models.bev.detections import gt_boxes_lidar

        keep = labeled_index(batch)
        if keep is not None:
            return self._labeled_losses(outputs, batch, keep)
        boxes, labels = gt_boxes_lidar(batch)
        terms = dict(self.head.losses(outputs, boxes, labels))
        terms.pop("loss", None)
        if "pred_depth_logits" in outputs:
            if batch.get("depth_maps") is None:
                raise ConfigError("CaDDN's depth loss needs batch['depth_maps'] (set data.depth_maps: depth_2, "
                                  "lidar or auto)")
            terms["loss_depth"] = depth_loss(outputs["pred_depth_logits"], batch["depth_maps"], batch["targets"],
                                             self.feature_stride, self.depth_bins, self.depth_loss_cfg)
        terms["loss"] = sum(terms.values())
        return terms

    def _labeled_losses(self, outputs: dict, batch: dict, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`losses` of the frames ``keep`` (K,) of ``batch`` (see there)."""
        plain = {**batch, LABELED: None}
        if keep.numel() == 0:
            return {name: 0.0 * term for name, term in self.losses(outputs, plain).items()}
        picked = {key: value[keep.to(value.device)] for key, value in outputs.items()
                  if key in _PER_FRAME_OUTPUTS and torch.is_tensor(value)}
        sub = {**plain, "targets": [batch["targets"][i] for i in keep.tolist()]}
        for key in ("lidar_to_rect", "depth_maps"):
            if batch.get(key) is not None:
                sub[key] = batch[key][keep.to(batch[key].device)]
        return self.losses(picked, sub)

    def pseudo_targets(self, outputs: dict, batch: dict, min_score: float) -> list[dict]:
        from monokd.models.bev.detections import detections_as_targets

        return [detections_as_targets(boxes, scores, labels, batch, b, min_score)
                for b, (boxes, scores, labels) in enumerate(self.head.decode(outputs))]

    @classmethod
    def labeled_losses_of(cls, model_cfg: dict) -> bool:
        return True

    def decode(self, outputs: dict, batch: dict) -> list:
        from monokd.models.bev.detections import decode_head

        return decode_head(self.head, outputs, self.classes, batch)

    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        """The teacher (``depth_input: gt_pixel``) lifts the frame's depth_2 map."""
        return (DEPTH_MAPS,) if model_cfg.get("depth_input") == "gt_pixel" else ()

    @classmethod
    def decode_threshold_of(cls, model_cfg: dict) -> tuple[str, float]:
        return score_threshold(model_cfg.get("anchor_head"))

    @property
    def distill_spec(self) -> DistillSpec:
        levels = len(self.bev_backbone.stage_channels)
        return DistillSpec(feature_channels=list(self.bev_backbone.stage_channels),
                           feature_strides=list(self.bev_backbone.stage_strides), query_dim=None,
                           num_decoder_layers=0, feature_spaces=["bev"] * levels, bev_grid=self.grid)

    @classmethod
    def from_config(cls, cfg: dict) -> "CaDDN":
        return build_caddn(cfg)


# the outputs the losses read, (B, ...) each
_PER_FRAME_OUTPUTS = (*HEAD_OUTPUTS, "pred_depth_logits")


def build_caddn(cfg: dict) -> CaDDN:
    """From the whole config: ``model`` (this model), ``data.classes`` and ``loss``."""
    classes = (cfg.get("data") or {}).get("classes")
    if not classes:
        raise ConfigError("data.classes: CaDDN needs the list of class names (e.g. [Car])")
    data = cfg.get("data") or {}
    model = cfg.get("model") or {}
    if not data.get("depth_maps") and (model.get("depth_input") == "gt_pixel"):
        raise ConfigError("model.depth_input=gt_pixel needs data.depth_maps (depth_2, lidar or auto)")
    return CaDDN(model, list(classes), cfg.get("loss"))
