"""calib.canvas.points: the points column as flat arrays and back, segment reductions, peaks."""
import numpy as np
import polars as pl

from calib.canvas.points import (FlatPoints, concat, flatten, from_polygons, peak_points, points_column,
                                 points_series, polygons_series, round_points)
from calib.tables import POLYGONS


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def test_points_column_round_trip_keeps_polygons_and_empties():
    groups = [[P([1, 2, 0.5], [3, 4, 1.0]), P([5, 6, 0.1])], [], [P([359, 180, 2.0])]]
    s = polygons_series(groups)
    assert s.dtype == POLYGONS
    assert s.to_list() == [
        [[{"x": 1.0, "y": 2.0, "e": 0.5}, {"x": 3.0, "y": 4.0, "e": 1.0}], [{"x": 5.0, "y": 6.0, "e": 0.1}]],
        [],
        [[{"x": 359.0, "y": 180.0, "e": 2.0}]],
    ]
    fp = flatten(s)
    assert fp.count.tolist() == [3, 0, 1] and fp.n == 3 and fp.n_polys == 3 and fp.n_points == 4
    assert [len(p) for p in fp.polygons(0)] == [2, 1]
    assert fp.polygons(1) == []
    assert fp.row.tolist() == [0, 0, 0, 2] and fp.det_of_poly.tolist() == [0, 0, 2]
    assert points_column(fp).to_list() == s.to_list()
    # a slice keeps its own offsets; nulls are empty detections
    assert np.array_equal(flatten(s[2:]).polygons(0)[0], P([359, 180, 2.0]))
    with_null = pl.Series("points", [None, [[{"x": 1.0, "y": 1.0, "e": 1.0}]]], dtype=POLYGONS)
    assert flatten(with_null).count.tolist() == [0, 1]


def test_take_slice_concat_and_per_polygon():
    fp = from_polygons([[P([1, 1, 1])], [P([2, 2, 2], [3, 3, 3]), P([4, 4, 4])], []])
    t = fp.take([1, 0, 1])
    assert [len(t.polygons(i)) for i in range(3)] == [2, 1, 2] and t.x.tolist() == [2, 3, 4, 1, 2, 3, 4]
    s = fp.slice(1, 3)
    assert s.n == 2 and s.x.tolist() == [2, 3, 4] and s.count.tolist() == [3, 0]
    c = concat([fp, s])
    assert c.n == 5 and c.count.tolist() == [1, 3, 0, 3, 0]
    pp = fp.per_polygon()
    assert pp.n == 3 and pp.count.tolist() == [1, 2, 1]
    sub, pos = fp.select(np.array([False, True, False]))
    assert sub.n == 1 and pos.tolist() == [1, 2, 3]
    # several chunks make one column without copying them together
    col = points_series([fp.slice(0, 1), fp.slice(1, 3)])
    assert col.to_list() == points_column(fp).to_list()


def test_segment_reductions():
    fp = from_polygons([[P([0, 0, 1], [0, 0, 3])], [], [P([0, 0, 2]), P([0, 0, 2], [0, 0, -1])]])
    assert fp.sum(fp.e).tolist() == [4, 0, 3]
    assert fp.reduce(np.maximum, fp.e, empty=-9).tolist() == [3, -9, 2]
    assert fp.first_argmax(fp.e).tolist() == [1, -1, 2]  # ties: the first point
    assert fp.order_within(fp.e).tolist() == [0, 1, 4, 2, 3]


def test_peak_points_first_maximum_and_nulls():
    s = polygons_series([[P([1, 2, 0.5]), P([3, 4, 0.9], [5, 6, 0.9])], [], [P([7, 8, 0.1])]])
    assert peak_points(s).rows() == [(3.0, 4.0, 0.9), (None, None, None), (7.0, 8.0, 0.1)]


def test_round_points_keeps_numbers_on_the_canvas():
    fp = round_points(from_polygons([[P([360.00004, -0.1, 0.12345678], [12.345678, 90.5, 1.0])]]))
    assert fp.xye.tolist() == [[360.0, 0.0, 0.123457], [12.3457, 90.5, 1.0]]


def test_flat_points_is_immutable_data():
    fp = from_polygons([[P([1, 2, 3])]])
    assert isinstance(fp, FlatPoints) and fp.with_values(e=[5.0]).e.tolist() == [5.0] and fp.e.tolist() == [3.0]
