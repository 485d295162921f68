"""The BEV core's lifting: frustum -> voxels, collapse, BEV backbone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monokd.data import augment as aug
from monokd.data import kitti
from monokd.errors import ConfigError
from monokd.geometry.calib import velo_to_rect_matrix
from monokd.geometry.depth import lid_bin_size
from monokd.geometry.grid import BEVGrid
from monokd.models.bev.backbone import BEVBackbone
from monokd.models.bev.collapse import BEVCollapse
from monokd.models.bev.frustum_to_voxel import FrustumToVoxel

# 1 m voxels: at 20 m a voxel spans ~9 feature cells (stride 4) and ~3.5 of 200 LID bins, so
# a single frustum cell can only reach the one voxel whose centre samples inside it.
GRID = BEVGrid((2, -10, -3, 42, 10, 1), (1.0, 1.0, 1.0))  # NX 40, NY 20, NZ 4
BINS = (2.0, 46.8, 200)
IMAGE = (372, 1240)  # (H, W): KITTI's P2 with the last rows/columns cropped, stride 4 divides it
STRIDE = 4


def frustum_cell(u, v, depth):
    """(d, row, col) of the frustum cell holding input pixel (u, v) at ``depth`` m, and the
    trilinear weight grid_sample gives it at that point, by hand (numpy, float64)."""
    bw = lid_bin_size(BINS[2], BINS[0], BINS[1])
    index = -0.5 + 0.5 * math.sqrt(1 + 8 * (depth - BINS[0]) / bw)  # continuous LID index
    pos = np.array([index - 0.5, (v + 0.5) / STRIDE - 0.5, (u + 0.5) / STRIDE - 0.5])  # cell-centre units
    cell = np.floor(np.array([index, (v + 0.5) / STRIDE, (u + 0.5) / STRIDE])).astype(int)
    return tuple(cell), float(np.prod(1 - np.abs(pos - cell)))


def lift_one_feature(P2, lidar_to_rect, u, v, depth):
    d, row, col = frustum_cell(u, v, depth)[0]
    frustum = torch.zeros(1, 2, BINS[2], IMAGE[0] // STRIDE, IMAGE[1] // STRIDE)
    frustum[0, :, d, row, col] = torch.tensor([1.0, 3.0])
    lift = FrustumToVoxel(GRID, BINS)
    return lift(frustum, torch.as_tensor(lidar_to_rect, dtype=torch.float32)[None],
                torch.as_tensor(P2, dtype=torch.float32)[None], IMAGE)


@pytest.mark.parametrize("flip", [False, True])
def test_feature_at_known_pixel_and_depth_lands_in_the_voxel_of_its_3d_point(kitti_samples, flip):
    calib = kitti.read_calib(kitti_samples / "training" / "calib" / "000003.txt")
    M, P2 = velo_to_rect_matrix(calib), calib.P2
    # The centre of voxel (iz=1, iy=13, ix=18) in LiDAR metres, by hand.
    point = np.array([2 + 18.5, -10 + 13.5, -3 + 1.5, 1.0])
    rect = M @ point
    uvw = P2 @ rect
    u, v, depth = uvw[0] / uvw[2], uvw[1] / uvw[2], rect[2]
    assert 0 < u < IMAGE[1] and 0 < v < IMAGE[0] and 15 < depth < 25
    if flip:  # the flipped frame: mirrored image and camera, the same LiDAR point
        affine = aug.input_affine(aug.Augmentation(flip=True), IMAGE[::-1], IMAGE[::-1])
        P2 = aug.camera_matrix(P2, affine, True)
        M = aug.MIRROR_X @ M
        u = IMAGE[1] - 1 - u
    voxels = lift_one_feature(P2, M, u, v, depth)
    assert voxels.shape == (1, 2, 4, 20, 40)
    hit = voxels[0, 0].nonzero().tolist()
    assert hit == [[1, 13, 18]]
    weight = frustum_cell(u, v, depth)[1]
    assert weight >= 0.125  # the centre samples inside the cell
    np.testing.assert_allclose(voxels[0, :, 1, 13, 18].numpy(), [weight, 3 * weight], rtol=1e-3)


def test_uniform_frustum_fills_the_visible_voxels_and_nothing_else(kitti_samples):
    calib = kitti.read_calib(kitti_samples / "training" / "calib" / "000003.txt")
    M = torch.as_tensor(velo_to_rect_matrix(calib), dtype=torch.float32)[None]
    P2 = torch.as_tensor(calib.P2, dtype=torch.float32)[None]
    frustum = torch.ones(1, 1, BINS[2], IMAGE[0] // STRIDE, IMAGE[1] // STRIDE, requires_grad=True)
    lift = FrustumToVoxel(GRID, BINS)
    voxels = lift(frustum, M, P2, IMAGE)
    # straight ahead at 20.5 m, 0.5 m left, 1.5 m below the LiDAR: well inside the view
    assert voxels[0, 0, 1, 10, 18].item() == pytest.approx(1.0)
    # 2.5 m ahead, 9.5 m to the side: outside the image on both sides
    assert voxels[0, 0, :, 0, 0].abs().max() == 0 and voxels[0, 0, :, 19, 0].abs().max() == 0
    voxels.sum().backward()
    assert frustum.grad is not None and frustum.grad.abs().sum() > 0
    # a degenerate calibration gives no NaN and no feature
    nan = lift(frustum.detach(), torch.full_like(M, float("nan")), P2, IMAGE)
    assert torch.isfinite(nan).all() and nan.abs().max() == 0
    with pytest.raises(ValueError, match="200"):
        lift(torch.ones(1, 1, 10, 4, 4), M, P2, IMAGE)


# --- collapse and BEV backbone ----------------------------------------------------------------

def test_collapse_stacks_height_into_channels():
    collapse = BEVCollapse(in_channels=2, num_z=3, out_channels=1).eval()
    with torch.no_grad():
        collapse.block[0].weight.zero_()
        collapse.block[0].weight[0, 1 * 3 + 2] = 1.0  # channel 1 at height 2
    voxels = torch.rand(2, 2, 3, 5, 7)
    out = collapse(voxels)
    assert out.shape == (2, 1, 5, 7)
    bn = collapse.block[1]  # eval BN: (x - 0) / sqrt(1 + eps)
    np.testing.assert_allclose(out.detach().numpy()[:, 0], voxels[:, 1, 2].numpy() / math.sqrt(1 + bn.eps), rtol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        collapse(torch.rand(1, 2, 4, 5, 7))


CADDN_BACKBONE = {"layer_nums": [1, 1, 1], "layer_strides": [2, 2, 2], "num_filters": [8, 16, 32],
                  "upsample_strides": [1, 2, 4], "num_upsample_filters": [4, 4, 4]}


def test_backbone_shapes_strides_and_gradient():
    grid = BEVGrid((0, -3.2, -1, 6.4, 3.2, 1), (0.4, 0.4, 2.0))  # NX 16, NY 16
    backbone = BEVBackbone(CADDN_BACKBONE, in_channels=6, grid=grid)
    assert backbone.stage_strides == [2, 4, 8] and backbone.stage_channels == [8, 16, 32]
    assert backbone.out_channels == 12 and backbone.out_stride == 2
    bev = torch.rand(2, 6, 16, 16, requires_grad=True)
    features, stages = backbone(bev)
    assert features.shape == (2, 12, 8, 8)
    assert [tuple(s.shape) for s in stages] == [(2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2)]
    features.sum().backward()
    assert bev.grad.abs().sum() > 0
    # MonoTAKD's shape: strides [1, 2], upsampled x1, x2 to one resolution; no upsampling at all
    takd = BEVBackbone({"layer_nums": [1, 1], "layer_strides": [1, 2], "num_filters": [8, 16],
                        "upsample_strides": [1, 2], "num_upsample_filters": [8, 8]}, 6, grid)
    assert takd(torch.rand(1, 6, 16, 16))[0].shape == (1, 16, 16, 16) and takd.out_stride == 1
    plain = BEVBackbone({"layer_nums": [0], "layer_strides": [2], "num_filters": [8]}, 6, grid)
    assert plain(torch.rand(1, 6, 16, 16))[0].shape == (1, 8, 8, 8) and plain.out_channels == 8


def test_backbone_config_errors_name_the_numbers():
    grid = BEVGrid((2, -30.08, -3, 46.8, 30.08, 1), (0.16, 0.16, 0.16))  # 280 x 376
    deep = dict(CADDN_BACKBONE, layer_nums=[1] * 4, layer_strides=[2] * 4, num_filters=[8] * 4,
                upsample_strides=[1, 2, 4, 8], num_upsample_filters=[4] * 4)
    with pytest.raises(ConfigError, match=r"stride 16 does not divide .* NX = 280"):
        BEVBackbone(deep, 6, grid)
    with pytest.raises(ConfigError, match="different resolutions"):
        BEVBackbone(dict(CADDN_BACKBONE, upsample_strides=[1, 2, 2]), 6, grid)
    with pytest.raises(ConfigError, match="num_filters has 2 entries for 3 stages"):
        BEVBackbone(dict(CADDN_BACKBONE, num_filters=[8, 16]), 6)
    with pytest.raises(ConfigError, match="unknown keys"):
        BEVBackbone(dict(CADDN_BACKBONE, layers=[1]), 6)
