"""The BEV / voxel grid: one description of the space a bird's-eye-view detector sees.

Frame: the LiDAR frame as OpenPCDet writes it (x forward, y left, z up, metres).

    point_cloud_range = [x_min, y_min, z_min, x_max, y_max, z_max]
    voxel_size        = [dx, dy, dz]
    grid_size         = (NX, NY, NZ) = ((x_max - x_min) / dx, ...)     exact integers

Tensors on the grid (the contract every BEV module follows):

    voxels  (B, C, NZ, NY, NX)    last axis x (forward), then y (left), then z (up)
    BEV     (B, C, NY, NX)        at stride s: (B, C, NY / s, NX / s)

Cell coordinates are continuous: cell k along an axis spans [k, k + 1), its centre is at
k + 0.5, so ``floor`` of a cell coordinate is the cell's index. At stride s one cell covers
s x s grid cells. Coordinate pairs are always in (x, y) order: (i along x, j along y).

Validation: a range extent that is not a whole number of voxels, or a stride that does not
divide the grid, is a ConfigError naming both numbers (CaDDN #39 crashed on the second with
a ``torch.cat`` size mismatch deep in the BEV backbone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from monokd.errors import ConfigError, did_you_mean

_TOLERANCE = 1e-6  # relative: 44.8 / 0.16 = 280.00000000000006 must count as whole
_AXES = "xyz"


@dataclass(frozen=True)
class BEVGrid:
    """A voxel grid in the LiDAR frame.

    Args:
        point_cloud_range: [x_min, y_min, z_min, x_max, y_max, z_max] metres.
        voxel_size: [dx, dy, dz] metres.
        key: the config key the grid came from (named in errors).
    Raises:
        ConfigError if a size is not positive or an extent is not a multiple of the voxel size.
    """

    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]
    key: str = field(default="model.grid", compare=False)

    def __post_init__(self):
        pcr = tuple(float(v) for v in self.point_cloud_range)
        size = tuple(float(v) for v in self.voxel_size)
        if len(pcr) != 6 or len(size) != 3:
            raise ConfigError(f"{self.key}: point_cloud_range needs 6 numbers and voxel_size 3; "
                              f"got {list(pcr)} and {list(size)}")
        object.__setattr__(self, "point_cloud_range", pcr)
        object.__setattr__(self, "voxel_size", size)
        for axis in range(3):
            extent = pcr[axis + 3] - pcr[axis]
            name = _AXES[axis]
            if not (math.isfinite(extent) and math.isfinite(size[axis])) or size[axis] <= 0 or extent <= 0:
                raise ConfigError(f"{self.key}: {name} extent {extent:g} m and voxel size {size[axis]:g} m "
                                  "must be finite and positive")
            count = extent / size[axis]
            if abs(count - round(count)) > _TOLERANCE * max(1.0, count):
                raise ConfigError(f"{self.key}: the {name} extent {extent:g} m "
                                  f"({pcr[axis]:g} .. {pcr[axis + 3]:g}) is not a multiple of the "
                                  f"voxel size {size[axis]:g} m ({count:.4f} voxels)")

    @classmethod
    def from_config(cls, section: dict, key: str = "model.grid") -> BEVGrid:
        """``section`` = {"point_cloud_range": [...], "voxel_size": [...]} (OpenPCDet's names)."""
        if not isinstance(section, dict):
            raise ConfigError(f"{key}: expected a mapping with point_cloud_range and voxel_size")
        unknown = sorted(set(section) - {"point_cloud_range", "voxel_size"})
        if unknown:
            known = ("point_cloud_range", "voxel_size")
            raise ConfigError(f"{key}: unknown keys {unknown} ({did_you_mean(unknown[0], known)}"
                              f"known: {', '.join(known)})")
        for name in ("point_cloud_range", "voxel_size"):
            if name not in section:
                raise ConfigError(f"{key}.{name} is missing")
        return cls(tuple(section["point_cloud_range"]), tuple(section["voxel_size"]), key=key)

    # --- sizes ---------------------------------------------------------------------------

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """(NX, NY, NZ) voxels."""
        pcr, size = self.point_cloud_range, self.voxel_size
        return tuple(int(round((pcr[a + 3] - pcr[a]) / size[a])) for a in range(3))

    def bev_shape(self, stride: int = 1) -> tuple[int, int]:
        """(NY / stride, NX / stride) of a BEV map at ``stride`` (floor division)."""
        nx, ny, _ = self.grid_size
        return ny // stride, nx // stride

    def check_strides(self, strides, key: str) -> None:
        """Every stride (in grid cells, relative to the grid) divides NX and NY.

        Raises:
            ConfigError naming ``key``, the grid size and the first stride that does not divide it.
        """
        nx, ny, _ = self.grid_size
        for stride in strides:
            if stride != int(stride) or int(stride) < 1:
                raise ConfigError(f"{key}: stride {stride} is not a positive integer")
            for name, n in (("NX", nx), ("NY", ny)):
                if n % int(stride):
                    raise ConfigError(f"{key}: the BEV stride {int(stride)} does not divide the grid's "
                                      f"{name} = {n} cells (grid NX x NY = {nx} x {ny} from {self.key}); "
                                      "change the range, the voxel size or the strides")

    # --- coordinates ---------------------------------------------------------------------

    def _axis_centres(self, axis: int, count: int, step: float, device) -> torch.Tensor:
        index = torch.arange(count, dtype=torch.float64, device=device)
        return (self.point_cloud_range[axis] + (index + 0.5) * step).float()

    def voxel_centres(self, device=None) -> torch.Tensor:
        """(NZ, NY, NX, 3) LiDAR x, y, z of every voxel centre (metres)."""
        nx, ny, nz = self.grid_size
        dx, dy, dz = self.voxel_size
        z, y, x = torch.meshgrid(self._axis_centres(2, nz, dz, device), self._axis_centres(1, ny, dy, device),
                                 self._axis_centres(0, nx, dx, device), indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    def cell_centres(self, stride: int = 1, device=None) -> torch.Tensor:
        """(NY / s, NX / s, 2) LiDAR x, y of every BEV cell centre at ``stride`` (metres)."""
        ny, nx = self.bev_shape(stride)
        dx, dy, _ = self.voxel_size
        y, x = torch.meshgrid(self._axis_centres(1, ny, dy * stride, device),
                              self._axis_centres(0, nx, dx * stride, device), indexing="ij")
        return torch.stack([x, y], dim=-1)

    def metres_to_cell(self, xy, stride: int = 1):
        """(..., 2) LiDAR x, y (metres) -> (..., 2) continuous cell coordinates (i, j) at
        ``stride`` (numpy or torch; cell k spans [k, k + 1))."""
        x0, y0 = self.point_cloud_range[0], self.point_cloud_range[1]
        dx, dy = self.voxel_size[0] * stride, self.voxel_size[1] * stride
        return _pair(xy, (xy[..., 0] - x0) / dx, (xy[..., 1] - y0) / dy)

    def cell_to_metres(self, ij, stride: int = 1):
        """(..., 2) continuous cell coordinates (i along x, j along y) -> LiDAR x, y (metres);
        the inverse of :meth:`metres_to_cell` (the centre of cell k is k + 0.5)."""
        x0, y0 = self.point_cloud_range[0], self.point_cloud_range[1]
        dx, dy = self.voxel_size[0] * stride, self.voxel_size[1] * stride
        return _pair(ij, ij[..., 0] * dx + x0, ij[..., 1] * dy + y0)


def _pair(like, a, b):
    if isinstance(like, torch.Tensor):
        return torch.stack([a, b], dim=-1)
    return np.stack([a, b], axis=-1)
