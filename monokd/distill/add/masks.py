"""ADD's foreground masks and the object-wise GT depth that feeds the 3D-aware PE.

- M^k (Eq. 2): 1 on the cells of level k covered by a GT 2-D box, 0 elsewhere.
- M_f (Eq. 5): 1 on the object queries the teacher's Hungarian matching assigns to a GT.
The cell rule (a box covers floor(x1/s) .. ceil(x2/s)) is monokd.geometry.depth's, so the
masks agree with MonoDETR's own object-wise depth target.
"""

from __future__ import annotations

import math

import torch

from monokd.geometry.boxes import rect_to_lidar_boxes
from monokd.geometry.depth import foreground_mask, object_depth_map


def feature_masks(targets: list[dict], map_size: tuple[int, int], stride: int,
                  device: torch.device | None = None) -> torch.Tensor:
    """M^k of Eq. 2.

    Args:
        targets: B target dicts with ``boxes_2d`` (N, 4) x1 y1 x2 y2 in input pixels.
        map_size: (H_k, W_k) of the level.  stride: input pixels per cell of the level.
    Returns:
        (B, H_k, W_k) bool.
    """
    masks = [foreground_mask(t["boxes_2d"], map_size, stride) for t in targets]
    return torch.stack(masks).to(device) if masks else torch.zeros(0, *map_size, dtype=torch.bool, device=device)


def gt_depth_maps(targets: list[dict], map_size: tuple[int, int], stride: int,
                  device: torch.device | None = None) -> torch.Tensor:
    """Object-wise GT depth D at the level's resolution (0 where no object).

    Returns:
        (B, 1, H_k, W_k) float32 metres; where boxes overlap the nearer object wins.
    """
    maps = [object_depth_map(t["boxes_2d"], t["depth"], map_size, stride) for t in targets]
    return torch.stack(maps).unsqueeze(1).to(device)


def query_mask(matches: list[tuple[torch.Tensor, torch.Tensor]], num_queries: int,
               device: torch.device | None = None) -> torch.Tensor:
    """M_f of Eq. 5 from per-image ``(query_idx, target_idx)`` matches.

    Returns:
        (B, Q) bool, True on the matched (foreground) queries.
    """
    mask = torch.zeros(len(matches), num_queries, dtype=torch.bool, device=device)
    for b, (query_idx, _) in enumerate(matches):
        query_idx = torch.as_tensor(query_idx, dtype=torch.long, device=device)
        if query_idx.numel() and int(query_idx.max()) >= num_queries:
            raise ValueError(f"match_foreground: query index {int(query_idx.max())} >= {num_queries} queries")
        mask[b, query_idx] = True
    return mask


# --- levels in bird's-eye view -------------------------------------------------------------
# M^k of a BEV level = the GT boxes' footprints: the cells whose centre lies inside a box's
# rotated l x w rectangle, plus the cell holding the box centre (so a box smaller than a cell
# of a coarse level still marks one cell). The PE depth of a BEV level is the BEV analogue of
# the image levels' object-wise depth: each footprint filled with its object's depth (z of the
# 3-D centre in the rectified camera frame, the same number the image levels use), nearer
# objects over farther ones, 0 (background) elsewhere.


def boxes_bev_lidar(target: dict, lidar_to_rect: torch.Tensor) -> torch.Tensor:
    """(N, 5) LiDAR-frame footprints ``x, y, l, w, heading`` of one frame's GT boxes.

    Args:
        target: ``location`` (N, 3) rect bottom centre, ``dims`` (N, 3) h w l, ``rotation_y`` (N,).
        lidar_to_rect: (4, 4) LiDAR -> rectified camera of the (augmented) frame.
    """
    location = target["location"].float()
    if location.numel() == 0:
        return location.new_zeros(0, 5)
    boxes = rect_to_lidar_boxes(target["dims"].float(), location, target["rotation_y"].float(), lidar_to_rect)
    return boxes[:, [0, 1, 3, 4, 6]]


def bev_object_depth_map(target: dict, lidar_to_rect: torch.Tensor, grid, stride: int,
                         map_size: tuple[int, int]) -> torch.Tensor:
    """(NY/s, NX/s) object-wise depth in BEV: footprints filled with the object's depth, 0 elsewhere.

    Args:
        target: one frame's target dict (``location``, ``dims``, ``rotation_y``, ``depth``).
        lidar_to_rect: (4, 4).  grid: a BEVGrid.  stride: grid cells per map cell.
        map_size: (H_k, W_k) of the level, which must equal ``grid.bev_shape(stride)``.
    """
    if tuple(map_size) != tuple(grid.bev_shape(stride)):
        raise ValueError(f"BEV level of size {tuple(map_size)} is not the grid's {tuple(grid.bev_shape(stride))} "
                         f"at stride {stride}")
    device = target["location"].device
    out = torch.zeros(map_size, dtype=torch.float32, device=device)
    boxes = boxes_bev_lidar(target, lidar_to_rect)
    if boxes.shape[0] == 0:
        return out
    cells = grid.cell_centres(stride, device=device).float()  # (H, W, 2) LiDAR x, y
    half = [float(v) * stride / 2 for v in grid.voxel_size[:2]]  # half a cell: the one holding the centre
    depth = target["depth"].float()
    for k in torch.argsort(depth, descending=True).tolist():  # far first, so near overwrites
        x, y, length, width, heading = boxes[k].tolist()
        dx, dy = cells[..., 0] - x, cells[..., 1] - y
        c, s = math.cos(heading), math.sin(heading)
        inside = ((dx * c + dy * s).abs() <= length / 2) & ((-dx * s + dy * c).abs() <= width / 2)
        inside |= (dx.abs() <= half[0]) & (dy.abs() <= half[1])
        out[inside] = depth[k]
    return out


def bev_feature_masks(targets: list[dict], lidar_to_rect: torch.Tensor, grid, stride: int,
                      map_size: tuple[int, int], device=None) -> torch.Tensor:
    """M^k of a BEV level: (B, H_k, W_k) bool, the GT boxes' footprints."""
    return bev_gt_depth_maps(targets, lidar_to_rect, grid, stride, map_size, device)[:, 0] > 0


def bev_gt_depth_maps(targets: list[dict], lidar_to_rect: torch.Tensor, grid, stride: int,
                      map_size: tuple[int, int], device=None) -> torch.Tensor:
    """(B, 1, H_k, W_k) object-wise GT depth of a BEV level (see the section comment)."""
    maps = [bev_object_depth_map(t, lidar_to_rect[b], grid, stride, map_size) for b, t in enumerate(targets)]
    return torch.stack(maps).unsqueeze(1).to(device)


def level_mask_and_depth(spec, k: int, batch: dict, signals, map_size: tuple[int, int],
                         device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """M^k (B, H_k, W_k) bool and the object-wise GT depth (B, 1, H_k, W_k) of level k, built
    from the level's space in ``spec`` (a DistillSpec): image boxes, BEV footprints, or given
    by the detector in ``signals`` (its DistillSignals' ``masks[k]`` and ``pe_depth[k]``)."""
    space, stride = spec.spaces[k], spec.feature_strides[k]
    if space == "image":
        return (feature_masks(batch["targets"], map_size, stride, device),
                gt_depth_maps(batch["targets"], map_size, stride, device))
    if space == "bev":
        if "lidar_to_rect" not in batch:
            raise ValueError(f"distill: level {k} lives in BEV but the batch has no lidar_to_rect")
        maps = bev_gt_depth_maps(batch["targets"], batch["lidar_to_rect"], spec.bev_grid, stride, map_size, device)
        return maps[:, 0] > 0, maps
    try:
        mask, depth = signals.masks[k], signals.pe_depth[k]
    except (AttributeError, IndexError, TypeError):
        mask = depth = None
    if mask is None or depth is None:
        raise ValueError(f"distill: level {k} is 'given' but the detector's masks[{k}] or pe_depth[{k}] "
                         "signal is missing")
    if tuple(mask.shape[-2:]) != tuple(map_size) or tuple(depth.shape[-2:]) != tuple(map_size) or depth.dim() != 4:
        raise ValueError(f"distill: level {k}: given mask {tuple(mask.shape)} / pe_depth {tuple(depth.shape)} "
                         f"do not match the feature's (B, [1,] {map_size[0]}, {map_size[1]})")
    return mask.bool().to(device), depth.detach().float().to(device)
