"""Property tests: corrupt one field of a label, calib, split, velodyne or depth file and the
reader either reads the file correctly (the value read is the value written) or raises
monokd's KittiFormatError naming that file and that field: never another exception, never a
silent wrong value."""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from monokd.data import kitti
from monokd.data.checks import check_depth_size
from monokd.errors import KittiFormatError

CAR = "Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 1.00 1.75 13.22 1.62 0.93"
CALIB = {
    "P0": "7.0e+02 0 6.0e+02 0 0 7.0e+02 1.7e+02 0 0 0 1 0",
    "P1": "7.0e+02 0 6.0e+02 -3.8e+02 0 7.0e+02 1.7e+02 0 0 0 1 0",
    "P2": "7.0e+02 0 6.0e+02 4.5e+01 0 7.0e+02 1.7e+02 -0.3 0 0 1 0.005",
    "P3": "7.0e+02 0 6.0e+02 -3.3e+02 0 7.0e+02 1.7e+02 2.3 0 0 1 0.003",
    "R0_rect": "1 0 0 0 1 0 0 0 1",
    "Tr_velo_to_cam": "0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27",
    "Tr_imu_to_velo": "1 0 0 -0.8 0 1 0 0.3 0 0 1 -0.8",
}
SETTINGS = settings(max_examples=150, deadline=None)

# What a corrupted field may hold: numbers of every size and spelling, the non-numbers a
# float() would still accept (nan, inf, 1_000, non-ASCII digits) and printable garbage.
TOKENS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e4, 1e4).map(lambda v: f"{v:.2f}"),
    st.integers(-20, 20).map(str),
    st.sampled_from(["nan", "-inf", "1_000", "0x10", "\u0661\u0662", "1e400", "--1", ".", "1.2.3", "+.5",
                     "1e", "\u00bd", "-10", "-1", "3", "4", "1.0", "DontCare", "car", "Tram", "1e-3"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=6),
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder for the module: each example overwrites its file."""
    return tmp_path_factory.mktemp("fuzz")


# The test's own oracle: a KITTI number is a finite plain decimal, as C's printf writes it.
DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _is_number(token: str) -> bool:
    return DECIMAL.fullmatch(token) is not None and math.isfinite(float(token))


def _assert_names(err: KittiFormatError, path: Path, fields: set[str]) -> None:
    assert err.path == str(path), err
    assert err.field in fields, err


# --------------------------------------------------------------------------- label_2 / results
def _label_value(obj: kitti.Object3D, name: str):
    box = dict(zip(("x1", "y1", "x2", "y2"), obj.box2d))
    loc = dict(zip("xyz", obj.location))
    return {**box, **loc, "type": obj.type, "truncated": obj.truncated, "occluded": obj.occluded,
            "alpha": obj.alpha, "h": obj.h, "w": obj.w, "l": obj.l, "rotation_y": obj.rotation_y,
            "score": obj.score}[name]


# An inverted box is reported on x2 / y2 whichever corner was corrupted.
_PAIRED = {"x1": {"x1", "x2"}, "x2": {"x2"}, "y1": {"y1", "y2"}, "y2": {"y2"}}


@SETTINGS
@given(index=st.integers(0, 15), token=TOKENS)
def test_label_field_corruption_is_read_or_named(work, index, token):
    parts = CAR.split()
    parts[index] = token
    name = kitti.LABEL_FIELDS[index]
    path = work / "000000.txt"
    path.write_text(" ".join(parts) + "\n")
    try:
        (obj,) = kitti.read_label(path)
    except KittiFormatError as err:
        _assert_names(err, path, _PAIRED.get(name, {name}))
        assert err.line == 1
        return
    if name == "type":
        assert obj.type == token
        assert token == "DontCare" or token.lower() not in {c.lower() for c in kitti.CLASSES} or token in kitti.CLASSES
    else:
        assert _is_number(token) and _label_value(obj, name) == float(token)
        assert _in_kitti_range(name, float(token)), f"{name} = {token} was accepted"


# The devkit readme's ranges (the test's own copy), given CAR's other values.
_ANGLE = math.pi + 0.01
_RANGES = {"truncated": (0, 1), "alpha": (-_ANGLE, _ANGLE), "rotation_y": (-_ANGLE, _ANGLE),
           "h": (0, 100), "w": (0, 100), "l": (0, 100), "x": (-1000, 1000), "y": (-1000, 1000),
           "z": (-1000, 1000), "x1": (-math.inf, 727.31), "x2": (614.24, math.inf),
           "y1": (-math.inf, 284.77), "y2": (181.78, math.inf), "score": (-math.inf, math.inf)}


def _in_kitti_range(name: str, value: float) -> bool:
    if name == "occluded":
        return value in (0, 1, 2, 3)
    if name == "alpha" and value == -10:
        return True  # "not estimated"
    low, high = _RANGES[name]
    return low <= value <= high


# --------------------------------------------------------------------------- calib
@SETTINGS
@given(key=st.sampled_from(sorted(CALIB)), op=st.sampled_from(["value", "drop", "short", "twice", "rename"]),
       position=st.integers(0, 11), token=TOKENS)
def test_calib_field_corruption_is_read_or_named(work, key, op, position, token):
    lines = dict(CALIB)
    values = lines[key].split()
    position %= len(values)
    if op == "value":
        values[position] = token
        lines[key] = " ".join(values)
    elif op == "short":
        lines[key] = " ".join(values[:position])
    text = "".join(f"{k}: {v}\n" for k, v in lines.items() if not (op == "drop" and k == key))
    if op == "twice":
        text += f"{key}: {token}\n"
    if op == "rename":
        text = text.replace(f"{key}:", f"{key}x:")
    path = work / "000000.txt"
    path.write_text(text)
    try:
        calib = kitti.read_calib(path)
    except KittiFormatError as err:
        _assert_names(err, path, {key})
        return
    assert op == "value", f"{op} went unnoticed"
    assert _is_number(token) and getattr(calib, key).reshape(-1)[position] == float(token)
    for other in CALIB:
        expected = np.array([float(v) for v in lines[other].split()])
        np.testing.assert_array_equal(getattr(calib, other).reshape(-1), expected)
    # what was accepted can be right: P2 a camera matrix, R0_rect a rotation
    assert calib.P2[0, 0] > 0 and calib.P2[1, 1] > 0 and np.allclose(calib.P2[2, :3], [0, 0, 1], atol=1e-3)
    assert np.allclose(calib.R0_rect @ calib.R0_rect.T, np.eye(3), atol=1e-2) and np.linalg.det(calib.R0_rect) > 0


# --------------------------------------------------------------------------- ImageSets split
@SETTINGS
@given(line=st.integers(0, 2), token=st.one_of(TOKENS, st.integers(0, 10).map(str)))
def test_split_line_corruption_is_read_or_named(work, line, token):
    tokens = ["000001", "000002", "000003"]
    tokens[line] = token
    path = work / "val.txt"
    path.write_text("\n".join(tokens) + "\n")
    try:
        ids = kitti.read_split(path)
    except KittiFormatError as err:
        _assert_names(err, path, {"id"})
        assert err.line in (1, 2, 3)
        return
    assert token.isascii() and token.isdigit()
    assert ids[line] == token.zfill(6) and len(set(ids)) == 3


# --------------------------------------------------------------------------- velodyne
_POINTS = np.array([[5.0, 1.0, -1.5, 0.2], [12.0, -3.0, -1.7, 0.9], [40.0, 8.0, 0.5, 0.0]], dtype=np.float32)
_COLUMNS = ("x", "y", "z", "reflectance")


@SETTINGS
@given(op=st.sampled_from(["value", "truncate"]), point=st.integers(0, 2), column=st.integers(0, 3),
       value=st.floats(width=32), size=st.integers(0, _POINTS.nbytes - 1))
def test_velodyne_corruption_is_read_or_named(work, op, point, column, value, size):
    points = _POINTS.copy()
    path = work / "000000.bin"
    if op == "value":
        points[point, column] = value
        points.tofile(path)
    else:
        path.write_bytes(points.tobytes()[:size])
    try:
        read = kitti.read_velodyne(path)
    except KittiFormatError as err:
        _assert_names(err, path, {"size"} if op == "truncate" else {_COLUMNS[column]})
        return
    if op == "truncate":
        assert size % 16 == 0
        np.testing.assert_array_equal(read, points[: size // 16])
    else:
        low, high = (0.0, 1.0) if column == 3 else (-kitti.MAX_DISTANCE, kitti.MAX_DISTANCE)
        assert low <= value <= high
        np.testing.assert_array_equal(read, points)


# --------------------------------------------------------------------------- depth_2
@SETTINGS
@given(op=st.sampled_from(["uint16", "uint8", "rgb", "npy", "size"]), pixel=st.integers(0, 19),
       raw=st.integers(0, 65535), value=st.floats(width=32), shape=st.tuples(st.integers(1, 6), st.integers(1, 6)))
def test_depth_corruption_is_read_or_named(work, op, pixel, raw, value, shape):
    folder = work
    depth = np.full((4, 5), 2560, dtype=np.uint16)  # 10 m
    depth.flat[pixel] = raw
    path = folder / ("000000.npy" if op == "npy" else "000000.png")
    if op == "uint16":
        cv2.imwrite(str(path), depth)
    elif op == "uint8":
        cv2.imwrite(str(path), (depth // 256).astype(np.uint8))
    elif op == "rgb":
        cv2.imwrite(str(path), np.repeat(depth[..., None], 3, axis=2))
    elif op == "npy":
        metres = depth.astype(np.float32) / 256.0
        metres.flat[pixel] = value
        np.save(path, metres)
    else:
        cv2.imwrite(str(path), np.full(shape, 2560, dtype=np.uint16))  # 10 m, another size
    expected_fields = {"uint8": {"dtype"}, "rgb": {"channels"}, "npy": {"depth"}, "size": {"size"}}.get(op, set())
    try:
        read = kitti.read_depth(path)
        check_depth_size(read, path, (5, 4))  # the frame's image is 5 x 4
    except KittiFormatError as err:
        _assert_names(err, path, expected_fields)
        return
    if op == "uint16":
        np.testing.assert_array_equal(read, depth.astype(np.float32) / 256.0)
    elif op == "npy":
        assert math.isfinite(value) and value >= 0 and read.flat[pixel] == value
    else:
        assert op == "size" and shape == (4, 5)


# --------------------------------------------------------------------------- any bytes at all
_READERS = {"label": kitti.read_label, "calib": kitti.read_calib, "split": kitti.read_split}


@SETTINGS
@given(kind=st.sampled_from(sorted(_READERS)), data=st.binary(max_size=300),
       prefix=st.sampled_from([b"", b"\xef\xbb\xbf", CAR.encode() + b"\n"]))
def test_any_bytes_are_read_or_named(work, kind, data, prefix):
    """Arbitrary bytes (binary garbage, a byte-order mark, NULs) never raise anything but
    KittiFormatError naming the file."""
    path = work / f"bytes_{kind}.txt"
    path.write_bytes(prefix + data)
    try:
        _READERS[kind](path)
    except KittiFormatError as err:
        assert err.path == str(path)


def test_byte_order_mark_is_not_part_of_the_first_field(work):
    path = work / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + CAR.encode() + b"\r\n")
    assert kitti.read_label(path)[0].type == "Car"
    path.write_bytes(b"\xef\xbb\xbf000007\r\n000008\n")
    assert kitti.read_split(path) == ["000007", "000008"]
