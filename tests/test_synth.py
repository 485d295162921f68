"""SynthKITTI: geometry of the rendering, labels, depth, LiDAR, determinism and the layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monokd.data import kitti
from monokd.data.synth import generate, render_frame
from monokd.data.synth.camera import CAMERA_HEIGHT, camera_center, lidar_origin, make_calibration
from monokd.data.synth.raycast import BOX, CYLINDER, ELLIPSOID, Primitives, cast
from monokd.data.synth.write import frame_seed
from monokd.geometry.boxes import alpha_from_rotation_y, corners_3d, project_boxes, wrap_angle
from monokd.geometry.calib import lidar_to_rect, unproject

SEEDS = (0, 1, 2, 3, 5, 7)


@pytest.fixture(scope="module")
def frames():
    return [render_frame(s) for s in SEEDS]


def labelled(frame):
    """(label, scene index) of the non-DontCare lines."""
    return [(frame.objects[i], k) for k, i in enumerate(frame.label_index)
            if i >= 0 and frame.objects[i].type != "DontCare"]


def points_in_box(points: np.ndarray, obj: kitti.Object3D, margin: float) -> np.ndarray:
    """(N,) whether rect points (N, 3) lie in the object's box grown by ``margin`` (m)."""
    rel = points - obj.location
    c, s = math.cos(obj.rotation_y), math.sin(obj.rotation_y)
    x_local = c * rel[:, 0] - s * rel[:, 2]  # inverse of corners_3d's rotation
    z_local = s * rel[:, 0] + c * rel[:, 2]
    return ((np.abs(x_local) <= obj.l / 2 + margin) & (np.abs(z_local) <= obj.w / 2 + margin)
            & (rel[:, 1] <= margin) & (rel[:, 1] >= -obj.h - margin))


# ----------------------------------------------------------------------------- camera
def test_calibration_is_kitti_scaled():
    full = make_calibration(1242, 375)
    assert full.P2[0, 0] == pytest.approx(707.0493) and full.P2[0, 3] == pytest.approx(45.75831)
    small = make_calibration(416, 128)
    assert small.P2[0, 0] == pytest.approx(707.0493 * 416 / 1242)
    assert small.P2[1, 1] == pytest.approx(707.0493 * 128 / 375)
    assert small.P2[1, 2] == pytest.approx(180.5066 * 128 / 375)
    assert small.P2[0, 3] == pytest.approx(45.75831 * 416 / 1242)
    # camera 1.65 m above the road (y = CAMERA_HEIGHT), LiDAR ~1.73 m up and behind it
    assert CAMERA_HEIGHT - camera_center(small.P2)[1] == pytest.approx(1.65, abs=0.002)
    lidar = lidar_origin(small)
    assert CAMERA_HEIGHT - lidar[1] == pytest.approx(1.73, abs=0.01)
    assert -0.4 < lidar[2] < -0.25


# ----------------------------------------------------------------------------- ray caster
def _single(kind, center, half, yaw=0.0):
    return Primitives(np.array([center], float), np.array([half], float), np.array([yaw]),
                      np.array([kind]), np.array([0]), np.zeros((1, 3)), np.zeros((1, 3)), np.array([0]))


@pytest.mark.parametrize("kind,yaw,t_expected", [(BOX, 0.0, 9.0), (BOX, math.pi / 4, 10 - math.sqrt(2)),
                                                 (ELLIPSOID, 0.3, 9.0), (CYLINDER, math.pi / 2, 9.0)])
def test_cast_hits_primitive_at_exact_distance(kind, yaw, t_expected):
    prims = _single(kind, (0.0, 0.0, 10.0), (1.0, 1.0, 1.0), yaw)
    directions = np.array([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.3, 0.0, 1.0]]])  # ahead, behind, beside
    hits = cast(np.zeros(3), directions, prims, np.array([[0, 1, 0, 3]]), num_owners=1)
    assert hits.t[0, 0] == pytest.approx(t_expected)
    assert np.isinf(hits.t[0, 1]) and np.isinf(hits.t[0, 2])  # behind the origin; passes beside
    assert hits.prim.tolist() == [[0, -1, -1]]
    assert hits.silhouettes[0].tolist() == [[True, False, False]]


def test_cast_keeps_the_nearest_of_overlapping_primitives():
    prims = Primitives.concat([_single(BOX, (0, 0, 20), (1, 1, 1)), _single(BOX, (0, 0, 10), (1, 1, 1))])
    prims.owner[:] = (0, 1)
    hits = cast(np.zeros(3), np.array([[[0.0, 0.0, 1.0]]]), prims, np.array([[0, 1, 0, 1]] * 2), num_owners=2)
    assert hits.t[0, 0] == pytest.approx(9.0) and hits.prim[0, 0] == 1
    assert hits.silhouettes[:, 0, 0].tolist() == [True, True]  # the far box is there, only hidden


# ----------------------------------------------------------------------------- labels vs rendering
def test_fully_visible_boxes_match_projected_3d_boxes(frames):
    errors = []
    for frame in frames:
        for obj, _ in labelled(frame):
            if obj.truncated == 0 and obj.occluded == 0:
                proj = project_boxes(obj.dims[None], obj.location[None], np.array([obj.rotation_y]), frame.calib.P2)[0]
                errors.append(np.abs(proj - obj.box2d))
    errors = np.array(errors)
    assert len(errors) >= 10
    assert np.median(errors) < 3.0
    assert errors.max() < 8.0


def test_labels_are_consistent_and_rounded(frames):
    height, width = frames[0].image.shape[:2]
    kinds = set()
    for frame in frames:
        for obj, k in labelled(frame):
            kinds.add(obj.type)
            scene = frame.scene_objects[k]
            # the rendered geometry is the 2-decimal label geometry
            assert np.array_equal(np.round(obj.dims, 2), obj.dims) and np.array_equal(obj.dims, scene.dims)
            assert np.array_equal(np.round(obj.location, 2), obj.location)
            assert obj.rotation_y == round(obj.rotation_y, 2) and -math.pi <= obj.rotation_y <= math.pi
            assert obj.alpha == pytest.approx(alpha_from_rotation_y(obj.rotation_y, obj.location[0], obj.location[2]))
            assert 4.0 <= obj.location[2] <= 60.0 and obj.occluded in (0, 1, 2) and 0 <= obj.truncated <= 1
            x1, y1, x2, y2 = obj.box2d
            assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1
            # the 2-D box is the extent of the visible pixels (pixel edges)
            rows, cols = np.nonzero(frame.instance == k)
            assert x1 == max(cols.min() - 0.5, 0) and y2 == min(rows.max() + 0.5, height - 1)
            text = kitti.format_label_line(obj)
            assert kitti.parse_label_line(text).dims.tolist() == obj.dims.tolist()
        for obj in frame.objects:
            if obj.type == "DontCare":
                assert kitti.format_label_line(obj).endswith("-1 -1 -1 -1000 -1000 -1000 -10")
    assert {"Car", "Pedestrian"} <= kinds


def test_depth_image_is_the_surface_of_each_object(frames, tmp_path):
    for n, frame in enumerate(frames):
        path = tmp_path / f"{n}.png"
        kitti.write_depth(path, frame.depth)
        depth = kitti.read_depth(path)
        assert np.abs(depth - frame.depth).max() <= 1 / 512 + 1e-6
        assert (depth[frame.instance >= 0] > 0).all()
        for obj, k in labelled(frame):
            rows, cols = np.nonzero(frame.instance == k)
            z = depth[rows, cols]
            corners = corners_3d(obj.dims, obj.location, obj.rotation_y)
            assert (z >= corners[:, 2].min() - 1 / 256).all() and (z <= corners[:, 2].max() + 1 / 256).all()
            # back-projected through P2 the depth pixels land on the object's box
            points = unproject(np.stack([cols, rows], 1).astype(float), z.astype(float), frame.calib.P2)
            assert points_in_box(points, obj, margin=0.02).all()


def test_lidar_points_of_an_object_lie_in_its_box(frames):
    hit_objects = 0
    for frame in frames:
        assert frame.points.dtype == np.float32 and frame.points.shape[1] == 4
        assert (frame.points[:, 3] >= 0).all() and (frame.points[:, 3] <= 1).all()
        rect = lidar_to_rect(frame.points[:, :3], frame.calib)
        assert np.linalg.norm(frame.points[:, :3], axis=1).max() <= 120.1
        for obj, k in labelled(frame):
            mine = frame.point_instance == k
            if mine.any():
                hit_objects += 1
                assert points_in_box(rect[mine], obj, margin=0.05).all()
        ground = frame.point_instance == -1
        assert np.abs(rect[ground, 1] - CAMERA_HEIGHT).min() < 0.03  # the road is seen
    assert hit_objects >= 10


def test_occlusion_level_follows_visible_fraction(frames):
    levels = set()
    for frame in frames:
        for k, obj in enumerate(frame.scene_objects):
            i = frame.label_index[k]
            if i < 0 or frame.objects[i].type == "DontCare":
                continue
            levels.add(frame.objects[i].occluded)
    assert 0 in levels and len(levels) >= 2


# ----------------------------------------------------------------------------- determinism and files
def test_render_is_deterministic():
    a, b = render_frame(11), render_frame(11)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.depth, b.depth)
    assert np.array_equal(a.points, b.points)
    assert [kitti.format_label_line(o) for o in a.objects] == [kitti.format_label_line(o) for o in b.objects]
    assert not np.array_equal(a.image, render_frame(12).image)


def test_frames_do_not_depend_on_split_sizes(tmp_path):
    one = generate(tmp_path / "a", num_train=1, num_val=1, seed=4, width=160, height=64)
    two = generate(tmp_path / "b", num_train=2, num_val=0, seed=4, width=160, height=64)
    for kind in ("image_2", "label_2", "velodyne", "depth_2", "calib"):
        for frame in ("000000", "000001"):
            assert (kitti.KittiPaths(one).file(kind, frame).read_bytes()
                    == kitti.KittiPaths(two).file(kind, frame).read_bytes())
    direct = render_frame(frame_seed(4, 1), 160, 64)
    assert np.array_equal(kitti.read_image(kitti.KittiPaths(one).file("image_2", "000001")), direct.image)


def test_layout_and_readers(synth_root):
    paths = kitti.KittiPaths(synth_root)
    train = kitti.read_split(paths.split("train"), synth_root / "training" / "image_2")
    val = kitti.read_split(paths.split("val"))
    assert train == ["000000", "000001", "000002", "000003"] and val == ["000004", "000005", "000006", "000007"]
    assert kitti.read_split(paths.split("trainval")) == train + val
    for kind in ("image_2", "calib", "label_2", "velodyne", "depth_2"):
        assert sorted(p.stem for p in (synth_root / "training" / kind).iterdir()) == train + val
    calib_expected = make_calibration(416, 128)
    for frame in train + val:
        image = kitti.read_image(paths.file("image_2", frame))
        assert image.shape == (128, 416, 3) and image.dtype == np.uint8 and image.std() > 10
        depth = kitti.read_depth(paths.file("depth_2", frame))
        assert depth.shape == (128, 416) and (depth == 0).any() and depth.max() < 256
        calib = kitti.read_calib(paths.file("calib", frame))
        assert np.allclose(calib.P2, calib_expected.P2) and np.allclose(calib.Tr_velo_to_cam, calib_expected.Tr_velo_to_cam)
        assert kitti.read_velodyne(paths.file("velodyne", frame)).shape[0] > 1000
        for obj in kitti.read_label(paths.file("label_2", frame)):
            assert obj.type in ("Car", "Van", "Pedestrian", "Cyclist", "DontCare")
            if obj.type != "DontCare":
                assert -math.pi <= wrap_angle(obj.alpha) <= math.pi and obj.h > 0


def test_cli_writes_a_dataset(tmp_path):
    import argparse

    from monokd.commands import synth as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "d"), "--num-train", "2", "--num-val", "1",
                              "--seed", "3", "--width", "128", "--height", "64"])
    assert (args.workers, args.num_train) == (1, 2)
    assert cli.run(args) == 0
    paths = kitti.KittiPaths(tmp_path / "d")
    assert kitti.read_split(paths.split("val")) == ["000002"]
    assert kitti.read_image(paths.file("image_2", "000002")).shape == (64, 128, 3)


def test_generate_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        generate(tmp_path, 0, 0, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_generate_reports_each_frame_written(tmp_path, workers):
    calls = []
    generate(tmp_path / "s", num_train=2, num_val=1, seed=0, width=64, height=32, workers=workers,
             progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
