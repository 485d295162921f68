"""F-PointNet's box coding, as PatchNet uses it (Qi et al. 2018, Sec. 4.3; Ma et al. 2020).

- Heading: 12 bins over [0, 2 pi); bin k is centred on k * 2 pi / 12; the residual is the
  angle minus that centre, in [-pi/12, pi/12), and is regressed divided by pi / 12.
- Size: 8 clusters, the mean (h, w, l) of KITTI's 8 object types; an object's cluster is its
  type's, the residual is dims - mean, regressed divided by the mean.
"""

from __future__ import annotations

import math

import torch

from monokd.errors import ConfigError

NUM_HEADING_BIN = 12
# KITTI's mean dimensions per type (h, w, l) in metres, as F-PointNet and PatchNet use them.
SIZE_CLUSTERS = {
    "Car": (1.52563191462, 1.62856739989, 3.88311640418),
    "Van": (2.20532825, 1.9007158, 5.06763659),
    "Truck": (3.2520595, 2.58549199, 10.13586957),
    "Pedestrian": (1.76255119, 0.66068622, 0.84422524),
    "Person_sitting": (1.27450867, 0.5983815, 0.80057803),
    "Cyclist": (1.73698127, 0.59706367, 1.76282397),
    "Tram": (3.53079012, 2.53246914, 16.17150617),
    "Misc": (1.92320313, 1.54298177, 3.64300781),
}


def mean_sizes() -> torch.Tensor:
    """(8, 3) h, w, l of each size cluster."""
    return torch.tensor(list(SIZE_CLUSTERS.values()), dtype=torch.float32)


def size_cluster_of(classes: list[str]) -> torch.Tensor:
    """(C,) long: the size cluster of each of ``data.classes``."""
    names = list(SIZE_CLUSTERS)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError(f"data.classes: {unknown} have no PatchNet size cluster (known: {names})")
    return torch.tensor([names.index(c) for c in classes], dtype=torch.long)


def angle_to_class(angle: torch.Tensor, num_bins: int = NUM_HEADING_BIN) -> tuple[torch.Tensor, torch.Tensor]:
    """angle (rad) -> (bin (long), residual (rad) in [-pi/num_bins, pi/num_bins))."""
    per_bin = 2 * math.pi / num_bins
    shifted = torch.remainder(angle + per_bin / 2, 2 * math.pi)
    cls = torch.div(shifted, per_bin, rounding_mode="floor").long().clamp(max=num_bins - 1)
    return cls, shifted - cls.to(shifted.dtype) * per_bin - per_bin / 2


def class_to_angle(cls: torch.Tensor, residual: torch.Tensor, num_bins: int = NUM_HEADING_BIN) -> torch.Tensor:
    """Inverse of :func:`angle_to_class`, wrapped to [-pi, pi)."""
    angle = cls.to(residual.dtype) * (2 * math.pi / num_bins) + residual
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def size_to_class(dims: torch.Tensor, cluster: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) h w l and (N,) cluster -> (cluster, residual (N, 3) = dims - cluster mean)."""
    return cluster, dims - mean_sizes().to(dims)[cluster]


def class_to_size(cluster: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`size_to_class`."""
    return mean_sizes().to(residual)[cluster] + residual
