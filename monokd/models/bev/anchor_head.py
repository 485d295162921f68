"""The anchor head: per-anchor classification, residual box and direction (SECOND /
PointPillars; OpenPCDet's AnchorHeadSingle + AnchorHeadTemplate), on one BEV feature map.

    BEV features (B, C_in, NY / s, NX / s)
      -> 1x1 conv -> pred_cls    (B, NY / s, NX / s, A * C)   class logits (sigmoid, no background)
      -> 1x1 conv -> pred_boxes  (B, NY / s, NX / s, A * 7)   residual codes (box_coder)
      -> 1x1 conv -> pred_dir    (B, NY / s, NX / s, A * K)   direction bins
    channels-last, anchor slot a of cell (y, x) at flattened index (y * NX / s + x) * A + a, the
    order of :func:`monokd.models.bev.anchors.make_anchors`; s is read from the feature map.

Losses, per image normalised by its number of positive anchors P (at least 1), summed over
the batch and divided by B (targets from monokd.models.bev.target_assigner):

    L = w_cls sum_{pos, neg} focal(cls, onehot) / P                   (alpha 0.25, gamma 2)
      + w_box sum_pos sum_k code_weight_k smoothL1_{1/9}(sin-difference(box - target)) / P
      + w_dir sum_pos CE(dir, bin(heading_gt)) / P
    (w_cls, w_box, w_dir) = (1, 2, 0.2); ignored anchors count in none of the terms.

Decoding, per image: score = max over classes of the sigmoid, label = its argmax (class-
agnostic NMS, OpenPCDet's MULTI_CLASSES_NMS False); boxes decoded from the anchors with the
predicted direction bin; score >= score_threshold; the nms_pre_max best; rotated BEV NMS at
nms_threshold; at most nms_post_max kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from monokd.errors import ConfigError
from monokd.geometry.grid import BEVGrid
from monokd.models.bev import box_coder
from monokd.models.bev.anchors import anchor_config, make_anchors
from monokd.models.bev.nms import rotated_nms
from monokd.models.bev.target_assigner import IOUS, assign_targets
from monokd.schema import Section

DEFAULTS = {
    "anchors": {},  # per class; see monokd.models.bev.anchors (CaDDN's KITTI anchors by default)
    "align_center": True,  # anchors at cell centres; False: OpenPCDet's edge to edge (anchors.py)
    "assign_iou": "rotated",  # or nearest_bev, OpenPCDet's MATCH_HEIGHT False (target_assigner.py)
    "loss_weights": {"cls": 1.0, "box": 2.0, "dir": 0.2},
    "focal_alpha": 0.25,
    "focal_gamma": 2.0,
    "smooth_l1_beta": 1.0 / 9.0,
    "code_weights": [1.0] * box_coder.CODE_SIZE,
    "num_dir_bins": box_coder.NUM_DIR_BINS,
    "dir_offset": box_coder.DIR_OFFSET,
    "score_threshold": 0.1,
    "nms_threshold": 0.01,
    "nms_pre_max": 4096,
    "nms_post_max": 500,
}
# the head's outputs, under these names in every BEV detector's outputs (and its ONNX outputs)
PRED_CLS, PRED_BOXES, PRED_DIR = "pred_cls", "pred_boxes", "pred_dir"
HEAD_OUTPUTS = (PRED_CLS, PRED_BOXES, PRED_DIR)
_PRIOR = 0.01  # initial foreground probability of every anchor (RetinaNet's prior)


SECTION = Section("model.anchor_head", DEFAULTS, free=("anchors",), choices={"assign_iou": IOUS})


def head_config(cfg: dict | None, key: str) -> dict:
    out = SECTION.resolve(cfg, key)
    if len(out["code_weights"]) != box_coder.CODE_SIZE:
        raise ConfigError(f"{key}.code_weights: {len(out['code_weights'])} weights for a {box_coder.CODE_SIZE}-D code")
    return out


def score_threshold(cfg: dict | None, key: str = "model.anchor_head") -> tuple[str, float]:
    """(config key, value) of the score below which decode drops an anchor, from the head's
    section ``cfg`` (None = the defaults)."""
    return f"{key}.score_threshold", float(head_config(cfg, key)["score_threshold"])


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Elementwise focal loss of sigmoid ``logits`` against 0/1 ``targets`` (same shape)."""
    prob = logits.sigmoid()
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    p_miss = targets * (1 - prob) + (1 - targets) * prob
    return alpha_t * p_miss.pow(gamma) * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class AnchorHead(nn.Module):
    """Args:
        cfg: the ``model.anchor_head`` section (keys of :data:`DEFAULTS`).
        grid: the BEV grid the features live on.  in_channels: C_in.
        class_names: ``data.classes``; class index c of the labels is ``class_names[c]``.
    """

    def __init__(self, cfg: dict | None, grid: BEVGrid, in_channels: int, class_names, key: str = "model.anchor_head"):
        super().__init__()
        self.cfg, self.key = head_config(cfg, key), key
        self.grid = grid
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.specs = anchor_config(self.cfg["anchors"], self.class_names, f"{key}.anchors")
        self.num_anchors = sum(len(s["sizes"]) * len(s["bottom_heights"]) * len(s["rotations"]) for s in self.specs)
        self.num_dir_bins = int(self.cfg["num_dir_bins"])
        self.conv_cls = nn.Conv2d(in_channels, self.num_anchors * self.num_classes, 1)
        self.conv_box = nn.Conv2d(in_channels, self.num_anchors * box_coder.CODE_SIZE, 1)
        self.conv_dir = nn.Conv2d(in_channels, self.num_anchors * self.num_dir_bins, 1)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - _PRIOR) / _PRIOR))
        nn.init.normal_(self.conv_box.weight, mean=0.0, std=0.001)
        nn.init.zeros_(self.conv_box.bias)
        self.register_buffer("code_weights", torch.tensor(self.cfg["code_weights"], dtype=torch.float32),
                             persistent=False)
        self._anchor_cache: dict = {}

    # --- anchors ---------------------------------------------------------------------------

    def stride_of(self, map_size) -> int:
        """The BEV stride of a (H, W) feature map (NY / H = NX / W, an integer)."""
        ny, nx = self.grid.bev_shape()
        height, width = map_size
        if ny % height or nx % width or ny // height != nx // width:
            raise ValueError(f"AnchorHead: a {height} x {width} feature map is not the {ny} x {nx} BEV grid "
                             "at an integer stride")
        return ny // height

    def anchors(self, map_size, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened anchors (N, 7) and their class indices (N,) for a (H, W) feature map."""
        key = (tuple(map_size), str(device))
        if key not in self._anchor_cache:
            anchors, classes = make_anchors(self.grid, self.stride_of(map_size), self.specs, device,
                                            bool(self.cfg["align_center"]))
            self._anchor_cache[key] = (anchors.reshape(-1, box_coder.CODE_SIZE),
                                       classes.repeat(anchors.shape[0] * anchors.shape[1]))
        return self._anchor_cache[key]

    # --- forward, losses, decoding -----------------------------------------------------------

    def forward(self, bev_features: torch.Tensor) -> dict:
        """(B, C_in, H, W) -> ``pred_cls``, ``pred_boxes``, ``pred_dir`` channels-last."""
        return {PRED_CLS: self.conv_cls(bev_features).permute(0, 2, 3, 1).contiguous(),
                PRED_BOXES: self.conv_box(bev_features).permute(0, 2, 3, 1).contiguous(),
                PRED_DIR: self.conv_dir(bev_features).permute(0, 2, 3, 1).contiguous()}

    def _flat(self, preds: dict):
        batch = preds[PRED_CLS].shape[0]
        return (preds[PRED_CLS].reshape(batch, -1, self.num_classes),
                preds[PRED_BOXES].reshape(batch, -1, box_coder.CODE_SIZE),
                preds[PRED_DIR].reshape(batch, -1, self.num_dir_bins))

    def targets(self, preds: dict, gt_boxes_lidar: list, gt_labels: list) -> dict:
        """Stacked per-image targets (see monokd.models.bev.target_assigner) for ``preds``."""
        map_size = preds[PRED_CLS].shape[1:3]
        anchors, classes = self.anchors(map_size, preds[PRED_CLS].device)
        matched = [s["matched_threshold"] for s in self.specs]
        unmatched = [s["unmatched_threshold"] for s in self.specs]
        per_image = [assign_targets(anchors, classes, boxes.to(anchors).reshape(-1, 7), labels.reshape(-1),
                                    matched, unmatched, self.cfg["assign_iou"])
                      for boxes, labels in zip(gt_boxes_lidar, gt_labels)]
        out = {k: torch.stack([t[k] for t in per_image]) for k in per_image[0]}
        # the matched GT's heading (code + anchor; the anchor's own where not positive, unweighted)
        out["dir_targets"] = box_coder.direction_target(out["box_targets"][..., 6] + anchors[:, 6],
                                                        self.num_dir_bins, self.cfg["dir_offset"])
        return out

    def losses(self, preds: dict, gt_boxes_lidar: list, gt_labels: list) -> dict:
        """Weighted ``loss_cls``, ``loss_box``, ``loss_dir`` and their sum ``loss``.

        Args:
            preds: the output of :meth:`forward` (a detector's outputs holding those keys).
            gt_boxes_lidar: B tensors (M_b, 7) LiDAR boxes.  gt_labels: B tensors (M_b,) class indices.
        """
        cls_preds, box_preds, dir_preds = self._flat(preds)
        batch = cls_preds.shape[0]
        targets = self.targets(preds, gt_boxes_lidar, gt_labels)
        labels = targets["labels"]
        positive = (labels > 0).to(cls_preds.dtype)
        cared = (labels >= 0).to(cls_preds.dtype)
        normaliser = positive.sum(dim=1, keepdim=True).clamp(min=1.0)
        onehot = F.one_hot(labels.clamp(min=0), self.num_classes + 1)[..., 1:].to(cls_preds.dtype)
        cfg, weights = self.cfg, self.cfg["loss_weights"]
        focal = sigmoid_focal_loss(cls_preds, onehot, cfg["focal_alpha"], cfg["focal_gamma"])
        loss_cls = (focal * (cared / normaliser)[..., None]).sum() / batch
        box_weight = positive / normaliser
        pred, target = box_coder.sin_difference(box_preds, targets["box_targets"].to(box_preds))
        smooth = F.smooth_l1_loss(pred, target, reduction="none", beta=cfg["smooth_l1_beta"]) * self.code_weights
        loss_box = (smooth.sum(-1) * box_weight).sum() / batch
        ce = F.cross_entropy(dir_preds.reshape(-1, self.num_dir_bins), targets["dir_targets"].reshape(-1),
                             reduction="none").reshape(batch, -1)
        loss_dir = (ce * box_weight).sum() / batch
        terms = {"loss_cls": weights["cls"] * loss_cls, "loss_box": weights["box"] * loss_box,
                 "loss_dir": weights["dir"] * loss_dir}
        terms["loss"] = sum(terms.values())
        return terms

    @torch.no_grad()
    def decode_boxes(self, preds: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All anchors' boxes (B, N, 7), class probabilities (B, N, C), before any selection."""
        cls_preds, box_preds, dir_preds = self._flat(preds)
        anchors, _ = self.anchors(preds[PRED_CLS].shape[1:3], cls_preds.device)
        boxes = box_coder.decode(box_preds, anchors.to(box_preds)[None])
        heading = box_coder.apply_direction(boxes[..., 6], dir_preds.argmax(dim=-1), self.num_dir_bins,
                                            self.cfg["dir_offset"])
        return torch.cat([boxes[..., :6], heading[..., None]], dim=-1), cls_preds.sigmoid()

    @torch.no_grad()
    def decode(self, preds: dict) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image (boxes_lidar (K, 7), scores (K,), labels (K,) class indices), best first."""
        boxes, prob = self.decode_boxes(preds)
        scores, labels = prob.max(dim=-1)
        cfg, out = self.cfg, []
        for b in range(boxes.shape[0]):
            index = torch.nonzero(scores[b] >= cfg["score_threshold"]).flatten()
            keep = index[rotated_nms(boxes[b, index], scores[b, index], cfg["nms_threshold"],
                                     cfg["nms_pre_max"], cfg["nms_post_max"])]
            out.append((boxes[b, keep], scores[b, keep], labels[b, keep]))
        return out
