"""Geometry: hand-checked values, round trips, numpy == torch, and the real KITTI frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monokd.data import kitti
from monokd.geometry import boxes, calib as cal

P_SIMPLE = np.array([[700.0, 0, 600, 0], [0, 700, 180, 0], [0, 0, 1, 0]])
# KITTI's P2 of 000003: an offset column, so the camera is not the reference camera.
P_KITTI = np.array([[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791],
                    [0, 0, 1, 0.002745884]])


def make_calib(rng=None) -> kitti.Calibration:
    """A calibration with a non-trivial rotation and translation."""
    a, b = 0.02, -0.015
    r0 = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    tr = np.array([[0, -1, 0, 0.01], [math.sin(b), 0, -math.cos(b), -0.08], [math.cos(b), 0, math.sin(b), -0.27]])
    return kitti.Calibration(P0=P_KITTI, P1=P_KITTI, P2=P_KITTI, P3=P_KITTI, R0_rect=r0,
                             Tr_velo_to_cam=tr, Tr_imu_to_velo=np.eye(3, 4))


def random_boxes(n, seed=0):
    rng = np.random.default_rng(seed)
    dims = rng.uniform([1.2, 0.5, 0.6], [2.5, 2.0, 5.0], (n, 3))
    loc = np.stack([rng.uniform(-15, 15, n), rng.uniform(1.0, 2.0, n), rng.uniform(4, 60, n)], -1)
    return dims, loc, rng.uniform(-math.pi, math.pi, n)


# --- hand-checked values -------------------------------------------------------------------

def test_corners_of_an_axis_aligned_box():
    corners = boxes.corners_3d(np.array([2.0, 1.0, 4.0]), np.array([1.0, 2.0, 10.0]), np.array(0.0))
    expected = [[3, 2, 10.5], [3, 2, 9.5], [-1, 2, 9.5], [-1, 2, 10.5],
                [3, 0, 10.5], [3, 0, 9.5], [-1, 0, 9.5], [-1, 0, 10.5]]
    np.testing.assert_allclose(corners, expected, atol=1e-12)
    # The front face (0, 1, 5, 4) is at local +x: at rotation_y = 0 that is camera +x.
    assert (corners[list(boxes.FRONT_FACE), 0] == 3).all()


def test_corners_of_a_rotated_box():
    # rotation_y = pi/2: the heading (local +x) turns to camera -z, towards the camera.
    corners = boxes.corners_3d(np.array([2.0, 1.0, 4.0]), np.array([1.0, 2.0, 10.0]), np.array(math.pi / 2))
    np.testing.assert_allclose(corners[0], [1.5, 2, 8], atol=1e-12)
    np.testing.assert_allclose(corners[6], [0.5, 0, 12], atol=1e-12)
    assert np.allclose(corners[list(boxes.FRONT_FACE), 2], 8)
    np.testing.assert_allclose(boxes.box_center(np.array([2.0, 1.0, 4.0]), np.array([1.0, 2.0, 10.0])), [1, 1, 10])


def test_projection_by_hand():
    uv, z = cal.project(np.array([[1.0, 2.0, 10.0]]), P_SIMPLE)
    np.testing.assert_allclose(uv, [[670, 320]])
    assert z[0] == 10
    # The box above spans x -1..3, y 0..2, z 9.5..10.5: extremes at the near face.
    box = boxes.project_boxes(np.array([[2.0, 1.0, 4.0]]), np.array([[1.0, 2.0, 10.0]]), np.array([0.0]), P_SIMPLE)
    np.testing.assert_allclose(box, [[600 - 700 / 9.5, 180, 600 + 2100 / 9.5, 180 + 1400 / 9.5]])


def test_alpha_rotation_y_by_hand_and_round_trip():
    assert boxes.alpha_from_rotation_y(0.0, 5.0, 5.0) == pytest.approx(-math.pi / 4)
    assert boxes.alpha_from_rotation_y(-math.pi / 2, 0.0, 20.0) == pytest.approx(-math.pi / 2)
    # A label of 000003: Car, x 1.00, z 13.22, rotation_y 1.62 -> alpha 1.55 (printed).
    assert boxes.alpha_from_rotation_y(1.62, 1.00, 13.22) == pytest.approx(1.55, abs=0.01)
    rng = np.random.default_rng(1)
    ry, x, z = rng.uniform(-math.pi, math.pi, 100), rng.uniform(-20, 20, 100), rng.uniform(1, 60, 100)
    alpha = boxes.alpha_from_rotation_y(ry, x, z)
    assert (alpha >= -math.pi).all() and (alpha < math.pi).all()
    back = boxes.rotation_y_from_alpha(alpha, x, z)
    np.testing.assert_allclose(boxes.wrap_angle(back - ry), 0, atol=1e-12)


# --- round trips ---------------------------------------------------------------------------

def test_lidar_rect_round_trip():
    calib = make_calib()
    points = np.random.default_rng(2).uniform(-30, 30, (50, 3))
    rect = cal.lidar_to_rect(points, calib)
    np.testing.assert_allclose(cal.rect_to_lidar(rect, calib), points, atol=1e-10)
    # LiDAR x (forward) is about camera z; LiDAR y (left) about camera -x.
    forward = cal.lidar_to_rect(np.array([[10.0, 0, 0]]), calib)[0]
    assert 9.6 < forward[2] < 9.8 and abs(forward[0]) < 0.3


def test_rect_image_round_trip_numpy_and_batched_torch():
    rng = np.random.default_rng(3)
    points = np.stack([rng.uniform(-20, 20, 30), rng.uniform(-2, 3, 30), rng.uniform(1, 70, 30)], -1)
    uv, z = cal.project(points, P_KITTI)
    np.testing.assert_allclose(cal.unproject(uv, z, P_KITTI), points, atol=1e-9)
    # Batched torch: (B, N, 3) points with (B, 3, 4) matrices give the numpy values.
    P_batch = torch.tensor(np.stack([P_KITTI, P_SIMPLE]))
    pts = torch.tensor(np.stack([points, points[::-1].copy()]))
    uv_t, z_t = cal.project(pts, P_batch)
    np.testing.assert_allclose(uv_t[0].numpy(), uv, rtol=1e-12)
    np.testing.assert_allclose(uv_t[1].numpy(), cal.project(points[::-1], P_SIMPLE)[0], rtol=1e-12)
    np.testing.assert_allclose(cal.unproject(uv_t, z_t, P_batch).numpy(), pts.numpy(), atol=1e-9)


def test_transform_intrinsics_matches_the_image_affine():
    affine = np.array([[0.5, 0.0, -10.0], [0.0, 0.4, 7.0]])
    points = np.array([[1.0, 1.5, 10.0], [-4.0, 0.5, 30.0]])
    uv, _ = cal.project(points, P_KITTI)
    moved, _ = cal.project(points, cal.transform_intrinsics(P_KITTI, affine))
    np.testing.assert_allclose(moved, uv @ affine[:, :2].T + affine[:, 2], atol=1e-9)


# --- numpy == torch ------------------------------------------------------------------------

def test_torch_and_numpy_agree_and_torch_has_gradients():
    dims, loc, ry = random_boxes(16)
    loc[0, 2] = 1.0  # a box reaching behind the camera
    np_boxes = boxes.project_boxes(dims, loc, ry, P_KITTI, image_size=(1242, 375))
    t = [torch.tensor(a, requires_grad=True) for a in (dims, loc, ry)]
    t_boxes = boxes.project_boxes(*t, torch.tensor(P_KITTI), image_size=(1242, 375))
    np.testing.assert_allclose(t_boxes.detach().numpy(), np_boxes, rtol=1e-12)
    np.testing.assert_allclose(boxes.corners_3d(*t).detach().numpy(), boxes.corners_3d(dims, loc, ry), rtol=1e-12)
    alpha_t = boxes.alpha_from_rotation_y(t[2], t[1][:, 0], t[1][:, 2])
    np.testing.assert_allclose(alpha_t.detach().numpy(), boxes.alpha_from_rotation_y(ry, loc[:, 0], loc[:, 2]))
    boxes.project_boxes(*t, torch.tensor(P_KITTI)).sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in t) and t[1].grad.abs().sum() > 0
    # Batched: (B, N) boxes with one P per frame.
    batched = boxes.project_boxes(*(x.detach().reshape(2, 8, *x.shape[1:]) for x in t),
                                  torch.tensor(np.stack([P_KITTI, P_SIMPLE])))
    np.testing.assert_allclose(batched[1].numpy(), boxes.project_boxes(dims[8:], loc[8:], ry[8:], P_SIMPLE), rtol=1e-12)


def test_box_partly_behind_camera_projects_its_visible_part():
    dims, loc, ry = np.array([[1.5, 1.8, 6.0]]), np.array([[2.0, 1.6, 1.0]]), np.array([0.4])
    box = boxes.project_boxes(dims, loc, ry, P_SIMPLE)[0]
    # Dense samples of the edges in front of the near plane span the same extent.
    corners = boxes.corners_3d(dims, loc, ry)[0]
    t = np.linspace(0, 1, 20001)[:, None]
    samples = np.concatenate([corners[i] + t * (corners[j] - corners[i]) for i, j in boxes.EDGES])
    samples = samples[samples[:, 2] >= 0.1]
    uv, _ = cal.project(samples, P_SIMPLE)
    np.testing.assert_allclose(box, [*uv.min(0), *uv.max(0)], rtol=1e-3)
    assert np.isfinite(boxes.project_boxes(dims, loc * [1, 1, -5], ry, P_SIMPLE)).all()  # wholly behind


def test_points_in_boxes():
    dims, loc, ry = np.array([[2.0, 1.0, 4.0]]), np.array([[1.0, 2.0, 10.0]]), np.array([math.pi / 2])
    # Rotated by pi/2 the box spans x 0.5..1.5, z 8..12, y 0..2.
    pts = np.array([[1.0, 1.0, 10.0], [1.4, 0.1, 11.9], [1.6, 1.0, 10.0], [1.0, 1.0, 12.1], [1.0, 2.1, 10.0]])
    assert boxes.points_in_boxes(pts, dims, loc, ry)[:, 0].tolist() == [True, True, False, False, False]


# --- the real KITTI frames -----------------------------------------------------------------

def _read_frame(root, frame):
    part = root / "training"
    return kitti.read_calib(part / "calib" / f"{frame}.txt"), kitti.read_label(part / "label_2" / f"{frame}.txt")


def test_projected_3d_boxes_match_labelled_2d_boxes(kitti_samples):
    errors = []
    for path in sorted((kitti_samples / "training" / "label_2").glob("*.txt")):
        calib, objects = _read_frame(kitti_samples, path.stem)
        width, height = kitti.read_image(kitti_samples / "training" / "image_2" / f"{path.stem}.png").shape[1::-1]
        clean = [o for o in objects if o.type != "DontCare" and o.truncated == 0 and o.occluded == 0]
        if not clean:
            continue
        dims = np.stack([o.dims for o in clean])
        loc = np.stack([o.location for o in clean])
        ry = np.array([o.rotation_y for o in clean])
        projected = boxes.project_boxes(dims, loc, ry, calib.P2, image_size=(width, height))
        labelled = np.stack([o.box2d for o in clean])
        errors.extend(np.abs(projected - labelled).mean(axis=1))
    assert len(errors) >= 20
    assert np.median(errors) < 3.0, f"median 2-D box error {np.median(errors):.2f} px"


@pytest.mark.parametrize("frame", ["000000", "000001", "000002", "000003", "000004"])
def test_lidar_points_project_where_expected(kitti_samples, frame):
    calib, objects = _read_frame(kitti_samples, frame)
    points = kitti.read_velodyne(kitti_samples / "training" / "velodyne" / f"{frame}.bin")
    width, height = kitti.read_image(kitti_samples / "training" / "image_2" / f"{frame}.png").shape[1::-1]
    rect = cal.lidar_to_rect(points[:, :3], calib)
    uv, z = cal.lidar_to_image(points[:, :3], calib)
    # The frustum: rays through the image's corner pixels, unprojected at each point's depth.
    front = z > 1.0
    lo = cal.unproject(np.zeros((front.sum(), 2)), z[front], calib.P2)
    hi = cal.unproject(np.tile([width - 1.0, height - 1.0], (front.sum(), 1)), z[front], calib.P2)
    in_frustum = ((rect[front, 0] > lo[:, 0]) & (rect[front, 0] < hi[:, 0])
                  & (rect[front, 1] > lo[:, 1]) & (rect[front, 1] < hi[:, 1]))
    uv_in = uv[front][in_frustum]
    assert in_frustum.sum() > 10000  # a KITTI sweep has ~20k points in view
    assert ((uv_in >= 0) & (uv_in <= [width - 1, height - 1])).all()
    # Points inside a labelled object's 3-D box (cars, and 000000's pedestrian) fall inside its 2-D box.
    checked = 0
    for obj in objects:
        if obj.type == "DontCare" or obj.occluded > 0:
            continue
        inside = boxes.points_in_boxes(rect, obj.dims[None], obj.location[None], np.array([obj.rotation_y]))[:, 0]
        if inside.sum() < 10:
            continue
        x1, y1, x2, y2 = obj.box2d
        u, v = uv[inside, 0], uv[inside, 1]
        hit = (u >= x1 - 3) & (u <= x2 + 3) & (v >= y1 - 3) & (v <= y2 + 3)
        assert hit.mean() > 0.97, f"{frame} {obj.type}: {hit.mean():.2f} of {inside.sum()} points in its 2-D box"
        checked += 1
    assert checked >= 1
