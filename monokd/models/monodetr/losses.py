"""MonoDETR's training losses (the set criterion).

Per decoder layer, queries are matched one-to-one to the objects (Hungarian); matched queries
are supervised on class, 2-D box, projected 3-D centre, dimensions, heading and depth, the
others only on class ("no object"). The depth map is supervised per pixel with the object-wise
depth target. Every per-query term is a sum over matched pairs divided by the number of
objects in the batch (over all processes, as in DETR).

| key              | term                                                       | weight |
|------------------|------------------------------------------------------------|--------|
| loss_class       | sigmoid focal loss (alpha 0.25, gamma 2), all queries      | 2      |
| loss_bbox        | L1 on l, r, t, b (normalised)                              | 5      |
| loss_giou        | 1 - GIoU of the 2-D boxes                                  | 2      |
| loss_center      | L1 on the projected 3-D centre (normalised)                | 10     |
| loss_dim         | dimension-aware L1 |d - d*| / d*, rescaled to the L1 mean  | 1      |
| loss_angle       | CE over 12 heading bins + L1 on the GT bin's residual      | 1      |
| loss_depth       | Laplacian: sqrt(2) exp(-logvar) |z - z*| + logvar          | 1      |
| loss_depth_map   | per-pixel softmax focal over K+1 LID bins, fg 13 / bg 1    | 1      |

Auxiliary decoder layers get every term but the depth map, keyed ``<term>_aux<i>``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from monokd.errors import ConfigError, did_you_mean
from monokd.geometry.depth import depth_to_lid_bin, foreground_mask, object_depth_map
from monokd.models.monodetr.box_coding import (NUM_HEADING_BINS, angle_to_bin, cxcylrtb_to_xyxy,
                                              encode_boxes, generalized_box_iou)
from monokd.models.monodetr.matcher import HungarianMatcher

DEFAULT_WEIGHTS = {"class": 2.0, "bbox": 5.0, "giou": 2.0, "center": 10.0,
                   "dim": 1.0, "angle": 1.0, "depth": 1.0, "depth_map": 1.0}
DEFAULT_DEPTH_BINS = {"num_bins": 80, "min": 1e-3, "max": 60.0}
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
DEPTH_MAP_FG_WEIGHT = 13.0
DEPTH_MAP_BG_WEIGHT = 1.0


# --------------------------------------------------------------------------------------------
# Elementwise loss functions


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA,
                       gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Binary focal loss per element: -a_t (1 - p_t)^gamma log p_t. Same shape as ``logits``."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


def softmax_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = FOCAL_ALPHA,
                       gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Multi-class focal loss (CaDDN / MonoDETR depth bins): -alpha (1 - p_t)^gamma log p_t.

    Args:
        logits: (B, K, ...) class logits on axis 1.  target: (B, ...) long in [0, K).
    Returns:
        (B, ...) per-element loss.
    """
    log_p_t = logits.log_softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    return -alpha * (1 - log_p_t.exp()) ** gamma * log_p_t


def laplacian_depth_loss(depth: torch.Tensor, log_variance: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Laplacian aleatoric-uncertainty loss per object: sqrt(2) exp(-logvar) |z - z*| + logvar."""
    return math.sqrt(2) * torch.exp(-log_variance) * (depth - target).abs() + log_variance


def dim_aware_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 3) relative errors |d - d*| / d*, rescaled (without gradient) so that their mean is
    the plain L1 mean: relative weighting across objects at the L1 loss's overall scale."""
    l1 = (pred - target).abs()
    relative = l1 / target.detach().clamp(min=1e-3)
    with torch.no_grad():
        mean = relative.mean() if relative.numel() else relative.new_zeros(())
        scale = torch.where(mean > 0, l1.mean() / mean.clamp(min=1e-12), torch.ones_like(mean))
    return relative * scale


def heading_loss(pred_angle: torch.Tensor, heading_bin: torch.Tensor, heading_res: torch.Tensor) -> torch.Tensor:
    """(N, 24) bin logits + residuals vs GT bin (N,) and residual (N,) -> (N,) CE + L1."""
    cls = F.cross_entropy(pred_angle[:, :NUM_HEADING_BINS], heading_bin, reduction="none")
    residual = pred_angle[:, NUM_HEADING_BINS:].gather(1, heading_bin[:, None])[:, 0]
    return cls + (residual - heading_res).abs()


# --------------------------------------------------------------------------------------------
# Targets


def encode_targets(targets: list[dict], input_size: tuple[float, float], device=None) -> list[dict]:
    """The regression targets of each image in the outputs' parametrisation.

    Returns B dicts: ``labels`` (N,), ``boxes`` (N, 6) normalised cx cy l r t b, ``depth`` (N,),
    ``dims`` (N, 3), ``heading_bin`` (N,) long, ``heading_res`` (N,).
    """
    encoded = []
    for t in targets:
        boxes_2d = t["boxes_2d"].float()
        heading_bin, heading_res = angle_to_bin(t["alpha"].float())
        fields = {"labels": t["labels"].long(),
                  "boxes": encode_boxes(boxes_2d, t["centers_3d_proj"].float(), input_size),
                  "boxes_2d": boxes_2d,
                  "depth": t["depth"].float(), "dims": t["dims"].float(),
                  "heading_bin": heading_bin, "heading_res": heading_res}
        encoded.append({k: v.to(device) for k, v in fields.items()})
    return encoded


def depth_map_targets(targets: list[dict], map_size: tuple[int, int], stride: float,
                      depth_bins: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Object-wise depth-bin target and foreground mask at the depth logits' resolution.

    Args:
        targets: B dicts with ``boxes_2d`` (N, 4) input pixels and ``depth`` (N,).
        map_size: (H_map, W_map).  stride: input pixels per map cell.
        depth_bins: num_bins, min, max of the LID discretisation.
    Returns:
        bins (B, H_map, W_map) long in [0, num_bins] (num_bins = background) and
        foreground (B, H_map, W_map) bool (cells inside any GT box, even beyond max depth).
    """
    num_bins, dmin, dmax = depth_bins["num_bins"], depth_bins["min"], depth_bins["max"]
    bins, foreground = [], []
    for t in targets:
        boxes, depth = t["boxes_2d"].float(), t["depth"].float()
        depth_map = object_depth_map(boxes, depth, map_size, stride, background=0.0)
        bins.append(depth_to_lid_bin(depth_map, num_bins, dmin, dmax))
        foreground.append(foreground_mask(boxes, map_size, stride))
    return torch.stack(bins), torch.stack(foreground)


# --------------------------------------------------------------------------------------------
# The criterion


class SetCriterion(nn.Module):
    """``criterion(outputs, batch) -> dict`` of weighted terms plus ``"loss"``, their sum."""

    def __init__(self, weights: dict | None = None, num_classes: int = 1, matcher: HungarianMatcher | None = None,
                 depth_bins: dict | None = None, aux: bool = True):
        super().__init__()
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigError(f"loss.weights: unknown term(s) {sorted(unknown)}; "
                              f"{did_you_mean(sorted(unknown)[0], DEFAULT_WEIGHTS)}known: {sorted(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in (weights or {}).items()}}
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.depth_bins = {**DEFAULT_DEPTH_BINS, **(depth_bins or {})}
        self.aux = aux

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        device = outputs["pred_logits"].device
        height, width = batch["images"].shape[-2:]
        input_size = (float(width), float(height))
        targets = encode_targets(batch["targets"], input_size, device)
        num_boxes = _num_boxes(targets, device)

        layers = [("", outputs)]
        if self.aux:
            layers += [(f"_aux{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        terms = {}
        for suffix, layer in layers:
            indices = self.matcher(layer, batch["targets"], input_size)
            for name, value in self.query_terms(layer, targets, indices, num_boxes).items():
                terms[f"loss_{name}{suffix}"] = self.weights[name] * value
        if "pred_depth_map_logits" in outputs:
            terms["loss_depth_map"] = self.weights["depth_map"] * self.depth_map_term(
                outputs["pred_depth_map_logits"], batch["targets"], (width, height))
        terms["loss"] = sum(terms.values())
        return terms

    def query_terms(self, outputs: dict, targets: list[dict], indices, num_boxes: float) -> dict[str, torch.Tensor]:
        """Unweighted per-query terms of one decoder layer (each normalised by ``num_boxes``)."""
        logits = outputs["pred_logits"]
        src = _source_index(indices, logits.device)
        tgt = {k: torch.cat([t[k][j.to(logits.device)] for t, (_, j) in zip(targets, indices)])
               for k in targets[0]}

        onehot = torch.zeros_like(logits)
        onehot[src + (tgt["labels"],)] = 1.0
        terms = {"class": sigmoid_focal_loss(logits, onehot).sum()}

        boxes = outputs["pred_boxes"][src]
        terms["center"] = (boxes[:, :2] - tgt["boxes"][:, :2]).abs().sum()
        terms["bbox"] = (boxes[:, 2:] - tgt["boxes"][:, 2:]).abs().sum()
        giou = generalized_box_iou(cxcylrtb_to_xyxy(boxes), cxcylrtb_to_xyxy(tgt["boxes"]))
        terms["giou"] = (1 - giou).sum()
        terms["dim"] = dim_aware_l1_loss(outputs["pred_dims"][src], tgt["dims"]).sum()
        terms["angle"] = heading_loss(outputs["pred_angle"][src], tgt["heading_bin"], tgt["heading_res"]).sum()
        depth = outputs["pred_depth"][src]
        terms["depth"] = laplacian_depth_loss(depth[:, 0], depth[:, 1], tgt["depth"]).sum()
        return {k: v / num_boxes for k, v in terms.items()}

    def depth_map_term(self, logits: torch.Tensor, targets: list[dict], input_size: tuple[int, int]) -> torch.Tensor:
        """Balanced focal loss of (B, K+1, h, w) depth logits, divided by the pixel count."""
        map_h, map_w = logits.shape[-2:]
        stride = input_size[0] / map_w
        bins, foreground = depth_map_targets(targets, (map_h, map_w), stride, self.depth_bins)
        bins, foreground = bins.to(logits.device), foreground.to(logits.device)
        loss = softmax_focal_loss(logits, bins)
        weight = torch.where(foreground, DEPTH_MAP_FG_WEIGHT, DEPTH_MAP_BG_WEIGHT).to(loss.dtype)
        return (loss * weight).sum() / loss.numel()


def _source_index(indices, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(image index, query index) of every matched query, for advanced indexing."""
    batch_idx = torch.cat([torch.full_like(i, b) for b, (i, _) in enumerate(indices)])
    query_idx = torch.cat([i for i, _ in indices])
    return batch_idx.to(device), query_idx.to(device)


def _num_boxes(targets: list[dict], device) -> float:
    """Objects per process, averaged over processes when distributed, at least 1."""
    count = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        count = count / torch.distributed.get_world_size()
    return max(count.item(), 1.0)


def build_criterion(loss_cfg: dict | None, num_classes: int, depth_bins: dict | None = None) -> SetCriterion:
    """The criterion from ``cfg["loss"]``: optional ``weights`` (term -> weight, see
    DEFAULT_WEIGHTS), ``matcher`` (HungarianMatcher kwargs: cost_class, cost_center, cost_box,
    cost_giou) and ``aux`` (bool); ``depth_bins`` (num_bins, min, max) as the model uses."""
    loss_cfg = dict(loss_cfg or {})
    unknown = set(loss_cfg) - {"weights", "matcher", "aux", "depth_bins"}
    if unknown:
        known = ("aux", "depth_bins", "matcher", "weights")
        raise ConfigError(f"loss: unknown key(s) {sorted(unknown)}; {did_you_mean(sorted(unknown)[0], known)}"
                          f"known: {', '.join(known)}")
    try:
        matcher = HungarianMatcher(**(loss_cfg.get("matcher") or {}))
    except TypeError as err:
        raise ConfigError(f"loss.matcher: {err}") from None
    return SetCriterion(loss_cfg.get("weights"), num_classes, matcher,
                        depth_bins or loss_cfg.get("depth_bins"), loss_cfg.get("aux", True))
