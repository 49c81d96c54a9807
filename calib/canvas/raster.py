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
holds the same pixel pattern, so its pixels are one matrix product. Only the other polygons of 3 or
more points (scattered peaks, grids too small to count as lattices) go through scipy's Delaunay,
one call each. Every triangle of every polygon is then rasterized in one vectorized pass.

All maps of a call share one flat buffer (:class:`Raster`): unit i's window is ``h[i] x w[i]``
pixels from column ``x0[i]`` (unwrapped) and row ``y0[i]``, row-major at ``off[i]``. Emitters,
selection and fusion read what they need from it -- peaks, pixels above a level, bilinear samples,
peak-normalised masks and their soft IoU -- without a per-detection Python loop.

``spread`` extends a map beyond its points: every pixel off the points takes the value of the
nearest pixel on them (scipy's Euclidean distance transform, one call per map) times a Gaussian
fall-off ``exp(-d^2 / (2 spread^2))`` (``inf``: no fall-off), over a window grown by 3 spread.
:meth:`Raster.fill_nearest` gives the same nearest-pixel values at chosen pixels only, without
building the whole spread map (ties between equidistant pixels go to the first in row-major order;
scipy's transform may pick another of them).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from calib.canvas.points import FlatPoints, offsets_of, ragged_arange, segment_ids
from calib.canvas.triangulate import MAX_POINTS, delaunay_sets

WIDTH, HEIGHT = 360, 181  # lattice columns x = 0..359, rows y = 0..180
_TOL = 1e-9  # barycentric slack: a pixel on a triangle's edge is inside it
#: a polygon counts as a regular lattice from this many points and this share of its sites present
LATTICE_MIN_POINTS, LATTICE_MIN_FILL = 10, 0.5
PIXEL_SET_TOUCHING = 0.9


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
        unit = np.asarray(unit, np.int64)
        qx = np.asarray(qx, np.float64) - self.x0[unit]
        qy = np.asarray(qy, np.float64) - self.y0[unit]
        inside = (qx >= 0) & (qx <= self.w[unit] - 1) & (qy >= 0) & (qy <= self.h[unit] - 1)
        out = np.zeros(qx.shape)
        if not inside.any():
            return out
        u, fx, fy = unit[inside], qx[inside], qy[inside]
        cx = np.floor(fx).astype(np.int64)
        cy = np.floor(fy).astype(np.int64)
        tx, ty = fx - cx, fy - cy
        get = value_at if value_at is not None else self.at
        x0, y0 = self.x0[u], self.y0[u]
        v00 = get(u, x0 + cx, y0 + cy)
        # neighbours with weight 0 (a sample on the last row or column) are never read off the window
        v10 = np.where(tx > 0, get(u, x0 + cx + 1, y0 + cy), 0.0)
        v01 = np.where(ty > 0, get(u, x0 + cx, y0 + cy + 1), 0.0)
        v11 = np.where((tx > 0) & (ty > 0), get(u, x0 + cx + 1, y0 + cy + 1), 0.0)
        val = (1 - ty) * ((1 - tx) * v00 + tx * v10) + ty * ((1 - tx) * v01 + tx * v11)
        out[inside] = np.maximum(val, 0.0)
        return out

    def pixels(self, min_value=0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(unit, x unwrapped, y, value) of the pixels with value > 0 and >= ``min_value`` (a
        number or one per unit), unit by unit in row-major order (y, then x)."""
        thr = np.broadcast_to(np.asarray(min_value, np.float64), (self.n,))
        if self.values.size == 0:
            z = np.zeros(0, np.int64)
            return z, z, z, np.zeros(0)
        keep = (self.values > 0) & (self.values >= thr[self.unit_of_value])
        idx = np.flatnonzero(keep)
        unit = self.unit_of_value[idx]
        local = idx - self.off[unit]
        r, c = np.divmod(local, self.w[unit])
        return unit, c + self.x0[unit], r + self.y0[unit], self.values[idx]

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
    def fill_nearest(self, unit, px, py, batch: int = 2_000_000) -> np.ndarray:
        """Values at integer pixels, where a pixel off the map's support (value 0) inside the window
        takes the value of the nearest pixel on it (Euclidean; ties to the first in row-major
        order): the ``spread=inf`` map read at those pixels only. Off the window: 0."""
        unit = np.asarray(unit, np.int64)
        px = np.asarray(px, np.int64)
        py = np.asarray(py, np.int64)
        idx = self._flat_index(unit, px, py)
        out = np.where(idx >= 0, self.values[np.maximum(idx, 0)] if self.values.size else 0.0, 0.0)
        need = np.flatnonzero((idx >= 0) & (out <= 0) & (self.peak[unit] > 0))
        if need.size == 0:
            return out
        # candidates: support pixels with a 4-neighbour off the support (or on the window's edge);
        # the nearest support pixel to a pixel off it is always one of those
        bu, bx, by, bv = self._border_pixels(np.unique(unit[need]))
        order = np.argsort(bu, kind="stable")
        bu, bx, by, bv = bu[order], bx[order], by[order], bv[order]
        b_off = np.searchsorted(bu, np.arange(self.n + 1))
        qn = np.diff(b_off)[unit[need]]
        best_d = np.full(need.size, np.inf)
        best_v = np.zeros(need.size)
        # (query, candidate) pairs in bounded batches
        cum = np.cumsum(qn)
        start = 0
        while start < need.size:
            stop = int(np.searchsorted(cum, (cum[start - 1] if start else 0) + batch, side="right"))
            stop = max(stop, start + 1)
            q = np.arange(start, stop)
            k = qn[q]
            qq = np.repeat(q, k)
            cand = np.repeat(b_off[unit[need[q]]], k) + ragged_arange(k)
            d = (bx[cand] - px[need[qq]]) ** 2 + (by[cand] - py[need[qq]]) ** 2
            # first minimum per query: candidates are in row-major order within their unit
            o = np.lexsort((cand, d, qq))
            first = np.r_[True, qq[o][1:] != qq[o][:-1]]
            sel = o[first]
            best_d[qq[sel]] = d[sel]
            best_v[qq[sel]] = bv[cand[sel]]
            start = stop
        out[need] = best_v
        return out

    def _border_pixels(self, units: np.ndarray):
        """(unit, x, y, value) of the support pixels of ``units`` with a 4-neighbour off the
        support or the window's edge, row-major per unit."""
        mask = np.zeros(self.n, bool)
        mask[units] = True
        sel = mask[self.unit_of_value] & (self.values > 0)
        idx = np.flatnonzero(sel)
        u = self.unit_of_value[idx]
        local = idx - self.off[u]
        r, c = np.divmod(local, self.w[u])
        w, h = self.w[u], self.h[u]
        v = self.values

        def pos(dr, dc):
            rr, cc = r + dr, c + dc
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            return ok & (v[np.where(ok, idx + dr * w + dc, 0)] > 0)

        interior = pos(-1, 0) & pos(1, 0) & pos(0, -1) & pos(0, 1)
        b = ~interior
        return u[b], c[b] + self.x0[u[b]], r[b] + self.y0[u[b]], v[idx[b]]

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
    all_int = np.bincount(pts.row, weights=~integer, minlength=n) == 0
    cand = all_int & (pts.count >= 3)
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
class _Patterned:
    """Triangles of whole-degree lattices: one cell shape and step per group."""

    shape: int
    step: int
    corners: np.ndarray  # (k, 3) point indices
    ox: np.ndarray  # (k,) x of the cell's (0, 0) corner (unwrapped, integer)
    oy: np.ndarray
    unit: np.ndarray
    poly: np.ndarray


# The triangles of a lattice cell, as corner offsets in cells: the two halves of a full cell (split
# along its (0,0)-(1,1) diagonal) and the two other shapes a cell with three corners can have.
CELL_SHAPES = (((0, 0), (1, 0), (1, 1)), ((0, 0), (1, 1), (0, 1)), ((1, 0), (1, 1), (0, 1)), ((0, 0), (1, 0), (0, 1)))


def _lattice_triangles(pts: FlatPoints, xu: np.ndarray, polys: np.ndarray, unit_of_poly: np.ndarray):
    """Cell-by-cell triangulations of the polygons ``polys`` that are regular lattices. Returns
    (is_lattice per polygon of ``polys``, patterned groups (whole-degree lattices), other
    triangles)."""
    is_lat = np.zeros(polys.size, bool)
    if polys.size == 0:
        return is_lat, [], None
    cnt = pts.poly_count[polys]
    pos = np.repeat(pts.poly_off[polys], cnt) + ragged_arange(cnt)
    seg = segment_ids(cnt)
    first = offsets_of(cnt)[:-1]
    x, y = xu[pos], pts.y[pos]
    xmin = np.minimum.reduceat(x, first)
    ymin = np.minimum.reduceat(y, first)

    def min_step(v, vmin):
        # smallest positive difference between a polygon's distinct values
        key = seg * 4096.0 + (v - vmin[seg])
        o = np.argsort(key, kind="stable")
        vs = v[o]
        d = np.full(v.size, np.inf)
        d[1:] = np.where(seg[1:] == seg[:-1], np.diff(vs), np.inf)
        d[d <= 0] = np.inf
        return np.minimum.reduceat(d, first)

    step = min_step(x, xmin)
    step_y = min_step(y, ymin)
    ok = np.isfinite(step) & np.isfinite(step_y) & (step > 0)
    ok &= np.abs(step_y - step) <= 1e-9 * np.maximum(step, 1.0)
    s = np.where(ok, step, 1.0)[seg]
    fi = (x - xmin[seg]) / s
    fj = (y - ymin[seg]) / s
    i = np.round(fi).astype(np.int64)
    j = np.round(fj).astype(np.int64)
    off_grid = np.bincount(seg, weights=(np.abs(fi - i) > 1e-6) | (np.abs(fj - j) > 1e-6), minlength=polys.size)
    ok &= off_grid == 0
    gw = np.maximum.reduceat(i, first) + 1
    gh = np.maximum.reduceat(j, first) + 1
    ok &= cnt >= LATTICE_MIN_FILL * gw * gh
    ok &= (gw >= 2) & (gh >= 2)
    if not ok.any():
        return is_lat, [], None
    # the site grid of each candidate polygon: point index or -1 (a repeated site disqualifies)
    cand = np.flatnonzero(ok)
    area = np.where(ok, gw * gh, 0)
    goff = offsets_of(area)
    grid = np.full(int(goff[-1]), -1, np.int64)
    pk = ok[seg]
    site = goff[seg[pk]] + j[pk] * gw[seg[pk]] + i[pk]
    grid[site] = pos[pk]
    # a repeated site disqualifies the polygon (one of its points was overwritten)
    lost = grid[site] != pos[pk]
    ok &= np.bincount(seg[pk], weights=lost, minlength=polys.size) == 0
    cand = np.flatnonzero(ok)
    if cand.size == 0:
        return is_lat, [], None
    # cells of each lattice: (gw - 1) x (gh - 1)
    ncell = (gw[cand] - 1) * (gh[cand] - 1)
    cseg = np.repeat(cand, ncell)
    loc = ragged_arange(ncell)
    cj, ci = np.divmod(loc, gw[cseg] - 1)
    base = goff[cseg] + cj * gw[cseg] + ci
    corner = {(0, 0): grid[base], (1, 0): grid[base + 1], (0, 1): grid[base + gw[cseg]],
              (1, 1): grid[base + gw[cseg] + 1]}
    has = {k: v >= 0 for k, v in corner.items()}
    n_has = sum(v.astype(np.int64) for v in has.values())
    full = n_has == 4
    three = n_has == 3
    sel = [full | (three & ~has[(0, 1)]), full | (three & ~has[(1, 0)]), three & ~has[(0, 0)], three & ~has[(1, 1)]]
    n_tri = np.zeros(polys.size, np.int64)
    for m in sel:
        n_tri += np.bincount(cseg[m], minlength=polys.size)
    lat = np.zeros(polys.size, bool)
    lat[cand] = n_tri[cand] > 0
    is_lat = lat
    whole = (np.abs(step - np.round(step)) < 1e-9) & (np.abs(xmin - np.round(xmin)) < 1e-9) & \
        (np.abs(ymin - np.round(ymin)) < 1e-9)
    patterned, other = [], []
    for shape, m in enumerate(sel):
        m = m & lat[cseg]
        if not m.any():
            continue
        corners = np.column_stack([corner[c][m] for c in CELL_SHAPES[shape]])
        ps = cseg[m]
        wm = whole[ps]
        if wm.any():
            st = np.round(step[ps[wm]]).astype(np.int64)
            for sv in np.unique(st):
                g = st == sv
                pw = ps[wm][g]
                patterned.append(_Patterned(
                    shape, int(sv), corners[wm][g],
                    np.round(xmin[pw]).astype(np.int64) + ci[m][wm][g] * int(sv),
                    np.round(ymin[pw]).astype(np.int64) + cj[m][wm][g] * int(sv),
                    unit_of_poly[polys[pw]], polys[pw]))
        if (~wm).any():
            other.append(_Triangles(corners[~wm], unit_of_poly[polys[ps[~wm]]], polys[ps[~wm]]))
    tri = None
    if other:
        tri = _Triangles(np.concatenate([t.corners for t in other]), np.concatenate([t.unit for t in other]),
                         np.concatenate([t.poly for t in other]))
    return is_lat, patterned, tri


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


def barycentric(ax, ay, bx, by, cx, cy, qx, qy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric weights of points (qx, qy) in triangles (a, b, c), elementwise; NaN for flat
    triangles."""
    v0x, v0y = bx - ax, by - ay
    v1x, v1y = cx - ax, cy - ay
    v2x, v2y = qx - ax, qy - ay
    d00 = v0x * v0x + v0y * v0y
    d01 = v0x * v1x + v0y * v1y
    d11 = v1x * v1x + v1y * v1y
    d20 = v2x * v0x + v2y * v0y
    d21 = v2x * v1x + v2y * v1y
    den = d00 * d11 - d01 * d01
    flat = np.abs(den) <= 1e-12 * np.maximum(d00 * d11, 1e-300)
    den = np.where(flat, np.nan, den)
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


def _draw_patterned(canvas: _Canvas, groups: list[_Patterned], e: np.ndarray, drew: np.ndarray, batch: int) -> None:
    """Whole-degree lattice triangles: every triangle of a shape holds the same pixels, so their
    values are one matrix product, their buffer indices a base plus fixed offsets."""
    for g in groups:
        wts, pdx, pdy = shape_pattern(g.shape, g.step)
        per = max(1, batch // max(len(pdx), 1))
        for s in range(0, len(g.corners), per):
            sl = slice(s, s + per)
            unit = g.unit[sl]
            v = e[g.corners[sl]] @ wts.T  # (triangles, pixels)
            wu = canvas.w[unit]
            cc = g.ox[sl] - canvas.x0[unit]
            rr = g.oy[sl] - canvas.y0[unit]
            idx = (canvas.off[unit] + rr * wu + cc)[:, None] + pdy[None, :] * wu[:, None] + pdx[None, :]
            clip = canvas.clipped[unit]
            if clip.any():  # only a window smaller than its points' box can miss a pixel
                col = cc[clip, None] + pdx[None, :]
                row = rr[clip, None] + pdy[None, :]
                inside = (col >= 0) & (col < wu[clip, None]) & (row >= 0) & (row < canvas.h[unit][clip, None])
                idx[clip] = np.where(inside, idx[clip], -1)
            ok = canvas.draw(idx.ravel(), v.ravel())
            hit = ok.reshape(v.shape).any(axis=1)
            drew[g.poly[sl][hit]] = True


def _draw_triangles(canvas: _Canvas, t: _Triangles | None, xu, y, e, drew, batch: int) -> None:
    """Rasterize triangles row by row: on each pixel row a triangle meets, the pixels of its span
    (widened by a hair) are tested with their barycentric weights, so a long thin triangle costs
    its pixels, not its bounding box."""
    if t is None or len(t.corners) == 0:
        return
    tx, ty = xu[t.corners], y[t.corners]
    cy0 = np.ceil(ty.min(axis=1) - _TOL).astype(np.int64)
    cy1 = np.floor(ty.max(axis=1) + _TOL).astype(np.int64)
    nrow = np.clip(cy1 - cy0 + 1, 0, None)
    # (triangle, row) pairs and the row's span over the triangle's three edges
    k = np.repeat(np.arange(len(nrow)), nrow)
    ry = (cy0[k] + ragged_arange(nrow)).astype(np.float64)
    lo = np.full(k.size, np.inf)
    hi = np.full(k.size, -np.inf)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        xa, ya, xb, yb = tx[k, a], ty[k, a], tx[k, b], ty[k, b]
        meets = (np.minimum(ya, yb) - _TOL <= ry) & (ry <= np.maximum(ya, yb) + _TOL)
        with np.errstate(invalid="ignore", divide="ignore"):
            xr = np.where(yb != ya, xa + (np.clip(ry, np.minimum(ya, yb), np.maximum(ya, yb)) - ya) * (xb - xa) / (yb - ya), xa)
        lo = np.where(meets, np.minimum(lo, np.where(yb != ya, xr, np.minimum(xa, xb))), lo)
        hi = np.where(meets, np.maximum(hi, np.where(yb != ya, xr, np.maximum(xa, xb))), hi)
    c0 = np.ceil(lo - 1e-6)
    c1 = np.floor(hi + 1e-6)
    ncol = np.where(np.isfinite(c0) & np.isfinite(c1), np.clip(c1 - c0 + 1, 0, None), 0).astype(np.int64)
    c0 = np.where(ncol > 0, c0, 0).astype(np.int64)
    cum = np.cumsum(ncol)
    start = 0
    while start < len(ncol):
        stop = max(int(np.searchsorted(cum, (cum[start - 1] if start else 0) + batch, side="right")), start + 1)
        sl = np.arange(start, stop)
        cnt = ncol[sl]
        rowp = np.repeat(sl, cnt)
        qx = c0[rowp] + ragged_arange(cnt)
        qy = ry[rowp]
        tri = k[rowp]
        corners = t.corners[tri]
        w0, w1, w2 = barycentric(tx[tri, 0], ty[tri, 0], tx[tri, 1], ty[tri, 1], tx[tri, 2], ty[tri, 2],
                                 qx.astype(np.float64), qy)
        inside = (w0 >= -_TOL) & (w1 >= -_TOL) & (w2 >= -_TOL)
        v = np.where(inside, w0 * e[corners[:, 0]] + w1 * e[corners[:, 1]] + w2 * e[corners[:, 2]], 0.0)
        ok = canvas.draw(canvas.index(t.unit[tri], qx, qy.astype(np.int64)), v)
        if ok.any():
            drew[t.poly[tri[ok]]] = True
        start = stop


def _stamp(canvas: _Canvas, unit, x, y, e) -> None:
    c = np.round(x).astype(np.int64)
    r = np.round(y).astype(np.int64)
    canvas.draw(canvas.index(unit, c, r), np.maximum(e, 0.0))


def rasterize(pts: FlatPoints, *, spread: float = 0.0, pad: float = 0.0, batch: int = 4_000_000) -> Raster:
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
        is_lat, patterned, lat_tri = _lattice_triangles(pts, xu, lat_cand, unit_of_poly)
        general = np.setdiff1d(big, lat_cand[is_lat], assume_unique=True)
        del_tri = _delaunay_triangles(pts, xu, general, unit_of_poly)
        _draw_patterned(canvas, patterned, pts.e, drew, batch)
        _draw_triangles(canvas, lat_tri, xu, pts.y, pts.e, drew, batch)
        _draw_triangles(canvas, del_tri, xu, pts.y, pts.e, drew, batch)
        # polygons of fewer than 3 points, or that drew nothing: their points' pixels
        stamped = np.zeros(pts.n_polys, bool)
        stamped[small] = True
        stamped[big[~drew[big]]] = True
        smask = stamped[pts.poly_of_point]
        _stamp(canvas, pts.row[smask], xu[smask], pts.y[smask], pts.e[smask])
    values = canvas.values
    if spread > 0 and values.size:
        values = _spread(values, canvas.off, w, h, spread)
    return Raster(x0, y0, w, h, canvas.off, values, pts.with_values(x=xu))


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
