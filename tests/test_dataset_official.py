"""The data switches of MonoDETR's official code (docs/monodetr.md, "The KITTI recipe and the
official code"): aspect-preserving resize, Gaussian scale/shift, channel permutation, dropping
"UnKnown" objects, unclipped 2-D boxes and the box-centre heading target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monokd.data import augment as aug
from monokd.data import kitti
from monokd.data.dataset import KittiDataset
from monokd.errors import ConfigError
from monokd.geometry.boxes import box_center, wrap_angle
from monokd.geometry.calib import project
from tests.helpers import FLIP_AND_ZOOM, kitti_symlink_root

SIZES = {"000000": (1224, 370), "000003": (1242, 375), "000006": (1238, 374)}  # all three in the samples


@pytest.mark.parametrize("frame", sorted(SIZES))
def test_keep_aspect_scales_both_axes_by_input_width_and_crops_rows(kitti_samples, tmp_path, frame):
    root = kitti_symlink_root(kitti_samples, tmp_path, [frame])
    item = KittiDataset(root, "val", {"data": {"input_size": [1280, 384], "resize": "keep_aspect"}})[0]
    width, height = SIZES[frame]
    assert tuple(item["image_size"].tolist()) == (width, height)
    s = 1280 / width
    # Edge coordinates: the image centre (W/2, H/2) lands on the input centre (640, 192); pixel
    # centres sit half a pixel inside: u = (u' + 0.5) / s - 0.5, v = (v' + 0.5 - 192) / s + H/2 - 0.5.
    expected = [[1 / s, 0, 0.5 / s - 0.5], [0, 1 / s, (0.5 - 192) / s + height / 2 - 0.5]]
    np.testing.assert_allclose(item["input_to_original"].double().numpy(), expected, atol=1e-5)
    assert height * s > 384  # rows are cut (1.2 to 1.5 at the top and at the bottom), never padded
    P2 = kitti.read_calib(root / "training" / "calib" / f"{frame}.txt").P2
    P2_in = item["P2"].double().numpy()
    assert P2_in[0, 0] / P2_in[1, 1] == pytest.approx(P2[0, 0] / P2[1, 1], rel=1e-6)  # one scale
    # Projection is exact: a 3-D point projected with the input P2 and mapped back to original
    # pixels is where the original P2 projects it.
    points = np.array([[-4.0, 1.5, 8.0], [3.0, 1.0, 25.0], [0.5, -0.5, 50.0]])
    uv_in, _ = project(points, P2_in)
    back = uv_in @ item["input_to_original"].double().numpy()[:, :2].T + item["input_to_original"].double().numpy()[:, 2]
    np.testing.assert_allclose(back, project(points, P2)[0], atol=1e-4)
    # The targets are the frame's objects of the default classes, their 2-D boxes mapped back exactly.
    t = item["targets"]
    kept = [o for o in kitti.read_label(root / "training" / "label_2" / f"{frame}.txt")
            if o.type in ("Car", "Pedestrian", "Cyclist")]
    affine = item["input_to_original"].double().numpy()
    boxes = t["boxes_2d"].double().numpy().reshape(-1, 2, 2) @ affine[:, :2].T + affine[:, 2]
    assert len(kept) > 0 and len(t["labels"]) == len(kept)
    np.testing.assert_allclose(boxes.reshape(-1, 4), np.array([o.box2d for o in kept]), atol=1e-3)
    centres, _ = project(box_center(t["dims"].double().numpy(), t["location"].double().numpy()), P2_in)
    np.testing.assert_allclose(centres, t["centers_3d_proj"].double().numpy(), atol=1e-3)


def test_keep_aspect_image_shows_what_input_to_original_points_at(kitti_samples, tmp_path):
    """The warped pixels are the original ones under the reported inverse map (with a flip and a zoom)."""
    root = kitti_symlink_root(kitti_samples, tmp_path, ["000000"])
    cfg = {"input_size": [640, 192], "resize": "keep_aspect", **FLIP_AND_ZOOM}
    item = KittiDataset(root, "val", {"data": cfg}, augment=True)[0]
    original = kitti.read_image(root / "training" / "image_2" / "000000.png").astype(np.float32)
    image = item["image"].numpy().transpose(1, 2, 0) * [0.229, 0.224, 0.225] + [0.485, 0.456, 0.406]
    back = item["input_to_original"].double().numpy()
    assert back[0, 0] == pytest.approx(-back[1, 1], rel=1e-9)  # flipped, one scale
    v, u = np.mgrid[5:187:6, 5:635:7]
    src = np.rint(np.stack([u, v, np.ones_like(u)], -1) @ back.T).astype(int)
    inside = (src[..., 0] >= 0) & (src[..., 0] < 1224) & (src[..., 1] >= 0) & (src[..., 1] < 370)
    diff = np.abs(image[v, u] * 255 - original[src[..., 1].clip(0, 369), src[..., 0].clip(0, 1223)])[inside].mean()
    wrong = np.abs(image[v, u] * 255 - original[src[..., 1].clip(0, 369), (1223 - src[..., 0]).clip(0, 1223)])[inside].mean()
    assert inside.sum() > 2000 and diff < 0.5 * wrong


def test_gaussian_scale_and_shift_are_clipped_normal_draws():
    cfg = {"flip_prob": 0.0, "scale_prob": 1.0, "scale_range": [0.95, 1.05], "shift": 0.1,
           "sampling": "gaussian", "scale_sigma": 0.05, "shift_sigma": 0.05}
    rng = np.random.default_rng(0)
    draws = [aug.sample_augmentation(rng, cfg) for _ in range(4000)]
    scale = np.array([d.scale for d in draws])
    shift = np.array([d.shift for d in draws]).ravel()
    assert scale.min() == 0.95 and scale.max() == 1.05 and np.abs(shift).max() == 0.1
    # sigma = the scale half-range: P(|z| > 1) = 0.317 at the bounds; shift clipped at 2 sigma: 0.046.
    assert 0.28 < np.isin(scale, [0.95, 1.05]).mean() < 0.35
    assert 0.03 < (np.abs(shift) == 0.1).mean() < 0.065
    inner = shift[np.abs(shift) < 0.1]
    assert 0.04 < inner.std() < 0.05 and abs(np.median(shift)) < 0.005  # a truncated N(0, 0.05)
    uniform = [aug.sample_augmentation(rng, {**cfg, "sampling": "uniform"}) for _ in range(500)]
    assert not any(d.scale in (0.95, 1.05) for d in uniform)
    with pytest.raises(ValueError, match="sampling"):
        aug.sample_augmentation(rng, {**cfg, "sampling": "beta"})


def test_channel_swap_permutes_the_distorted_image_with_probability_p():
    image = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    swapped = 0
    for seed in range(60):
        plain = aug.photometric_distortion(image, np.random.default_rng(seed))
        out = aug.photometric_distortion(image, np.random.default_rng(seed), channel_swap=0.5)
        orders = [o for o in aug.CHANNEL_ORDERS if np.array_equal(out, plain[..., list(o)])]
        assert orders, f"seed {seed}: not a channel permutation of the distorted image"
        swapped += orders[0] != (0, 1, 2) and not np.array_equal(out, plain)
    assert 12 < swapped < 40  # p 0.5, and 5 of the 6 orders move something: ~25 of 60
    drawn = {tuple(aug.swap_channels(np.arange(3, dtype=np.uint8)[None, None], np.random.default_rng(s))[0, 0])
             for s in range(60)}
    assert len(drawn) == 6


def test_drop_unknown_removes_objects_of_no_difficulty(tiny_root):
    base = {"input_size": [220, 64], "min_height_scale": 1.0, "augment": {"enabled": False}}
    kept = KittiDataset(tiny_root, "train", {"data": base})[0]["targets"]
    dropped = KittiDataset(tiny_root, "train", {"data": {**base, "filter": {"drop_unknown": True}}})[0]["targets"]
    unknown = kept["difficulty"] == -1
    assert unknown.any() and not unknown.all()  # the far car is 12 px tall: below 25 px
    assert dropped["depth"].tolist() == kept["depth"][~unknown].tolist()


def test_unclipped_boxes_keep_their_extent_beyond_the_input(tiny_root):
    """keep_aspect onto a 220x40 input cuts 12 rows off each side of the 220x64 frame."""
    base = {"input_size": [220, 40], "resize": "keep_aspect", "augment": {"enabled": False},
            "filter": {"center_in_image": False}}
    raw = KittiDataset(tiny_root, "train", {"data": {**base, "clip_boxes_2d": False}})[0]["targets"]["boxes_2d"]
    clipped = KittiDataset(tiny_root, "train", {"data": base})[0]["targets"]["boxes_2d"]
    labels = [o for o in kitti.read_label(tiny_root / "training" / "label_2" / "000000.txt")]
    affine = aug.input_affine(aug.Augmentation(), (220, 64), (220, 40), "keep_aspect")
    expected = aug.transform_boxes_2d(np.stack([o.box2d for o in labels]), affine)
    np.testing.assert_allclose(raw.double().numpy(), expected[: len(raw)], atol=1e-4)
    assert (raw[:, 3] > 39).tolist() == [True, True, False]  # the two near objects reach below the cut
    np.testing.assert_allclose(clipped[:, 1::2].numpy(), raw[:, 1::2].clamp(0, 39).numpy(), atol=1e-5)


def test_box_center_heading_target_on_real_kitti(kitti_samples, tmp_path):
    root = kitti_symlink_root(kitti_samples, tmp_path, ["000003"])
    calib = kitti.read_calib(root / "training" / "calib" / "000003.txt")
    car = kitti.read_label(root / "training" / "label_2" / "000003.txt")[0]
    official = wrap_angle(car.rotation_y - math.atan2((car.box2d[0] + car.box2d[2]) / 2 - calib.P2[0, 2],
                                                      calib.P2[0, 0]))
    cfg = {"input_size": [640, 192], "heading_target": "box_center"}
    plain = KittiDataset(root, "val", {"data": cfg})[0]["targets"]
    assert plain["alpha"][0].item() == pytest.approx(official, abs=1e-6)
    assert KittiDataset(root, "val", {"data": {"input_size": [640, 192]}})[0]["targets"]["alpha"][0].item() == \
        pytest.approx(car.alpha, abs=1e-6)  # default: the label's alpha
    flip = {**cfg, "augment": {"photometric": False, "flip_prob": 1.0, "scale_prob": 0.0}}
    flipped = KittiDataset(root, "val", {"data": flip}, augment=True)[0]["targets"]
    assert flipped["alpha"][0].item() == pytest.approx(wrap_angle(math.pi - official), abs=1e-6)


def test_choice_keys_are_checked():
    for data, key in (({"resize": "crop"}, "data.resize"), ({"heading_target": "ray"}, "data.heading_target"),
                      ({"augment": {"sampling": "beta"}}, "data.augment.sampling")):
        with pytest.raises(ConfigError, match=key):
            KittiDataset("/nonexistent", "train", {"data": data})
