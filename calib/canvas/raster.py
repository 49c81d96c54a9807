"""Energy maps of many detections at 1 px/degree, computed together.

The *energy map* of a unit (a detection, or one polygon of it) is what the official renderer would
draw at 1 px/degree: the unit's x are unwrapped by the seam rule (:func:`calib.canvas.sphere.unwrap`)
and its map lives on its own window of integer pixels (columns unwrapped, rows 0..180). A dense
pixel set (integer points most of which touch a 4-neighbour) is drawn as its pixels; anything
else is linearly interpolated polygon by polygon over a triangulation of the polygon's points,
max-combined, and a polygon with fewer than 3 points (or whose triangles hold no pixel) is drawn as
the pixels its points round to.

Which parts need a triangulation: a polygon whose points sit on a regular lattice (equal steps in
x and y, at least 10 points, at least half the sites present) is triangulated cell by cell (two
triangles per full cell, one per cell with three corners, as Delaunay does inside a lattice)
without Qhull, for all such polygons at once; on a whole-degree lattice every triangle of a shape
holds the same pixel pattern, so its pixels are one matrix product. The other polygons of 3 or
more points (scattered peaks, grids too small to count as lattices) are triangulated together by
:func:`calib.canvas.triangulate.delaunay_sets` (Qhull, one call each, only past 64 points). Where
several points lie on one circle the Delaunay triangulation is not unique, and the one chosen may
differ from Qhull's: the map then differs inside those cells (the emitted files' mAP does not move,
see tests/benchmarks/bench_emit_throughput.py). Every other triangle is rasterized row by row in
one vectorized pass.

All maps of a call share one flat buffer (:class:`Raster`): unit i's window is ``h[i] x w[i]``
pixels from column ``x0[i]`` (unwrapped) and row ``y0[i]``, row-major at ``off[i]``. Emitters,
selection and fusion read what they need from it -- peaks, pixels above a level, bilinear samples,
peak-normalised masks and their soft IoU -- without a per-detection Python loop.

``spread`` extends a map beyond its points: every pixel off the points takes the value of the
nearest pixel on them (scipy's Euclidean distance transform, one call per map) times a Gaussian
fall-off ``exp(-d^2 / (2 spread^2))`` (``inf``: no fall-off), over a window grown by 3 spread.
:meth:`Raster.fill_nearest` gives the same nearest-pixel values at chosen pixels only, without
building the whole spread map (ties resolved as scipy resolves them: lowest column, then row).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from calib.canvas.nearest import SupportShape, nearest_keys, support_shape
from calib.canvas.points import FlatPoints, offsets_of, ragged_arange, segment_ids
from calib.canvas.triangulate import MAX_POINTS, delaunay_sets
from calib.canvas.tridraw import draw_triangles

WIDTH, HEIGHT = 360, 181  # lattice columns x = 0..359, rows y = 0..180
_TOL = 1e-9  # barycentric slack: a pixel on a triangle's edge is inside it
#: a polygon counts as a regular lattice from this many points and this share of its sites present
LATTICE_MIN_POINTS, LATTICE_MIN_FILL = 10, 0.5
PIXEL_SET_TOUCHING = 0.9
_NONE = 1 << 16  # a column no window reaches: no support pixel on that side of a row


# ----------------------------------------------------------------------------------------------
# the raster
@dataclass(frozen=True, eq=False)
class Raster:
    """Energy maps of n units, each on its own window, in one flat row-major buffer."""

    x0: np.ndarray  # int64 (n,): first column of the window (unwrapped x)
    y0: np.ndarray  # int64 (n,): first row
    w: np.ndarray  # int64 (n,)
    h: np.ndarray  # int64 (n,)
    off: np.ndarray  # int64 (n + 1,): unit i's values are values[off[i]:off[i+1]]
    values: np.ndarray  # float64, >= 0
    points: FlatPoints  # the units' points, x unwrapped
    stamped: np.ndarray  # bool per point: drawn as the pixel it rounds to (pixel sets, degenerate polygons)

    @property
    def n(self) -> int:
        return len(self.x0)

    @cached_property
    def unit_of_value(self) -> np.ndarray:
        return segment_ids(np.diff(self.off))

    @cached_property
    def peak(self) -> np.ndarray:
        """Largest value of each map (0 for an empty one)."""
        out = np.zeros(self.n)
        size = np.diff(self.off)
        has = size > 0
        if has.any():
            out[has] = np.maximum.reduceat(self.values, self.off[:-1][has])
        return out

    def _flat_index(self, unit, px, py):
        """Buffer index of integer pixels (unwrapped x) of given units; -1 outside the window."""
        c = px - self.x0[unit]
        r = py - self.y0[unit]
        ok = (c >= 0) & (c < self.w[unit]) & (r >= 0) & (r < self.h[unit])
        return np.where(ok, self.off[unit] + r * self.w[unit] + c, -1)

    def at(self, unit, px, py) -> np.ndarray:
        """Values at integer pixels (unwrapped x) of the given units; 0 off their windows."""
        idx = self._flat_index(np.asarray(unit, np.int64), np.asarray(px, np.int64), np.asarray(py, np.int64))
        return np.where(idx >= 0, self.values[np.maximum(idx, 0)] if self.values.size else 0.0, 0.0)

    def sample(self, unit, qx, qy, value_at=None) -> np.ndarray:
        """Bilinear samples at arbitrary (unwrapped) positions of the given units, 0 outside a
        window (what ``scipy.ndimage.map_coordinates(order=1, mode="constant")`` gives on it).
        ``value_at(unit, px, py)`` replaces :meth:`at` for the pixel values (e.g. a filled map)."""
        return bilinear(self.x0, self.y0, self.w, self.h, value_at if value_at is not None else self.at, unit, qx, qy)

    def in_window(self, unit, px, py) -> np.ndarray:
        """Whether integer pixels (unwrapped x) lie on their units' windows."""
        return self._flat_index(np.asarray(unit, np.int64), np.asarray(px, np.int64), np.asarray(py, np.int64)) >= 0

    def pixels(self, min_value=0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(unit, x unwrapped, y, value) of the pixels with value > 0 and >= ``min_value`` (a
        number or one per unit), unit by unit in row-major order (y, then x)."""
        row_unit, cnt, x, y, v = self._kept_pixels(min_value)
        return np.repeat(row_unit, cnt), x, y, v

    def pixel_counts(self, min_value=0.0, dtype=np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`pixels` with, instead of each pixel's unit, the number of pixels of each unit
        (x and y of type ``dtype``: float64 for points, without an int64 copy made first)."""
        row_unit, cnt, x, y, v = self._kept_pixels(min_value, dtype)
        return np.bincount(row_unit, weights=cnt, minlength=self.n).astype(np.int64), x, y, v

    def _kept_pixels(self, min_value, dtype=np.int64):
        """(unit of each window row, its number of kept pixels, x, y (``dtype``), value of the kept
        pixels)."""
        thr = np.broadcast_to(np.asarray(min_value, np.float64), (self.n,))
        if self.values.size == 0:
            z = np.zeros(0, np.int64)
            return z, z, z, z, np.zeros(0)
        # value > 0 and >= thr in one test: a threshold <= 0 becomes the least positive double,
        # which the non-negative values reach exactly when they are > 0 (NaN stays: none reach it)
        with np.errstate(invalid="ignore"):
            thr = np.where(thr <= 0, np.nextafter(0.0, 1.0), thr)
        keep = self.values >= np.repeat(thr, np.diff(self.off))
        idx = np.flatnonzero(keep)
        # window rows: each kept pixel's unit, row and column follow from the row it falls in
        row_unit = segment_ids(self.h)
        row = ragged_arange(self.h)
        row_at = self.off[row_unit] + row * self.w[row_unit]  # buffer index of the row's first pixel
        cnt = np.diff(np.searchsorted(idx, np.r_[row_at, self.off[-1]]))
        # (whole numbers: the same values in any dtype that holds them)
        return (row_unit, cnt, np.add(idx, np.repeat(self.x0[row_unit] - row_at, cnt), dtype=dtype),
                np.repeat((row + self.y0[row_unit]).astype(dtype), cnt), self.values[idx])

    def window(self, i: int) -> np.ndarray:
        """Unit i's map as an (h, w) array (a view)."""
        return self.values[self.off[i]: self.off[i + 1]].reshape(int(self.h[i]), int(self.w[i]))

    def canvas(self, i: int, normalize: bool = True) -> np.ndarray:
        """Unit i's map on the full 181 x 360 lattice (float32, x wrapped; peak 1 when ``normalize``)."""
        out = np.zeros((HEIGHT, WIDTH), np.float32)
        block = self.window(i)
        if block.size == 0:
            return out
        peak = float(self.peak[i])
        if normalize and peak > 1e-12:
            block = block / peak
        cols = np.mod(np.arange(self.x0[i], self.x0[i] + self.w[i]), WIDTH)
        rows = np.arange(self.y0[i], self.y0[i] + self.h[i])
        np.maximum.at(out, (rows[:, None], cols[None, :]), block.astype(np.float32))
        return out

    # -- nearest fill ---------------------------------------------------------------------------
    @cached_property
    def _row_support(self) -> tuple[np.ndarray, np.ndarray]:
        """For every pixel, the last event at or before it in the buffer -- a row start (2 p) or a
        support pixel (value > 0; 2 p + 1) at buffer index p -- and the first at or after it -- a
        support pixel (2 p) or a row end (2 p + 1); a support pixel at a row's start or end
        outranks it. Odd before / even after: the nearest support pixel on that side in the
        pixel's row is p; else there is none."""
        n = self.values.size
        dt = np.int32 if 2 * n + 2 < np.iinfo(np.int32).max else np.int64
        sup = np.flatnonzero(self.values > 0).astype(dt)
        row_unit = segment_ids(self.h)
        row_at = (self.off[row_unit] + ragged_arange(self.h) * self.w[row_unit]).astype(dt)
        before = np.full(n, -1, dt)
        before[row_at] = 2 * row_at
        before[sup] = 2 * sup + 1
        np.maximum.accumulate(before, out=before)
        after = np.full(n, np.iinfo(dt).max, dt)
        row_end = row_at + self.w[row_unit].astype(dt) - 1
        after[row_end] = 2 * row_end + 1
        after[sup] = 2 * sup
        rev = after[::-1]
        np.minimum.accumulate(rev, out=rev)
        return before, after

    def fill_nearest(self, unit, px, py, batch: int = 65_536) -> np.ndarray:
        """Values at integer pixels, where a pixel off the map's support (value 0) inside the window
        takes the value of the nearest pixel on it (Euclidean; among equally near ones the one with
        the lowest column, then row, as scipy's distance transform picks): the ``spread=inf`` map
        read at those pixels only. Off the window: 0.

        A map whose support is convex-like answers by its support's lines
        (:func:`calib.canvas.nearest.nearest_keys`); the others scan every row of their window,
        taking from each row its support pixels nearest to the pixel's column."""
        unit = np.asarray(unit, np.int64)
        px = np.asarray(px, np.int64)
        py = np.asarray(py, np.int64)
        idx = self._flat_index(unit, px, py)
        out = np.where(idx >= 0, self.values[np.maximum(idx, 0)] if self.values.size else 0.0, 0.0)
        need = (idx >= 0) & (out <= 0) & (self.peak[unit] > 0)
        if not need.any():
            return out
        q = np.flatnonzero(need)
        shape = self._support_shape
        fast = shape.convex[unit[q]]
        f = q[fast]
        if f.size:
            u = unit[f]
            w = self.w[u]
            best = nearest_keys(shape, u, py[f] - self.y0[u], px[f] - self.x0[u])
            out[f] = self.values[self.off[u] + (best & 1023) * w + ((best >> 10) & 1023)]
        g = q[~fast]
        if g.size:  # each pixel once, scanned on a raster of those maps only
            ids, local = np.unique(unit[g], return_inverse=True)
            sub = self._maps(ids)
            pix, inv = np.unique(idx[g] - self.off[unit[g]] + sub.off[local.ravel()], return_inverse=True)
            out[g] = sub._nearest_support_values(pix, batch)[inv]
        return out

    def _maps(self, ids: np.ndarray) -> "Raster":
        """A raster of the maps ``ids`` alone (their points not taken along: none)."""
        size = self.off[ids + 1] - self.off[ids]
        take = np.repeat(self.off[ids], size) + ragged_arange(size)
        z = np.zeros(0)
        none = FlatPoints(z, z, z, np.zeros(ids.size + 1, np.int64), np.zeros(1, np.int64))
        return Raster(self.x0[ids], self.y0[ids], self.w[ids], self.h[ids], offsets_of(size), self.values[take],
                      none, np.zeros(0, bool))

    @cached_property
    def _support_shape(self) -> SupportShape:
        return support_shape(self.values, self.off, self.w, self.h)

    def _nearest_support_values(self, pix: np.ndarray, batch: int) -> np.ndarray:
        """Value of the nearest support pixel of each off-support buffer pixel ``pix`` (same map).

        Rows are scanned outwards from each pixel's own, two at a time (``m`` above and below):
        in each row the support pixel nearest to the pixel's column (the left one on a tie; the
        nearest on each side from :attr:`_row_support`, -/+ :data:`_NONE` for none), kept as a key d2 << 20 | col << 10 | row (window coordinates;
        windows are at most 360 x 181) whose minimum is the nearest, ties to the lowest column,
        then row. A pixel is done once its best d2 is below (m + 1)^2 (no farther row can reach
        it, nor tie) or its window has no row left."""
        left, right = self._row_support
        unit = self.unit_of_value[pix]
        w, h, off = self.w[unit], self.h[unit], self.off[unit]
        qrow, qcol = np.divmod(pix - off, w)
        best = np.full(pix.size, np.iinfo(np.int64).max)
        # the pixels still scanning, with what each reads; a row past the window's top or bottom is
        # read as that edge row: its distance is then taken too large, so it never beats the key
        # the edge row gets when its own turn comes
        act = np.arange(pix.size)
        a_w, a_last, a_row, a_col = w, h - 1, qrow, qcol
        a_base = off + qcol  # buffer index of the pixel's column on the window's first row
        a_best = best.copy()
        m = 0
        while act.size:
            for sign in ((0,) if m == 0 else (-1, 1)):
                r = np.minimum(np.maximum(a_row + sign * m, 0), a_last)
                at = a_base + r * a_w
                row_at = at - a_col
                lc, rc = left[at].astype(np.int64), right[at].astype(np.int64)
                lc = np.where(lc & 1 == 1, (lc >> 1) - row_at, -_NONE)  # window columns
                rc = np.where(rc & 1 == 0, (rc >> 1) - row_at, _NONE)
                dl = a_col - lc
                dr = rc - a_col
                ccol = np.where(dl <= dr, lc, rc)
                dist = np.minimum(dl, dr)
                key = ((dist * dist + m * m) << 20) | ((ccol & 1023) << 10) | r
                np.minimum(a_best, key, out=a_best)
            done = (a_best >> 20) < (m + 1) ** 2
            done |= (a_row - m <= 0) & (a_row + m >= a_last)
            if done.any():
                best[act[done]] = a_best[done]
                keep = ~done
                act, a_w, a_last, a_row, a_col, a_base, a_best = (v[keep] for v in (act, a_w, a_last, a_row, a_col,
                                                                                   a_base, a_best))
            m += 1
        krow, kcol = best & 1023, (best >> 10) & 1023
        return self.values[off + krow * w + kcol]

    # -- masks ----------------------------------------------------------------------------------
    @cached_property
    def mask_values(self) -> np.ndarray:
        """Each map divided by its peak (when above 1e-12), as float32: the masks the selection
        stages compare (what ``canvas(normalize=True)`` holds)."""
        peak = self.peak[self.unit_of_value] if self.values.size else np.zeros(0)
        return np.where(peak > 1e-12, self.values / np.where(peak > 1e-12, peak, 1.0), self.values).astype(np.float32)

    @cached_property
    def mask_sums(self) -> np.ndarray:
        """Sum of each mask (float64 over the float32 values)."""
        return np.bincount(self.unit_of_value, weights=self.mask_values.astype(np.float64), minlength=self.n)

    def mask_iou(self, a, b, batch: int = 4_000_000) -> np.ndarray:
        """Soft IoU sum(min) / sum(max) of the masks of unit pairs (a[k], b[k]) on the canvas (x
        wrapped), 0 when the union is below 1e-8."""
        a = np.asarray(a, np.int64)
        b = np.asarray(b, np.int64)
        inter = np.zeros(a.size)
        if a.size:
            # overlap of the windows on the circle: b shifted by -360, 0, +360
            for shift in (-WIDTH, 0, WIDTH):
                lo = np.maximum(self.x0[a], self.x0[b] + shift)
                hi = np.minimum(self.x0[a] + self.w[a], self.x0[b] + self.w[b] + shift)
                r0 = np.maximum(self.y0[a], self.y0[b])
                r1 = np.minimum(self.y0[a] + self.h[a], self.y0[b] + self.h[b])
                nx = np.clip(hi - lo, 0, None)
                ny = np.clip(r1 - r0, 0, None)
                cnt = nx * ny
                pairs = np.flatnonzero(cnt > 0)
                if pairs.size == 0:
                    continue
                cum = np.cumsum(cnt[pairs])
                start = 0
                while start < pairs.size:
                    stop = max(int(np.searchsorted(cum, (cum[start - 1] if start else 0) + batch, side="right")),
                               start + 1)
                    p = pairs[start:stop]
                    k = cnt[p]
                    pp = np.repeat(p, k)
                    loc = ragged_arange(k)
                    dy, dx = np.divmod(loc, np.repeat(nx[p], k))
                    yy = np.repeat(r0[p], k) + dy
                    xx = np.repeat(lo[p], k) + dx
                    ia = self.off[a[pp]] + (yy - self.y0[a[pp]]) * self.w[a[pp]] + (xx - self.x0[a[pp]])
                    ib = self.off[b[pp]] + (yy - self.y0[b[pp]]) * self.w[b[pp]] + (xx - shift - self.x0[b[pp]])
                    m = np.minimum(self.mask_values[ia], self.mask_values[ib]).astype(np.float64)
                    inter += np.bincount(pp, weights=m, minlength=a.size)
                    start = stop
        union = self.mask_sums[a] + self.mask_sums[b] - inter
        return np.where(union > 1e-8, inter / np.where(union > 1e-8, union, 1.0), 0.0)


def bilinear(x0, y0, w, h, get, unit, qx, qy) -> np.ndarray:
    """Bilinear samples of maps on windows (first column ``x0``, first row ``y0``, ``w`` x ``h``
    pixels, per unit) at (unwrapped) positions of the given units, 0 outside a window;
    ``get(unit, px, py)`` gives the values of integer pixels."""
    unit = np.asarray(unit, np.int64)
    qx = np.asarray(qx, np.float64) - x0[unit]
    qy = np.asarray(qy, np.float64) - y0[unit]
    inside = (qx >= 0) & (qx <= w[unit] - 1) & (qy >= 0) & (qy <= h[unit] - 1)
    out = np.zeros(qx.shape)
    if not inside.any():
        return out
    u, fx, fy = unit[inside], qx[inside], qy[inside]
    cx = np.floor(fx).astype(np.int64)
    cy = np.floor(fy).astype(np.int64)
    tx, ty = fx - cx, fy - cy
    ux0, uy0 = x0[u], y0[u]
    # the four neighbours in one call; those with weight 0 (a sample on the window's last row or
    # column, or on a whole pixel) are the sample's own pixel, read once, never off the window
    sx, sy = tx > 0, ty > 0
    sxy = sx & sy
    i10, i01, i11 = np.flatnonzero(sx), np.flatnonzero(sy), np.flatnonzero(sxy)
    px, py = ux0 + cx, uy0 + cy
    v = get(np.concatenate([u, u[i10], u[i01], u[i11]]), np.concatenate([px, px[i10] + 1, px[i01], px[i11] + 1]),
            np.concatenate([py, py[i10], py[i01] + 1, py[i11] + 1]))
    n = u.size
    a, b, c = n + i10.size, n + i10.size + i01.size, v.size
    v00 = v[:n]
    v10 = v00.copy()
    v10[i10] = v[n:a]
    v01 = v00.copy()
    v01[i01] = v[a:b]
    v11 = np.where(sx, v10, v01)  # (cx + ox, cy + oy) with one offset 0: v10 or v01
    v11[i11] = v[b:c]
    val = (1 - ty) * ((1 - tx) * v00 + tx * v10) + ty * ((1 - tx) * v01 + tx * v11)
    out[inside] = np.maximum(val, 0.0)
    return out


# ----------------------------------------------------------------------------------------------
# building it
def _windows(pts: FlatPoints, xu: np.ndarray, grow: float):
    has = pts.count > 0
    xlo = np.floor(pts.reduce(np.minimum, xu) - grow)
    xhi = np.ceil(pts.reduce(np.maximum, xu) + grow)
    extra = np.maximum(xhi - xlo + 1 - WIDTH, 0)  # never wider than the circle: trim evenly
    xlo = xlo + extra // 2
    xhi = xhi - (extra - extra // 2)
    ylo = np.maximum(0.0, np.floor(pts.reduce(np.minimum, pts.y) - grow))
    yhi = np.minimum(HEIGHT - 1.0, np.ceil(pts.reduce(np.maximum, pts.y) + grow))
    w = np.where(has, xhi - xlo + 1, 0).astype(np.int64)
    h = np.where(has, np.maximum(yhi - ylo + 1, 0), 0).astype(np.int64)
    clipped = (extra > 0) | (pts.reduce(np.minimum, pts.y) < 0) | (pts.reduce(np.maximum, pts.y) > HEIGHT - 1)
    return np.where(has, xlo, 0).astype(np.int64), np.where(has, ylo, 0).astype(np.int64), w, h, clipped


def pixel_set_units(pts: FlatPoints, xu: np.ndarray, min_touching: float = PIXEL_SET_TOUCHING) -> np.ndarray:
    """True for each unit that is a dense pixel set: at least 3 points, all integer, and at least
    ``min_touching`` of them with a 4-neighbour in the set (in unwrapped x)."""
    n = pts.n
    integer = (xu == np.round(xu)) & (pts.y == np.round(pts.y))
    nonempty = pts.count > 0
    all_int = np.ones(n, bool)
    if nonempty.any():
        all_int[nonempty] = np.logical_and.reduceat(integer, pts.start[nonempty])
    cand = all_int & (pts.count >= 3)
    if cand.any() and min_touching > 0:
        # points whose offsets from the first share a factor g >= 2 (a lattice of step g) have no
        # 4-neighbours at all: not pixel sets, without building their occupancy
        c = np.flatnonzero(cand)
        if 2 * int(pts.count[c].sum()) >= pts.n_points:
            # most points are candidates': every unit's offsets at once (the others' are not read)
            start = pts.start[nonempty]
            cnt = pts.count[nonempty]
            with np.errstate(invalid="ignore"):
                dx = np.abs(xu - np.repeat(xu[start], cnt)).astype(np.int64)
                dy = np.abs(pts.y - np.repeat(pts.y[start], cnt)).astype(np.int64)
            g = np.zeros(n, np.int64)
            g[nonempty] = np.gcd.reduceat(np.gcd(dx, dy), start)
            g = g[c]
        else:
            sub, pos = pts.select(cand)
            first = np.repeat(pos[sub.start], sub.count)
            dx = np.abs(xu[pos] - xu[first]).astype(np.int64)
            dy = np.abs(pts.y[pos] - pts.y[first]).astype(np.int64)
            g = np.gcd.reduceat(np.gcd(dx, dy), sub.start)
        cand[c[g >= 2]] = False
    if not cand.any():
        return cand
    sub, pos = pts.select(cand)
    x = xu[pos]
    y = pts.y[pos]
    xi = (x - sub.reduce(np.minimum, x)[sub.row]).astype(np.int64) + 1
    yi = (y - sub.reduce(np.minimum, y)[sub.row]).astype(np.int64) + 1
    wide = sub.reduce(np.maximum, xi)[sub.row].astype(np.int64) + 2  # a free border: no neighbours
    tall = sub.reduce(np.maximum, yi).astype(np.int64) + 2  # across rows or units
    area = (sub.reduce(np.maximum, xi).astype(np.int64) + 2) * tall
    occ = np.zeros(int(area.sum()), bool)
    key = offsets_of(area)[sub.row] + yi * wide + xi
    occ[key] = True
    touching = occ[key - 1] | occ[key + 1] | occ[key - wide] | occ[key + wide]
    frac = np.bincount(sub.row, weights=touching, minlength=sub.n) / np.maximum(sub.count, 1)
    out = np.zeros(n, bool)
    out[np.flatnonzero(cand)] = frac >= min_touching
    return out


@dataclass
class _Triangles:
    """Triangles of many polygons: corner point indices (k, 3) and the unit they draw into."""

    corners: np.ndarray
    unit: np.ndarray
    poly: np.ndarray


@dataclass
class _Cells:
    """Cells of whole-degree lattices with three or four corners, one group per step and corner
    code (bit k set when corner k of (0,0), (1,0), (0,1), (1,1) is present): the code says which
    triangles the cell holds (:data:`CODE_SHAPES`)."""

    step: int
    code: int
    corners: np.ndarray  # (k, 4) point indices (-1 where absent)
    ox: np.ndarray  # (k,) pixel of the cell's (0, 0) corner (unwrapped, integer)
    oy: np.ndarray
    unit: np.ndarray
    poly: np.ndarray


# The triangles of a lattice cell, as corner offsets in cells: the two halves of a full cell (split
# along its (0,0)-(1,1) diagonal) and the two other shapes a cell with three corners can have.
CELL_SHAPES = (((0, 0), (1, 0), (1, 1)), ((0, 0), (1, 1), (0, 1)), ((1, 0), (1, 1), (0, 1)), ((0, 0), (1, 0), (0, 1)))
_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))
#: the triangle shapes a cell draws, by corner code: full; missing (0,1), (1,0), (0,0), (1,1)
CODE_SHAPES = {0b1111: (0, 1), 0b1011: (0,), 0b1101: (1,), 0b1110: (2,), 0b0111: (3,)}


@dataclass
class Lattices:
    """Which of some polygons (``polys``) are regular lattices, and their sites: candidate k's
    lattice has ``gw[k] x gh[k]`` sites ``step[k]`` apart from (``xmin[k]``, ``ymin[k]``) (x
    unwrapped), site (i, j) holding point ``grid[goff[k] + j * gw[k] + i]`` (-1: absent); ``whole``
    where step and origin are whole degrees. ``cells``: (candidate, i, j, corner points (k, 4),
    corner code) of the cells with 3 or 4 corners of every lattice."""

    polys: np.ndarray
    is_lat: np.ndarray
    step: np.ndarray
    xmin: np.ndarray
    ymin: np.ndarray
    gw: np.ndarray
    gh: np.ndarray
    goff: np.ndarray
    grid: np.ndarray
    whole: np.ndarray
    cells: tuple = ()


#: cells drawn, by corner code (bit k: corner k of (0,0), (1,0), (0,1), (1,1) present)
_DRAWN = np.zeros(16, bool)
_DRAWN[list(CODE_SHAPES)] = True


def lattice_sites(pts: FlatPoints, xu: np.ndarray, polys: np.ndarray, *, cells: bool = True) -> Lattices:
    """Which of the polygons ``polys`` are regular lattices (equal steps in x and y, every point on
    a site, no site twice, at least half the sites present, a cell with 3 or 4 corners), with
    their sites (:class:`Lattices`; its ``cells`` only when ``cells``)."""
    is_lat = np.zeros(polys.size, bool)
    none = np.zeros(polys.size)
    empty = Lattices(polys, is_lat, none, none, none, none.astype(np.int64), none.astype(np.int64),
                     np.zeros(polys.size + 1, np.int64), np.zeros(0, np.int64), np.zeros(polys.size, bool))
    if polys.size == 0:
        return empty
    cnt = pts.poly_count[polys]
    seg = segment_ids(cnt)
    first = offsets_of(cnt)[:-1]
    total = int(first[-1] + cnt[-1])
    p0 = int(pts.poly_off[polys[0]])
    if polys[-1] - polys[0] == polys.size - 1 and (polys.size < 3 or (np.diff(polys) == 1).all()):
        pos = np.arange(p0, p0 + total)  # consecutive polygons: their points are one run
        x, y = xu[p0: p0 + total], pts.y[p0: p0 + total]
    else:
        pos = np.arange(total) + np.repeat(pts.poly_off[polys] - first, cnt)
        x, y = xu[pos], pts.y[pos]
    xmin = np.minimum.reduceat(x, first)
    ymin = np.minimum.reduceat(y, first)
    dx = x - np.repeat(xmin, cnt)
    dy = y - np.repeat(ymin, cnt)

    def any_per_polygon(flags):
        return np.logical_or.reduceat(flags, first)

    def min_step(v, vmin, which):
        # smallest positive difference between the distinct values of the polygons ``which``
        sel = which[seg]
        sv, vv = seg[sel], v[sel]
        out = np.full(polys.size, np.inf)
        if sv.size:
            vs = np.sort(sv * 4096.0 + (vv - vmin[sv]))  # sorted within each polygon (x - min < 720)
            d = np.diff(vs)
            d = np.where((d > 0) & (sv[1:] == sv[:-1]), d, np.inf)
            f = offsets_of(np.bincount(sv, minlength=polys.size))[:-1][which]
            out[which] = np.minimum.reduceat(np.r_[d, np.inf], f)
        return out

    def step_along(v):
        # smallest positive difference between consecutive points (in the polygon's own order)
        d = np.empty(total)
        np.subtract(v[1:], v[:-1], out=d[:-1])
        np.abs(d, out=d)
        d[~(d > 0)] = np.inf
        d[first[1:] - 1] = np.inf  # across polygons
        d[-1] = np.inf
        return np.minimum.reduceat(d, first)

    def sites(d, st):
        # site index (rounded) of each value, and whether a polygon has a value off its sites
        f = d / np.repeat(st, cnt)
        r = np.round(f)
        off = np.subtract(f, r)
        np.abs(off, out=off)
        return r, any_per_polygon(off > 1e-6)

    # Quick path: a lattice stored row by row has consecutive points one step apart, so the
    # smallest consecutive difference is the step whenever every value sits on its multiples (then
    # no two distinct values are closer, but for copies of one site, which disqualify anyway).
    # Polygons it does not settle get the smallest difference between sorted distinct values.
    step = step_along(x)
    step_y = step_along(y)
    quick = np.isfinite(step) & np.isfinite(step_y) & (np.abs(step_y - step) <= 1e-9 * np.maximum(step, 1.0))
    st = np.where(np.isfinite(step) & (step > 0), step, 1.0)
    fi, off_x = sites(dx, st)
    fj, off_y = sites(dy, st)
    quick &= ~off_x & ~off_y
    if (~quick).any():
        step = np.where(quick, step, min_step(x, xmin, ~quick))
        step_y = np.where(quick, step_y, min_step(y, ymin, ~quick))
    ok = np.isfinite(step) & np.isfinite(step_y) & (step > 0)
    ok &= np.abs(step_y - step) <= 1e-9 * np.maximum(step, 1.0)
    if not ok.any():
        return empty
    # the quick polygons' sites are known; the others' are found on their new step
    redo = ok & ~quick
    if redo.any():
        pk = redo[seg]
        s = step[seg[pk]]
        f = dx[pk] / s
        g = dy[pk] / s
        fi[pk], fj[pk] = np.round(f), np.round(g)
        off = (np.abs(f - fi[pk]) > 1e-6) | (np.abs(g - fj[pk]) > 1e-6)
        ok &= np.bincount(seg[pk], weights=off, minlength=polys.size) == 0
    i = fi.astype(np.int64)
    j = fj.astype(np.int64)
    gw = np.maximum.reduceat(i, first) + 1
    gh = np.maximum.reduceat(j, first) + 1
    ok &= (cnt >= LATTICE_MIN_FILL * gw * gh) & (gw >= 2) & (gh >= 2)
    if not ok.any():
        return empty
    # the site grid of each candidate polygon: point index or -1 (the points of the candidates
    # ``ks``, one polygon after the other)
    area = np.where(ok, gw * gh, 0)
    goff = offsets_of(area)
    grid = np.full(int(goff[-1]), -1, np.int64)
    ks = np.flatnonzero(ok)
    kcnt = cnt[ks]
    kfirst = offsets_of(kcnt)[:-1]
    if ks.size == polys.size:
        ik, jk, posk = i, j, pos
    else:
        pk = ok[seg]
        ik, jk, posk = i[pk], j[pk], pos[pk]
    gk = np.repeat(gw[ks], kcnt)
    site = np.repeat(goff[ks], kcnt) + jk * gk + ik
    grid[site] = posk
    # a repeated site disqualifies the polygon (one of its points was overwritten)
    ok[ks] &= ~np.logical_or.reduceat(grid[site] != posk, kfirst)
    if not ok.any():
        return empty
    # a lattice needs a cell with 3 or 4 corners: one whose (0,0) corner is a site with 2 of the
    # cell's 3 other corners, or one whose (0,0) corner is absent and the 3 others present (then
    # its (1,1) corner sees both its left and upper neighbours)
    has = grid >= 0
    inner = (ik < gk - 1) & (jk < np.repeat(gh[ks], kcnt) - 1)
    sq = np.where(inner, site, 0)
    a = has[sq + 1].astype(np.int8) + has[sq + gk] + has[sq + gk + 1]
    lu = (ik >= 1) & (jk >= 1)
    sl = np.where(lu, site, gk + 1)
    cell = (inner & (a >= 2)) | (lu & has[sl - 1] & has[sl - gk])
    is_lat = ok.copy()
    is_lat[ks] &= np.logical_or.reduceat(cell, kfirst)
    with np.errstate(invalid="ignore"):
        whole = (np.abs(step - np.round(step)) < 1e-9) & (np.abs(xmin - np.round(xmin)) < 1e-9) & \
            (np.abs(ymin - np.round(ymin)) < 1e-9)
    out = Lattices(polys, is_lat, step, xmin, ymin, gw, gh, goff, grid, whole & is_lat)
    if not cells or not is_lat.any():
        return out
    # the cells of each lattice, (gw - 1) x (gh - 1) row by row, with their corner codes
    cand = np.flatnonzero(is_lat)
    rows = gh[cand] - 1
    rseg = np.repeat(cand, rows)
    rj = ragged_arange(rows)
    per_row = gw[rseg] - 1
    cseg = np.repeat(rseg, per_row)
    cj = np.repeat(rj, per_row)
    ci = ragged_arange(per_row)
    g = gw[cseg]
    base = goff[cseg] + cj * g + ci
    # the corner code from the occupancy, then the corner points of the drawn cells only
    code = has[base].astype(np.int64)
    code += 2 * has[base + 1]
    code += 4 * has[base + g]
    code += 8 * has[base + g + 1]
    drawn = np.flatnonzero(_DRAWN[code])
    b, gd = base[drawn], g[drawn]
    corners = np.empty((drawn.size, 4), np.int64)
    corners[:, 0] = grid[b]
    corners[:, 1] = grid[b + 1]
    b += gd
    corners[:, 2] = grid[b]
    corners[:, 3] = grid[b + 1]
    out.cells = (cseg[drawn], ci[drawn], cj[drawn], corners, code[drawn])
    return out


def _lattice_cells(pts: FlatPoints, xu: np.ndarray, polys: np.ndarray, unit_of_poly: np.ndarray):
    """Cell-by-cell triangulations of the polygons ``polys`` that are regular lattices. Returns
    (is_lattice per polygon of ``polys``, cell groups of whole-degree lattices, triangles of the
    other lattices)."""
    lat = lattice_sites(pts, xu, polys)
    if not lat.cells:
        return lat.is_lat, [], None
    cseg, ci, cj, corners, code = lat.cells
    step, xmin, ymin, whole = lat.step, lat.xmin, lat.ymin, lat.whole
    wc = whole[cseg]
    groups = []
    if wc.any():
        w_idx = np.flatnonzero(wc)
        st = np.round(step[cseg[w_idx]]).astype(np.int64)
        key = st * 16 + code[w_idx]
        # the groups, each in the cells' order: one stable sort (a radix sort on 16-bit keys), then runs
        o = np.argsort(key.astype(np.int16) if key.max() < 1 << 15 else key, kind="stable")
        key_o = key[o]
        cut = np.r_[0, np.flatnonzero(key_o[1:] != key_o[:-1]) + 1, o.size]
        g_all = w_idx[o]
        p_all = cseg[g_all]
        c_all = np.take(corners, g_all, axis=0)  # (np.take: a faster row gather)
        with np.errstate(invalid="ignore"):  # origins of lattices that are not whole: never read
            x_org = np.round(xmin).astype(np.int64)
            y_org = np.round(ymin).astype(np.int64)
        x_all = x_org[p_all] + ci[g_all] * st[o]
        y_all = y_org[p_all] + cj[g_all] * st[o]
        u_all = unit_of_poly[polys[p_all]]
        q_all = polys[p_all]
        for a, b in zip(cut[:-1].tolist(), cut[1:].tolist()):
            k = int(key_o[a])
            groups.append(_Cells(k // 16, k % 16, c_all[a:b], x_all[a:b], y_all[a:b], u_all[a:b], q_all[a:b]))
    tri = None
    if (~wc).any():
        o = np.flatnonzero(~wc)
        parts = []
        for shape_code, shapes in CODE_SHAPES.items():
            m = o[code[o] == shape_code]
            for sh in shapes:
                cols = [_CORNERS.index(c) for c in CELL_SHAPES[sh]]
                parts.append((corners[m][:, cols], cseg[m]))
        tri = _Triangles(np.concatenate([c for c, _ in parts]), unit_of_poly[polys[np.concatenate([q for _, q in parts])]],
                         polys[np.concatenate([q for _, q in parts])])
    return lat.is_lat, groups, tri


def _delaunay_triangles(pts: FlatPoints, xu: np.ndarray, polys: np.ndarray, unit_of_poly: np.ndarray):
    """Delaunay triangles of each polygon: small ones all at once
    (:func:`calib.canvas.triangulate.delaunay_sets`), the few larger ones by scipy's Qhull, one call
    each. Returns the triangles."""
    cnt = pts.poly_count[polys]
    small = polys[cnt <= MAX_POINTS]
    corners, units, owner = [], [], []
    if small.size:
        sc = pts.poly_count[small]
        pos = np.repeat(pts.poly_off[small], sc) + ragged_arange(sc)
        tri, tset = delaunay_sets(offsets_of(sc), xu[pos], pts.y[pos])
        corners.append(pos[tri])
        units.append(unit_of_poly[small[tset]])
        owner.append(small[tset])
    for p in polys[cnt > MAX_POINTS].tolist():
        a, b = int(pts.poly_off[p]), int(pts.poly_off[p + 1])
        try:
            tri = Delaunay(np.column_stack([xu[a:b], pts.y[a:b]]))
        except (QhullError, ValueError):
            continue
        corners.append(tri.simplices.astype(np.int64) + a)
        units.append(np.full(len(tri.simplices), unit_of_poly[p]))
        owner.append(np.full(len(tri.simplices), p))
    if not corners:
        return None
    return _Triangles(np.concatenate(corners), np.concatenate(units), np.concatenate(owner))


def triangle_terms(ax, ay, bx, by, cx, cy) -> tuple:
    """What barycentric weights in triangles (a, b, c) need of the triangles alone: the edge vectors
    (v0 = b - a, v1 = c - a), their dot products d00, d01, d11 and the denominator (NaN for a flat
    triangle), elementwise."""
    v0x, v0y = bx - ax, by - ay
    v1x, v1y = cx - ax, cy - ay
    d00 = v0x * v0x + v0y * v0y
    d01 = v0x * v1x + v0y * v1y
    d11 = v1x * v1x + v1y * v1y
    den = d00 * d11 - d01 * d01
    flat = np.abs(den) <= 1e-12 * np.maximum(d00 * d11, 1e-300)
    return v0x, v0y, v1x, v1y, d00, d01, d11, np.where(flat, np.nan, den)


def barycentric(ax, ay, bx, by, cx, cy, qx, qy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric weights of points (qx, qy) in triangles (a, b, c), elementwise; NaN for flat
    triangles."""
    v0x, v0y, v1x, v1y, d00, d01, d11, den = triangle_terms(ax, ay, bx, by, cx, cy)
    v2x, v2y = qx - ax, qy - ay
    d20 = v2x * v0x + v2y * v0y
    d21 = v2x * v1x + v2y * v1y
    b1 = (d11 * d20 - d01 * d21) / den
    b2 = (d00 * d21 - d01 * d20) / den
    return 1.0 - b1 - b2, b1, b2


@functools.lru_cache(maxsize=64)
def shape_pattern(shape: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric weights (k, 3) and offsets (dx, dy) of the pixels inside one triangle shape of a
    cell ``s`` pixels wide."""
    dy, dx = np.mgrid[0: s + 1, 0: s + 1]
    dx, dy = dx.ravel(), dy.ravel()
    (ax, ay), (bx, by), (cx, cy) = (np.multiply(c, s, dtype=np.float64) for c in CELL_SHAPES[shape])
    w = np.column_stack(barycentric(ax, ay, bx, by, cx, cy, dx.astype(np.float64), dy.astype(np.float64)))
    inside = np.all(w >= -_TOL, axis=1)
    return w[inside], dx[inside], dy[inside]


class _Canvas:
    """The flat buffer being drawn, with the windows."""

    def __init__(self, x0, y0, w, h, clipped):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.clipped = clipped  # windows smaller than their points' box (trimmed at 360 wide, poles)
        self.off = offsets_of(w * h)
        self.values = np.zeros(int(self.off[-1]))

    def index(self, unit, c, r):
        """Buffer index of column c, row r (absolute, unwrapped) of each unit; -1 off the window."""
        cc = c - self.x0[unit]
        rr = r - self.y0[unit]
        ok = (cc >= 0) & (cc < self.w[unit]) & (rr >= 0) & (rr < self.h[unit])
        return np.where(ok, self.off[unit] + rr * self.w[unit] + cc, -1)

    def draw(self, idx, v) -> np.ndarray:
        """Max positive values into the buffer; True where a value landed."""
        ok = (idx >= 0) & (v > 0)
        if ok.any():
            np.maximum.at(self.values, idx[ok], v[ok])
        return ok


@functools.lru_cache(maxsize=64)
def _exact_corners(shape: int, s: int) -> bool:
    """Whether each corner pixel of :func:`shape_pattern` has exactly that corner's weights (1 on
    it, 0 on the others): then its value is the corner point's energy, exactly, for finite
    energies, in every triangle holding it."""
    wts, pdx, pdy = shape_pattern(shape, s)
    for k, (cx, cy) in enumerate(CELL_SHAPES[shape]):
        hit = np.flatnonzero((pdx == cx * s) & (pdy == cy * s))
        unit = np.zeros(3)
        unit[k] = 1.0
        if hit.size != 1 or not np.array_equal(wts[hit[0]], unit):
            return False
    return True


def _pattern_index(base: np.ndarray, w: np.ndarray, pdx: np.ndarray, pdy: np.ndarray) -> np.ndarray:
    """``base[:, None] + pdy[None, :] * w[:, None] + pdx[None, :]`` (int64), built in place: buffer
    indices of a pattern's pixels (offsets ``pdx``, ``pdy``) from cells at ``base`` in windows
    ``w`` wide."""
    idx = np.multiply.outer(np.asarray(w, np.int64), np.asarray(pdy, np.int64))
    idx += np.asarray(pdx, np.int64)
    idx += np.asarray(base, np.int64)[:, None]
    return idx


def _draw_cells(canvas: _Canvas, groups: list[_Cells], e: np.ndarray, drew: np.ndarray, batch: int) -> None:
    """Whole-degree lattice cells, triangle shape by triangle shape: every triangle of a shape
    holds the same pixels, so their values are one matrix product (the same product, row by row,
    whatever the batch) and their buffer indices a base plus fixed offsets; pixels on shared edges
    take the largest value, as when drawing triangle by triangle.

    Two triangles of one shape (translates on a lattice) share at most corners, and a corner
    pixel's value is the corner point's energy in every triangle holding it (exactly, for finite
    energies). So where a unit's window holds one lattice polygon only and is not clipped, a
    batch's pixels are distinct but for corners written twice with one value: they are
    max-combined by a plain gather and assignment instead of ``np.fmax.at`` (the same buffer)."""
    if not groups:
        return
    fast_ok = bool(np.isfinite(e).all())
    if fast_ok:
        # units whose window holds more than one whole-degree lattice polygon (they may overlap), or is clipped
        poly_unit = np.full(drew.size, -1, np.int64)
        for g in groups:
            poly_unit[g.poly] = g.unit
        polys = np.flatnonzero(poly_unit >= 0)
        slow_unit = np.bincount(poly_unit[polys], minlength=canvas.x0.size) > 1
        slow_unit |= canvas.clipped
    for g in groups:
        for sh in CODE_SHAPES[g.code]:
            wts, pdx, pdy = shape_pattern(sh, g.step)
            cols = [_CORNERS.index(c) for c in CELL_SHAPES[sh]]
            fast_shape = fast_ok and _exact_corners(sh, g.step)
            per = max(2, batch // max(len(pdx), 1))
            n = len(g.corners)
            for s in range(0, n, per):
                stop = n if n - (s + per) < 2 else s + per  # no batch of one row: keep the same product
                sl = slice(s, stop)
                unit = g.unit[sl]
                v = np.take(e, np.take(g.corners[sl], cols, axis=1)) @ wts.T  # (triangles, pixels)
                wu = canvas.w[unit]
                cc = g.ox[sl] - canvas.x0[unit]
                rr = g.oy[sl] - canvas.y0[unit]
                idx = _pattern_index(canvas.off[unit] + rr * wu + cc, wu, pdx, pdy)
                poly = g.poly[sl]
                if fast_shape and not slow_unit[unit].any():
                    flat = idx.ravel()
                    cur = np.take(canvas.values, flat)
                    np.fmax(cur, v.ravel(), out=cur)
                    canvas.values[flat] = cur
                    need = np.flatnonzero(~drew[poly])  # whether a polygon drew: only those not known to
                    if need.size:
                        drew[poly[need[v[need].max(axis=1) > 0]]] = True
                    if stop == n:
                        break
                    continue
                clip = canvas.clipped[unit]
                if clip.any():  # only a window smaller than its points' box can miss a pixel
                    col = cc[clip, None] + pdx[None, :]
                    row = rr[clip, None] + pdy[None, :]
                    inside = (col >= 0) & (col < wu[clip, None]) & (row >= 0) & (row < canvas.h[unit][clip, None])
                    idx[clip] = np.where(inside, idx[clip], -1)
                    ok = canvas.draw(idx.ravel(), v.ravel()).reshape(v.shape)
                    drew[poly[ok.any(axis=1)]] = True
                else:  # every pixel is in its window; a value <= 0 leaves the buffer (>= 0) as it is
                    np.fmax.at(canvas.values, idx.ravel(), v.ravel())  # fmax: a NaN energy draws nothing
                    drew[poly[v.max(axis=1) > 0]] = True
                if stop == n:
                    break


def _draw_triangles(canvas: _Canvas, t: _Triangles | None, xu, y, e, drew, batch: int) -> None:
    """Rasterize triangles row by row: on each pixel row a triangle meets, the pixels of its span
    (widened by a hair, cut to the unit's window) are tested with their barycentric weights, so a
    long thin triangle costs its pixels, not its bounding box (:func:`calib.canvas.tridraw.draw_triangles`:
    small triangles on tables, the others ragged).

    The weights are :func:`barycentric`'s, operation for operation: what depends on the triangle
    only (edge vectors, their dot products, the denominator) or on its row (the row's terms of the
    dot products) is computed once per triangle or row, the same numbers."""
    if t is None or len(t.corners) == 0:
        return
    tx, ty = xu[t.corners], y[t.corners]
    terms = triangle_terms(tx[:, 0], ty[:, 0], tx[:, 1], ty[:, 1], tx[:, 2], ty[:, 2])
    draw_triangles(canvas.values, drew, t.poly, canvas.x0, canvas.y0, canvas.w, canvas.h, canvas.off, t.unit,
                   tx, ty, terms, e[t.corners], _TOL, batch)


def _stamp(canvas: _Canvas, unit, x, y, e) -> None:
    c = np.round(x).astype(np.int64)
    r = np.round(y).astype(np.int64)
    canvas.draw(canvas.index(unit, c, r), np.maximum(e, 0.0))


def rasterize(pts: FlatPoints, *, spread: float = 0.0, pad: float = 0.0, batch: int = 32_768) -> Raster:
    """The energy map of every detection of ``pts`` (use ``pts.per_polygon()`` for one map per
    polygon), on a window around its points grown by ``pad`` degrees (and 3 ``spread``).

    ``spread`` (degrees): 0 keeps each map to its points; a positive value fills every pixel off
    the points with the value of the nearest pixel on them times exp(-d^2 / (2 spread^2)) (d in
    degrees); ``inf`` fills with the nearest value, no decay."""
    n = pts.n
    xu = pts.seam_x
    grow = pad + (3.0 * spread if 0 < spread < np.inf else 0.0)
    x0, y0, w, h, clipped = _windows(pts, xu, grow)
    canvas = _Canvas(x0, y0, w, h, clipped)
    stamped_pts = np.zeros(pts.n_points, bool)
    if pts.n_points:
        pixset = pixel_set_units(pts, xu)
        unit_of_poly = pts.det_of_poly
        # pixel sets: their points are the map
        pmask = pixset[pts.row]
        _stamp(canvas, pts.row[pmask], xu[pmask], pts.y[pmask], pts.e[pmask])
        # everything else, polygon by polygon
        pc = pts.poly_count
        todo = ~pixset[unit_of_poly]
        small = np.flatnonzero(todo & (pc > 0) & (pc < 3))
        big = np.flatnonzero(todo & (pc >= 3))
        drew = np.zeros(pts.n_polys, bool)
        lat_cand = big[pc[big] >= LATTICE_MIN_POINTS]
        is_lat, cells, lat_tri = _lattice_cells(pts, xu, lat_cand, unit_of_poly)
        general = np.setdiff1d(big, lat_cand[is_lat], assume_unique=True)
        del_tri = _delaunay_triangles(pts, xu, general, unit_of_poly)
        _draw_cells(canvas, cells, pts.e, drew, batch)
        _draw_triangles(canvas, lat_tri, xu, pts.y, pts.e, drew, batch)
        _draw_triangles(canvas, del_tri, xu, pts.y, pts.e, drew, batch)
        # polygons of fewer than 3 points, or that drew nothing: their points' pixels
        stamped = np.zeros(pts.n_polys, bool)
        stamped[small] = True
        stamped[big[~drew[big]]] = True
        smask = stamped[pts.poly_of_point]
        _stamp(canvas, pts.row[smask], xu[smask], pts.y[smask], pts.e[smask])
        stamped_pts = pmask | smask
    values = canvas.values
    if spread > 0 and values.size:
        values = _spread(values, canvas.off, w, h, spread)
    return Raster(x0, y0, w, h, canvas.off, values, pts.with_values(x=xu), stamped_pts)


def _spread(values, off, w, h, spread) -> np.ndarray:
    """Each map's pixels off its support filled with the nearest support pixel's value (scipy's
    Euclidean distance transform, one call per map), times the Gaussian fall-off."""
    out = values.copy()
    size = np.diff(off)
    peak = np.zeros(len(w))
    has = size > 0
    peak[has] = np.maximum.reduceat(values, off[:-1][has])
    for i in np.flatnonzero(peak > 0).tolist():
        block = values[off[i]: off[i + 1]].reshape(int(h[i]), int(w[i]))
        offp = block <= 0
        if not offp.any():
            continue
        dist, (ri, ci) = ndimage.distance_transform_edt(offp, return_indices=True)
        fill = block[ri, ci]
        if np.isfinite(spread):
            fill = fill * np.exp(-(dist ** 2) / (2.0 * spread ** 2))
        out[off[i]: off[i + 1]] = np.where(offp, fill, block).ravel()
    return out


# ----------------------------------------------------------------------------------------------
# one detection at a time (tests, inspection)
def energy_map(polygons: list[np.ndarray], *, spread: float = 0.0, pad: float = 0.0) -> Raster:
    """The :class:`Raster` of one detection given its polygons ((k, 3) arrays of x, y, e)."""
    from calib.canvas.points import from_polygons

    return rasterize(from_polygons([[p for p in polygons if len(p)]]), spread=spread, pad=pad)


def render(polygons: list[np.ndarray], *, normalize: bool = True) -> np.ndarray:
    """A detection's energy map on the full 181 x 360 lattice (float32, peak 1 when normalized)."""
    return energy_map(polygons).canvas(0, normalize=normalize)


def soft_iou_matrix(maps: np.ndarray) -> np.ndarray:
    """Pairwise soft IoU sum(min) / sum(max) of maps stacked as (n, H, W); 0 when the union is ~0."""
    n = len(maps)
    flat = np.asarray(maps, np.float32).reshape(n, -1)
    out = np.zeros((n, n))
    for i in range(n):
        inter = np.minimum(flat[i], flat[i:]).sum(axis=1, dtype=np.float64)
        union = np.maximum(flat[i], flat[i:]).sum(axis=1, dtype=np.float64)
        v = np.where(union > 1e-8, inter / np.where(union > 1e-8, union, 1.0), 0.0)
        out[i, i:] = v
        out[i:, i] = v
    return out
