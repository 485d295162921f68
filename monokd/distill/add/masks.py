"""ADD's foreground masks and the object-wise GT depth that feeds the 3D-aware PE.

- M^k (Eq. 2): 1 on the cells of level k covered by a GT 2-D box, 0 elsewhere.
- M_f (Eq. 5): 1 on the object queries the teacher's Hungarian matching assigns to a GT.
The cell rule (a box covers floor(x1/s) .. ceil(x2/s)) is monokd.geometry.depth's, so the
masks agree with MonoDETR's own object-wise depth target.
"""

from __future__ import annotations

import torch

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
