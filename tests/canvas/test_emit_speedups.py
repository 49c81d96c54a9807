"""Known answers for the helpers of the faster emission paths: each equals the straightforward
computation it replaces (random inputs, seam and pole cases included)."""
from __future__ import annotations

import numpy as np
import pytest

from calib.canvas.points import order_by_set_x_y, order_ranks


@pytest.mark.parametrize("seed", range(6))
def test_order_by_set_x_y_is_the_lexsort(seed):
    rng = np.random.default_rng(seed)
    n = 500
    seg = rng.integers(0, 7, n)
    if seed % 2:
        seg.sort()
    x = rng.integers(-5, 725, n).astype(np.float64)  # unwrapped columns, past the seam
    y = rng.integers(0, 181, n).astype(np.float64)  # rows from pole to pole
    x[rng.random(n) < 0.2] = 0.0
    x[x == 0] *= -1.0  # -0.0 sorts as 0.0
    y[rng.random(n) < 0.3] = 180.0
    assert np.array_equal(order_by_set_x_y(seg, x, y), np.lexsort((y, x, seg)))
    # not whole numbers: the lexsort itself
    x2 = x + 0.25
    assert np.array_equal(order_by_set_x_y(seg, x2, y), np.lexsort((y, x2, seg)))


def test_order_by_set_x_y_small_cases():
    seg = np.array([1, 0, 1, 0, 1])
    x = np.array([2.0, 2.0, 1.0, 2.0, 1.0])
    y = np.array([0.0, 5.0, 3.0, 4.0, 3.0])
    # set 0: (2, 4) at 3 before (2, 5) at 1; set 1: (1, 3) twice (2 then 4), then (2, 0) at 0
    assert order_by_set_x_y(seg, x, y).tolist() == [3, 1, 2, 4, 0]
    assert order_by_set_x_y(np.zeros(0, np.int64), np.zeros(0), np.zeros(0)).size == 0
    x[0] = np.nan  # not a whole number: the lexsort (NaN last)
    assert order_by_set_x_y(seg, x, y).tolist() == np.lexsort((y, x, seg)).tolist()


@pytest.mark.parametrize("seed", range(4))
def test_order_by_set_x_y_ranks_fractional_values(seed):
    rng = np.random.default_rng(100 + seed)
    n = 800
    seg = rng.integers(0, 40, n)
    # grown rings: many repeated fractional x (one column of base points), ties in x and y
    x = np.round(rng.random(n) * 20) * 3 + 8 * np.cos(rng.integers(0, 16, n) * np.pi / 8)
    y = np.round(rng.random(n) * 10) * 3 + 8 * np.sin(rng.integers(0, 16, n) * np.pi / 8)
    y[rng.random(n) < 0.1] = 0.0
    y[rng.random(n) < 0.1] = -0.0
    assert np.array_equal(order_by_set_x_y(seg, x, y), np.lexsort((y, x, seg)))
    x[3] = np.inf
    assert np.array_equal(order_by_set_x_y(seg, x, y), np.lexsort((y, x, seg)))


def _same_order_and_ties(r, v):
    """The ranks ``r`` compare as the values ``v`` do, pair by pair."""
    return np.array_equal(np.sign(r[:, None] - r[None, :]), np.sign(v[:, None] - v[None, :]))


def test_order_ranks_known_answers():
    # floors from -2: whole -2 -> 0, -1.5 -> 1, -1 -> 2, -0.0 and 0.0 -> 3, 0.25 -> 4, 0.5 -> 5,
    # 1 -> 6, 2 -> 7 (whole numbers in [lo, v) and non-whole values below it)
    v = np.array([0.5, -2.0, -0.0, 2.0, 0.25, -1.5, 0.0, 1.0, -1.0, 0.5])
    assert order_ranks(v).tolist() == [5, 0, 3, 7, 4, 1, 3, 6, 2, 5]
    assert order_ranks(np.array([3.0, 7.0, 3.0])).tolist() == [0, 4, 0]  # whole only: less the floor
    assert order_ranks(np.array([0.75, 0.25])).tolist() == [2, 1]  # none whole
    # a range past ``lim``: places among the distinct values
    assert order_ranks(np.array([1e7 + 0.5, -3.0, 0.5, 0.5]), lim=64).tolist() == [2, 0, 1, 1]


@pytest.mark.parametrize("seed", range(4))
def test_order_ranks_keep_order_and_ties(seed):
    rng = np.random.default_rng(200 + seed)
    n = 300
    v = rng.integers(-400, 760, n).astype(np.float64)  # lattice columns, past the seam both ways
    some = rng.random(n) < 0.4  # grown vertices: fractional, repeated, near whole numbers
    v[some] += rng.choice([1e-9, 0.5, -1e-12, 0.999999], some.sum())
    v[rng.random(n) < 0.05] = -0.0
    r = order_ranks(v)
    assert r.min() >= 0 and r.max() < 1 << 21 and _same_order_and_ties(r, v)
    r = order_ranks(v, lim=100)  # the distinct values' places
    assert r.max() == np.unique(v).size - 1 and _same_order_and_ties(r, v)


def test_pixel_counts_agree_with_pixels_and_thresholds():
    from calib.canvas.points import from_polygons
    from calib.canvas.raster import rasterize

    rng = np.random.default_rng(7)
    polys = []
    for k in range(12):
        x0, y0 = (350.0, 40.0) if k % 3 == 0 else (rng.integers(0, 300), rng.integers(0, 170))  # some over the seam
        n = 14
        pts = np.column_stack([(x0 + rng.integers(0, 15, n)) % 360, np.minimum(y0 + rng.integers(0, 12, n), 180),
                               rng.random(n)])
        polys.append([pts])
    r = rasterize(from_polygons(polys))
    peak = r.peak
    for thr in (0.0, 0.3 * peak, np.where(np.arange(r.n) % 2, -1.0, np.nan), 0.1 * peak - 1.0):
        unit, x, y, v = r.pixels(thr)
        counts, x2, y2, v2 = r.pixel_counts(thr)
        # the straightforward selection, unit by unit, row-major
        t = np.broadcast_to(np.asarray(thr, np.float64), (r.n,))
        want = []
        for i in range(r.n):
            win = r.window(i)
            rr, cc = np.nonzero((win > 0) & (win >= t[i]))
            want += [(i, c + r.x0[i], rr_ + r.y0[i], win[rr_, c]) for rr_, c in zip(rr, cc)]
        assert [tuple(w) for w in zip(unit, x, y, v)] == want
        assert np.array_equal(counts, np.bincount(unit, minlength=r.n))
        assert np.array_equal(x, x2) and np.array_equal(y, y2) and np.array_equal(v, v2)


def _scattered_raster(seed, pad):
    from calib.canvas.points import from_polygons
    from calib.canvas.raster import rasterize

    rng = np.random.default_rng(seed)
    dets = []
    for k in range(8):
        # over the seam, at both poles, and in between; lattices and scattered points
        x0, y0 = [(355.0, 60.0), (10.0, 2.0), (200.0, 176.0), (90.0, 90.0)][k % 4]
        if k % 2:
            pts = np.column_stack([(x0 + 3 * rng.integers(0, 5, 12)) % 360, np.clip(y0 + 3 * rng.integers(-2, 3, 12), 0, 180),
                                   rng.random(12) + 0.1])
        else:
            pts = np.column_stack([(x0 + rng.random(9) * 12) % 360, np.clip(y0 + rng.random(9) * 8 - 4, 0, 180),
                                   rng.random(9) + 0.1])
        dets.append([pts])
    return rasterize(from_polygons(dets), pad=pad)


@pytest.mark.parametrize("seed", range(3))
def test_fill_nearest_is_the_nearest_support_pixel_lowest_column_then_row(seed):
    r = _scattered_raster(seed, pad=6.0)
    for i in range(r.n):
        win = r.window(i)
        sr, sc = np.nonzero(win > 0)
        rows, cols = np.mgrid[0: win.shape[0], 0: win.shape[1]]
        rows, cols = rows.ravel(), cols.ravel()
        # brute force: the smallest (d^2, column, row) over the window's support pixels
        d2 = (rows[:, None] - sr[None, :]) ** 2 + (cols[:, None] - sc[None, :]) ** 2
        key = (d2 * 1024 + sc[None, :]) * 1024 + sr[None, :]
        k = np.argmin(key, axis=1)
        want = win[sr[k], sc[k]]
        got = r.fill_nearest(np.full(rows.size, i), cols + r.x0[i], rows + r.y0[i])
        assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_bilinear_samples_read_four_pixels(seed):
    r = _scattered_raster(seed, pad=2.0)
    rng = np.random.default_rng(seed)
    unit = rng.integers(0, r.n, 3000)
    # whole pixels, half pixels, window edges and beyond
    qx = r.x0[unit] + np.round(rng.uniform(-1, r.w[unit] + 1) * 2) / 2 + (rng.random(3000) < 0.3) * rng.random(3000)
    qy = r.y0[unit] + np.round(rng.uniform(-1, r.h[unit] + 1) * 2) / 2
    got = r.sample(unit, qx, qy, value_at=r.fill_nearest)
    # the formula with every neighbour read (a weight-0 neighbour at the sample's own pixel)
    fx, fy = qx - r.x0[unit], qy - r.y0[unit]
    inside = (fx >= 0) & (fx <= r.w[unit] - 1) & (fy >= 0) & (fy <= r.h[unit] - 1)
    cx, cy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = fx - cx, fy - cy
    ox, oy = (tx > 0).astype(np.int64), (ty > 0).astype(np.int64)
    px, py = r.x0[unit] + cx, r.y0[unit] + cy
    v00 = r.fill_nearest(unit, px, py)
    v10 = r.fill_nearest(unit, px + ox, py)
    v01 = r.fill_nearest(unit, px, py + oy)
    v11 = r.fill_nearest(unit, px + ox, py + oy)
    val = (1 - ty) * ((1 - tx) * v00 + tx * v10) + ty * ((1 - tx) * v01 + tx * v11)
    want = np.where(inside, np.maximum(val, 0.0), 0.0)
    assert np.array_equal(got, want)
    assert inside.sum() > 1000 and (~inside).sum() > 10


@pytest.mark.parametrize("seed", range(3))
def test_triangles_draw_what_each_triangle_draws_on_its_own(seed):
    from calib.canvas.points import from_polygons
    from calib.canvas.raster import _TOL, barycentric, rasterize
    from calib.canvas.triangulate import delaunay_sets

    rng = np.random.default_rng(50 + seed)
    dets = []
    for k in range(10):
        n = int(rng.integers(4, 20))
        x0, y0 = rng.uniform(0, 330), rng.uniform(0, 160)
        dets.append([np.column_stack([x0 + rng.random(n) * 25, y0 + rng.random(n) * 18, rng.random(n) + 0.05])])
    fp = from_polygons(dets)
    r = rasterize(fp)
    tri, tset = delaunay_sets(fp.poly_off, fp.x, fp.y)
    for i in range(fp.n):
        want = np.zeros((r.h[i], r.w[i]))
        for a, b, c in tri[tset == i]:
            xs, ys, es = fp.x[[a, b, c]], fp.y[[a, b, c]], fp.e[[a, b, c]]
            gy, gx = np.mgrid[int(np.ceil(ys.min())): int(np.floor(ys.max())) + 1,
                              int(np.ceil(xs.min())): int(np.floor(xs.max())) + 1]
            gx, gy = gx.ravel(), gy.ravel()
            w0, w1, w2 = barycentric(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], gx.astype(float), gy.astype(float))
            ins = (w0 >= -_TOL) & (w1 >= -_TOL) & (w2 >= -_TOL)
            v = w0 * es[0] + w1 * es[1] + w2 * es[2]
            rr, cc = gy[ins] - r.y0[i], gx[ins] - r.x0[i]
            np.maximum.at(want, (rr, cc), v[ins])
        assert np.array_equal(r.window(i), want)


@pytest.mark.parametrize("seed", range(4))
def test_by_set_then_decreasing_is_the_lexsort(seed):
    from calib.canvas.points import FlatPoints, offsets_of
    from calib.stages.emit.dense import _by_set_then_decreasing

    rng = np.random.default_rng(200 + seed)
    counts = rng.integers(1, 60, 300)
    n = int(counts.sum())
    # values that differ only in their lowest bits (ties of the packed keys), exact repeats, and spread ones
    base = rng.choice([0.5, 0.25, 1.0 / 3.0, 0.7], n)
    e = np.where(rng.random(n) < 0.5, base + rng.integers(0, 4, n) * np.spacing(base), base * (1 + rng.random(n)))
    sets = FlatPoints(np.zeros(n), np.zeros(n), e, np.arange(counts.size + 1), offsets_of(counts))
    order = _by_set_then_decreasing(sets)
    assert order is not None
    assert np.array_equal(order, np.lexsort((np.arange(n), -e, sets.row)))


def test_pattern_index_is_the_broadcast_sum():
    from calib.canvas.raster import _pattern_index

    base = np.array([0, 100, 7], np.int64)
    w = np.array([10, 4, 1], np.int64)
    pdx = np.array([0, 1, 3])
    pdy = np.array([0, 2, 1])
    assert _pattern_index(base, w, pdx, pdy).tolist() == [[0, 21, 13], [100, 109, 107], [7, 10, 11]]


def _thin_reference(sets, cell):
    """The strongest point of each cell, ties to the first in row-major order, one set at a time."""
    out = np.zeros(sets.n_points, bool)
    for s in range(sets.n):
        a, b = int(sets.start[s]), int(sets.start[s] + sets.count[s])
        x, y, e = sets.x[a:b], sets.y[a:b], sets.e[a:b]
        g = float(cell[s])
        cx = np.floor((x - x.min()) / g)
        cy = np.floor((y - y.min()) / g)
        rm = np.lexsort((x, y))  # row-major order (stable)
        rank = np.empty(b - a, np.int64)
        rank[rm] = np.arange(b - a)
        for key in set(zip(cx.tolist(), cy.tolist())):
            members = np.flatnonzero((cx == key[0]) & (cy == key[1]))
            top = members[e[members] == e[members].max()]
            out[a + top[np.argmin(rank[top])]] = True
    return out


@pytest.mark.parametrize("shuffle", [False, True])
def test_thin_to_cells_keeps_each_cells_first_strongest_point(shuffle):
    from calib.canvas.points import FlatPoints, offsets_of
    from calib.stages.emit.compress import thin_to_cells

    # a 6 x 5 pixel block past the seam (x unwrapped) with tied maxima, and a 3-point set
    yy, xx = np.mgrid[20:25, 357:363]
    e1 = np.array([[1, 2, 2, 1, 5, 5], [3, 3, 1, 1, 5, 4], [1, 1, 1, 1, 1, 1], [2, 1, 1, 7, 1, 1],
                   [1, 2, 1, 1, 1, 7]], np.float64)
    x = np.r_[xx.ravel(), 10.0, 11.0, 10.0].astype(np.float64)
    y = np.r_[yy.ravel(), 180.0, 180.0, 179.0].astype(np.float64)
    e = np.r_[e1.ravel(), 0.5, 0.5, 0.5]
    count = np.array([30, 3])
    if shuffle:  # not row-major: ties still go to the first in row-major order
        rng = np.random.default_rng(3)
        perm = np.r_[rng.permutation(30), 30 + rng.permutation(3)]
        x, y, e = x[perm], y[perm], e[perm]
    sets = FlatPoints(x, y, e, np.arange(3, dtype=np.int64), offsets_of(count))
    cell = np.array([4, 2])
    got = thin_to_cells(sets, cell)
    assert np.array_equal(got, _thin_reference(sets, cell))
    kept = sorted(zip(x[got].tolist(), y[got].tolist()))
    # block cells (4 x 4 from (357, 20)): 7 at (360, 23); 5 at (361, 20) before its ties; on row 24 the 2
    # at (358, 24) and the 7 at (362, 24); the small set is one cell of ties: its first, (10, 179)
    assert kept == [(10.0, 179.0), (358.0, 24.0), (360.0, 23.0), (361.0, 20.0), (362.0, 24.0)]


@pytest.mark.parametrize("seed", range(4))
def test_lattice_cells_draw_the_same_bits_on_the_fast_and_the_general_path(seed):
    """Whole-degree lattices (holes: cells with three corners; over the seam; on both poles; zero
    energies) drawn by the plain gather-and-assign path equal, bit for bit, what the np.fmax.at
    path draws (taken when any energy of the call is not finite)."""
    from calib.canvas.points import from_polygons
    from calib.canvas.raster import rasterize

    rng = np.random.default_rng(seed)
    polys = []
    for x0, y0, step in ((10.0, 20.0, 3), (351.0, 60.0, 3), (200.0, 0.0, 2), (100.0, 168.0, 3), (40.0, 90.0, 4)):
        xs, ys = np.meshgrid(np.arange(x0, x0 + 8 * step, step), np.arange(y0, y0 + 5 * step, step))
        keep = rng.random(xs.shape) < 0.8
        keep.flat[:3] = True
        e = rng.random(keep.sum())
        e[rng.random(e.size) < 0.15] = 0.0
        x = np.mod(xs[keep], 360.0)  # the lattice past x = 360 comes back at 0: it crosses the seam
        polys.append([np.column_stack([x, ys[keep], e])])
    fast = rasterize(from_polygons(polys))
    nan_unit = [np.array([[300.0, 100.0, np.nan], [303.0, 100.0, 1.0], [300.0, 103.0, 1.0]])]
    general = rasterize(from_polygons(polys + [nan_unit]))
    n = int(fast.off[-1])
    assert np.array_equal(general.off[: len(polys) + 1], fast.off)
    assert np.array_equal(general.values[:n].view(np.uint64), fast.values.view(np.uint64))
    assert (fast.values > 0).sum() > 100


def test_canvas_x_and_row_clip_skip_the_copy_only_when_nothing_moves():
    from calib.canvas.points import FlatPoints, offsets_of
    from calib.canvas.sphere import _canvas_x, _clip_rows

    def sets(x, counts):
        x = np.asarray(x, np.float64)
        return FlatPoints(x, np.zeros_like(x), np.ones_like(x), np.arange(len(counts) + 1), offsets_of(counts))

    on = sets([-0.0, 10.0, 359.5, 400.0, 5.0], [3, 0, 2])  # lowest x of each set in [0, 360); an empty set
    assert _canvas_x(on) is on.x
    moved = sets([-3.0, 10.0, 365.0, 400.0], [2, 2])
    assert _canvas_x(moved).tolist() == [357.0, 370.0, 5.0, 40.0]
    assert np.isnan(_canvas_x(sets([np.nan, 1.0], [2]))).all()
    y = np.array([0.0, -0.0, 180.0, 90.5])
    assert _clip_rows(y) is y
    assert _clip_rows(np.array([-1.0, 181.0, 3.0])).tolist() == [0.0, 180.0, 3.0]
    kept = _clip_rows(np.array([np.nan, 200.0]))
    assert np.isnan(kept[0]) and kept[1] == 180.0
