"""calib.canvas.raster: hand-computed maps at 1 px/degree, lattices, masks, nearest fill, and the
batch equal to one detection at a time."""
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay

from calib.canvas.points import from_polygons
from calib.canvas.raster import (HEIGHT, WIDTH, barycentric, energy_map, pixel_set_units, rasterize, render,
                                 shape_pattern, soft_iou_matrix)
from calib.canvas.triangulate import delaunay_sets


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def square(x0, y0, w, h, e=1.0):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    return np.column_stack([np.mod(xs.ravel(), 360), ys.ravel(), np.full(xs.size, e)]).astype(float)


def test_a_triangle_is_interpolated_like_the_official_linear_rule():
    # e = x over the triangle (0,0), (4,0), (0,4): pixels with x + y <= 4 carry e = x.
    c = render([P([100, 10, 0], [104, 10, 4], [100, 14, 0])], normalize=False)
    inside = [(x, y) for x in range(5) for y in range(5) if x + y <= 4]
    for x, y in inside:
        assert c[10 + y, 100 + x] == pytest.approx(x)
    assert np.count_nonzero(c) == sum(1 for x, y in inside if x > 0)  # e = 0 on the x = 0 edge
    assert c.sum() == pytest.approx(sum(x for x, y in inside))


def test_a_pixel_set_is_its_pixels():
    sq = square(20, 30, 3, 2, 0.5)
    sq[0, 2] = 2.0
    fp = from_polygons([[sq], [P([0, 0, 1], [4, 0, 1], [0, 4, 1], [4, 4, 1])]])
    assert pixel_set_units(fp, fp.x).tolist() == [True, False]
    c = render([sq], normalize=False)
    assert c.shape == (HEIGHT, WIDTH)
    assert c[30, 20] == 2.0 and c[31, 22] == 0.5 and np.count_nonzero(c) == 6
    # A grid of integer points spaced apart is not a pixel set: it is interpolated.
    assert np.count_nonzero(render([P([0, 0, 1], [4, 0, 1], [0, 4, 1], [4, 4, 1])])) == 25


def test_maps_wrap_the_seam_and_reach_both_poles():
    # A square from x=358 to x=2 (unwrapped 358..362) on rows 0..2 and one on the south pole.
    c = render([P([358, 0, 1], [2, 0, 1], [358, 2, 1], [2, 2, 1])])
    assert sorted(set(np.nonzero(c)[1].tolist())) == [0, 1, 2, 358, 359]
    assert sorted(set(np.nonzero(c)[0].tolist())) == [0, 1, 2]
    s = render([square(100, 179, 2, 2)])
    assert s[180, 100] == 1 and s[180, 101] == 1 and s[179, 100] == 1


def test_degenerate_detections_draw_their_pixels():
    one = render([P([10.4, 20.6, 3.0])], normalize=False)
    assert np.count_nonzero(one) == 1 and one[21, 10] == 3.0
    line = render([P([10, 5, 1], [12, 5, 2], [14, 5, 3])], normalize=False)  # collinear
    assert np.count_nonzero(line) == 3 and line[5, 14] == 3.0
    # a thin triangle holding no pixel: its points' pixels
    thin = render([P([10.2, 5.2, 1], [10.4, 5.3, 2], [10.3, 5.45, 3])], normalize=False)
    assert np.count_nonzero(thin) == 1 and thin[5, 10] == 3.0


def test_spread_extends_the_map_with_a_gaussian_fall_off():
    m = energy_map([P([100, 50, 1.0])], spread=2.0)
    assert m.sample([0], [102], [50])[0] == pytest.approx(math.exp(-4 / 8))
    assert m.sample([0], [100], [53])[0] == pytest.approx(math.exp(-9 / 8))
    near = energy_map([P([100, 50, 0.5])], spread=math.inf, pad=2)
    assert near.sample([0], [101], [51])[0] == pytest.approx(0.5)


def test_sample_is_bilinear_and_zero_off_the_window():
    r = energy_map([P([10, 10, 0], [14, 10, 4], [10, 14, 0], [14, 14, 4])])  # e = x - 10
    assert r.sample([0, 0, 0], [11.5, 12.25, 30], [11, 12.5, 11]).tolist() == pytest.approx([1.5, 2.25, 0.0])
    assert r.sample([0], [14.0001], [12])[0] == 0  # past the window's last column


def test_fill_nearest_equals_the_distance_transform_fill():
    # an L-shaped map whose off pixels each have one nearest support pixel
    pts = P([20, 20, 1], [24, 20, 2], [20, 26, 3])
    r = rasterize(from_polygons([[pts]]), pad=4.0)
    win = r.window(0)
    off = win <= 0
    _, (ri, ci) = ndimage.distance_transform_edt(off, return_indices=True)
    filled = np.where(off, win[ri, ci], win)
    dist = ndimage.distance_transform_edt(off)
    rows, cols = np.nonzero(off)
    # compare where the nearest support pixel is unique (ties may resolve either way)
    sup_r, sup_c = np.nonzero(~off)
    unique = [k for k, (rr, cc) in enumerate(zip(rows, cols))
              if np.sum(np.isclose(np.hypot(sup_r - rr, sup_c - cc), dist[rr, cc])) == 1]
    assert len(unique) > 20
    rr, cc = rows[unique], cols[unique]
    got = r.fill_nearest(np.zeros(len(unique), np.int64), cc + r.x0[0], rr + r.y0[0])
    assert np.array_equal(got, filled[rr, cc])


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
              [P([350, 5, 1], [10, 5, 2], [0, 20, 3])], [square(100, 175, 5, 6)], [P([101, 178, 2.0])], []]
    shapes[0][0][:, 2] = rng.random(len(shapes[0][0]))
    r = rasterize(from_polygons(shapes))
    i, j = np.meshgrid(np.arange(len(shapes)), np.arange(len(shapes)))
    got = r.mask_iou(i.ravel(), j.ravel()).reshape(len(shapes), len(shapes))
    for a in range(len(shapes)):
        for b in range(len(shapes)):
            full = soft_iou_matrix(np.stack([r.canvas(a), r.canvas(b)]))[0, 1]
            assert got[a, b] == pytest.approx(full, abs=1e-6)
    assert got[5, 5] == 0


def test_a_dense_lattice_interpolates_like_delaunay():
    # a 2-degree lattice of e = x + 3y (linear: any triangulation reproduces it exactly)
    xs, ys = np.meshgrid(np.arange(100, 140, 2.0), np.arange(40, 60, 2.0))
    keep = (xs - 120) ** 2 + (ys - 50) ** 2 <= 150  # a disc of lattice sites
    pts = np.column_stack([xs[keep], ys[keep], xs[keep] + 3 * ys[keep]])
    r = energy_map([pts])
    jj, ii = np.nonzero(r.window(0))
    assert np.allclose(r.window(0)[jj, ii], (ii + r.x0[0]) + 3 * (jj + r.y0[0]))
    # the general rasterization (non-integer origin) covers about the same pixels
    shifted = energy_map([pts + [0.5, 0, 0]])
    assert np.count_nonzero(shifted.window(0)) > 0.8 * np.count_nonzero(r.window(0))
    assert all(r.sample([0], [x], [y])[0] > 0 for x, y in pts[:, :2])
    assert np.count_nonzero(r.window(0)) <= 40 * 20


def test_whole_degree_lattice_pattern_equals_triangle_by_triangle_rasterization():
    rng = np.random.default_rng(4)
    xs, ys = np.meshgrid(np.arange(10, 70, 3.0), np.arange(20, 62, 3.0))
    keep = rng.random(xs.shape) < 0.85  # holes: cells with three corners, and missing cells
    pts = np.column_stack([xs[keep], ys[keep], rng.random(keep.sum())])
    fast = render([pts], normalize=False)
    # the cell-by-cell triangulation, rasterized pixel by pixel
    grid = {(int(x), int(y)): k for k, (x, y) in enumerate(pts[:, :2])}
    slow = np.zeros((HEIGHT, WIDTH))
    for x in range(10, 67, 3):
        for y in range(20, 59, 3):
            c = [grid.get(q) for q in ((x, y), (x + 3, y), (x, y + 3), (x + 3, y + 3))]
            have = [k is not None for k in c]
            tris = []
            if all(have):
                tris = [(c[0], c[1], c[3]), (c[0], c[3], c[2])]
            elif sum(have) == 3:
                tris = [tuple(k for k in c if k is not None)]
            for t in tris:
                tp = pts[list(t)]
                for py in range(int(tp[:, 1].min()), int(tp[:, 1].max()) + 1):
                    for px in range(int(tp[:, 0].min()), int(tp[:, 0].max()) + 1):
                        w = np.array(barycentric(tp[0, 0], tp[0, 1], tp[1, 0], tp[1, 1], tp[2, 0], tp[2, 1],
                                                 float(px), float(py)))
                        if np.all(w >= -1e-9):
                            slow[py, px] = max(slow[py, px], float(w @ tp[:, 2]))
    assert np.allclose(fast, slow, atol=1e-12)
    w, dx, dy = shape_pattern(0, 3)  # the lower-right half of a 3-pixel cell: 10 pixels
    assert len(dx) == 10 and np.allclose(w.sum(axis=1), 1)


def test_scattered_points_match_scipy_delaunay_interpolation():
    rng = np.random.default_rng(5)
    for _ in range(20):
        pts = np.column_stack([rng.uniform(100, 120, 12), rng.uniform(50, 65, 12), rng.random(12)])
        got = render([pts], normalize=False)
        tri = Delaunay(pts[:, :2])
        yy, xx = np.mgrid[50:66, 100:121]
        q = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
        s = tri.find_simplex(q)
        b = np.einsum("ijk,ik->ij", tri.transform[s, :2], q - tri.transform[s, 2])
        w = np.column_stack([b, 1 - b.sum(axis=1)])
        v = np.where(s >= 0, (w * pts[tri.simplices[s], 2]).sum(axis=1), 0)
        assert np.allclose(got[50:66, 100:121].ravel(), np.maximum(v, 0), atol=1e-6)


def test_batch_triangulation_is_delaunay():
    rng = np.random.default_rng(6)
    sets = [rng.random((int(rng.integers(3, 30)), 2)) * 10 for _ in range(60)]
    sets += [rng.integers(0, 5, (int(rng.integers(4, 20)), 2)) + 0.37 for _ in range(60)]  # co-circular
    off = np.r_[0, np.cumsum([len(p) for p in sets])]
    xy = np.concatenate(sets)
    tri, owner = delaunay_sets(off, xy[:, 0], xy[:, 1])
    for i, p in enumerate(sets):
        mine = tri[owner == i] - off[i]
        generic = i < 60
        if generic:  # in general position the triangulation is unique: Qhull's
            assert {tuple(sorted(t)) for t in mine} == {tuple(sorted(t)) for t in Delaunay(p).simplices}
        # it tiles the hull ...
        a = p[mine]
        area = 0.5 * np.abs((a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1])
                            - (a[:, 1, 1] - a[:, 0, 1]) * (a[:, 2, 0] - a[:, 0, 0]))
        assert area.sum() == pytest.approx(ConvexHull(p).volume)
        # ... with no point strictly inside a triangle's circumcircle
        for t in a:
            ax, ay, bx, by, cx, cy = t[0, 0], t[0, 1], t[1, 0], t[1, 1], t[2, 0], t[2, 1]
            d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
            ux = ((ax * ax + ay * ay) * (by - cy) + (bx * bx + by * by) * (cy - ay) + (cx * cx + cy * cy) * (ay - by)) / d
            uy = ((ax * ax + ay * ay) * (cx - bx) + (bx * bx + by * by) * (ax - cx) + (cx * cx + cy * cy) * (bx - ax)) / d
            r2 = (ax - ux) ** 2 + (ay - uy) ** 2
            assert np.all((p[:, 0] - ux) ** 2 + (p[:, 1] - uy) ** 2 >= r2 * (1 - 1e-9))


def test_the_batch_equals_one_detection_at_a_time():
    rng = np.random.default_rng(7)
    groups = []
    for k in range(30):
        kind = k % 3
        if kind == 0:
            g = [square(int(rng.integers(0, 350)), int(rng.integers(0, 170)), 5, 4, 0.7)]
        elif kind == 1:
            xs, ys = np.meshgrid(np.arange(0, 24, 3.0), np.arange(0, 15, 3.0))
            g = [np.column_stack([np.mod(xs.ravel() + rng.integers(340, 360), 360), ys.ravel() + 60,
                                  rng.random(xs.size)])]
        else:
            g = [np.column_stack([rng.uniform(200, 212, 9), rng.uniform(30, 40, 9), rng.random(9)]), P([5, 5, 1])]
        groups.append(g)
    r = rasterize(from_polygons(groups))
    for i, g in enumerate(groups):
        alone = energy_map(g)
        assert (r.x0[i], r.y0[i]) == (alone.x0[0], alone.y0[0])
        assert np.array_equal(r.window(i), alone.window(0))
