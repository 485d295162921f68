"""KITTI readers and writers: round trips, and one clear error for each kind of bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from monokd.data import kitti
from monokd.errors import KittiFormatError

CAR = "Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 1.00 1.75 13.22 1.62"
CALIB = {
    "P0": "7.215377e+02 0 6.095593e+02 0 0 7.215377e+02 1.72854e+02 0 0 0 1 0",
    "P1": "7.215377e+02 0 6.095593e+02 -3.875744e+02 0 7.215377e+02 1.72854e+02 0 0 0 1 0",
    "P2": "7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.215377e+02 1.72854e+02 2.163791e-01 0 0 1 2.745884e-03",
    "P3": "7.215377e+02 0 6.095593e+02 -3.395242e+02 0 7.215377e+02 1.72854e+02 2.199936e+00 0 0 1 2.729905e-03",
    "R0_rect": "1 0 0 0 1 0 0 0 1",
    "Tr_velo_to_cam": "0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27",
    "Tr_imu_to_velo": "1 0 0 -0.81 0 1 0 0.32 0 0 1 -0.8",
}


def write_calib_text(path, skip=(), replace=None):
    lines = [f"{k}: {replace[k] if replace and k in replace else v}" for k, v in CALIB.items() if k not in skip]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_names(err: KittiFormatError, path, line, field):
    """The message itself (what a user sees) names the file, the line and the field."""
    message = str(err)
    assert str(path) in message
    assert err.path == str(path) and err.line == line and err.field == field
    if line is not None:
        assert f"{path}:{line}" in message
    assert f"'{field}'" in message


# --- label_2 -------------------------------------------------------------------------------

def test_label_line_parses_into_typed_object():
    obj = kitti.parse_label_line(CAR)
    assert obj.type == "Car" and obj.occluded == 0 and obj.score is None
    np.testing.assert_allclose(obj.box2d, [614.24, 181.78, 727.31, 284.77])
    np.testing.assert_allclose(obj.dims, [1.57, 1.73, 4.15])
    np.testing.assert_allclose(obj.location, [1.00, 1.75, 13.22])
    assert obj.rotation_y == pytest.approx(1.62) and obj.height_2d == pytest.approx(102.99)


def test_label_round_trip_with_score_and_dontcare(tmp_path):
    lines = [CAR + " 0.8765",
             "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10",
             "Pedestrian 0.31 2 -0.00 1.00 2.00 3.00 4.00 1.76 0.66 0.84 -3.21 1.50 25.00 -3.14"]
    path = tmp_path / "000001.txt"
    path.write_text("\n".join(lines) + "\n\n")
    objects = kitti.read_label(path)
    assert [o.type for o in objects] == ["Car", "DontCare", "Pedestrian"]
    assert objects[0].score == pytest.approx(0.8765) and objects[1].score is None
    out = tmp_path / "out.txt"
    kitti.write_label(out, objects)
    assert out.read_text().splitlines() == lines


def test_real_label_files_round_trip(kitti_samples, tmp_path):
    files = sorted((kitti_samples / "training" / "label_2").glob("*.txt"))
    assert len(files) == 22
    for path in files:
        objects = kitti.read_label(path)
        kitti.write_label(tmp_path / path.name, objects)
        assert (tmp_path / path.name).read_text().split("\n") == path.read_text().split("\n"), path.name


@pytest.mark.parametrize("text, line, field", [
    (" ".join(CAR.split()[:14]), 2, "rotation_y"),                 # short line
    (" ".join(CAR.split()[:5]), 2, "y1"),
    (CAR.replace(" 1.57 ", " 1.5x7 "), 2, "h"),                   # not a number
    (CAR.replace(" 13.22 ", " nan "), 2, "z"),                    # not finite
    (CAR.replace(" 1.73 ", " -1.73 "), 2, "w"),                   # negative dimension
    (CAR.replace("Car 0.00 0 ", "Car 0.00 0.5 "), 2, "occluded"),  # not an integer
    (CAR + " 0.5 7", 2, "score"),                                 # too many fields
])
def test_malformed_label_names_file_line_and_field(tmp_path, text, line, field):
    path = tmp_path / "000007.txt"
    path.write_text(CAR + "\n" + text + "\n")
    with pytest.raises(KittiFormatError) as info:
        kitti.read_label(path)
    assert_names(info.value, path, line, field)


def test_missing_label_file_is_reported(tmp_path):
    with pytest.raises(KittiFormatError, match="label file not found"):
        kitti.read_label(tmp_path / "nope.txt")


# --- calib ---------------------------------------------------------------------------------

def test_calib_reads_all_matrices_and_round_trips(tmp_path):
    calib = kitti.read_calib(write_calib_text(tmp_path / "c.txt"))
    assert calib.P2.shape == (3, 4) and calib.R0_rect.shape == (3, 3)
    assert calib.P2[0, 3] == pytest.approx(44.85728) and calib.Tr_velo_to_cam[1, 3] == pytest.approx(-0.08)
    kitti.write_calib(tmp_path / "d.txt", calib)
    again = kitti.read_calib(tmp_path / "d.txt")
    for key in kitti.CALIB_KEYS:
        np.testing.assert_array_equal(getattr(again, key), getattr(calib, key))


def test_real_calib_files_parse(kitti_samples):
    for path in sorted((kitti_samples / "training" / "calib").glob("*.txt")):
        calib = kitti.read_calib(path)
        assert 700 < calib.P2[0, 0] < 730 and calib.P2[2, 2] == 1.0, path.name


def test_missing_calib_key_is_named(tmp_path):
    path = write_calib_text(tmp_path / "c.txt", skip=("Tr_velo_to_cam",))
    with pytest.raises(KittiFormatError) as info:
        kitti.read_calib(path)
    assert_names(info.value, path, None, "Tr_velo_to_cam")
    assert "missing" in str(info.value)


@pytest.mark.parametrize("key, value, line", [
    ("P2", CALIB["P2"].replace("4.485728e+01", "abc"), 3),
    ("R0_rect", "1 0 0 0 1 0 0 0", 5),  # 8 numbers, not 9
])
def test_malformed_calib_value_names_line_and_key(tmp_path, key, value, line):
    path = write_calib_text(tmp_path / "c.txt", replace={key: value})
    with pytest.raises(KittiFormatError) as info:
        kitti.read_calib(path)
    assert_names(info.value, path, line, key)


# --- velodyne, images, depth ---------------------------------------------------------------

def test_velodyne_round_trip_and_bad_size(tmp_path):
    points = np.arange(40, dtype=np.float32).reshape(10, 4)
    points[:, 3] = np.linspace(0.0, 1.0, 10)  # reflectance in [0, 1]
    kitti.write_velodyne(tmp_path / "v.bin", points)
    np.testing.assert_array_equal(kitti.read_velodyne(tmp_path / "v.bin"), points)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(points.tobytes()[:-4])  # 156 bytes: the last point is cut
    with pytest.raises(KittiFormatError) as info:
        kitti.read_velodyne(bad)
    assert_names(info.value, bad, None, "size")
    assert "156 bytes" in str(info.value)


def test_real_velodyne_reads(kitti_samples):
    points = kitti.read_velodyne(kitti_samples / "training" / "velodyne" / "000000.bin")
    assert points.shape == (115384, 4) and points.dtype == np.float32


def test_image_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    kitti.write_image(tmp_path / "i.png", image)
    np.testing.assert_array_equal(kitti.read_image(tmp_path / "i.png"), image)
    with pytest.raises(KittiFormatError, match="not readable"):
        kitti.read_image(tmp_path / "missing.png")


def test_depth_png_is_uint16_over_256_with_zero_as_none(tmp_path):
    import cv2

    depth = np.array([[0.0, 1.0, 2.5], [80.25, 0.00390625, 255.99609375]], dtype=np.float32)
    kitti.write_depth(tmp_path / "d.png", depth)
    raw = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_ANYDEPTH)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, [[0, 256, 640], [20544, 1, 65535]])
    np.testing.assert_array_equal(kitti.read_depth(tmp_path / "d.png"), depth)


def test_nan_in_depth_is_reported_not_propagated(tmp_path):
    depth = np.ones((4, 5), dtype=np.float32)
    depth[2, 3] = np.nan
    np.save(tmp_path / "d.npy", depth)
    with pytest.raises(KittiFormatError) as info:
        kitti.read_depth(tmp_path / "d.npy")
    assert_names(info.value, tmp_path / "d.npy", 3, "depth")
    assert re.search(r"row 2, column 3", str(info.value))
    cleaned = kitti.read_depth(tmp_path / "d.npy", nan_policy="zero")
    assert np.isfinite(cleaned).all() and cleaned[2, 3] == 0 and cleaned.sum() == 19


# --- ImageSets -----------------------------------------------------------------------------

def test_split_file_reads_ids_and_checks_images(tmp_path):
    images = tmp_path / "image_2"
    images.mkdir()
    for frame in ("000001", "000003"):
        (images / f"{frame}.png").write_bytes(b"")
    split = tmp_path / "val.txt"
    split.write_text("000001\n\n3\n")
    assert kitti.read_split(split, images) == ["000001", "000003"]
    kitti.write_split(tmp_path / "w.txt", ["000001", "000003"])
    assert (tmp_path / "w.txt").read_text() == "000001\n000003\n"
    split.write_text("000001\n000003\n000004\n")
    with pytest.raises(KittiFormatError) as info:
        kitti.read_split(split, images)
    assert_names(info.value, split, 3, "id")
    assert "000004" in str(info.value)
    split.write_text("000001\nabc\n")
    with pytest.raises(KittiFormatError) as info:
        kitti.read_split(split)
    assert_names(info.value, split, 2, "id")


# --- difficulty ----------------------------------------------------------------------------

def test_difficulty_follows_the_devkit_levels():
    height = [40, 39.9, 25, 24.9, 60, 60, 60, 60, 60]
    occluded = [0, 0, 1, 0, 2, 3, 0, 0, 0]
    truncated = [0.15, 0.0, 0.3, 0.0, 0.5, 0.0, 0.16, 0.31, 0.51]
    np.testing.assert_array_equal(kitti.difficulty(height, occluded, truncated),
                                  [0, 1, 1, -1, 2, -1, 1, 2, -1])
    # Scaled minimum heights for a 128-row render: 40 and 25 * 128/375 = 13.65 and 8.53 px.
    np.testing.assert_array_equal(kitti.difficulty([13.7, 13.6, 8.6, 8.5], [0] * 4, [0] * 4, 128 / 375),
                                  [0, 1, 1, -1])


from hypothesis import given, settings, strategies as st  # noqa: E402

_finite = st.floats(-1000, 1000, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["Car", "Pedestrian", "Cyclist", "Van"]), trunc=st.floats(0, 1),
       occ=st.integers(0, 3), box=st.lists(_finite, min_size=4, max_size=4),
       dims=st.lists(st.floats(0.01, 20), min_size=3, max_size=3), loc=st.lists(_finite, min_size=3, max_size=3),
       angles=st.lists(st.floats(-math.pi, math.pi), min_size=2, max_size=2),
       score=st.none() | st.floats(0, 1))
def test_label_write_read_is_identity_to_the_printed_precision(kind, trunc, occ, box, dims, loc, angles, score):
    box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]  # x1 <= x2, y1 <= y2
    obj = kitti.Object3D(kind, trunc, occ, angles[0], np.array(box), *dims, np.array(loc), angles[1], score)
    text = kitti.format_label_line(obj)
    again = kitti.parse_label_line(text)
    assert kitti.format_label_line(again) == text
    np.testing.assert_allclose(again.location, loc, atol=0.005 + 1e-9)
    np.testing.assert_allclose([again.h, again.w, again.l], dims, atol=0.005 + 1e-9)
    assert again.occluded == occ and (again.score is None) == (score is None)
