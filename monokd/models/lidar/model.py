"""MonoTAKD's LiDAR teacher (Liu et al. 2025, Fig. 2, top row): a PointPillars-style detector
(Lang et al., CVPR 2019) on the SAME BEV grid as the camera models.

    points: B x (M_b, 4) rect. camera frame of the augmented frame (batch["points"])
      -> inverse(lidar_to_rect) -> LiDAR frame; pillars = the grid's (y, x) cells
      -> pillar encoder (9 point features, Linear + BN + ReLU, max over the pillar)
                                                              (B, C_p, NY, NX)
      -> BEV encoder: 3x3 conv + BN + ReLU                    F_T (B, C_bev, NY, NX)
      -> BEV backbone -> anchor head (monokd.models.bev)      pred_cls, pred_boxes, pred_dir

F_T plays the role of the released code's ``spatial_features`` (a SECOND teacher's height
compression): the BEV feature MonoTAKD's residual F_T - F_TA is taken from, so C_bev and the
grid must equal the TA's and the student's (the ``bev`` signal). Sparse 3-D
convolution (SECOND) needs CUDA kernels; the dense pillar scatter runs anywhere.

The outputs, losses and decoding are those of the camera BEV detector (monokd.models.caddn):
the same anchor head, the same GT conversion to LiDAR boxes, the same decoding to KITTI objects.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.errors import ConfigError
from monokd.geometry.grid import BEVGrid
from monokd.models.bev.anchor_head import SECTION as ANCHOR_HEAD
from monokd.models.bev.anchor_head import score_threshold
from monokd.models.contract import LIDAR_TO_RECT, POINTS, Detector, attach_signals, signal_set
from monokd.models.lidar.pillars import PillarEncoder
from monokd.schema import Section

DEFAULTS = {
    "name": "lidar_pillars",
    "grid": {"point_cloud_range": [2, -30.08, -3, 46.8, 30.08, 1], "voxel_size": [0.16, 0.16, 0.16]},
    "pillar_channels": 64,
    "bev_channels": 64,  # C of F_T: the camera models' model.bev_channels
    "bev_backbone": {"layer_nums": [5, 5], "layer_strides": [1, 2], "num_filters": [64, 128],
                     "upsample_strides": [1, 2], "num_upsample_filters": [128, 128]},
    "anchor_head": {},  # monokd.models.bev.anchor_head's section
    # momentum of the batch norms of the BEV encoder and backbone (as caddn's); None keeps theirs
    "bev_bn_momentum": None,
}


# sub-sections are taken whole (a grid or a backbone's lists go together); null keeps a default
SECTION = Section("model", DEFAULTS, typed=True, whole=("grid", "bev_backbone"), sections={"anchor_head": ANCHOR_HEAD},
                  none_is_default=True)
LOSS_SECTION = Section("loss", {})  # the anchor head's loss weights are model.anchor_head.loss_weights


def model_config(cfg: dict) -> dict:
    """The ``model`` section over DEFAULTS; unknown keys raise ConfigError."""
    return SECTION.resolve(cfg)


class LidarBevDetector(Detector):
    """What every LiDAR teacher shares once its ``bev_features(batch)`` gives F_T (B, C, NY, NX)
    on the shared BEV grid: the BEV backbone and anchor head (``self.bev_backbone``,
    ``self.head``), its inputs (points only), losses on the LiDAR-frame boxes and decoding."""

    def detect_from_bev(self, bev: torch.Tensor, batch: dict, signals=()) -> dict:
        """F_T -> BEV backbone -> anchor head; the signals ``features`` (the stage outputs) and
        ``bev`` (F_T) when asked for."""
        features, stages = self.bev_backbone(bev)
        return attach_signals(self.head(features), signal_set(signals), features=list(stages), bev=bev)

    def forward(self, batch: dict, signals=()) -> dict:
        return self.detect_from_bev(self.bev_features(batch)["bev"], batch, signals)

    @classmethod
    def inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        return (POINTS, LIDAR_TO_RECT)  # no image

    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        return (POINTS,)

    @classmethod
    def decode_threshold_of(cls, model_cfg: dict) -> tuple[str, float]:
        return score_threshold(model_cfg.get("anchor_head"))

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        from monokd.models.bev.detections import gt_boxes_lidar

        boxes, labels = gt_boxes_lidar(batch)
        terms = dict(self.head.losses(outputs, boxes, labels))
        terms.pop("loss", None)
        terms["loss"] = sum(terms.values())
        return terms

    def decode(self, outputs: dict, batch: dict) -> list:
        from monokd.models.bev.detections import decode_head

        return decode_head(self.head, outputs, self.classes, batch)

    @classmethod
    def checked_classes(cls, cfg: dict) -> list[str]:
        """``data.classes`` of the whole config; ConfigError without them or without points."""
        classes = (cfg.get("data") or {}).get("classes")
        if not classes:
            raise ConfigError("data.classes: the LiDAR teacher needs the list of class names (e.g. [Car])")
        if not (cfg.get("data") or {}).get("load_points"):
            raise ConfigError("data.load_points: the LiDAR teacher reads batch['points']; set it to true")
        return list(classes)


class LidarPillars(LidarBevDetector):
    """See the module docstring. Args: cfg the ``model`` section, classes ``data.classes``."""

    def __init__(self, cfg: dict, classes: list[str]):
        super().__init__()
        from monokd.models.bev.anchor_head import AnchorHead
        from monokd.models.bev.backbone import BEVBackbone

        cfg = model_config(cfg)
        self.cfg, self.classes = cfg, list(classes)
        self.grid = BEVGrid.from_config(cfg["grid"], "model.grid")
        self.bev_channels = int(cfg["bev_channels"])
        self.pillars = PillarEncoder(self.grid, int(cfg["pillar_channels"]))
        self.bev_encoder = nn.Sequential(
            nn.Conv2d(int(cfg["pillar_channels"]), self.bev_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(self.bev_channels), nn.ReLU(inplace=True))
        self.bev_backbone = BEVBackbone(cfg["bev_backbone"], self.bev_channels, self.grid, "model.bev_backbone")
        self.head = AnchorHead(cfg["anchor_head"], self.grid, self.bev_backbone.out_channels, self.classes)
        if cfg["bev_bn_momentum"] is not None:
            for module in (*self.bev_encoder.modules(), *self.bev_backbone.modules()):
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = float(cfg["bev_bn_momentum"])

    def bev_features(self, batch: dict) -> dict:
        """``bev`` = F_T (B, C_bev, NY, NX) from ``batch["points"]``."""
        if batch.get("points") is None or batch.get("lidar_to_rect") is None:
            raise ConfigError("lidar_pillars needs batch['points'] and batch['lidar_to_rect'] "
                              "(data.load_points: true; a LiDAR sweep per frame)")
        return {"bev": self.bev_encoder(self.pillars(batch["points"], batch["lidar_to_rect"]))}

    @classmethod
    def from_config(cls, cfg: dict) -> "LidarPillars":
        return build_lidar_pillars(cfg)


def build_lidar_pillars(cfg: dict) -> LidarPillars:
    """From the whole config: ``model`` (this model) and ``data.classes``."""
    return LidarPillars(cfg.get("model") or {}, LidarPillars.checked_classes(cfg))
