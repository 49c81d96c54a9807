"""calib.canvas.sphere: the seam rule, seam-aware boxes and their IoU, seam split with support."""
import numpy as np
import pytest

from calib.canvas.points import FlatPoints, from_polygons, offsets_of
from calib.canvas.raster import energy_map, render, soft_iou_matrix
from calib.canvas.sphere import (box_iou, boxes, pair_box_iou, seam_crossing_rows, seam_support_rows, seam_split,
                                 unwrap, wrap_sets)


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def one(x):
    x = np.asarray(x, np.float64)
    return unwrap(x, np.array([0]), np.array([x.size]))


def test_unwrap_cuts_the_circle_at_a_gap_wider_than_half_of_it():
    assert one([350.0, 355, 5, 10]).tolist() == [350, 355, 365, 370]
    assert one([10.0, 20, 30]).tolist() == [10, 20, 30]
    assert one([0.0, 360.0]).tolist() == [360, 360]  # the same meridian
    assert one([0.0, 180.0]).tolist() == [0, 180]  # no gap wider than 180: as it is
    assert one([10.0, 150, 300]).tolist() == [10, 150, 300]  # spread over more than half: as it is
    # segments are independent
    x = np.array([350.0, 10, 20, 30, 0])
    assert unwrap(x, np.array([0, 2, 4]), np.array([2, 2, 1])).tolist() == [350, 370, 20, 30, 0]


def sets_of(*polys):
    return FlatPoints(*(np.concatenate([p[:, k] for p in polys]) for k in range(3)),
                      np.arange(len(polys) + 1), offsets_of([len(p) for p in polys]))


def test_boxes_seam_aware_and_match_unwrap():
    fp = from_polygons([
        [P([350, 80, 1], [10, 100, 1])],  # crosses the seam
        [P([20, 30, 1], [40, 10, 1])],
        [P([7, 0, 1])],  # a single point at the pole
        [],
        [P([0, 50, 1]), P([359, 60, 1], [340, 55, 1])],  # seam pieces as two polygons
    ])
    b = boxes(fp).rows()
    assert b[0].tolist() == [350, 370, 80, 100]
    assert b[1].tolist() == [20, 40, 10, 30]
    assert b[2].tolist() == [7, 7, 0, 0]
    assert np.isnan(b[3]).all() and boxes(fp).zero_filled().rows()[3].tolist() == [0, 0, 0, 0]
    assert b[4].tolist() == [340, 360, 50, 60]
    rng = np.random.default_rng(0)
    groups = [[np.column_stack([rng.uniform(0, 360, k), rng.uniform(0, 180, k), rng.random(k)])]
              for k in rng.integers(1, 6, 50)]
    b = boxes(from_polygons(groups)).rows()
    for g, row in zip(groups, b):
        xu = one(g[0][:, 0])
        assert row[0] == xu.min() and row[1] == xu.max()


def test_box_iou_pixel_inclusive_and_across_the_seam():
    a = np.array([[0, 9, 0, 9]])
    b = np.array([[5, 14, 0, 9]])
    assert box_iou(a, b)[0, 0] == pytest.approx(50 / 150)
    across = np.array([[355, 364, 0, 9]])  # columns 355..359 and 0..4
    assert box_iou(across, np.array([[0, 9, 0, 9]]))[0, 0] == pytest.approx(50 / 150)
    assert box_iou(a, np.array([[20, 30, 0, 9]]))[0, 0] == 0
    assert box_iou(a, a)[0, 0] == 1
    assert box_iou(a, np.full((1, 4), np.nan))[0, 0] == 0  # an empty box overlaps nothing
    pairs = np.vstack([a, across])
    assert pair_box_iou(pairs, np.vstack([b, a])).tolist() == pytest.approx([50 / 150, 50 / 150])


def test_seam_split_makes_two_polygons_meeting_on_the_seam():
    # points exactly on the seam go to both halves, in the set's order
    out = seam_split(sets_of(P([358, 10, 1], [360, 10, 2], [362, 10, 1], [360, 12, 2])))
    left, right = out.polygons(0)
    assert left.tolist() == [[358, 10, 1], [360, 10, 2], [360, 12, 2]]
    assert right.tolist() == [[0, 10, 2], [2, 10, 1], [0, 12, 2]]
    # a set that does not cross stays whole; y is kept within the poles; a set is shifted onto
    # the canvas first
    out = seam_split(sets_of(P([10, -1, 1], [20, 181, 1]), P([370, 5, 1], [380, 6, 1])))
    assert [len(out.polygons(i)) for i in range(2)] == [1, 1]
    assert out.polygons(0)[0][:, 1].tolist() == [0, 180] and out.polygons(1)[0][:, 0].tolist() == [10, 20]


def test_seam_support_rows_hull_crossing_and_taken_rows():
    # a square 350..370 x 80..100: the hull meets x = 360 over 80..100; every 10 degrees
    sq = sets_of(P([350, 80, 1], [370, 80, 1], [350, 100, 1], [370, 100, 1]))
    s, y, y_in, x_seam = seam_support_rows(sq, 10.0)
    assert s.tolist() == [0, 0, 0] and y.tolist() == [80, 90, 100] and x_seam.tolist() == [360, 360, 360]
    assert y_in[0] > 80 and y_in[-1] < 100  # a hair inside, to read a value there
    # a triangle: the crossing is where its edges meet the line; a row with a point on it is taken
    tri = sets_of(P([350, 80, 1], [370, 90, 1], [360, 95, 1], [350, 100, 1]))
    s, y, _, _ = seam_support_rows(tri, 5.0)
    assert y.tolist() == [85, 90]  # 85 (the lower edge) and 90; 95 is taken by the point on the seam
    # not crossing, or flat: nothing
    assert seam_support_rows(sets_of(P([10, 80, 1], [20, 90, 1], [15, 85, 1])), 1.0)[0].size == 0
    assert seam_crossing_rows(sets_of(P([350, 80, 1], [370, 80, 1], [365, 80, 1])), np.array([True]),
                              np.array([1.0]))[0].size == 0


def test_split_halves_render_as_the_whole():
    pts = P([350, 80, 1], [370, 80, 3], [350, 100, 2], [370, 100, 1], [361.5, 91, 5])
    whole = render([pts])
    r = energy_map([pts])
    sets = sets_of(pts)
    s, y, y_in, x_seam = seam_support_rows(sets, 1.0)
    halves = wrap_sets(sets, (s, y, r.sample(np.zeros(s.size, np.int64), x_seam, y_in)))
    assert len(halves.polygons(0)) == 2
    split = render(halves.polygons(0))
    # Same pixels; values differ only where a triangle cut by the seam is re-triangulated.
    assert np.array_equal(whole > 0, split > 0)
    assert np.abs(whole - split).max() < 0.02
    assert soft_iou_matrix(np.stack([whole, split]))[0, 1] > 0.995
