"""Known answers for the helpers of the faster emission paths: each equals the straightforward
computation it replaces (random inputs, seam and pole cases included)."""
from __future__ import annotations

import numpy as np
import pytest

from calib.canvas.points import order_by_set_x_y


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
