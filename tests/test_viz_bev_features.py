"""BEV feature maps as pictures (MonoTAKD's Figures 1 and 4)."""

from __future__ import annotations

import numpy as np
import torch

from monokd.viz.bev_features import feature_energy, feature_panel, feature_picture


def test_energy_and_orientation_seen_from_above():
    feature = torch.zeros(2, 4, 3)  # NY = 4, NX = 3
    feature[:, 1, 2] = torch.tensor([1.0, -3.0])  # y index 1, x index 2 (the farthest column)
    feature[0, 0, 0] = float("nan")
    energy = feature_energy(feature)
    assert energy.shape == (4, 3) and energy[1, 2] == 2.0 and energy[0, 0] == 0.0
    picture = feature_picture(feature, scale=1)
    assert picture.shape == (3, 4, 3) and picture.dtype == np.uint8
    brightest = np.unravel_index(picture.sum(-1).argmax(), picture.shape[:2])
    assert brightest == (0, 4 - 1 - 1)  # x far -> top row; y left (larger index) -> left columns
    assert feature_picture(torch.ones(1, 2, 2), scale=2).shape == (4, 4, 3)  # a flat map is not 0/0


def test_panel_writes_a_png(tmp_path):
    maps = {name: torch.rand(3, 6, 5) for name in ("teacher", "TA", "residual", "student")}
    path = feature_panel(maps, tmp_path / "bev.png", title="BEV features")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
