"""PatchNet's loss (F-PointNet's, as in PatchNet's code), per patch made from a GT object:

    L = w_c |c - c*|_1 + w_c1 |c1 - c1*|_1 + CE(heading bin) + CE(size cluster)
        + 20 |r_h - r_h*|_1 + 20 |r_s - r_s*|_1 + 10 L_corner

c: the final centre, c1: the centre regressor's (stage 1), both in the frustum-rotated frame;
r_h: the heading residual of the GT bin / (pi / 12); r_s: the size residual of the GT
cluster / that cluster's mean size. L1 terms are means over patches and coordinates.

L_corner: the mean L1 distance between the 8 corners of the predicted box (predicted centre,
the GT bin's centre + predicted residual, the GT cluster's mean + predicted residual) and of
the GT box, the minimum of it and of the distance to the GT box turned by pi: a box and its
flipped twin have the same corners, so the loss does not punish a heading off by pi (the
heading classifier settles that). Corners: monokd.geometry.boxes.corners_3d. Two switches:

- ``flip_min``: ``per_box`` (monokd's: the minimum per patch, then the mean) or
  ``batch_mean`` (PatchNet's: min(mean over the batch of the distances to the GT, the same
  to the flipped GT));
- ``size_order``: ``hwl`` (the box's true extents) or ``official_bug`` (PatchNet's code hands
  sizes (l, w, h) to a corner function that reads (h, w, l): the box it builds is h long
  along the heading, l tall and w wide, standing on the given centre, so a heading error costs
  about half as much). A bug kept only to reproduce the official loss; off by default.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from monokd.errors import ConfigError, did_you_mean
from monokd.geometry.boxes import box_center, corners_3d
from monokd.models.patchnet.coding import (NUM_HEADING_BIN, angle_to_class, class_to_angle, class_to_size,
                                           mean_sizes, size_to_class)
from monokd.models.patchnet.patches import rotate_about_y

SIZE_ORDERS = ("hwl", "official_bug")
FLIP_MINS = ("per_box", "batch_mean")
DEFAULT_WEIGHTS = {"center": 1.0, "stage1_center": 1.0, "heading_class": 1.0, "size_class": 1.0,
                   "heading_residual": 20.0, "size_residual": 20.0, "corner": 10.0}


def box_corners(centre: torch.Tensor, dims: torch.Tensor, heading: torch.Tensor,
                size_order: str = "hwl") -> torch.Tensor:
    """(N, 8, 3) corners of boxes given by their geometric centre (N, 3), h w l (N, 3), heading (N,);
    ``size_order`` official_bug: the box PatchNet's corner loss builds (module docstring)."""
    if size_order == "official_bug":
        return corners_3d(dims.flip(-1), centre, heading)
    bottom = centre + torch.stack([torch.zeros_like(dims[:, 0]), dims[:, 0] / 2, torch.zeros_like(dims[:, 0])], -1)
    return corners_3d(dims, bottom, heading)


def corner_loss(centre, dims, heading, gt_centre, gt_dims, gt_heading, size_order: str = "hwl",
                flip_min: str = "per_box") -> torch.Tensor:
    """min(L1 to the GT corners, L1 to the corners of the GT turned by pi), per box then
    averaged (``per_box``) or of the two batch means (``batch_mean``)."""
    pred = box_corners(centre, dims, heading, size_order)
    gt = box_corners(gt_centre, gt_dims, gt_heading, size_order)
    flipped = box_corners(gt_centre, gt_dims, gt_heading + math.pi, size_order)
    if flip_min == "batch_mean":
        return torch.minimum((pred - gt).abs().mean(), (pred - flipped).abs().mean())
    distance = torch.minimum((pred - gt).abs().mean((1, 2)), (pred - flipped).abs().mean((1, 2)))
    return distance.mean()


def patch_targets(batch: dict, frustum_angle: torch.Tensor, size_cluster: torch.Tensor) -> dict:
    """GT of every patch made from a target, in the frustum-rotated frame.

    Returns ``keep`` (N,) bool (patches with a target), and for those: ``centre`` (M, 3),
    ``dims`` (M, 3), ``heading`` (M,), ``heading_class``, ``heading_residual``,
    ``size_class``, ``size_residual`` (M, 3)."""
    rows = {k: [] for k in ("location", "dims", "rotation_y", "labels")}
    keep = []
    for proposals, targets in zip(batch["proposals"], batch["targets"]):
        index = proposals["target_index"]
        keep.append(index >= 0)
        for key in rows:
            rows[key].append(targets[key][index[index >= 0]])
    keep = torch.cat(keep).to(frustum_angle.device)
    device, dtype = frustum_angle.device, frustum_angle.dtype
    location, dims, rotation_y, labels = (torch.cat(rows[k]).to(device) for k in ("location", "dims", "rotation_y", "labels"))
    location, dims, rotation_y = location.to(dtype), dims.to(dtype), rotation_y.to(dtype)
    angle = frustum_angle[keep]
    centre = rotate_about_y(box_center(dims, location), angle)
    heading = rotation_y - angle
    heading_class, heading_residual = angle_to_class(heading)
    size_class, size_residual = size_to_class(dims, size_cluster.to(device)[labels])
    return {"keep": keep, "centre": centre, "dims": dims, "heading": heading, "heading_class": heading_class,
            "heading_residual": heading_residual, "size_class": size_class, "size_residual": size_residual}


class PatchNetLoss:
    """``__call__(outputs, batch) -> {term: weighted value, "loss": sum}`` (see the module doc)."""

    def __init__(self, weights: dict | None, size_cluster: torch.Tensor, size_order: str = "hwl",
                 flip_min: str = "per_box"):
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigError(f"loss: unknown PatchNet term(s) {sorted(unknown)}; "
                              f"{did_you_mean(sorted(unknown)[0], DEFAULT_WEIGHTS)}known: {sorted(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.size_cluster = size_cluster
        self.corner_options = {"size_order": size_order, "flip_min": flip_min}

    def __call__(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        anchor = outputs["center"]
        if anchor.shape[0] == 0 or not any(bool((p["target_index"] >= 0).any()) for p in batch["proposals"]):
            zero = anchor.sum() * 0.0 + sum(v.sum() * 0.0 for v in outputs["box_features"])
            return {**{k: zero for k in self.weights}, "loss": zero}
        t = patch_targets(batch, outputs["frustum_angle"], self.size_cluster)
        keep = t["keep"]
        if "depth_shift" in outputs:  # PatchNet's z shift moved the patch; the target moves with it
            t["centre"] = t["centre"] + F.pad(outputs["depth_shift"][keep][:, None], (2, 0))
        o = {k: outputs[k][keep] for k in ("center", "stage1_center", "heading_scores", "heading_residuals_normalized",
                                            "size_scores", "size_residuals_normalized")}
        rows = torch.arange(int(keep.sum()), device=anchor.device)
        per_bin = math.pi / NUM_HEADING_BIN
        heading_res = o["heading_residuals_normalized"][rows, t["heading_class"]]
        size_res = o["size_residuals_normalized"][rows, t["size_class"]]  # (M, 3)
        mean = mean_sizes().to(anchor)[t["size_class"]]
        terms = {
            "center": F.l1_loss(o["center"], t["centre"]),
            "stage1_center": F.l1_loss(o["stage1_center"], t["centre"]),
            "heading_class": F.cross_entropy(o["heading_scores"], t["heading_class"]),
            "size_class": F.cross_entropy(o["size_scores"], t["size_class"]),
            "heading_residual": F.l1_loss(heading_res, t["heading_residual"] / per_bin),
            "size_residual": F.l1_loss(size_res, t["size_residual"] / mean),
            "corner": corner_loss(o["center"], class_to_size(t["size_class"], size_res * mean),
                                  class_to_angle(t["heading_class"], heading_res * per_bin),
                                  t["centre"], t["dims"], t["heading"], **self.corner_options),
        }
        terms = {k: self.weights[k] * v for k, v in terms.items()}
        terms["loss"] = sum(terms.values())
        return terms
