"""The nearest support pixel of chosen pixels of convex-like maps, without scanning rows.

A map's *support* is its pixels with a value > 0. :meth:`calib.canvas.raster.Raster.fill_nearest`
gives a pixel off the support the value of the nearest support pixel (Euclidean; among equally
near ones the lowest column, then the lowest row: the least key ``d2 << 20 | col << 10 | row`` in
window coordinates).

Where the support is *convex-like* -- each of its rows one run of columns and each of its
columns one run of rows (a blob, a triangulated polygon's hull, a thin sliver, one or two points)
-- the nearest support pixel of a row to column ``c`` is column ``clip(c, left, right)`` of that
row (the only one that near), and the same for a column; a row or column without support reads
as one pixel :data:`FAR` columns (rows) away, farther than any real one. So, for each pixel:

1. an upper bound ``U`` on its d2: that of its nearest pixel on the support row nearest to its
   row, or on the support column nearest to its column, whichever is nearer;
2. every support pixel at most that far lies on a row within ``sqrt(U)`` of the pixel's row
   (between the first and last support row), and on a column within ``sqrt(U)`` of its column:
   whichever of the two ranges is shorter is read line by line (each line's nearest pixel), and
   the least key is the answer.

Pixels near a straight side of the support need a single line; only those off a corner read a
few. A support that is not convex-like is read by its row runs (:func:`nearest_keys_by_runs`:
the same bound, then every run of the rows within reach), or by the raster's general row scan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib.canvas.points import offsets_of, ragged_arange

#: where an empty row or column has its "pixel": its key (d2 >= (FAR - 360)^2, shifted) exceeds
#: every real key (d2 < 2^18), so it never wins
FAR = 1 << 15


@dataclass(frozen=True, eq=False)
class SupportShape:
    """The support of n maps (windows ``w`` x ``h`` at ``off`` in one row-major buffer) by rows
    and by columns: ``lo``/``hi`` hold at ``row_at[i] + r`` the first and last support column of
    row ``r`` of map i, and at ``col_at[i] + c`` the first and last support row of its column
    ``c`` (:data:`FAR` for both: none)."""

    convex: np.ndarray  # (n,) bool: the support is convex-like (see the module docstring)
    rmin: np.ndarray  # (n,) first and last support row, first and last support column
    rmax: np.ndarray
    cmin: np.ndarray
    cmax: np.ndarray
    row_at: np.ndarray  # (n,)
    col_at: np.ndarray  # (n,)
    lo: np.ndarray  # (sum h + sum w,)
    hi: np.ndarray
    # every run of support pixels along a row, by map, row and column: window row, first and last
    # column; row r of map i holds runs[row_runs[row_at[i] + r]: row_runs[row_at[i] + r + 1]]
    run_row: np.ndarray
    run_lo: np.ndarray
    run_hi: np.ndarray
    row_runs: np.ndarray  # (sum h + 1,)
    near_row: np.ndarray  # (sum h,): a row holding support nearest to each row of its map (-1: none)


def support_shape(values: np.ndarray, off: np.ndarray, w: np.ndarray, h: np.ndarray) -> SupportShape:
    """:class:`SupportShape` of the maps in ``values`` (map i: ``values[off[i]:off[i+1]]``, ``h[i]``
    rows of ``w[i]`` pixels), from the runs of support pixels along the window rows: a map is
    convex-like when each row holds at most one run and each column starts (and ends) one run only
    (see :func:`_column_ends`)."""
    n = w.size
    row_off, col_off = offsets_of(h), offsets_of(w)
    n_rows, n_cols = int(row_off[-1]), int(col_off[-1])
    row_unit = np.repeat(np.arange(n), h)
    row_at = off[row_unit] + (np.arange(n_rows) - row_off[row_unit]) * w[row_unit]  # first pixel of each row
    # runs of support pixels, cut at every row's start and end
    m = values > 0
    cut = np.zeros(values.size + 1, bool)
    cut[row_at] = True
    cut[row_at + w[row_unit]] = True
    edge = np.empty(values.size + 1, bool)  # pixel p starts a run / pixel p - 1 ends one
    edge[0] = m[0] if m.size else False
    edge[-1] = m[-1] if m.size else False
    np.not_equal(m[1:], m[:-1], out=edge[1:-1])
    edge |= cut & np.r_[m, False] | cut & np.r_[False, m]
    at = np.flatnonzero(edge & np.r_[m, False])
    stop = np.flatnonzero(edge & np.r_[False, m]) - 1
    g = np.searchsorted(row_at, at, side="right") - 1  # window row of each run
    lo, hi = at - row_at[g], stop - row_at[g]
    unit = row_unit[g]
    gaps = np.bincount(unit[1:][g[1:] == g[:-1]], minlength=n)  # rows of several runs
    left = np.full(n_rows, FAR)
    right = np.full(n_rows, FAR)
    left[g], right[g] = lo, hi
    # each map's extent
    n_run = np.bincount(unit, minlength=n)
    has = np.flatnonzero(n_run)
    u_first = offsets_of(n_run)[:-1][has]
    rmin, rmax, cmin, cmax = (np.zeros(n, np.int64) for _ in range(4))
    if has.size:
        rmin[has] = (g - row_off[unit])[u_first]
        rmax[has] = (g - row_off[unit])[u_first + n_run[has] - 1]
        cmin[has] = np.minimum.reduceat(lo, u_first)
        cmax[has] = np.maximum.reduceat(hi, u_first)
    # columns: where each run starts (ends) a column's run, from the rows above (below)
    first_row = g == row_off[unit]
    last_row = g == row_off[unit] + h[unit] - 1
    above = np.where(first_row, 0, g - 1)
    below = np.where(last_row, 0, g + 1)
    slot = col_off[unit]
    n_top, top = _column_ends(slot, lo, hi, np.where(first_row, FAR, left[above]),
                              np.where(first_row, FAR, right[above]), g - row_off[unit], n_cols)
    n_bottom, bottom = _column_ends(slot, lo, hi, np.where(last_row, FAR, left[below]),
                                   np.where(last_row, FAR, right[below]), g - row_off[unit], n_cols)
    col_unit = np.repeat(np.arange(n), w)
    gaps += np.bincount(col_unit, weights=(n_top > 1) | (n_bottom > 1), minlength=n).astype(np.int64)
    empty = n_top == 0
    top[empty], bottom[empty] = FAR, FAR
    convex = (n_run > 0) & (gaps == 0)
    return SupportShape(convex, rmin, rmax, cmin, cmax, row_off[:-1], n_rows + col_off[:-1],
                        np.concatenate([left, top]), np.concatenate([right, bottom]), g - row_off[unit], lo, hi,
                        offsets_of(np.bincount(g, minlength=n_rows)), _near_rows(g, row_unit, row_off))


def _near_rows(g: np.ndarray, row_unit: np.ndarray, row_off: np.ndarray) -> np.ndarray:
    """For each window row (global index), a row of the same map holding support and as near as
    any (the one above on a tie), as a row of the window; -1 where the map has none."""
    size = row_unit.size
    full = np.zeros(size, bool)
    full[g] = True
    idx = np.arange(size)
    above = np.maximum.accumulate(np.where(full, idx, -1)) if size else idx
    below = np.minimum.accumulate(np.where(full, idx, size)[::-1])[::-1] if size else idx
    start = row_off[row_unit]
    above = np.where(above >= start, above, -1)
    below = np.where(below < row_off[row_unit + 1], below, -1)
    take_below = (above < 0) | ((below >= 0) & (below - idx < idx - above))
    out = np.where(take_below, below, above)
    return np.where(out >= 0, out - start, -1)


def _column_ends(slot, lo, hi, nlo, nhi, row, size) -> tuple[np.ndarray, np.ndarray]:
    """For the runs [lo, hi] of their rows (columns of the map at ``slot``) and the run [nlo, nhi]
    of the neighbouring row (FAR, FAR: none): how many runs' ends each column slot has -- the columns
    of a run not in its neighbour's -- and the sum of their rows (the end's row where there is one)."""
    a1, b1 = lo, np.minimum(hi, nlo - 1)  # left of the neighbour
    a2, b2 = np.maximum(lo, nhi + 1), hi  # right of it
    a = np.concatenate([a1, a2])
    b = np.concatenate([b1, b2])
    r = np.concatenate([row, row]).astype(np.float64)
    ok = a <= b
    s = np.concatenate([slot, slot])
    a, b, r, s = s[ok] + a[ok], s[ok] + b[ok] + 1, r[ok], s[ok]
    count = np.cumsum(np.bincount(a, minlength=size + 1) - np.bincount(b, minlength=size + 1))[:size]
    rows = np.cumsum(np.bincount(a, weights=r, minlength=size + 1) - np.bincount(b, weights=r, minlength=size + 1))
    return count, np.rint(rows[:size]).astype(np.int64)


def _isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of non-negative integers (exact)."""
    s = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    s -= s * s > v
    s += (s + 1) * (s + 1) <= v
    return s


def _line_bound(lo_t, hi_t, base, along, across, first, last) -> np.ndarray:
    """d2 from each pixel (``along``, ``across``) to the nearest pixel of the support line nearest
    to its own (rows with ``base = row_at``, or columns with ``col_at`` and the roles swapped)."""
    r0 = np.minimum(np.maximum(along, first), last)
    at = base + r0
    d = across - np.minimum(np.maximum(across, lo_t[at]), hi_t[at])
    bound = d * d
    d = along - r0
    bound += d * d
    return bound


def nearest_keys(shape: SupportShape, unit: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Key ``d2 << 20 | c << 10 | r`` of the nearest support pixel (c, r) of each pixel (``row``,
    ``col`` in the window of map ``unit``; every map given convex-like, see the module
    docstring)."""
    out = np.zeros(unit.size, np.int64)
    if unit.size == 0:
        return out
    lo_t, hi_t = shape.lo, shape.hi
    rmin, rmax, cmin, cmax = shape.rmin[unit], shape.rmax[unit], shape.cmin[unit], shape.cmax[unit]
    ra, ca = shape.row_at[unit], shape.col_at[unit]
    # the bound: the nearer of the nearest pixels of the nearest support row and of the nearest
    # support column (huge where that line is empty); the column's halves the lines to read
    bound = _line_bound(lo_t, hi_t, ra, row, col, rmin, rmax)
    np.minimum(bound, _line_bound(lo_t, hi_t, ca, col, row, cmin, cmax), out=bound)
    s = _isqrt(bound)
    lo_r = np.maximum(row - s, rmin)
    n_r = np.minimum(row + s, rmax) - lo_r + 1
    lo_c = np.maximum(col - s, cmin)
    n_c = np.minimum(col + s, cmax) - lo_c + 1
    # the shorter range of lines, each line's pixel nearest to the pixel
    by_row = n_r <= n_c
    for sel, first, count, base, along, across, is_row in ((np.flatnonzero(by_row), lo_r, n_r, ra, row, col, True),
                                                           (np.flatnonzero(~by_row), lo_c, n_c, ca, col, row, False)):
        k = count[sel]
        one = k == 1  # most pixels: one line, read directly
        for part, many in ((sel[one], False), (sel[~one], True)):
            if part.size == 0:
                continue
            if many:
                kk = k[~one]
                q = np.repeat(part, kk)
                line = first[q] + ragged_arange(kk)
            else:
                q = part
                line = first[q]
            at = base[q] + line
            x = across[q]
            near = np.minimum(np.maximum(x, lo_t[at]), hi_t[at])
            d = along[q] - line
            key = d * d
            d = x - near
            key += d * d
            key <<= 20
            key |= (near << 10) | line if is_row else (line << 10) | near
            out[part] = np.minimum.reduceat(key, offsets_of(kk)[:-1]) if many else key
    return out


def nearest_keys_by_runs(shape: SupportShape, unit: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """:func:`nearest_keys` for maps of any support: the bound from the support row nearest to the
    pixel's row (its runs' pixels nearest to the pixel), then every run of every row within
    ``sqrt(bound)`` -- a row's runs and those of the rows after it are one range of the runs. Every
    map given must have support."""
    if unit.size == 0:
        return np.zeros(0, np.int64)
    ra = shape.row_at[unit]
    r0 = shape.near_row[ra + np.clip(row, shape.rmin[unit], shape.rmax[unit])]
    first, stop = shape.row_runs[ra + r0], shape.row_runs[ra + r0 + 1]
    d = row - r0
    bound = _least(shape, first, stop, col) + d * d
    s = _isqrt(bound)
    first = shape.row_runs[ra + np.maximum(row - s, shape.rmin[unit])]
    stop = shape.row_runs[ra + np.minimum(row + s, shape.rmax[unit]) + 1]
    k = stop - first
    q = np.repeat(np.arange(unit.size), k)
    j = np.repeat(first, k) + ragged_arange(k)
    near = np.clip(col[q], shape.run_lo[j], shape.run_hi[j])
    rr = shape.run_row[j]
    d = col[q] - near
    key = d * d
    d = row[q] - rr
    key += d * d
    key <<= 20
    key |= (near << 10) | rr
    return np.minimum.reduceat(key, offsets_of(k)[:-1])


def _least(shape: SupportShape, first: np.ndarray, stop: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Least squared column distance from ``col`` to the runs ``first:stop`` (one range per pixel)."""
    k = stop - first
    j = np.repeat(first, k) + ragged_arange(k)
    c = np.repeat(col, k)
    d = c - np.clip(c, shape.run_lo[j], shape.run_hi[j])
    return np.minimum.reduceat(d * d, offsets_of(k)[:-1])


__all__ = ["SupportShape", "nearest_keys", "nearest_keys_by_runs", "support_shape"]
