"""IoU of image boxes, bird's-eye-view rectangles and 3-D boxes: hand-computed values and
properties (symmetry, range, translation invariance)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monokd.geometry.iou import iou_2d, iou_3d, iou_bev, polygon_intersection_area


def box(x=0.0, z=10.0, l=4.0, w=2.0, ry=0.0, y=1.5, h=1.5):  # noqa: E741
    """(1, 7) x, y, z, h, w, l, rotation_y."""
    return np.array([[x, y, z, h, w, l, ry]], dtype=np.float64)


# ----------------------------------------------------------------------- image boxes
def test_iou_2d_hand_values():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[5.0, 5.0, 15.0, 15.0],     # 25 / 175
                  [10.0, 0.0, 20.0, 10.0],    # touching edge
                  [2.0, 2.0, 4.0, 4.0],       # nested: 4 / 100
                  [0.0, 0.0, 10.0, 10.0],     # identical
                  [30.0, 30.0, 40.0, 40.0],   # disjoint
                  [3.0, 3.0, 3.0, 8.0]])      # zero width
    got = iou_2d(a, b)[0]
    np.testing.assert_allclose(got, [25 / 175, 0.0, 0.04, 1.0, 0.0, 0.0], rtol=0, atol=1e-15)


def test_iou_2d_no_plus_one_and_area_of_a_criterion():
    # devkit: areas are (x2-x1)*(y2-y1) without +1; criterion "a" divides by a's area
    a = np.array([[0.0, 0.0, 4.0, 4.0]])
    b = np.array([[2.0, 0.0, 10.0, 4.0]])
    assert iou_2d(a, b)[0, 0] == pytest.approx(8 / (16 + 32 - 8), abs=1e-15)
    assert iou_2d(a, b, criterion="a")[0, 0] == pytest.approx(8 / 16, abs=1e-15)


def test_iou_2d_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    a = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 2.0, 3.0, 9.0]])
    b = np.array([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 10.0, 10.0]])
    got = iou_2d(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(got, iou_2d(a, b), atol=1e-12)


# ----------------------------------------------------------------------- bird's-eye view
def test_bev_axis_aligned_shift():
    # 4 x 2 footprints shifted by 2 m along x (the length axis): 2*2 / (8 + 8 - 4)
    assert iou_bev(box(), box(x=2.0))[0, 0] == pytest.approx(4 / 12, abs=1e-12)


def test_bev_rotated_quarter_turn():
    # a 4 x 2 box and the same box turned by 90 degrees: 2 x 2 overlap
    assert iou_bev(box(), box(ry=math.pi / 2))[0, 0] == pytest.approx(4 / 12, abs=1e-12)


def test_bev_square_and_diamond():
    # 2 x 2 square vs the same square turned 45 degrees: an octagon of area 8*sqrt(2) - 8
    inter = 8 * math.sqrt(2) - 8
    got = iou_bev(box(l=2, w=2), box(l=2, w=2, ry=math.pi / 4))[0, 0]
    assert got == pytest.approx(inter / (8 - inter), abs=1e-12)


def test_bev_nested_disjoint_touching_identical():
    big = box(l=6, w=4, ry=0.3)
    small = box(l=2, w=1, ry=0.3)
    assert iou_bev(big, small)[0, 0] == pytest.approx(2 / 24, abs=1e-12)
    assert iou_bev(box(), box(x=10.0))[0, 0] == 0.0
    assert iou_bev(box(), box(x=4.0))[0, 0] == 0.0          # edges touch along x = 2
    assert iou_bev(box(), box(x=4.0, z=12.0))[0, 0] == 0.0  # corners touch
    for ry in (0.0, 0.7, math.pi / 4, math.pi / 2, -3.0):
        assert iou_bev(box(ry=ry), box(ry=ry))[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_bev_identical_box_where_the_python_port_fails():
    # OpenPCDet issue 972: rotate_iou_gpu_eval gives ~3e-10 for this box against itself
    b = np.array([[-49.3915, 1.0, 17.5002, 1.5, 2.78625, 6.41644, 3.13511]])
    assert iou_bev(b, b)[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert iou_3d(b, b)[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_heading_flip_is_the_same_footprint():
    assert iou_bev(box(ry=0.4), box(ry=0.4 + math.pi))[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_degenerate_boxes_are_zero_not_nan():
    flat = box(w=0.0)
    assert iou_bev(flat, flat)[0, 0] == 0.0
    assert iou_bev(flat, box())[0, 0] == 0.0
    assert iou_3d(box(h=0.0), box(h=0.0))[0, 0] == 0.0
    point = np.zeros((4, 2))
    assert polygon_intersection_area(point, point) == 0.0


# ----------------------------------------------------------------------- 3-D
def test_3d_vertical_overlap_uses_bottom_centre():
    # same footprint; a spans y in [-1, 1], b in [0, 2] (y is the bottom, boxes go up to y - h)
    a, b = box(y=1.0, h=2.0), box(y=2.0, h=2.0)
    assert iou_3d(a, b)[0, 0] == pytest.approx(1 / 3, abs=1e-12)
    assert iou_3d(a, box(y=3.0, h=2.0))[0, 0] == 0.0        # touching faces
    assert iou_3d(a, box(y=1.0, h=1.0))[0, 0] == pytest.approx(0.5, abs=1e-12)  # nested


def test_3d_combines_footprint_and_height():
    a, b = box(y=1.0, h=2.0), box(x=2.0, y=2.0, h=2.0)
    inter = 4.0 * 1.0
    assert iou_3d(a, b)[0, 0] == pytest.approx(inter / (16 + 16 - inter), abs=1e-12)


def test_pairwise_shapes():
    a = np.concatenate([box(), box(x=1.0), box(x=50.0)])
    b = np.concatenate([box(), box(ry=1.0)])
    assert iou_bev(a, b).shape == (3, 2)
    assert iou_3d(a, b).shape == (3, 2)
    assert iou_bev(a, np.zeros((0, 7))).shape == (3, 0)
    with pytest.raises(ValueError, match="7"):
        iou_bev(np.zeros((2, 5)), b)


# ----------------------------------------------------------------------- properties
boxes = st.tuples(
    st.floats(-20, 20), st.floats(-2, 3), st.floats(0, 60),       # x, y, z
    st.floats(0.1, 4), st.floats(0.1, 4), st.floats(0.1, 8),      # h, w, l
    st.floats(-math.pi, math.pi))                                # rotation_y


def _as_array(t):
    return np.array([t], dtype=np.float64)


@settings(max_examples=150, deadline=None)
@given(boxes, boxes)
def test_symmetric_and_in_unit_range(a, b):
    a, b = _as_array(a), _as_array(b)
    for f in (iou_bev, iou_3d):
        ab, ba = f(a, b)[0, 0], f(b, a)[0, 0]
        assert 0.0 <= ab <= 1.0 + 1e-12
        assert ab == pytest.approx(ba, abs=1e-9)
    assert iou_bev(a, a)[0, 0] == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(boxes, boxes, st.floats(-30, 30), st.floats(-3, 3), st.floats(-30, 30))
def test_translation_invariant(a, b, dx, dy, dz):
    a, b = _as_array(a), _as_array(b)
    shift = np.array([dx, dy, dz, 0, 0, 0, 0])
    for f in (iou_bev, iou_3d):
        assert f(a + shift, b + shift)[0, 0] == pytest.approx(f(a, b)[0, 0], abs=1e-7)


@settings(max_examples=100, deadline=None)
@given(boxes, boxes)
def test_axis_aligned_bev_equals_image_box_iou(a, b):
    # with rotation_y = 0 the footprint is the rectangle x +- l/2, z +- w/2
    a, b = _as_array(a), _as_array(b)
    a[0, 6] = b[0, 6] = 0.0

    def rect(t):
        x, z, w, l = t[0, 0], t[0, 2], t[0, 4], t[0, 5]  # noqa: E741
        return np.array([[x - l / 2, z - w / 2, x + l / 2, z + w / 2]])

    assert iou_bev(a, b)[0, 0] == pytest.approx(iou_2d(rect(a), rect(b))[0, 0], abs=1e-9)
