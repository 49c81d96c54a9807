"""calib.render: hand-computed maps, boxes and seam handling at 1 px/degree."""
import math

import numpy as np
import pytest

from calib.render import (HEIGHT, WIDTH, Mask, box_iou, detection_boxes, energy_map, flatten, interpolate_at,
                          is_pixel_set, mask_iou, polygons_series, render, seam_split, soft_iou_matrix, unwrap_x)


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def square(x0, y0, w, h, e=1.0):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    return np.column_stack([np.mod(xs.ravel(), 360), ys.ravel(), np.full(xs.size, e)]).astype(float)


def test_points_column_round_trip_keeps_polygons_and_empties():
    groups = [[P([1, 2, 0.5], [3, 4, 1.0]), P([5, 6, 0.1])], [], [P([359, 180, 2.0])]]
    s = polygons_series(groups)
    assert s.to_list() == [
        [[{"x": 1.0, "y": 2.0, "e": 0.5}, {"x": 3.0, "y": 4.0, "e": 1.0}], [{"x": 5.0, "y": 6.0, "e": 0.1}]],
        [],
        [[{"x": 359.0, "y": 180.0, "e": 2.0}]],
    ]
    fp = flatten(s)
    assert fp.n_points().tolist() == [3, 0, 1]
    assert [len(p) for p in fp.polygons(0)] == [2, 1]
    assert fp.polygons(1) == []
    # A slice keeps its own offsets.
    fp2 = flatten(s[2:])
    assert np.array_equal(fp2.polygons(0)[0], P([359, 180, 2.0]))


def test_unwrap_cuts_the_circle_at_the_largest_gap():
    assert unwrap_x(np.array([350.0, 355, 5, 10])).tolist() == [350, 355, 365, 370]
    assert unwrap_x(np.array([10.0, 20, 30])).tolist() == [10, 20, 30]
    assert unwrap_x(np.array([0.0, 360.0])).tolist() == [0, 0]  # the same meridian
    # Equal gaps: the set is left as it is.
    assert unwrap_x(np.array([0.0, 180.0])).tolist() == [0, 180]


def test_detection_boxes_seam_aware_and_match_unwrap():
    s = polygons_series([
        [P([350, 80, 1], [10, 100, 1])],  # crosses the seam
        [P([20, 30, 1], [40, 10, 1])],
        [P([7, 0, 1])],  # a single point at the pole
        [],
        [P([0, 50, 1]), P([359, 60, 1], [340, 55, 1])],  # seam pieces as two polygons
    ])
    b = detection_boxes(flatten(s))
    assert b[0].tolist() == [350, 370, 80, 100]
    assert b[1].tolist() == [20, 40, 10, 30]
    assert b[2].tolist() == [7, 7, 0, 0]
    assert np.isnan(b[3]).all()
    assert b[4].tolist() == [340, 360, 50, 60]
    rng = np.random.default_rng(0)
    groups = [[np.column_stack([rng.uniform(0, 360, k), rng.uniform(0, 180, k), rng.random(k)])]
              for k in rng.integers(1, 6, 50)]
    b = detection_boxes(flatten(polygons_series(groups)))
    for g, row in zip(groups, b):
        xu = unwrap_x(g[0][:, 0])
        assert row[0] == xu.min() and row[1] == xu.max()


def test_box_iou_pixel_inclusive_and_across_the_seam():
    a = np.array([[0, 9, 0, 9]])
    b = np.array([[5, 14, 0, 9]])
    assert box_iou(a, b)[0, 0] == pytest.approx(50 / 150)
    across = np.array([[355, 364, 0, 9]])  # columns 355..359 and 0..4
    assert box_iou(across, np.array([[0, 9, 0, 9]]))[0, 0] == pytest.approx(50 / 150)
    assert box_iou(a, np.array([[20, 30, 0, 9]]))[0, 0] == 0
    assert box_iou(a, a)[0, 0] == 1


def test_energy_map_interpolates_a_triangle_like_the_official_linear_rule():
    # e = x over the triangle (0,0), (4,0), (0,4): pixels with x + y <= 4 carry e = x.
    m = energy_map([P([100, 10, 0], [104, 10, 4], [100, 14, 0])])
    c = m.canvas(normalize=False)
    inside = [(x, y) for x in range(5) for y in range(5) if x + y <= 4]
    for x, y in inside:
        assert c[10 + y, 100 + x] == pytest.approx(x)
    assert np.count_nonzero(c) == sum(1 for x, y in inside if x > 0)  # e = 0 on the x = 0 edge
    assert c.sum() == pytest.approx(sum(x for x, y in inside))


def test_energy_map_of_a_pixel_set_is_the_pixels():
    sq = square(20, 30, 3, 2, 0.5)
    sq[0, 2] = 2.0
    assert is_pixel_set(sq)
    c = render([sq], normalize=False)
    assert c.shape == (HEIGHT, WIDTH)
    assert c[30, 20] == 2.0 and c[31, 22] == 0.5 and np.count_nonzero(c) == 6
    # A grid of integer points spaced apart is not a pixel set: it is interpolated.
    g = P([0, 0, 1], [4, 0, 1], [0, 4, 1], [4, 4, 1])
    assert not is_pixel_set(g)
    assert np.count_nonzero(render([g])) == 25


def test_energy_map_wraps_the_seam_and_reaches_both_poles():
    # A square from x=358 to x=2 (unwrapped 358..362) on rows 0..2 and one on the south pole.
    m = energy_map([P([358, 0, 1], [2, 0, 1], [358, 2, 1], [2, 2, 1])])
    c = m.canvas()
    cols = sorted(set(np.nonzero(c)[1].tolist()))
    assert cols == [0, 1, 2, 358, 359]
    assert sorted(set(np.nonzero(c)[0].tolist())) == [0, 1, 2]
    s = render([square(100, 179, 2, 2)])
    assert s[180, 100] == 1 and s[180, 101] == 1 and s[179, 100] == 1


def test_degenerate_detections_draw_their_pixels():
    one = render([P([10.4, 20.6, 3.0])], normalize=False)
    assert np.count_nonzero(one) == 1 and one[21, 10] == 3.0
    line = render([P([10, 5, 1], [12, 5, 2], [14, 5, 3])], normalize=False)  # collinear
    assert np.count_nonzero(line) == 3 and line[5, 14] == 3.0


def test_spread_extends_the_map_with_a_gaussian_fall_off():
    m = energy_map([P([100, 50, 1.0])], spread=2.0)
    assert m.sample(102, 50) == pytest.approx(math.exp(-4 / 8))
    assert m.sample(100, 53) == pytest.approx(math.exp(-9 / 8))
    near = energy_map([P([100, 50, 0.5])], spread=math.inf, pad=2)
    assert near.sample(101, 51) == pytest.approx(0.5)


def test_interpolate_at_matches_hand_values():
    tri = P([0, 0, 0], [4, 0, 4], [0, 4, 8])  # e = x + 2y
    v = interpolate_at(tri, [1, 2, 5], [1, 0.5, 5])
    assert v[0] == pytest.approx(3) and v[1] == pytest.approx(3) and np.isnan(v[2])


def test_seam_split_makes_two_polygons_meeting_on_the_seam():
    pts = P([350, 80, 1], [370, 80, 1], [350, 100, 1], [370, 100, 1])
    left, right = seam_split(pts[:, 0], pts[:, 1], pts[:, 2], support_step=10.0)
    assert left[:, 0].max() == 360 and right[:, 0].min() == 0
    seam_left = left[left[:, 0] == 360]
    seam_right = right[right[:, 0] == 0]
    assert sorted(seam_left[:, 1].tolist()) == [80, 90, 100]
    assert np.allclose(seam_left[:, 2], 1) and np.array_equal(seam_left[:, 1:], seam_right[:, 1:])
    # Points exactly on the seam go to both halves; support fills only the rows without one.
    pts = P([358, 10, 1], [360, 10, 2], [362, 10, 1], [360, 12, 2])
    left, right = seam_split(pts[:, 0], pts[:, 1], pts[:, 2], support_step=1.0)
    assert sorted(map(tuple, left.tolist())) == [(358, 10, 1), (360, 10, 2), (360, 11, 2), (360, 12, 2)]
    assert sorted(map(tuple, right.tolist())) == [(0, 10, 2), (0, 11, 2), (0, 12, 2), (2, 10, 1)]
    left, right = seam_split(pts[:, 0], pts[:, 1], pts[:, 2])  # no support asked
    assert len(left) == 3 and len(right) == 3
    # A set that does not cross stays whole; y is kept within the poles.
    (one,) = seam_split([10, 20], [-1, 181], [1, 1])
    assert one[:, 1].tolist() == [0, 180]


def test_split_halves_render_as_the_whole():
    pts = P([350, 80, 1], [370, 80, 3], [350, 100, 2], [370, 100, 1], [361.5, 91, 5])
    whole = energy_map([pts]).canvas()
    halves = energy_map(seam_split(pts[:, 0], pts[:, 1], pts[:, 2], support_step=1.0)).canvas()
    # Same pixels; values differ only where a triangle cut by the seam is re-triangulated.
    assert np.array_equal(whole > 0, halves > 0)
    assert np.abs(whole - halves).max() < 0.02
    assert soft_iou_matrix(np.stack([whole, halves]))[0, 1] > 0.995


def test_soft_iou_matrix_hand_values():
    a = np.zeros((2, 1, 2), np.float32)
    a[0, 0] = [1, 0]
    a[1, 0] = [0.5, 0.5]
    m = soft_iou_matrix(a)
    assert m[0, 1] == pytest.approx(0.5 / 1.5) and m[1, 0] == m[0, 1] and m[0, 0] == 1
    assert soft_iou_matrix(np.zeros((2, 1, 2)))[0, 1] == 0


def test_mask_iou_equals_the_full_canvas_soft_iou():
    rng = np.random.default_rng(3)
    shapes = [[square(355, 10, 12, 8, 1.0)], [square(0, 12, 6, 9, 0.5)],
              [P([350, 5, 1], [10, 5, 2], [0, 20, 3])], [square(100, 175, 5, 6)], [P([101, 178, 2.0])]]
    shapes[0][0][:, 2] = rng.random(len(shapes[0][0]))
    for a in shapes:
        for b in shapes:
            full = soft_iou_matrix(np.stack([render(a), render(b)]))[0, 1]
            assert mask_iou(Mask.of(a), Mask.of(b)) == pytest.approx(full, abs=1e-6)
    assert mask_iou(Mask.of([]), Mask.of([])) == 0


def test_dense_lattice_interpolates_like_delaunay():
    # a 2-degree lattice of e = x + 3y (linear: any triangulation reproduces it exactly)
    xs, ys = np.meshgrid(np.arange(100, 140, 2.0), np.arange(40, 60, 2.0))
    keep = (xs - 120) ** 2 + (ys - 50) ** 2 <= 150  # a disc of lattice sites
    pts = np.column_stack([xs[keep], ys[keep], xs[keep] + 3 * ys[keep]])
    from calib.render import _lattice

    assert _lattice(pts) is not None
    m = energy_map([pts])
    jj, ii = np.nonzero(m.values)
    assert np.allclose(m.values[jj, ii], (ii + m.x0) + 3 * (jj + m.y0))
    # the same pixels as the general rasterization of the same triangles (non-integer origin path)
    shifted = energy_map([pts + [0.5, 0, 0]])
    assert np.count_nonzero(shifted.values) > 0.8 * np.count_nonzero(m.values)
    # every site is covered; nothing outside the sites' hull
    assert all(m.sample(x, y) > 0 for x, y in pts[:, :2])
    assert np.count_nonzero(m.values) <= (40 * 20)


def test_integer_lattice_pattern_equals_triangle_rasterization():
    from calib.render import _barycentric, _lattice, _raster_lattice

    rng = np.random.default_rng(4)
    xs, ys = np.meshgrid(np.arange(10, 70, 3.0), np.arange(20, 62, 3.0))
    keep = rng.random(xs.shape) < 0.85  # holes: cells with three corners, and missing cells
    pts = np.column_stack([xs[keep], ys[keep], rng.random(keep.sum())])
    lat = _lattice(pts)
    fast = np.zeros((70, 80))
    assert _raster_lattice(lat, pts[:, 2], fast, 0, 0)
    slow = np.zeros((70, 80))
    for tri in lat.simplices():  # triangle by triangle, pixel by pixel
        t = pts[tri]
        for y in range(int(t[:, 1].min()), int(t[:, 1].max()) + 1):
            for x in range(int(t[:, 0].min()), int(t[:, 0].max()) + 1):
                w = _barycentric(t[None, :, :2], np.array([[x, y]], float))[0]
                if np.all(w >= -1e-9):
                    slow[y, x] = max(slow[y, x], float(w @ t[:, 2]))
    assert np.allclose(fast, slow)
