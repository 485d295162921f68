"""KittiDataset and collate: the batch contract, augmentation consistency, filters, depth maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monokd.data import augment as aug
from monokd.data import kitti
from monokd.data.dataset import TARGET_KEYS, KittiDataset, collate
from monokd.geometry.boxes import project_boxes, wrap_angle
from monokd.geometry.calib import transform_intrinsics, unproject
from monokd.models.contract import BATCH_KEYS
from tests.helpers import DATASET_P2 as P2, FLIP_AND_ZOOM, kitti_symlink_root, write_frame

NO_AUGMENT = {"augment": {"enabled": False}}


def box_errors(item) -> np.ndarray:
    """Per-object mean |projected 3-D box (with the item's P2) - target 2-D box| in pixels."""
    t = item["targets"]
    width, height = item["image"].shape[2], item["image"].shape[1]
    projected = project_boxes(t["dims"].double(), t["location"].double(), t["rotation_y"].double(),
                              item["P2"].double(), image_size=(width, height))
    return (projected - t["boxes_2d"].double()).abs().mean(dim=1).numpy()


# --- the contract --------------------------------------------------------------------------

def test_item_and_batch_follow_the_contract(tiny_root):
    ds = KittiDataset(tiny_root, "train", {"data": {"input_size": [128, 48], **NO_AUGMENT}})
    assert len(ds) == 3 and ds.classes == ["Car", "Pedestrian", "Cyclist"] and not ds.augment
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["images"].shape == (3, 3, 48, 128) and batch["images"].dtype == torch.float32
    assert batch["P2"].shape == (3, 3, 4) and batch["P2_original"].shape == (3, 3, 4)
    assert batch["input_to_original"].shape == (3, 2, 3)
    assert batch["image_sizes"].tolist() == [[220, 64]] * 3 and batch["image_sizes"].dtype == torch.long
    assert batch["frame_ids"] == ["000000", "000001", "000002"] and batch["flipped"].tolist() == [False] * 3
    assert "depth_maps" not in batch and "points" not in batch
    assert set(batch) <= set(BATCH_KEYS)  # every key is one the detector contract describes
    # Several objects; none (only DontCare); none left after filtering (z = 1.5 m < 2 m).
    counts = [len(t["labels"]) for t in batch["targets"]]
    assert counts == [3, 0, 0]
    widths = {"boxes_2d": 4, "centers_3d_proj": 2, "dims": 3, "location": 3}
    for t in batch["targets"]:
        assert set(t) == set(TARGET_KEYS)
        for key, value in t.items():
            n = len(t["labels"])
            assert value.shape == ((n, widths[key]) if key in widths else (n,)), key
            assert value.dtype == (torch.long if key in ("labels", "occlusion", "difficulty") else torch.float32)
    first = batch["targets"][0]
    assert first["labels"].tolist() == [0, 1, 0] and first["occlusion"].tolist() == [0, 1, 0]
    # Resize only: P2 scaled by 128/220 and 48/64 about pixel edges; P2_original untouched.
    affine = aug.crop_affine((110, 32), (220, 64), (128, 48))
    np.testing.assert_allclose(batch["P2"][0].numpy(), transform_intrinsics(P2, affine), rtol=1e-6)
    np.testing.assert_allclose(batch["P2_original"][0].numpy(), P2, rtol=1e-6)
    # input_to_original maps the input's corner pixel edges onto the original's.
    back = batch["input_to_original"][0].double().numpy()
    np.testing.assert_allclose(back @ [-0.5, -0.5, 1], [-0.5, -0.5], atol=1e-5)
    np.testing.assert_allclose(back @ [127.5, 47.5, 1], [219.5, 63.5], atol=1e-5)
    # Images are ImageNet-normalised.
    raw = kitti.read_image(tiny_root / "training" / "image_2" / "000000.png")
    assert batch["images"][0, 0].mean().item() == pytest.approx((raw[..., 0].mean() / 255 - 0.485) / 0.229, abs=0.05)
    assert max(box_errors(ds[0])) < 0.02  # labels made by projection (printed to 0.01 px)


def test_classes_and_filters_are_configurable(tiny_root):
    ds = KittiDataset(tiny_root, "train", {"data": {"input_size": [220, 64], "classes": ["Pedestrian"], **NO_AUGMENT}})
    assert ds[0]["targets"]["labels"].tolist() == [0] and ds[0]["targets"]["dims"][0, 0] == pytest.approx(1.7)
    cfg = {"input_size": [220, 64], "filter": {"max_depth": 20.0, "max_occlusion": 0}, **NO_AUGMENT}
    assert KittiDataset(tiny_root, "train", {"data": cfg})[0]["targets"]["depth"].tolist() == [12.0]
    # The 1.5 m car is too near, and its projected centre is below the image (v = 143).
    loose = {"min_depth": 1.0, "center_in_image": False, "center_in_box": False}
    for rule, kept in (({}, []), ({"min_depth": 1.0}, []), (loose, [1.5])):
        ds = KittiDataset(tiny_root, "train", {"data": {"input_size": [220, 64], "filter": rule, **NO_AUGMENT}})
        assert ds[2]["targets"]["depth"].tolist() == kept, rule


def test_difficulty_uses_scaled_minimum_heights(tiny_root):
    ds = KittiDataset(tiny_root, "train", {"data": {"input_size": [220, 64], **NO_AUGMENT}})
    # 64-row images: minimum heights 40 and 25 px scaled by 64/375 -> 6.8 and 4.3 px.
    assert ds.min_height_scale((220, 64)) == pytest.approx(64 / 375)
    assert ds.min_height_scale((1242, 375)) == 1.0 and ds.min_height_scale((1224, 370)) == 1.0
    heights = ds[0]["targets"]["boxes_2d"][:, 3] - ds[0]["targets"]["boxes_2d"][:, 1]
    assert heights.min() > 6.83
    assert ds[0]["targets"]["difficulty"].tolist() == [0, 1, 0]  # the occluded pedestrian is moderate
    ds = KittiDataset(tiny_root, "train", {"data": {"input_size": [220, 64], "min_height_scale": 1.0, **NO_AUGMENT}})
    # Unscaled: the cars are 26 and 12 px tall, the pedestrian 35 px.
    assert ds[0]["targets"]["difficulty"].tolist() == [1, 1, -1]


# --- augmentation consistency --------------------------------------------------------------

def test_flip_mirrors_world_and_camera_exactly(tiny_root):
    plain = KittiDataset(tiny_root, "train", {"data": {"input_size": [220, 64], **NO_AUGMENT}})[0]
    cfg = {"input_size": [220, 64], "augment": {"photometric": False, "flip_prob": 1.0, "scale_prob": 0.0}}
    flipped = KittiDataset(tiny_root, "train", {"data": cfg})[0]
    assert flipped["flipped"] and not plain["flipped"]
    a, b = plain["targets"], flipped["targets"]
    np.testing.assert_allclose(b["location"].numpy(), a["location"].numpy() * [-1, 1, 1])
    np.testing.assert_allclose(wrap_angle(b["rotation_y"].numpy() + a["rotation_y"].numpy() - math.pi), 0, atol=1e-6)
    np.testing.assert_allclose(wrap_angle(b["alpha"].numpy() + a["alpha"].numpy() - math.pi), 0, atol=1e-6)
    np.testing.assert_allclose(b["centers_3d_proj"][:, 0].numpy(), 219 - a["centers_3d_proj"][:, 0].numpy(), atol=1e-3)
    np.testing.assert_allclose(b["boxes_2d"].numpy(), np.stack([219 - a["boxes_2d"][:, 2], a["boxes_2d"][:, 1],
                                                                 219 - a["boxes_2d"][:, 0], a["boxes_2d"][:, 3]], 1), atol=1e-3)
    # The principal point is mirrored, and the offset column follows: cu -> W-1-cu.
    assert flipped["P2"][0, 2].item() == pytest.approx(219 - 90.0)
    assert flipped["P2"][0, 3].item() == pytest.approx(219 * 0.003 - 12.0)
    # The image is the mirror image, and input_to_original says where each pixel came from.
    np.testing.assert_allclose(flipped["image"].numpy(), plain["image"].numpy()[..., ::-1], atol=1e-6)
    np.testing.assert_allclose(flipped["input_to_original"].numpy(), [[-1, 0, 219], [0, 1, 0]], atol=1e-5)
    assert max(box_errors(flipped)) < 0.02


def test_flip_and_scale_keep_boxes_on_the_image(tiny_root):
    ds = KittiDataset(tiny_root, "train", {"data": {"input_size": [256, 80], **FLIP_AND_ZOOM}})
    original = kitti.read_image(tiny_root / "training" / "image_2" / "000000.png").astype(np.float32)
    for _ in range(4):
        item = ds[0]
        assert item["flipped"]
        assert len(item["targets"]["labels"]) >= 2 and max(box_errors(item)) < 0.02
        # Each input pixel shows the original pixel input_to_original points at.
        image = item["image"].numpy().transpose(1, 2, 0) * [0.229, 0.224, 0.225] + [0.485, 0.456, 0.406]
        back = item["input_to_original"].double().numpy()
        v, u = np.mgrid[10:70:7, 10:246:9]
        src = np.rint(np.stack([u, v, np.ones_like(u)], -1) @ back.T).astype(int)
        inside = (src[..., 0] >= 0) & (src[..., 0] < 220) & (src[..., 1] >= 0) & (src[..., 1] < 64)
        assert inside.sum() > 100
        # Bilinear resampling of random pixels blurs: compare with a tolerance, and against a wrong map.
        diff = np.abs(image[v, u] * 255 - original[src[..., 1].clip(0, 63), src[..., 0].clip(0, 219)])[inside].mean()
        wrong = np.abs(image[v, u] * 255 - original[src[..., 1].clip(0, 63), (219 - src[..., 0]).clip(0, 219)])[inside].mean()
        assert diff < 0.6 * wrong


# The three image sizes of the samples: 1224x370 (000000), 1242x375 (000003, ...), 1238x374 (000006).
@pytest.mark.parametrize("resize", ["stretch", "keep_aspect"])
def test_augmentation_consistency_on_real_kitti(kitti_samples, tmp_path, resize):
    frames = ["000000", "000003", "000006", "000008", "000010"]
    root = kitti_symlink_root(kitti_samples, tmp_path, frames)
    plain = KittiDataset(root, "val", {"data": {"input_size": [640, 192], "resize": resize}})
    assert not plain.augment
    augmented = KittiDataset(root, "val", {"data": {"input_size": [640, 192], "resize": resize, **FLIP_AND_ZOOM}},
                             augment=True)
    errors = {"plain": [], "augmented": []}
    for index in range(len(frames)):
        for name, ds in (("plain", plain), ("augmented", augmented)):
            item = ds[index]
            t = item["targets"]
            clean = (t["truncation"] == 0) & (t["occlusion"] == 0) & (t["labels"] == 0)
            errors[name].extend(box_errors(item)[clean.numpy()])
    assert len(errors["augmented"]) >= 5
    # KITTI's 2-D labels fit the projected boxes to ~1 px at full size (here half size).
    assert np.median(errors["plain"]) < 1.5 and np.median(errors["augmented"]) < 1.5


def test_real_kitti_flip_puts_the_car_where_the_flipped_image_shows_it(kitti_samples, tmp_path):
    root = kitti_symlink_root(kitti_samples, tmp_path, ["000003"])
    cfg = {"input_size": [1242, 375], "augment": {"photometric": False, "flip_prob": 1.0, "scale_prob": 0.0}}
    item = KittiDataset(root, "val", {"data": cfg}, augment=True)[0]
    car = kitti.read_label(root / "training" / "label_2" / "000003.txt")[0]
    x1, y1, x2, y2 = car.box2d
    np.testing.assert_allclose(item["targets"]["boxes_2d"][0].numpy(), [1241 - x2, y1, 1241 - x1, y2], atol=1e-3)
    assert box_errors(item)[0] < 2.0
    # Un-projecting the mirrored centre with the batch's P2 gives the mirrored 3-D centre.
    t = item["targets"]
    centre = unproject(t["centers_3d_proj"].double()[None], t["depth"].double()[None], item["P2"].double())[0, 0]
    np.testing.assert_allclose(centre.numpy(), [-car.location[0], car.location[1] - car.h / 2, car.location[2]], atol=1e-4)


def test_augmentation_consistency_on_synthkitti(synth_root):
    cfg = {"data": {"input_size": [416, 128], **FLIP_AND_ZOOM}}
    ds = KittiDataset(synth_root, "train", cfg, augment=True)
    objects = 0
    for index in range(len(ds)):
        item = ds[index]
        t = item["targets"]
        clean = ((t["truncation"] == 0) & (t["occlusion"] == 0)).numpy()
        objects += clean.sum()
        if clean.any():
            assert np.median(box_errors(item)[clean]) < 1.5
    assert objects > 0


# --- depth maps, points, unlabelled splits -------------------------------------------------

def test_depth_maps_from_lidar_and_from_depth_2(tmp_path):
    # LiDAR frame: x forward, y left, z up; Tr maps it to camera x = -y, y = -z, z = x.
    points = np.array([[10.0, 0.0, -1.0, 0.5], [20.0, 2.0, 0.0, 0.1], [-5.0, 0, 0, 0.2]], dtype=np.float32)
    write_frame(tmp_path, "000000", [], points=points)
    depth = np.zeros((64, 220), np.float32)
    depth[30:34, 100:104] = 7.5
    write_frame(tmp_path, "000001", [], depth=depth)
    kitti.write_split(tmp_path / "ImageSets" / "val.txt", ["000000", "000001"])
    cfg = {"input_size": [220, 64], "depth_maps": "auto", "load_points": True, **NO_AUGMENT}
    batch = collate([*KittiDataset(tmp_path, "val", {"data": cfg})])
    maps = batch["depth_maps"]
    assert maps.shape == (2, 1, 64, 220)
    # Point 1 at camera (0, 1, 10) projects to u = (200*0 + 90*10 + 12)/10.003, v = (200 + 300.2)/10.003.
    u, v = int((900 + 12) / 10.003), int(500.2 / 10.003)
    assert maps[0, 0, v, u].item() == pytest.approx(10.0) and (maps[0] > 0).sum() == 2  # the point behind is dropped
    assert (maps[1, 0, 30:34, 100:104] == 7.5).all() and (maps[1] > 0).sum() == 16
    np.testing.assert_allclose(batch["points"][0].numpy(), [[0, 1, 10, 0.5], [-2, 0, 20, 0.1], [0, 0, -5, 0.2]], atol=1e-6)
    assert batch["points"][1].shape == (0, 4)
    # A flip mirrors the points and the LiDAR depth map with the targets.
    cfg["augment"] = {"enabled": True, "photometric": False, "flip_prob": 1.0, "scale_prob": 0.0}
    item = KittiDataset(tmp_path, "val", {"data": cfg})[0]
    assert item["points"][1, 0].item() == pytest.approx(2.0)
    uv_flipped = (1.0 * 219 * 10.003 - 912) / 10.003  # W-1-u
    assert item["depth_map"][0, v, int(uv_flipped)].item() == pytest.approx(10.0)


def test_unlabelled_and_images_only(tmp_path):
    write_frame(tmp_path, "000005", None, part="testing")
    kitti.write_split(tmp_path / "ImageSets" / "test.txt", ["000005"])
    item = KittiDataset(tmp_path, "test", {"data": {"input_size": [110, 32]}})[0]
    assert item["frame_id"] == "000005" and len(item["targets"]["labels"]) == 0 and not item["flipped"]
    # Images only: no split file, no calib, a default P2 from the config.
    only = tmp_path / "mine"
    kitti.write_image(only / "training" / "image_2" / "000042.png", np.zeros((64, 220, 3), np.uint8))
    ds = KittiDataset(only, None, {"data": {"input_size": [110, 32], "default_P2": P2.tolist()}})
    assert ds.ids == ["000042"] and ds[0]["P2_original"][0, 0].item() == 200.0
    with pytest.raises(kitti.KittiFormatError, match="calib"):
        KittiDataset(only, None, {"data": {"input_size": [110, 32]}})[0]
    with pytest.raises(kitti.KittiFormatError, match="split file not found"):
        KittiDataset(only, "val", {})


def test_augmentation_draws_and_photometric_distortion():
    cfg = {"flip_prob": 0.5, "scale_prob": 0.5, "scale_range": [0.95, 1.05], "shift": 0.1}
    rng = np.random.default_rng(0)
    draws = [aug.sample_augmentation(rng, cfg) for _ in range(400)]
    assert 150 < sum(d.flip for d in draws) < 250 and 150 < sum(d.scale != 1.0 for d in draws) < 250
    assert all(0.95 <= d.scale <= 1.05 and max(abs(s) for s in d.shift) <= 0.1 for d in draws)
    image = np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    outs = [aug.photometric_distortion(image, np.random.default_rng(seed)) for seed in range(8)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, image) for o in outs) >= 6
    np.testing.assert_array_equal(outs[3], aug.photometric_distortion(image, np.random.default_rng(3)))
