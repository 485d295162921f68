"""Pictures: boxes land where the geometry says, the BEV is oriented right, `monokd show` works."""

from __future__ import annotations

import argparse
import math

import numpy as np

from monokd.data import kitti
from monokd.geometry.boxes import corners_3d
from monokd.geometry.calib import project
from monokd.commands import show
from monokd.viz.bev import BACKGROUND, GT_COLOR, PRED_COLOR, BevCanvas, draw_bev
from monokd.viz.draw import draw_boxes_3d, render_frame_picture
from tests.helpers import read_png

P = np.array([[100.0, 0, 200, 0], [0, 100, 100, 0], [0, 0, 1, 0]])  # a 400 x 200 image


def car(x=0.0, z=12.0, ry=-math.pi / 2, score=None) -> kitti.Object3D:
    return kitti.Object3D("Car", 0.0, 0, 0.0, np.array([0.0, 0, 1, 1]), 1.5, 1.6, 4.0,
                          np.array([x, 1.5, z]), ry, score)


def pixel(point):
    uv, _ = project(np.asarray(point, dtype=float)[None], P)
    return int(round(uv[0, 1])), int(round(uv[0, 0]))  # row, column


def test_box_edges_and_front_face_land_on_the_projection():
    image = np.zeros((200, 400, 3), np.uint8)
    obj = car(z=4.0)  # heading +z: the front face is the far face (z = 6 m; the near one at 2 m)
    out = draw_boxes_3d(image, [obj], P, front_alpha=0.5)
    assert image.sum() == 0  # the input is not drawn on
    corners = corners_3d(obj.dims, obj.location, np.asarray(obj.rotation_y))
    for corner in corners:
        row, col = pixel(corner)
        assert out[row - 1:row + 2, col - 1:col + 2, 1].max() > 100, corner
    # The front (far) face is filled; the part of the near face around it is not.
    far_centre = pixel(corners[[0, 1, 4, 5]].mean(0) + [0.0, 0.5, 0])  # below the cross's centre
    near_only = pixel([0.7, 1.2, 2.0])
    assert out[far_centre][1] > 50 and out[far_centre][0] < out[far_centre][1]
    assert out[near_only].sum() == 0


def test_boxes_behind_the_camera_are_clipped_or_skipped():
    image = np.zeros((200, 400, 3), np.uint8)
    assert draw_boxes_3d(image, [car(z=-10.0)], P).sum() == 0
    partly = draw_boxes_3d(image, [car(z=1.0, ry=0.3)], P)
    assert partly.sum() > 0


def test_bev_places_and_orients_footprints():
    canvas = BevCanvas((-20.0, 20.0), (0.0, 60.0), height=300)  # 5 px a metre
    assert canvas.size == (200, 300)
    obj = car(x=-10.0, z=30.0)  # heading +z (up the picture)
    bev = draw_bev(np.array([[5.0, 0.0, 40.0]]), [obj], [car(x=10.0, z=50.0, ry=0.0, score=0.9)], height=300)
    # The footprint spans x -10.8..-9.2, z 28..32: the box's left edge at column 46, rows 140..160.
    assert (bev[142:158, 46] == GT_COLOR).all(axis=-1).sum() >= 12
    # The heading line runs from the centre (50, 150) up to the front face (50, 140), not down.
    assert (bev[141:149, 50] == GT_COLOR).all(axis=-1).all()
    assert not (bev[152:159, 50] == GT_COLOR).all(axis=-1).any()
    # The prediction (x 10, z 50) in red around (150, 50); the point (x 5, z 40) at (125, 100).
    assert (bev[45:55, 135:165] == PRED_COLOR).all(axis=-1).any()
    assert (bev[100, 125] != BACKGROUND).any()


def test_frame_picture_combines_image_and_bev():
    image = np.full((300, 400, 3), 128, np.uint8)
    picture = render_frame_picture(image, P, [car()], [car(x=1.0, score=0.5)], None, title="t")
    assert picture.dtype == np.uint8 and picture.shape[0] == 360 and picture.shape[1] > 400
    assert (picture[:300, :400] == PRED_COLOR).all(axis=-1).any() and (picture[:300, :400] == GT_COLOR).all(axis=-1).any()
    # A small render is drawn enlarged (here 2x), its 2-D boxes and P2 scaled with it.
    small = np.zeros((128, 200, 3), np.uint8)  # ceil(250 / 128) = 2
    obj = car(z=20.0)
    obj.box2d = np.array([80.0, 40.0, 120.0, 60.0])
    picture = render_frame_picture(small, P * [[0.5], [0.5], [1]], [obj], None, None)
    assert picture.shape[0] == 360 and (picture[:256, :400] > 0).any()
    # The 2-D box 80..120 x 40..60 becomes 160.5..240.5 x 80.5..120.5 (pixel centres scale about -0.5).
    assert (picture[82:119, [160, 240], 1] > 150).all() and (picture[82:119, [150, 175, 225, 250], 1] == 0).all()


def test_show_command_writes_one_png_a_frame(kitti_samples, tmp_path):
    preds = tmp_path / "preds"
    objects = kitti.read_label(kitti_samples / "training" / "label_2" / "000003.txt")
    moved = [kitti.Object3D(**{**o.__dict__, "location": o.location + [1.0, 0, 2.0], "score": 0.75})
             for o in objects if o.type == "Car"]
    kitti.write_label(preds / "000003.txt", moved)
    parser = argparse.ArgumentParser()
    show.add_arguments(parser)  # the `monokd show` arguments, without importing every command
    code = show.run(parser.parse_args(["--root", str(kitti_samples), "--ids", "000003,000036",
                                       "--out", str(tmp_path / "out"), "--pred-dir", str(preds)]))
    assert code == 0
    picture = kitti.read_image(tmp_path / "out" / "000003.png")
    assert picture.shape[0] == 415 and picture.shape[1] > 1242
    assert (picture[:375, :1242] == PRED_COLOR).all(axis=-1).sum() > 100
    # The car of 000003 (2-D box 614-727 x 182-285) is outlined in green.
    green = (picture[170:300, 600:740] == GT_COLOR).all(axis=-1)
    assert green.sum() > 200
    # 000036 has no result file: its ground truth alone (the near car at 553-694 x 179-312)
    other = read_png(tmp_path / "out" / "000036.png")
    assert other.shape[0] == 415 and other.shape[1] > 1242
    assert not (other[:375, :1242] == PRED_COLOR).all(axis=-1).any()
    assert (other[165:325, 540:710] == GT_COLOR).all(axis=-1).sum() > 200


def test_docs_pictures_stay_small(kitti_samples, tmp_path):
    from monokd.viz.docs_pictures import real_pictures

    written = real_pictures(tmp_path, kitti_samples)
    assert len(written) == 2 and all(p.stat().st_size < 300_000 for p in written)
