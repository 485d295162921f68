"""PatchNet's input: image patches of rectified-camera XYZ (Ma et al. 2020, Sec. 3.2).

    depth (B, 1, H, W) metres, P2 (B, 3, 4) at the input resolution
      -> back-projection: every pixel (u, v, d) -> X = unproject((u, v), d, P2)   (B, 3, H, W)
      -> crop each 2-D box, bilinear resize (align_corners) to S x S               (N, 3, S, S)
         (``crop``: ``continuous`` spans the box's own edges x1..x2; ``pixel_span`` the whole
         pixels int(x1)..int(x2) - 1, PatchNet's slice xyz[int(y1):int(y2), int(x1):int(x2)]
         resized by F.interpolate(bilinear, align_corners=True))
      -> rotation about y by the frustum angle theta = atan2(x, z) of the box centre's ray,
         so that the frustum looks along +z (F-PointNet's "rotate to centre")
      -> PatchNet's mask: valid pixels with Z < mean(Z) + 0.5 m (the object is in front of
         what the box also covers behind it), and the masked mean removed.

Pixel (u, v) is the centre of column u, row v (KITTI's convention). The back-projection is
monokd.geometry.calib.unproject, the exact inverse of the projection every other part of
monokd uses. Pixels without depth (0) are marked invalid and never enter the mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monokd.geometry.calib import unproject

FRUSTUM_DEPTH = 20.0  # m; any depth gives the ray of the box centre (P2's offsets are tiny)
CROPS = ("continuous", "pixel_span")


def backproject(depth: torch.Tensor, P2: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, 3, H, W) rectified-camera X, Y, Z of every pixel."""
    batch, _, height, width = depth.shape
    v, u = torch.meshgrid(torch.arange(height, device=depth.device, dtype=depth.dtype),
                          torch.arange(width, device=depth.device, dtype=depth.dtype), indexing="ij")
    uv = torch.stack([u, v], -1).reshape(1, -1, 2).expand(batch, -1, -1)
    xyz = unproject(uv, depth.reshape(batch, -1), P2.to(depth.dtype))  # (B, H*W, 3)
    return xyz.transpose(1, 2).reshape(batch, 3, height, width)


def box_sampling_grid(boxes: torch.Tensor, size: int, image_size: tuple[int, int]) -> torch.Tensor:
    """grid_sample coordinates (N, S, S, 2) of an S x S lattice spanning each box
    [x1, x2] x [y1, y2] corner to corner (align_corners=True)."""
    height, width = image_size
    t = torch.linspace(0, 1, size, device=boxes.device, dtype=boxes.dtype)
    u = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t  # (N, S)
    v = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t
    gx = 2 * u / max(width - 1, 1) - 1
    gy = 2 * v / max(height - 1, 1) - 1
    return torch.stack([gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)], -1)


def pixel_span(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x1 y1 x2 y2 (non-negative) -> the centres of the first and last whole pixel that
    PatchNet's slice [int(y1):int(y2), int(x1):int(x2)] keeps: int(x1), int(y1), int(x2) - 1,
    int(y2) - 1 (never before the first: a box under one pixel keeps one)."""
    first = boxes[:, :2].floor()
    last = torch.maximum(boxes[:, 2:].floor() - 1, first)
    return torch.cat([first, last], 1)


def crop_patches(maps: torch.Tensor, boxes: list[torch.Tensor], size: int, crop: str = "continuous") -> torch.Tensor:
    """Per box an S x S bilinear resample of ``maps`` (B, C, H, W) -> (N, C, S, S), boxes of
    image 0 first. ``boxes``: B tensors (N_b, 4) x1 y1 x2 y2 in input pixels; ``crop``: one of
    :data:`CROPS` (see the module docstring)."""
    if crop not in CROPS:
        raise ValueError(f"crop: {crop!r} is not one of {CROPS}")
    out = []
    for b, image_boxes in enumerate(boxes):
        if len(image_boxes):
            image_boxes = pixel_span(image_boxes) if crop == "pixel_span" else image_boxes
            grid = box_sampling_grid(image_boxes.to(maps), size, tuple(maps.shape[-2:]))
            sampled = F.grid_sample(maps[b:b + 1], grid.reshape(1, -1, size, 2), mode="bilinear",
                                    padding_mode="border", align_corners=True)  # (1, C, N_b*S, S)
            out.append(sampled.reshape(maps.shape[1], len(image_boxes), size, size).transpose(0, 1))
    return torch.cat(out) if out else maps.new_zeros(0, maps.shape[1], size, size)


def frustum_angle(boxes: torch.Tensor, P2: torch.Tensor) -> torch.Tensor:
    """(N,) theta = atan2(x, z) of the ray through each box centre; boxes (N, 4), P2 (N, 3, 4)."""
    centre = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    point = unproject(centre[:, None], torch.full_like(centre[:, :1], FRUSTUM_DEPTH), P2.to(boxes))[:, 0]
    return torch.atan2(point[:, 0], point[:, 2])


def rotate_about_y(xyz: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """x' = cos(a) x - sin(a) z, z' = sin(a) x + cos(a) z on dim 1 of (N, 3, ...), a (N,).

    With a = the frustum angle the centre ray maps onto +z, and a KITTI heading r becomes
    r - a; ``rotate_about_y(., -a)`` is the inverse."""
    shape = (-1,) + (1,) * (xyz.dim() - 2)
    c, s = torch.cos(angle).reshape(shape), torch.sin(angle).reshape(shape)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    return torch.stack([c * x - s * z, y, s * x + c * z], 1)


def object_mask(patches: torch.Tensor, valid: torch.Tensor, offset: float = 0.5) -> torch.Tensor:
    """PatchNet's mask (N, S, S) bool: valid pixels with Z < mean(Z over valid pixels) + offset."""
    z = patches[:, 2]
    count = valid.sum((1, 2)).clamp(min=1)
    mean = (z * valid).sum((1, 2)) / count
    return valid & (z < (mean + offset)[:, None, None])


def masked_mean(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, 3) mean X, Y, Z over the masked pixels (0 for an empty mask)."""
    weight = mask[:, None].to(patches.dtype)
    return (patches * weight).sum((2, 3)) / weight.sum((2, 3)).clamp(min=1)


def depth_shift(centre_distance: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """PatchNet's random shift along the frustum's z (training): N(0, (ratio x d)^2) clipped to
    +-ratio x d, d = the GT centre's distance sqrt(x^2 + z^2) (N,) m. The patch's Z and the
    centre's z target move together; the masked mean moves with them, so the mean-removed
    patch is unchanged and only the stage-1 centre's z, hence the distance head, changes."""
    limit = ratio * centre_distance
    noise = torch.randn(centre_distance.shape, generator=generator, dtype=centre_distance.dtype)
    return torch.minimum(torch.maximum(noise.to(centre_distance.device) * limit, -limit), limit)


def patch_valid(depth_patches: torch.Tensor) -> torch.Tensor:
    """(N, S, S) bool: pixels whose resampled depth came from valid (> 0) depths only.

    ``depth_patches`` (N, 2, S, S) holds the resampled depth and the resampled 0/1 validity;
    a pixel blending a hole with a valid neighbour has validity < 1."""
    return (depth_patches[:, 1] > 0.999) & (depth_patches[:, 0] > 0)
