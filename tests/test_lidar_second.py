"""SECOND, the released MonoTAKD LiDAR teacher: voxelisation and mean feature by hand, the recipe
refused in one line without spconv, an OpenPCDet SECOND state dict loaded strictly, and the
frozen forward on a real KITTI sweep landing on the shared BEV grid (spconv tests skipped
without it)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from monokd.config import load_config
from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.geometry.grid import BEVGrid
from monokd.models.lidar.voxels import batch_voxels, voxelize

RECIPE = "configs/takd_lidar_second_kitti.yaml"


# --- voxels and MeanVFE (plain PyTorch) -------------------------------------------------------

def test_voxels_keep_the_first_points_and_voxels_and_average_them():
    grid = BEVGrid((0.0, 0.0, 0.0, 4.0, 2.0, 1.0), (1.0, 1.0, 1.0))  # 4 x 2 x 1 voxels
    points = torch.tensor([
        [0.5, 0.5, 0.5, 1.0],   # voxel (k 0, j 0, i 0): points 0, 2, 3 -> the first two kept
        [3.5, 1.5, 0.5, 2.0],   # voxel (0, 1, 3)
        [0.1, 0.9, 0.1, 3.0],
        [0.9, 0.1, 0.9, 9.0],   # the third point of voxel (0, 0, 0): over max_points = 2
        [5.0, 0.5, 0.5, 1.0],   # outside the range
        [2.5, 0.5, 0.5, 4.0],   # voxel (0, 0, 2): the third voxel, over max_voxels = 2
    ])
    features, coords = voxelize(points, grid, max_points=2, max_voxels=2)
    assert coords.tolist() == [[0, 0, 0], [0, 1, 3]]  # in the order of their first point
    torch.testing.assert_close(features, torch.tensor([[0.3, 0.7, 0.3, 2.0], [3.5, 1.5, 0.5, 2.0]]))
    features, coords = batch_voxels([points, points[1:2]], grid, max_points=5, max_voxels=10)
    assert coords.dtype == torch.int32 and coords[:, 0].tolist() == [0, 0, 0, 1]
    torch.testing.assert_close(features[0], torch.tensor([1.5 / 3, 1.5 / 3, 1.5 / 3, 13 / 3]))


def test_without_spconv_the_recipe_is_refused_in_one_line(monkeypatch):
    from monokd.models import build_detector

    monkeypatch.setitem(sys.modules, "spconv", None)  # import spconv raises ImportError
    monkeypatch.setitem(sys.modules, "spconv.pytorch", None)
    cfg = load_config(RECIPE)  # the recipe itself is valid; building SECOND needs spconv
    with pytest.raises(ConfigError) as err:
        build_detector(cfg)
    message = str(err.value)
    assert "\n" not in message and "spconv" in message and "pillars teacher remains" in message


def test_recipe_is_the_released_teacher():
    cfg = load_config(RECIPE)
    model, data = cfg["model"], cfg["data"]
    assert model["voxel_size"] == [0.04, 0.04, 0.1] and model["backbone_channels"] * 2 == model["bev_channels"] == 128
    assert model["anchor_head"]["align_center"] is False and model["anchor_head"]["assign_iou"] == "nearest_bev"
    assert data["fov_points_only"] and data["augment"]["gt_sampling"] == {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
    ta = load_config("configs/takd_ta_kitti.yaml")["model"]
    assert model["grid"] == ta["grid"] and model["bev_channels"] == ta["bev_channels"]  # one BEV grid, one F_T size


def test_voxels_must_land_on_the_bev_grid_at_stride_8():
    from monokd.models.lidar.sparse_backbone import check_sparse_shape

    assert check_sparse_shape((1120, 1504, 40), (188, 140), 64, 128, "model.voxel_size") == 2  # 41 -> 21, 11, 5, 2
    with pytest.raises(ConfigError, match="560 x 752 voxels at stride 8 are not the 140 x 188 BEV grid"):
        check_sparse_shape((560, 752, 40), (188, 140), 64, 128, "model.voxel_size")  # 0.08 m voxels
    with pytest.raises(ConfigError, match="compress to 2 x 128 = 256 channels, not model.bev_channels = 128"):
        check_sparse_shape((1120, 1504, 40), (188, 140), 128, 128, "model.voxel_size")


@pytest.mark.parametrize("recipe", ["configs/takd_lidar_kitti.yaml", "configs/takd_ta_kitti.yaml", RECIPE])
def test_kitti_recipes_place_anchors_edge_to_edge(recipe):
    from monokd.models.bev.anchor_head import AnchorHead

    model = load_config(recipe)["model"]
    grid = BEVGrid.from_config(model["grid"])
    head = AnchorHead(model["anchor_head"], grid, 8, ["Car", "Pedestrian", "Cyclist"])
    assert head.cfg["assign_iou"] == "nearest_bev"
    anchors, _ = head.anchors((188, 140))  # the stride-1 head map of the 140 x 188 grid
    xy = anchors.view(188, 140, 6, 7)[..., 0, :2].double()
    # OpenPCDet's align_center False: 140 x positions from 2 to 46.8 m inclusive, 188 y from -30.08 to 30.08
    torch.testing.assert_close(xy[0, :3, 0], torch.tensor([2.0, 2.0 + 44.8 / 139, 2.0 + 2 * 44.8 / 139]).double())
    torch.testing.assert_close(xy[:2, 0, 1], torch.tensor([-30.08, -30.08 + 60.16 / 187]).double())
    torch.testing.assert_close(xy[-1, -1], torch.tensor([46.8, 30.08]).double())


# --- with spconv -------------------------------------------------------------------------------

def _bn(prefix: str, channels: int) -> dict:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def openpcdet_second_shapes(c4: int = 64, classes: int = 3, rotations: int = 2) -> dict:
    """Key -> shape of OpenPCDet's SECONDNet ``model_state`` for MonoTAKD's teacher, written out
    from its source: spconv_backbone.py (VoxelResBackBone8x_c64; spconv 2.x weights
    (C_out, kD, kH, kW, C_in); SparseBasicBlock convs with bias), base_bev_backbone.py
    (blocks.i = ZeroPad2d, conv, BN, ReLU, then (conv, BN, ReLU) x 5; deblocks.i = ConvTranspose2d
    (C_in, C_out, s, s), BN, ReLU), anchor_head_single.py (1x1 convs with bias),
    detector3d_template.py (global_step)."""
    shapes: dict = {"global_step": (1,)}
    b3 = "backbone_3d"
    shapes[f"{b3}.conv_input.0.weight"] = (16, 3, 3, 3, 4)
    shapes.update(_bn(f"{b3}.conv_input.1", 16))

    def res_block(prefix, c):
        for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
            shapes[f"{prefix}.{conv}.weight"] = (c, 3, 3, 3, c)
            shapes[f"{prefix}.{conv}.bias"] = (c,)
            shapes.update(_bn(f"{prefix}.{bn}", c))

    res_block(f"{b3}.conv1.0", 16)
    res_block(f"{b3}.conv1.1", 16)
    for name, cin, cout in (("conv2", 16, 32), ("conv3", 32, 64), ("conv4", 64, c4)):
        shapes[f"{b3}.{name}.0.0.weight"] = (cout, 3, 3, 3, cin)
        shapes.update(_bn(f"{b3}.{name}.0.1", cout))
        res_block(f"{b3}.{name}.1", cout)
        res_block(f"{b3}.{name}.2", cout)
    shapes[f"{b3}.conv_out.0.weight"] = (c4, 3, 1, 1, c4)
    shapes.update(_bn(f"{b3}.conv_out.1", c4))
    c_in = 2 * c4
    for stage, (filters, up_filters, up) in enumerate(((128, 256, 1), (256, 256, 2))):
        shapes[f"backbone_2d.blocks.{stage}.1.weight"] = (filters, c_in, 3, 3)
        shapes.update(_bn(f"backbone_2d.blocks.{stage}.2", filters))
        for k in range(5):
            shapes[f"backbone_2d.blocks.{stage}.{4 + 3 * k}.weight"] = (filters, filters, 3, 3)
            shapes.update(_bn(f"backbone_2d.blocks.{stage}.{5 + 3 * k}", filters))
        shapes[f"backbone_2d.deblocks.{stage}.0.weight"] = (filters, up_filters, up, up)
        shapes.update(_bn(f"backbone_2d.deblocks.{stage}.1", up_filters))
        c_in = filters
    anchors = classes * rotations
    for name, per_anchor in (("conv_cls", classes), ("conv_box", 7), ("conv_dir_cls", 2)):
        shapes[f"dense_head.{name}.weight"] = (anchors * per_anchor, 512, 1, 1)
        shapes[f"dense_head.{name}.bias"] = (anchors * per_anchor,)
    return shapes


def _random_state(shapes: dict, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 9, s, generator=generator) if k.endswith(("num_batches_tracked", "global_step"))
                else torch.randn(s, generator=generator)) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def second():
    pytest.importorskip("spconv.pytorch", reason="spconv is not installed (pip install 'monokd[spconv]'): "
                                                 "the SECOND teacher is optional, the pillars teacher remains")
    from monokd.models import build_detector

    torch.manual_seed(0)
    return build_detector(load_config(RECIPE)).eval()


def test_openpcdet_second_state_dict_loads_strictly(second):
    official = _random_state(openpcdet_second_shapes())
    state = second.official_state_dict({"model_state": official}, "second.pth")
    second.load_state_dict(state, strict=True)
    own = second.state_dict()
    torch.testing.assert_close(own["backbone_3d.conv4.2.conv2.weight"], official["backbone_3d.conv4.2.conv2.weight"])
    torch.testing.assert_close(own["bev_backbone.stages.1.3.weight"], official["backbone_2d.blocks.1.4.weight"])
    torch.testing.assert_close(own["head.conv_dir.bias"], official["dense_head.conv_dir_cls.bias"])
    # a spconv 1.x checkpoint (k, k, k, C_in, C_out) is permuted as OpenPCDet does
    old = dict(official, **{"backbone_3d.conv2.0.0.weight": official["backbone_3d.conv2.0.0.weight"].permute(1, 2, 3, 4, 0)})
    converted = second.official_state_dict({"model_state": old}, "second_v1.pth")
    torch.testing.assert_close(converted["backbone_3d.conv2.0.0.weight"], official["backbone_3d.conv2.0.0.weight"])
    # OpenPCDet's VoxelResBackBone8x (C_4 = 128) is not this config: refused, naming the keys
    with pytest.raises(CheckpointMismatchError, match="shape mismatches.*backbone_3d.conv4"):
        second.official_state_dict({"model_state": _random_state(openpcdet_second_shapes(c4=128))}, "wide.pth")
    missing = {k: v for k, v in official.items() if k != "dense_head.conv_box.bias"}
    with pytest.raises(CheckpointMismatchError, match="missing keys.*head.conv_box.bias"):
        second.official_state_dict({"model_state": missing}, "cut.pth")


def test_training_on_the_cpu_is_refused_before_spconv_fails(second):
    batch = {"points": [torch.zeros(0, 4)], "lidar_to_rect": torch.eye(4)[None]}
    with pytest.raises(ConfigError, match="trains on a GPU"):
        second.bev_features(batch)  # parameters that want a gradient, on the CPU
    second.requires_grad_(False)
    try:
        assert second.bev_features(batch)["bev"].shape == (1, 128, 188, 140)  # frozen: runs
    finally:
        second.requires_grad_(True)


def test_frozen_second_on_a_real_sweep_fills_the_shared_grid(kitti_samples):
    pytest.importorskip("spconv.pytorch", reason="spconv is not installed: the SECOND teacher is optional")
    from monokd.data.dataset import KittiDataset, collate
    from monokd.models import build_detector
    from monokd.models.contract import SIGNALS
    from monokd.models.lidar.pillars import points_to_lidar

    # a 3.2 x 3.2 m part of the KITTI grid keeps the test fast; the same voxel / cell ratio
    small = ["model.grid.point_cloud_range=[8, -1.6, -3, 11.2, 1.6, 1]",
             "model.bev_backbone={layer_nums: [1], layer_strides: [1], num_filters: [16]}",
             "data.input_size=[320, 96]", f"data.root={kitti_samples}"]
    cfg = load_config(RECIPE, small)
    torch.manual_seed(0)
    model = build_detector(cfg).eval().requires_grad_(False)
    data = {**cfg["data"], "part": "training"}
    dataset = KittiDataset(kitti_samples, None, {"data": data}, augment=False)
    item = dataset[dataset.ids.index("000003")]
    batch = collate([item])
    threads = []  # spconv's CPU convolution races with several threads: the backbone runs on one
    model.backbone_3d.conv_input.register_forward_pre_hook(lambda *_: threads.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            bev = model(batch, signals=("bev",))[SIGNALS].bev
        assert threads == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert bev.shape == (1, 128, 10, 10) == (1, 128, *model.grid.bev_shape())
    # sparse convolutions reach at most one BEV cell past an occupied one (3 x 3 at stride 8)
    lidar = points_to_lidar(batch["points"][0], batch["lidar_to_rect"][0])
    keep = (lidar[:, :3] >= torch.tensor([8.0, -1.6, -3.0])).all(1) & (lidar[:, :3] < torch.tensor([11.2, 1.6, 1.0])).all(1)
    cells = model.grid.metres_to_cell(lidar[keep, :2]).floor().long()
    occupied = torch.zeros(1, 1, 10, 10)
    occupied[0, 0, cells[:, 1], cells[:, 0]] = 1
    reach = torch.nn.functional.max_pool2d(occupied, 3, 1, 1)[0, 0] > 0
    active = bev[0].abs().sum(0) > 0
    assert keep.sum() > 100 and active.any() and not active[~reach].any()
    # a scene without a point in range is an empty F_T, not a spconv error
    empty = dict(batch, points=[batch["points"][0][:0]])
    with torch.no_grad():
        assert model(empty, signals=("bev",))[SIGNALS].bev.abs().sum() == 0
