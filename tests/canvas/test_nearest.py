"""The nearest support pixel of convex-like maps by their lines (calib.canvas.nearest) against
hand answers and against the general row scan of Raster.fill_nearest."""
from __future__ import annotations

import numpy as np
import pytest

from calib.canvas.nearest import FAR, _isqrt, nearest_keys, nearest_keys_by_runs, support_shape
from calib.canvas.points import FlatPoints, from_polygons, offsets_of
from calib.canvas.raster import Raster, rasterize
from canvas_cases import scattered_detections


def _maps(*wins):
    """A Raster holding the given (h, w) windows (pixel values), side by side on the canvas."""
    w = np.array([a.shape[1] for a in wins], np.int64)
    h = np.array([a.shape[0] for a in wins], np.int64)
    x0 = np.cumsum(np.r_[0, w[:-1] + 5]).astype(np.int64) + 10
    y0 = np.full(len(wins), 20, np.int64)
    values = np.concatenate([a.ravel().astype(np.float64) for a in wins])
    one = np.arange(len(wins) + 1, dtype=np.int64)
    empty = FlatPoints(np.zeros(len(wins)), np.zeros(len(wins)), np.ones(len(wins)), one, one)
    return Raster(x0, y0, w, h, offsets_of(w * h), values, empty, np.zeros(len(wins), bool))


def _general(r: Raster, unit, px, py):
    """fill_nearest by the row scan alone (every map sent to it)."""
    idx = r._flat_index(unit, px, py)
    out = np.where(idx >= 0, r.values[np.maximum(idx, 0)], 0.0)
    need = (idx >= 0) & (out <= 0) & (r.peak[unit] > 0)
    out[need] = r._nearest_support_values(idx[need], 65_536)
    return out


def _every_pixel(r: Raster):
    unit = np.repeat(np.arange(r.n), r.w * r.h)
    loc = np.concatenate([np.arange(k) for k in (r.w * r.h).tolist()])
    row, col = np.divmod(loc, r.w[unit])
    return unit, r.x0[unit] + col, r.y0[unit] + row


def test_support_shape_hand_maps():
    a = np.zeros((5, 4))
    a[1:4, 1] = 1.0  # column 1: rows 1-3
    a[2, 1:4] = 2.0  # row 2: columns 1-3 (a plus-like cross, convex-like)
    b = np.zeros((3, 3))
    b[0, 0] = b[2, 0] = 1.0  # column 0: rows 0 and 2, a gap
    c = np.zeros((3, 4))
    c[1, 0] = c[1, 2] = 1.0  # row 1: columns 0 and 2, a gap
    d = np.zeros((2, 2))  # no support
    e = np.zeros((4, 4))
    e[0, 0] = e[1, 1] = 1.0  # a diagonal: every line one run
    r = _maps(a, b, c, d, e)
    sh = support_shape(r.values, r.off, r.w, r.h)
    assert sh.convex.tolist() == [True, False, False, False, True]
    assert (sh.rmin[0], sh.rmax[0], sh.cmin[0], sh.cmax[0]) == (1, 3, 1, 3)
    rows = sh.row_at[0] + np.arange(5)
    assert sh.lo[rows].tolist()[1:4] == [1, 1, 1] and sh.hi[rows].tolist()[1:4] == [1, 3, 1]
    cols = sh.col_at[0] + np.arange(4)
    assert sh.lo[cols].tolist()[1:] == [1, 2, 2] and sh.hi[cols].tolist()[1:] == [3, 2, 2]


def test_isqrt_exact():
    import math

    v = np.array([0, 1, 2, 3, 4, 8, 9, 10, 15, 16, 17, 99, 100, 101, 2**40 - 1, 2**40, 2**52 + 3])
    assert _isqrt(v).tolist() == [math.isqrt(int(x)) for x in v.tolist()]


def test_nearest_keys_hand_answers_and_ties():
    # a triangle: row 2 columns 2-2, row 3 columns 2-3, row 4 columns 2-4 (convex-like)
    a = np.zeros((7, 8))
    a[2, 2] = 1.0
    a[3, 2:4] = [2.0, 3.0]
    a[4, 2:5] = [4.0, 5.0, 6.0]
    r = _maps(a)
    sh = support_shape(r.values, r.off, r.w, r.h)
    assert sh.convex.tolist() == [True]
    row = np.array([2, 5, 0, 3, 0, 6])
    col = np.array([5, 5, 3, 6, 0, 0])
    key = nearest_keys(sh, np.zeros(6, np.int64), row, col)
    d2, c, rr = key >> 20, (key >> 10) & 1023, key & 1023
    # (row 2, col 5): (col 3, row 3) and (col 4, row 4) both at d2 5 -> the lower column, 3
    # (5, 5): (4, 4) at 2; (0, 3): (2, 2) at 5 (before (3, 3) at 9)
    # (3, 6): (4, 4) at 5, (3, 3) at 9; (0, 0): (2, 2) at 8; (6, 0): (2, 4) at 8
    assert d2.tolist() == [5, 2, 5, 5, 8, 8]
    assert c.tolist() == [3, 4, 2, 4, 2, 2]
    assert rr.tolist() == [3, 4, 2, 4, 2, 4]
    got = r.fill_nearest(np.zeros(6, np.int64), col + r.x0[0], row + r.y0[0])
    assert got.tolist() == [3.0, 6.0, 1.0, 6.0, 1.0, 4.0]
    assert np.array_equal(got, _general(r, np.zeros(6, np.int64), col + r.x0[0], row + r.y0[0]))


def test_column_ties_go_to_the_lowest_row_through_the_general_path():
    # a column of two runs is left to the row scan; a row tie there goes to the lowest row
    a = np.zeros((5, 3))
    a[0, 1] = 1.0
    a[4, 1] = 2.0
    r = _maps(a)
    assert not support_shape(r.values, r.off, r.w, r.h).convex[0]
    got = r.fill_nearest([0, 0], [r.x0[0] + 1, r.x0[0] + 1], [r.y0[0] + 2, r.y0[0] + 3])
    assert got.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("seed", range(4))
def test_fill_nearest_by_lines_equals_the_row_scan(seed):
    rng = np.random.default_rng(seed)
    dets = scattered_detections(rng, 12, [1, 2, 5, 9, 14, 20])
    r = rasterize(from_polygons(dets), pad=9.0)
    sh = support_shape(r.values, r.off, r.w, r.h)
    assert sh.convex.sum() >= 6
    unit, px, py = _every_pixel(r)
    assert np.array_equal(r.fill_nearest(unit, px, py), _general(r, unit, px, py))


def test_fill_nearest_by_lines_hand_maps_with_ties():
    # a diamond (single-run columns) and a ring (columns of two runs) side by side
    d = np.zeros((9, 9))
    for i in range(9):
        half = 4 - abs(i - 4)
        d[i, 4 - half: 4 + half + 1] = 1.0 + i
    d[d > 0] = d[d > 0] * 0.5 + np.arange(int((d > 0).sum())) * 0.01
    ring = np.zeros((9, 9))
    ring[2:7, 2:7] = 3.0
    ring[3:6, 3:6] = 0.0
    big = np.zeros((11, 13))
    big[5, 6] = 4.0
    big[5, 2] = 1.0
    big[5, 10] = 2.0
    two = np.zeros((12, 10))  # two points: rows and columns with gaps between them
    two[2, 1] = 1.0
    two[8, 6] = 2.0
    sliver = np.zeros((12, 12))  # a thin diagonal: every line one run, gaps in none
    for i in range(10):
        sliver[i + 1, i + 1: i + 3] = 1.0 + i
    r = _maps(np.pad(d, 4), ring, big, two, sliver)
    assert support_shape(r.values, r.off, r.w, r.h).convex.tolist() == [True, False, False, True, True]
    unit, px, py = _every_pixel(r)
    assert np.array_equal(r.fill_nearest(unit, px, py), _general(r, unit, px, py))


@pytest.mark.parametrize("seed", range(3))
def test_support_shape_equals_a_brute_force_reading(seed):
    rng = np.random.default_rng(seed)
    wins = []
    for k in range(40):
        a = np.zeros((rng.integers(1, 7), rng.integers(1, 7)))
        if k % 4:  # random pixels (some maps convex-like by chance), or a random box
            a[rng.random(a.shape) < rng.uniform(0.05, 0.6)] = 1.0
        else:
            r0, c0 = rng.integers(0, a.shape[0]), rng.integers(0, a.shape[1])
            a[r0: r0 + rng.integers(1, 4), c0: c0 + rng.integers(1, 4)] = 2.0
        wins.append(a)
    r = _maps(*wins)
    sh = support_shape(r.values, r.off, r.w, r.h)
    for i, a in enumerate(wins):
        on = a > 0
        rows = [np.flatnonzero(x) for x in on]
        cols = [np.flatnonzero(x) for x in on.T]

        def one_run(ix):
            return ix.size == 0 or ix[-1] - ix[0] + 1 == ix.size

        want = on.any() and all(one_run(x) for x in rows) and all(one_run(x) for x in cols)
        assert sh.convex[i] == want
        if not want:
            continue
        rr, cc = np.nonzero(on)
        assert (sh.rmin[i], sh.rmax[i], sh.cmin[i], sh.cmax[i]) == (rr.min(), rr.max(), cc.min(), cc.max())
        for j, x in enumerate(rows):
            lo, hi = (x[0], x[-1]) if x.size else (FAR, FAR)
            assert (sh.lo[sh.row_at[i] + j], sh.hi[sh.row_at[i] + j]) == (lo, hi)
        for j, x in enumerate(cols):
            lo, hi = (x[0], x[-1]) if x.size else (FAR, FAR)
            assert (sh.lo[sh.col_at[i] + j], sh.hi[sh.col_at[i] + j]) == (lo, hi)


def _by_runs(r: Raster, unit, px, py):
    """fill_nearest with every off-support pixel answered by nearest_keys_by_runs."""
    idx = r._flat_index(unit, px, py)
    out = np.where(idx >= 0, r.values[np.maximum(idx, 0)], 0.0)
    need = np.flatnonzero((idx >= 0) & (out <= 0) & (r.peak[unit] > 0))
    sh = support_shape(r.values, r.off, r.w, r.h)
    u = unit[need]
    best = nearest_keys_by_runs(sh, u, py[need] - r.y0[u], px[need] - r.x0[u])
    out[need] = r.values[r.off[u] + (best & 1023) * r.w[u] + ((best >> 10) & 1023)]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_nearest_by_runs_equals_the_row_scan_on_any_support(seed):
    rng = np.random.default_rng(seed)
    wins = []
    for k in range(30):  # random pixels: rows and columns of several runs, empty rows between
        a = np.zeros((rng.integers(1, 12), rng.integers(1, 12)))
        a[rng.random(a.shape) < rng.uniform(0.02, 0.5)] = rng.integers(1, 5)
        wins.append(a)
    r = _maps(*wins)
    unit, px, py = _every_pixel(r)
    assert np.array_equal(_by_runs(r, unit, px, py), _general(r, unit, px, py))


def test_nearest_by_runs_hand_answers():
    # two blobs with an empty row between them, and a row of two runs
    a = np.zeros((7, 9))
    a[0:2, 1:3] = 1.0
    a[3, 0:2] = 2.0
    a[3, 6:9] = 3.0
    a[5:7, 4:6] = 4.0
    r = _maps(a)
    sh = support_shape(r.values, r.off, r.w, r.h)
    assert not sh.convex[0]
    assert sh.near_row[sh.row_at[0] + np.arange(7)].tolist() == [0, 1, 1, 3, 3, 5, 6]
    row = np.array([2, 4, 3, 2])
    col = np.array([4, 3, 4, 8])
    key = nearest_keys_by_runs(sh, np.zeros(4, np.int64), row, col)
    d2, c, rr = key >> 20, (key >> 10) & 1023, key & 1023
    # (2, 4): (2, 1) at 5, (1, 3) at 5+... -> (col 2, row 1) d2 5 vs (col 6, row 3) d2 5: column 2
    # (4, 3): (1, 3) at 5, (4, 5) at 2 -> (4, 5); (3, 4): (6, 3) at 4, (1, 3) at 9, (4, 5) at 4: column 4
    # (2, 8): (8, 3) at 1
    assert d2.tolist() == [5, 2, 4, 1]
    assert c.tolist() == [2, 4, 4, 8]
    assert rr.tolist() == [1, 5, 5, 3]
