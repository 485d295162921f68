"""BEV feature maps as pictures (MonoTAKD's Figures 1 and 4)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps

from monokd.viz.bev_features import feature_energy, feature_panel, feature_picture
from tests.helpers import colour_mask, read_png


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


def test_panel_shows_each_map_side_by_side(tmp_path):
    maps = {}
    for k, name in enumerate(("teacher", "TA", "residual", "student")):
        maps[name] = torch.zeros(3, 6, 5)
        maps[name][:, k, 1] = 1.0  # one hot cell, at another y in each map
    path = feature_panel(maps, tmp_path / "bev.png", title="BEV features")
    picture = read_png(path)
    assert picture.shape == (266, 1040, 3)  # 4 x 2.6 in wide, 2.6 x 15/18 + 0.5 in high, 100 dpi
    hot = (np.array(colormaps["inferno"](1.0)[:3]) * 255).round()
    cold = (np.array(colormaps["inferno"](0.0)[:3]) * 255).round()
    columns = []
    for quarter in np.split(picture, 4, axis=1):  # a panel each, in the order given
        hot_pixels = np.nonzero(colour_mask(quarter, hot, 2))
        assert colour_mask(quarter, cold, 2).sum() > 20 * hot_pixels[0].size > 0
        columns.append(hot_pixels[1].mean())
    # y left -> columns right to left: the hot cell moves left as its y index grows
    assert columns == sorted(columns, reverse=True) and columns[0] - columns[-1] > 20
