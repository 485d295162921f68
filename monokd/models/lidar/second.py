"""MonoTAKD's released LiDAR teacher: SECOND (Yan et al., Sensors 2018) as OpenPCDet builds it
(``SECONDNet``: MeanVFE, VoxelResBackBone8x(_c64), HeightCompression, BaseBEVBackbone,
AnchorHeadSingle), on the SAME BEV grid as the camera models.

    points: B x (M_b, 4) rect. camera frame of the augmented frame (batch["points"])
      -> inverse(lidar_to_rect) -> LiDAR frame
      -> voxels of model.voxel_size (0.04 x 0.04 x 0.1 m: the BEV cell / 8 in x and y) over
         model.grid's range, <= 5 points each, mean feature (monokd.models.lidar.voxels)
      -> sparse 3-D backbone, stride 8, height compression       F_T (B, C_4 * D, NY, NX)
      -> BEV backbone -> anchor head (monokd.models.bev)          pred_cls, pred_boxes, pred_dir

On KITTI's MonoTAKD grid ([2, -30.08, -3, 46.8, 30.08, 1] m) the voxels are 1120 x 1504 x 40
and F_T is 128 x 188 x 140 (C_4 = 64, D = 2), the grid of the TA's and the student's BEV
features. The sparse convolutions are spconv's (an optional extra, imported when the model is
built: without it the config is refused in one line, and the dense pillars teacher remains);
spconv's backward needs CUDA, its forward runs on the CPU, so a SECOND teacher trains on a GPU
and distils frozen anywhere.

An OpenPCDet SECOND checkpoint (``{"model_state": ...}``, the teacher MonoTAKD and CMKD start
from) loads strictly through :meth:`LidarSecond.official_state_dict` (``monokd convert``):

    backbone_3d.*                        -> backbone_3d.* (the same names; a spconv 1.x
                                            weight (k, k, k, C_in, C_out) is permuted to 2.x's
                                            (C_out, k, k, k, C_in), as OpenPCDet does)
    backbone_2d.blocks.i.j.*             -> bev_backbone.stages.i.(j - 1).*  (j = 0 is ZeroPad2d)
    backbone_2d.deblocks.i.*             -> bev_backbone.upsamples.i.*
    dense_head.conv_{cls,box,dir_cls}.*  -> head.conv_{cls,box,dir}.*
    global_step                          -> dropped
"""

from __future__ import annotations

import torch

from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.geometry.grid import BEVGrid
from monokd.models.bev.anchor_head import SECTION as ANCHOR_HEAD
from monokd.models.lidar.model import LidarBevDetector
from monokd.models.lidar.pillars import points_to_lidar
from monokd.models.lidar.voxels import batch_voxels
from monokd.models.official import check_exact, map_keys, openpcdet_bev_backbone_key
from monokd.schema import Section

DEFAULTS = {
    "name": "lidar_second",
    "grid": {"point_cloud_range": [2, -30.08, -3, 46.8, 30.08, 1], "voxel_size": [0.32, 0.32, 0.4]},
    "voxel_size": [0.04, 0.04, 0.1],  # the sparse input's voxels: the BEV cell / 8 in x and y
    "max_points_per_voxel": 5,
    "max_voxels": [16000, 40000],  # training, evaluation (OpenPCDet's MAX_NUMBER_OF_VOXELS)
    "backbone_channels": 64,  # C_4: 64 MonoTAKD's VoxelResBackBone8x_c64, 128 OpenPCDet's VoxelResBackBone8x
    "bev_channels": 128,  # C_4 * D: F_T's channels, the camera models' model.bev_channels
    "bev_backbone": {"layer_nums": [5, 5], "layer_strides": [1, 2], "num_filters": [128, 256],
                     "upsample_strides": [1, 2], "num_upsample_filters": [256, 256]},
    "anchor_head": {},  # monokd.models.bev.anchor_head's section
}
SECTION = Section("model", DEFAULTS, typed=True, whole=("grid", "bev_backbone"), sections={"anchor_head": ANCHOR_HEAD},
                  none_is_default=True)
LOSS_SECTION = Section("loss", {})  # the anchor head's loss weights are model.anchor_head.loss_weights

_OPENPCDET_PREFIXES = (
    ("backbone_3d.", "backbone_3d."),
    ("backbone_2d.deblocks.", "bev_backbone.upsamples."),
    ("dense_head.conv_cls.", "head.conv_cls."),
    ("dense_head.conv_box.", "head.conv_box."),
    ("dense_head.conv_dir_cls.", "head.conv_dir."),
)
_OPENPCDET_DROPPED = ("global_step",)


def model_config(cfg: dict) -> dict:
    """The ``model`` section over DEFAULTS; unknown keys raise ConfigError."""
    return SECTION.resolve(cfg)


class LidarSecond(LidarBevDetector):
    """See the module docstring. Args: cfg the ``model`` section, classes ``data.classes``.

    Raises:
        ConfigError (one line) without spconv, or when the voxels at stride 8 are not the BEV
        grid, or C_4 * D is not ``bev_channels``.
    """

    def __init__(self, cfg: dict, classes: list[str]):
        super().__init__()
        from monokd.models.bev.anchor_head import AnchorHead
        from monokd.models.bev.backbone import BEVBackbone
        from monokd.models.lidar.sparse_backbone import VoxelResBackbone8x, check_sparse_shape, require_spconv

        require_spconv("model.name: lidar_second (SECOND)")
        cfg = model_config(cfg)
        self.cfg, self.classes = cfg, list(classes)
        self.grid = BEVGrid.from_config(cfg["grid"], "model.grid")
        # the sparse input's voxels subdivide the BEV grid: the same range, finer cells
        self.voxels = BEVGrid.from_config({"point_cloud_range": list(self.grid.point_cloud_range),
                                           "voxel_size": cfg["voxel_size"]}, "model.voxel_size")
        self.bev_channels = int(cfg["bev_channels"])
        check_sparse_shape(self.voxels.grid_size, self.grid.bev_shape(), int(cfg["backbone_channels"]),
                           self.bev_channels, "model.voxel_size")
        nx, ny, nz = self.voxels.grid_size
        self.backbone_3d = VoxelResBackbone8x(4, (nz + 1, ny, nx), int(cfg["backbone_channels"]))
        self.bev_backbone = BEVBackbone(cfg["bev_backbone"], self.bev_channels, self.grid, "model.bev_backbone")
        self.head = AnchorHead(cfg["anchor_head"], self.grid, self.bev_backbone.out_channels, self.classes)
        self.max_points = int(cfg["max_points_per_voxel"])
        if len(cfg["max_voxels"]) != 2:
            raise ConfigError(f"model.max_voxels: expected [training, evaluation], got {cfg['max_voxels']!r}")

    def bev_features(self, batch: dict) -> dict:
        """``bev`` = F_T (B, C_bev, NY, NX) from ``batch["points"]``."""
        if batch.get("points") is None or batch.get("lidar_to_rect") is None:
            raise ConfigError("lidar_second needs batch['points'] and batch['lidar_to_rect'] "
                              "(data.load_points: true; a LiDAR sweep per frame)")
        device = self.head.conv_cls.weight.device
        if device.type != "cuda" and torch.is_grad_enabled() and \
                any(p.requires_grad for p in self.backbone_3d.parameters()):
            raise ConfigError("lidar_second trains on a GPU: spconv's backward needs CUDA (spconv 2.3.8); on the CPU "
                              "it runs frozen (a distillation teacher, evaluation), or train model.name: lidar_pillars")
        clouds = [points_to_lidar(p.to(device=device, dtype=torch.float32), m.to(device))
                  for p, m in zip(batch["points"], batch["lidar_to_rect"])]
        max_voxels = int(self.cfg["max_voxels"][0 if self.training else 1])
        features, coords = batch_voxels(clouds, self.voxels, self.max_points, max_voxels)
        return {"bev": self.backbone_3d(features, coords, len(clouds))}

    def official_state_dict(self, checkpoint: dict, source: str = "checkpoint") -> dict:
        """This model's state dict from an OpenPCDet SECOND checkpoint (``{"model_state": ...}``;
        the module docstring's renaming). Raises CheckpointMismatchError (one line) on another
        layout or a missing, extra or mis-shaped key."""
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state"), dict):
            raise CheckpointMismatchError(f"{source}: not an OpenPCDet checkpoint (no model_state)")
        return openpcdet_state(self, checkpoint["model_state"], source)

    @classmethod
    def from_config(cls, cfg: dict) -> "LidarSecond":
        return cls(cfg.get("model") or {}, cls.checked_classes(cfg))


def openpcdet_key(key: str) -> str | None:
    """OpenPCDet SECONDNet ``model_state`` key -> monokd key (None: not a SECOND key)."""
    if key.startswith("backbone_2d.blocks."):
        return openpcdet_bev_backbone_key(key)
    for old, new in _OPENPCDET_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def openpcdet_state(model: LidarSecond, state: dict, source: str) -> dict:
    """An OpenPCDet SECONDNet ``model_state`` -> ``model``'s state dict, checked strictly
    (``num_batches_tracked`` optional on both sides)."""
    out, unknown = map_keys(state, openpcdet_key, lambda key: key in _OPENPCDET_DROPPED)
    own = model.state_dict()
    for key, value in out.items():  # spconv 1.x kept (k, k, k, C_in, C_out); 2.x (C_out, k, k, k, C_in)
        if key in own and value.dim() == 5 and value.shape != own[key].shape and \
                value.permute(4, 0, 1, 2, 3).shape == own[key].shape:
            out[key] = value.permute(4, 0, 1, 2, 3).contiguous()
    check_exact(own, {**out, **{k: state[k] for k in unknown}}, source,
                "an OpenPCDet SECOND checkpoint for this config", optional=lambda k: k.endswith("num_batches_tracked"))
    return {k: v for k, v in out.items() if k in own}
