"""BEV feature maps as pictures, as in MonoTAKD's Figures 1 and 4 (the BEV features of the
LiDAR teacher, the TA, their residual and the student side by side).

    feature (C, NY, NX) -> energy (NY, NX) = mean over channels of |F|   (non-finite cells 0)
      -> normalised to [0, 1] per map -> colormap (inferno, as the paper's figures)
      -> picture (NX * s, NY * s, 3) uint8, seen from above: x (forward) up, y (left) to the left

The BEV tensors follow monokd.geometry.grid: the last axis indexes x (forward), the one
before y (left), so the picture is the energy transposed and reversed along both axes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from monokd.viz.report import _save


def feature_energy(feature) -> np.ndarray:
    """(C, NY, NX) tensor or array -> (NY, NX) float mean |F| over channels (NaN/inf count as 0)."""
    array = feature.detach().float().cpu().numpy() if hasattr(feature, "detach") else np.asarray(feature, float)
    if array.ndim != 3:
        raise ValueError(f"feature_energy: expected (C, NY, NX), got shape {array.shape}")
    return np.nan_to_num(np.abs(array), nan=0.0, posinf=0.0, neginf=0.0).mean(axis=0)


def feature_picture(feature, scale: int = 3, colormap: str = "inferno") -> np.ndarray:
    """(NX * scale, NY * scale, 3) uint8 RGB picture of a (C, NY, NX) BEV feature."""
    from matplotlib import colormaps

    energy = feature_energy(feature)
    low, high = float(energy.min()), float(energy.max())
    normalised = (energy - low) / (high - low) if high > low else np.zeros_like(energy)
    seen_from_above = normalised.T[::-1, ::-1]  # rows: x far -> near; columns: y left -> right
    rgb = (colormaps[colormap](seen_from_above)[..., :3] * 255).round().astype(np.uint8)
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def feature_panel(maps: Mapping[str, object], path: str | Path, title: str = "", scale: int = 3) -> Path:
    """One picture per named (C, NY, NX) map, side by side with their names; writes ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = {name: feature_picture(feature, scale) for name, feature in maps.items()}
    height, width = next(iter(pictures.values())).shape[:2]
    fig, axes = plt.subplots(1, len(pictures), figsize=(2.6 * len(pictures), 2.6 * height / width + 0.5),
                             squeeze=False)
    for ax, (name, picture) in zip(axes[0], pictures.items()):
        ax.imshow(picture)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=100)
