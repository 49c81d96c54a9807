"""Energy-map values at chosen pixels, without drawing the maps.

An emitter that reads a detection's 1 px/degree energy map (:mod:`calib.canvas.raster`) at a few
pixels only -- ``grid`` samples n x n points of it -- need not draw the whole map. A pixel's value
is the largest of what the map's parts put there, and each part answers for one pixel directly:

- a stamped point (a pixel set's, a polygon of fewer than 3 points', a polygon that holds no
  pixel): its intensity, at the pixel it rounds to;
- a whole-degree lattice polygon: the triangles of the one to four cells around the pixel
  (:func:`calib.canvas.raster.lattice_sites`), with the very products the raster draws;
- another polygon: the Delaunay triangle holding the pixel, found by point location
  (:class:`calib.canvas.triangulate.Locator`) instead of a triangulation.

:func:`map_lookup` answers so for every detection where these rules give what
:func:`~calib.canvas.raster.rasterize` draws: points finite with positive intensities, a window
the raster does not trim, lattices on whole degrees, other polygons of at most
:data:`~calib.canvas.triangulate.MAX_POINTS` points whose "holds a pixel" is plain. The others (rare
in real files) are rasterized and read from their :class:`~calib.canvas.raster.Raster`. Values on
an edge shared by two triangles of a scattered polygon may differ from the raster's in the last
bit (either triangle's interpolation is taken there, the raster keeps the larger).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from calib.canvas.hull import row_spans
from calib.canvas.nearest import SupportShape, nearest_keys, nearest_keys_by_runs, support_shape
from calib.canvas.points import FlatPoints, offsets_of, ragged_arange
from calib.canvas.raster import (WIDTH, CELL_SHAPES, CODE_SHAPES, LATTICE_MIN_POINTS, Raster, _CORNERS, _TOL, _windows,
                                 barycentric, bilinear, lattice_sites, pixel_set_units, rasterize, shape_pattern)
from calib.canvas.triangulate import MAX_POINTS, Locator, _BAND

_KEY_ROW = 1 << 11  # stamp keys: unit, row, column + _KEY_SHIFT packed into one integer
_KEY_UNIT = _KEY_ROW * 256
_KEY_SHIFT = 512


@dataclass(frozen=True, eq=False)
class MapLookup:
    """Energy-map values of n units (detections) at chosen pixels (see the module docstring)."""

    x0: np.ndarray  # windows, as Raster's
    y0: np.ndarray
    w: np.ndarray
    h: np.ndarray
    points: FlatPoints  # x unwrapped
    stamped: np.ndarray  # bool per point: drawn as the pixel it rounds to
    fallback: np.ndarray  # bool per unit: read from ``raster``
    raster: Raster | None  # the fallback units' maps, in order
    stamp_key: np.ndarray  # sorted keys of stamped pixels (fast units) and their values
    stamp_val: np.ndarray
    parts: tuple  # whole-degree lattices, other lattices, scattered polygons, Qhull's polygons

    @property
    def n(self) -> int:
        return len(self.x0)

    def in_window(self, unit, px, py) -> np.ndarray:
        unit = np.asarray(unit, np.int64)
        c = np.asarray(px, np.int64) - self.x0[unit]
        r = np.asarray(py, np.int64) - self.y0[unit]
        return (c >= 0) & (c < self.w[unit]) & (r >= 0) & (r < self.h[unit])

    def at(self, unit, px, py) -> np.ndarray:
        """Values at integer pixels (unwrapped x) of the given units; 0 off their windows."""
        unit = np.asarray(unit, np.int64)
        px = np.asarray(px, np.int64)
        py = np.asarray(py, np.int64)
        out = np.zeros(unit.size)
        ok = self.in_window(unit, px, py)
        fb = ok & self.fallback[unit]
        if fb.any():
            local = np.cumsum(self.fallback) - 1
            out[fb] = self.raster.at(local[unit[fb]], px[fb], py[fb])
        q = np.flatnonzero(ok & ~self.fallback[unit])
        if q.size == 0:
            return out
        # each pixel once
        key, inv = np.unique(unit[q] * _KEY_UNIT + py[q] * _KEY_ROW + (px[q] + _KEY_SHIFT), return_inverse=True)
        u, rest = np.divmod(key, _KEY_UNIT)
        y, x = np.divmod(rest, _KEY_ROW)
        x = x - _KEY_SHIFT
        vals = np.zeros(key.size)
        if self.stamp_key.size:
            at = np.minimum(np.searchsorted(self.stamp_key, key), self.stamp_key.size - 1)
            vals = np.where(self.stamp_key[at] == key, self.stamp_val[at], 0.0)
        for part in self.parts:
            part.values(u, x, y, vals)
        out[q] = vals[inv.ravel()]
        return out

    def sample(self, unit, qx, qy) -> np.ndarray:
        """Bilinear samples at (unwrapped) positions, as :meth:`Raster.sample`."""
        return bilinear(self.x0, self.y0, self.w, self.h, self.at, unit, qx, qy)


def _by_unit(unit_of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, offsets): the items sorted by unit and where each unit's run starts."""
    in_order = unit_of.size < 2 or bool((unit_of[1:] >= unit_of[:-1]).all())
    order = np.arange(unit_of.size) if in_order else np.argsort(unit_of, kind="stable")
    return order, offsets_of(np.bincount(unit_of, minlength=n))


def _pairs(unit: np.ndarray, order: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (query, item of the query's unit) pair: (query index, item index)."""
    k = np.diff(off)[unit]
    if k.size and k.max() <= 1:  # at most one item per unit (a detection's one polygon)
        qi = np.flatnonzero(k)
        return qi, order[off[:-1][unit[qi]]]
    qi = np.repeat(np.arange(unit.size), k)
    return qi, order[np.repeat(off[:-1][unit], k) + ragged_arange(k)]


@dataclass(frozen=True, eq=False)
class _LatticeParts:
    """The whole-degree lattice polygons of the fast units."""

    n: int
    unit: np.ndarray  # per lattice
    step: np.ndarray  # int
    ox: np.ndarray  # int: pixel of site (0, 0)
    oy: np.ndarray
    gw: np.ndarray
    gh: np.ndarray
    goff: np.ndarray
    grid: np.ndarray  # site -> point index (-1: absent)
    e: np.ndarray  # intensities of all points

    def values(self, u, x, y, vals) -> None:
        """Raise ``vals`` (one per query pixel) to what the lattices draw there."""
        if self.unit.size == 0:
            return
        order, off = _by_unit(self.unit, self.n)
        qi, lat = _pairs(u, order, off)
        if qi.size == 0:
            return
        s = self.step[lat]
        dx, dy = x[qi] - self.ox[lat], y[qi] - self.oy[lat]
        gw, gh = self.gw[lat], self.gh[lat]
        on = (dx >= 0) & (dx <= (gw - 1) * s) & (dy >= 0) & (dy <= (gh - 1) * s)
        qi, lat, s, dx, dy, gw, gh = qi[on], lat[on], s[on], dx[on], dy[on], gw[on], gh[on]
        ci, rx = np.divmod(dx, s)
        cj, ry = np.divmod(dy, s)
        # the cells holding the pixel: its own, and those left of / above it when it is on their edge
        cand = []
        for a in (0, 1):
            for b in (0, 1):
                ok = ((a == 0) | (rx == 0)) & ((b == 0) | (ry == 0)) & (ci - a >= 0) & (ci - a <= gw - 2) & \
                    (cj - b >= 0) & (cj - b <= gh - 2)
                k = np.flatnonzero(ok)
                cand.append((k, ci[k] - a, cj[k] - b, rx[k] + a * s[k], ry[k] + b * s[k]))
        k = np.concatenate([c[0] for c in cand])
        cx, cy, lx, ly = (np.concatenate([c[j] for c in cand]) for j in range(1, 5))
        base = self.goff[lat[k]] + cy * gw[k] + cx
        g = gw[k]
        corners = np.column_stack([self.grid[base], self.grid[base + 1], self.grid[base + g], self.grid[base + g + 1]])
        code = (corners >= 0) @ np.array([1, 2, 4, 8])
        st = s[k]
        for key in np.unique(st * 16 + code).tolist():
            sv, cd = divmod(key, 16)
            if cd not in CODE_SHAPES:
                continue
            m = np.flatnonzero((st == sv) & (code == cd))
            for sh in CODE_SHAPES[cd]:
                wts, pdx, pdy = shape_pattern(sh, sv)
                col = np.full((sv + 1, sv + 1), -1)
                col[pdy, pdx] = np.arange(pdx.size)
                j = col[ly[m], lx[m]]
                hit = m[j >= 0]
                if hit.size == 0:
                    continue
                cols = [_CORNERS.index(c) for c in CELL_SHAPES[sh]]
                ev = self.e[corners[hit][:, cols]]
                one = ev.shape[0] == 1
                if one:  # the raster never multiplies a single row (its product can differ)
                    ev = np.vstack([ev, ev])
                v = (ev @ wts.T)[: hit.size]
                np.fmax.at(vals, qi[k[hit]], v[np.arange(hit.size), j[j >= 0]])


@dataclass(frozen=True, eq=False)
class _OffLatticeParts:
    """Lattice polygons off whole degrees (steps or origins not whole): the raster draws their
    cells' triangles one by one, so each pixel is tested against the triangles of the cells
    around it, with the raster's corner order and arithmetic."""

    n: int
    unit: np.ndarray  # per lattice
    step: np.ndarray  # float
    xmin: np.ndarray
    ymin: np.ndarray
    gw: np.ndarray
    gh: np.ndarray
    goff: np.ndarray
    grid: np.ndarray
    x: np.ndarray  # all points (x unwrapped)
    y: np.ndarray
    e: np.ndarray

    def values(self, u, x, y, vals) -> None:
        if self.unit.size == 0:
            return
        order, off = _by_unit(self.unit, self.n)
        qi, lat = _pairs(u, order, off)
        if qi.size == 0:
            return
        s = self.step[lat]
        fx = (x[qi] - self.xmin[lat]) / s
        fy = (y[qi] - self.ymin[lat]) / s
        gw, gh = self.gw[lat], self.gh[lat]
        # the cells within a hair of the pixel (a pixel on a cell edge belongs to both): each
        # distinct one once (the values are taken as maxima, so the order is free)
        lo_x, hi_x = np.floor(fx - 1e-6).astype(np.int64), np.floor(fx + 1e-6).astype(np.int64)
        lo_y, hi_y = np.floor(fy - 1e-6).astype(np.int64), np.floor(fy + 1e-6).astype(np.int64)
        two_x, two_y = hi_x != lo_x, hi_y != lo_y
        cand = []
        for ci, cj, pick in ((lo_x, lo_y, None), (hi_x, lo_y, two_x), (lo_x, hi_y, two_y), (hi_x, hi_y, two_x & two_y)):
            ok = (ci >= 0) & (ci <= gw - 2) & (cj >= 0) & (cj <= gh - 2)
            k = np.flatnonzero(ok if pick is None else ok & pick)
            cand.append((k, ci[k], cj[k]))
        k = np.concatenate([c[0] for c in cand])
        ci = np.concatenate([c[1] for c in cand])
        cj = np.concatenate([c[2] for c in cand])
        g = gw[k]
        base = self.goff[lat[k]] + cj * g + ci
        corners = np.column_stack([self.grid[base], self.grid[base + 1], self.grid[base + g], self.grid[base + g + 1]])
        code = (corners[:, 0] >= 0) + 2 * (corners[:, 1] >= 0) + 4 * (corners[:, 2] >= 0) + 8 * (corners[:, 3] >= 0)
        for cd, shapes in CODE_SHAPES.items():
            m = np.flatnonzero(code == cd)
            if m.size == 0:
                continue
            for sh in shapes:
                t = corners[m][:, [_CORNERS.index(c) for c in CELL_SHAPES[sh]]]
                q = qi[k[m]]
                qx, qy = x[q].astype(np.float64), y[q].astype(np.float64)
                w0, w1, w2 = barycentric(self.x[t[:, 0]], self.y[t[:, 0]], self.x[t[:, 1]], self.y[t[:, 1]],
                                         self.x[t[:, 2]], self.y[t[:, 2]], qx, qy)
                inside = (w0 >= -_TOL) & (w1 >= -_TOL) & (w2 >= -_TOL)
                v = w0 * self.e[t[:, 0]] + w1 * self.e[t[:, 1]] + w2 * self.e[t[:, 2]]
                np.fmax.at(vals, q[inside], np.maximum(v[inside], 0.0))


@dataclass(frozen=True, eq=False)
class _ScatteredParts:
    """The other triangulated polygons of the fast units (point location in their Delaunay
    triangulations)."""

    n: int
    unit: np.ndarray  # per polygon
    locator: Locator | None
    x: np.ndarray  # the polygons' points, one after the other (x unwrapped)
    y: np.ndarray
    e: np.ndarray
    box: tuple  # per polygon: x0, x1, y0, y1
    band: np.ndarray  # per polygon: what counts as on its boundary (degrees)

    def values(self, u, x, y, vals) -> None:
        if self.unit.size == 0:
            return
        order, off = _by_unit(self.unit, self.n)
        qi, poly = _pairs(u, order, off)
        # only pixels within a polygon's box (and a hair) can be in its triangles
        band = self.band[poly]
        near = (x[qi] >= self.box[0][poly] - band) & (x[qi] <= self.box[1][poly] + band) & \
            (y[qi] >= self.box[2][poly] - band) & (y[qi] <= self.box[3][poly] + band)
        qi, poly = qi[near], poly[near]
        if qi.size == 0:
            return
        qx, qy = x[qi].astype(np.float64), y[qi].astype(np.float64)
        tri, _ = self.locator.locate(poly, qx, qy)
        has = tri[:, 0] >= 0
        if not has.any():
            return
        t = tri[has]
        w0, w1, w2 = barycentric(self.x[t[:, 0]], self.y[t[:, 0]], self.x[t[:, 1]], self.y[t[:, 1]],
                                 self.x[t[:, 2]], self.y[t[:, 2]], qx[has], qy[has])
        inside = (w0 >= -_TOL) & (w1 >= -_TOL) & (w2 >= -_TOL)
        v = w0 * self.e[t[:, 0]] + w1 * self.e[t[:, 1]] + w2 * self.e[t[:, 2]]
        np.fmax.at(vals, qi[has][inside], np.maximum(v[inside], 0.0))


@dataclass(frozen=True, eq=False)
class _QhullParts:
    """Polygons of more than :data:`MAX_POINTS` points: the raster triangulates them with Qhull,
    so they are located in that very triangulation (``find_simplex``)."""

    n: int
    unit: np.ndarray  # per polygon
    tris: list  # per polygon: scipy Delaunay or None (Qhull refused: it draws nothing)
    start: np.ndarray  # per polygon: index of its first point in x, y, e
    x: np.ndarray
    y: np.ndarray
    e: np.ndarray

    def values(self, u, x, y, vals) -> None:
        if self.unit.size == 0:
            return
        order, off = _by_unit(self.unit, self.n)
        qi, poly = _pairs(u, order, off)
        for p in np.unique(poly).tolist():
            tri = self.tris[p]
            if tri is None:
                continue
            q = qi[poly == p]
            qx, qy = x[q].astype(np.float64), y[q].astype(np.float64)
            s = tri.find_simplex(np.column_stack([qx, qy]))
            has = s >= 0
            if not has.any():
                continue
            t = tri.simplices[s[has]].astype(np.int64) + self.start[p]
            w0, w1, w2 = barycentric(self.x[t[:, 0]], self.y[t[:, 0]], self.x[t[:, 1]], self.y[t[:, 1]],
                                     self.x[t[:, 2]], self.y[t[:, 2]], qx[has], qy[has])
            inside = (w0 >= -_TOL) & (w1 >= -_TOL) & (w2 >= -_TOL)
            v = w0 * self.e[t[:, 0]] + w1 * self.e[t[:, 1]] + w2 * self.e[t[:, 2]]
            np.fmax.at(vals, q[has][inside], np.maximum(v[inside], 0.0))


def _qhull_parts(pts: FlatPoints, xu: np.ndarray, polys: np.ndarray, n: int):
    """Qhull triangulations of the polygons ``polys`` (as the raster makes them; None where Qhull
    refuses, and the raster draws nothing); whether each holds a pixel (1: yes, 0: no, -1: not
    plain, left to the raster)."""
    from scipy.spatial import Delaunay, QhullError

    tris, drew = [], np.zeros(polys.size, np.int8)
    for k, p in enumerate(polys.tolist()):
        a, b = int(pts.poly_off[p]), int(pts.poly_off[p + 1])
        try:
            tri = Delaunay(np.column_stack([xu[a:b], pts.y[a:b]]))
        except (QhullError, ValueError):
            tris.append(None)
            continue
        tris.append(tri)
        used = np.unique(tri.simplices)
        on_pixel = (xu[a:b][used] == np.round(xu[a:b][used])) & (pts.y[a:b][used] == np.round(pts.y[a:b][used]))
        drew[k] = 1 if on_pixel.any() else -1  # a vertex on a pixel draws its (positive) value
    return tris, drew


def _full_cell(lat, ks: np.ndarray) -> np.ndarray:
    """Whether each lattice ``ks`` (candidates of ``lat``) has a cell with all four corners."""
    out = np.zeros(ks.size, bool)
    if ks.size == 0:
        return out
    gw, gh = lat.gw[ks], lat.gh[ks]
    area = (gw - 1) * (gh - 1)
    owner = np.repeat(np.arange(ks.size), area)
    cj, ci = np.divmod(ragged_arange(area), (gw - 1)[owner])
    g = gw[owner]
    site = lat.goff[ks][owner] + cj * g + ci
    has = lat.grid >= 0
    full = has[site] & has[site + 1] & has[site + g] & has[site + g + 1]
    np.logical_or.at(out, owner, full)
    return out


def _drew(loc: Locator, n_sets: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each scattered polygon's triangles hold a pixel (all its intensities positive): (drew,
    undecided). Yes when one of its points is a pixel, or a pixel lies plainly inside its hull; no
    when no pixel lies on or near the hull; undecided when only pixels on its boundary might."""
    drew = np.zeros(n_sets, bool)
    flat = loc.flat
    valid = ~loc.dup
    on_pixel = valid & (x == np.round(x)) & (y == np.round(y))
    drew |= (np.bincount(loc.seg, weights=on_pixel, minlength=n_sets) > 0) & ~flat
    todo = np.flatnonzero(~drew & ~flat)
    undecided = np.zeros(n_sets, bool)
    if todo.size == 0:
        return drew, undecided
    ox, oy = loc.origin(todo)
    ext = np.sqrt(loc.scale2[todo])
    band = _BAND * np.maximum(ext, 1.0)
    hv = loc.hull
    hy = loc.ly[hv]
    hseg = loc.seg[hv]
    ylo = np.full(n_sets, np.inf)
    yhi = np.full(n_sets, -np.inf)
    np.minimum.at(ylo, hseg, hy)
    np.maximum.at(yhi, hseg, hy)
    # the pixel rows (local y) the hull can reach
    r0 = np.ceil(ylo[todo] + oy - band) - oy
    r1 = np.floor(yhi[todo] + oy + band) - oy
    nr = np.maximum(r1 - r0 + 1, 0).astype(np.int64)
    hx_all, hy_all = loc.lx[hv], loc.ly[hv]

    def rows_say(k: np.ndarray, ry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # for pixel rows ry of the sets todo[k]: (might a pixel lie on or near the hull there, is
        # the middle pixel of the row's inner span plainly inside)
        ryc = np.clip(ry, ylo[todo][k], yhi[todo][k])
        lo, hi = row_spans(loc.hull_off, hx_all, hy_all, todo[k], ryc) if k.size else (np.zeros(0), np.zeros(0))
        # spans are in local x; pixels are whole in global x
        gx = ox[k]
        c_lo = np.ceil(lo + gx - band[k])
        c_hi = np.floor(hi + gx + band[k])
        possible = (c_hi >= c_lo) & np.isfinite(lo)
        i_lo = np.ceil(lo + gx + band[k])
        i_hi = np.floor(hi + gx - band[k])
        cand = np.flatnonzero(np.isfinite(lo) & (i_hi >= i_lo) & (ry == ryc))
        plain = np.zeros(k.size, bool)
        if cand.size:
            mid = np.floor(0.5 * (i_lo[cand] + i_hi[cand]))
            d = loc.hull_distance(todo[k[cand]], mid - gx[cand], ry[cand])
            plain[cand] = d < -band[k[cand]]
        return possible, plain

    # a row through the middle settles most sets (a pixel plainly inside); the others are scanned
    # row by row
    plain = np.zeros(todo.size, bool)
    possible = np.zeros(todo.size, bool)
    k = np.flatnonzero(nr > 0)
    _, plain[k] = rows_say(k, r0[k] + (nr[k] - 1) // 2)
    rest = np.flatnonzero(~plain)
    k = np.repeat(rest, nr[rest])
    if k.size:
        may, inside = rows_say(k, r0[k] + ragged_arange(nr[rest]))
        np.logical_or.at(possible, k, may)
        np.logical_or.at(plain, k, inside)
    drew[todo] = plain
    undecided[todo] = ~plain & possible
    return drew, undecided


def map_lookup(pts: FlatPoints) -> MapLookup:
    """The energy map of every detection of ``pts`` (as :func:`~calib.canvas.raster.rasterize`
    draws it, without ``spread`` or ``pad``), ready to be read at chosen pixels."""
    n = pts.n
    xu = pts.seam_x
    x0, y0, w, h, clipped = _windows(pts, xu, 0.0)
    e = pts.e
    bad = ~(np.isfinite(xu) & np.isfinite(pts.y) & np.isfinite(e) & (e > 0))
    fallback = clipped | (np.bincount(pts.row, weights=bad, minlength=n) > 0)
    stamped = np.zeros(pts.n_points, bool)
    unit_of_poly = pts.det_of_poly
    pc = pts.poly_count
    pixset = pixel_set_units(pts, xu) if pts.n_points else np.zeros(n, bool)
    todo = ~pixset[unit_of_poly] & ~fallback[unit_of_poly]
    small = todo & (pc > 0) & (pc < 3)
    big = np.flatnonzero(todo & (pc >= 3))
    lat_cand = big[pc[big] >= LATTICE_MIN_POINTS]
    lat = lattice_sites(pts, xu, lat_cand, cells=False)
    # a lattice off whole degrees draws its cells' triangles; with a full cell at least a degree
    # wide it holds a pixel, else whether it does is left to the raster
    off_lat = np.flatnonzero(lat.is_lat & ~lat.whole)
    plain = _full_cell(lat, off_lat) & (lat.step[off_lat] >= 1.0)
    fallback[unit_of_poly[lat_cand[off_lat[~plain]]]] = True
    general = np.setdiff1d(big, lat_cand[lat.is_lat], assume_unique=True)
    large = general[pc[general] > MAX_POINTS]
    general = general[pc[general] <= MAX_POINTS]
    large = large[~fallback[unit_of_poly[large]]]
    tris, large_drew = _qhull_parts(pts, xu, large, n)
    fallback[unit_of_poly[large[large_drew < 0]]] = True
    general = general[~fallback[unit_of_poly[general]]]
    # scattered polygons: their points one after the other, a locator over them
    gc = pc[general]
    pos = np.repeat(pts.poly_off[general], gc) + ragged_arange(gc)
    gx, gy, ge = xu[pos], pts.y[pos], e[pos]
    loc = Locator(offsets_of(gc), gx, gy)
    drew, undecided = _drew(loc, general.size, gx, gy)
    fallback[unit_of_poly[general[undecided]]] = True
    # stamps: pixel sets, small polygons, polygons holding no pixel
    stamped_poly = small.copy()
    stamped_poly[general[~drew]] = True
    stamped_poly[large[large_drew == 0]] = True
    stamped = (pixset[pts.row] | stamped_poly[pts.poly_of_point]) & ~fallback[pts.row]
    keep_g = ~fallback[unit_of_poly[general]] & drew
    # the lattices kept
    lk = np.flatnonzero(lat.is_lat & lat.whole)
    lk = lk[~fallback[unit_of_poly[lat_cand[lk]]]]
    lattices = _LatticeParts(n, unit_of_poly[lat_cand[lk]], np.round(lat.step[lk]).astype(np.int64),
                             np.round(lat.xmin[lk]).astype(np.int64), np.round(lat.ymin[lk]).astype(np.int64),
                             lat.gw[lk], lat.gh[lk], lat.goff[lk], lat.grid, e)
    ok = off_lat[~fallback[unit_of_poly[lat_cand[off_lat]]]]
    off_lattices = _OffLatticeParts(n, unit_of_poly[lat_cand[ok]], lat.step[ok], lat.xmin[ok], lat.ymin[ok],
                                    lat.gw[ok], lat.gh[ok], lat.goff[ok], lat.grid, xu, pts.y, e)
    # the scattered polygons kept (a sub-locator would recompute: keep all, filter by unit)
    goff = offsets_of(gc)
    has = gc > 0
    gbox = tuple(np.full(general.size, np.nan) for _ in range(4))
    for arr, v, fn in ((gbox[0], gx, np.minimum), (gbox[1], gx, np.maximum), (gbox[2], gy, np.minimum),
                       (gbox[3], gy, np.maximum)):
        arr[has] = fn.reduceat(v, goff[:-1][has])
    gband = 2 * _BAND * np.maximum(np.sqrt(loc.scale2), 1.0)
    scattered = _ScatteredParts(n, np.where(keep_g, unit_of_poly[general], n), loc, gx, gy, ge, gbox, gband)
    keep_l = ~fallback[unit_of_poly[large]] & (large_drew == 1)
    qhull = _QhullParts(n, np.where(keep_l, unit_of_poly[large], n), tris, pts.poly_off[large], xu, pts.y, e)
    # stamp table of the fast units: the largest intensity per pixel
    sp = np.flatnonzero(stamped)
    su = pts.row[sp]
    spx = np.round(xu[sp]).astype(np.int64)
    spy = np.round(pts.y[sp]).astype(np.int64)
    inw = (spx >= x0[su]) & (spx < x0[su] + w[su]) & (spy >= y0[su]) & (spy < y0[su] + h[su])
    key = su[inw] * _KEY_UNIT + spy[inw] * _KEY_ROW + (spx[inw] + _KEY_SHIFT)
    val = e[sp][inw]
    o = np.lexsort((val, key))
    key, val = key[o], val[o]
    last = np.r_[key[1:] != key[:-1], True] if key.size else np.zeros(0, bool)
    raster = None
    if fallback.any():
        fb = np.flatnonzero(fallback)
        raster = rasterize(pts.take(fb))
        stamped[np.flatnonzero(fallback[pts.row])] = raster.stamped
    return MapLookup(x0, y0, w, h, pts.with_values(x=xu), stamped, fallback, raster, key[last], val[last],
                     (lattices, off_lattices, scattered, qhull))


@dataclass(frozen=True, eq=False)
class FilledMaps:
    """What ``rasterize(pts, pad=grow)`` read through :meth:`~calib.canvas.raster.Raster.fill_nearest`
    gives (each map's value, a pixel off its support taking the nearest support pixel's value, 0
    off the grown window), with each map drawn on its points' box only (``pad=0``): the support
    lies inside that box, and the nearest support pixel of a pixel beyond it is found by the
    support's lines (:mod:`calib.canvas.nearest`; runs for a support not convex-like) all the
    same. Maps whose window is trimmed to the circle once grown are drawn grown instead
    (``fallback``, ``grown``; ``raster`` holds nothing of them), and read so."""

    x0: np.ndarray  # the grown windows
    y0: np.ndarray
    w: np.ndarray
    h: np.ndarray
    raster: Raster  # every map on its points' box
    shape: SupportShape  # of ``raster``'s maps
    fallback: np.ndarray  # int per unit: its map in ``grown`` (-1: none)
    grown: Raster | None
    points: FlatPoints  # the units' points, x unwrapped (``raster`` has none for the fallback units)

    def at(self, unit, px, py) -> np.ndarray:
        """Filled values at integer pixels (unwrapped x) of the given units; 0 off their grown windows."""
        unit = np.asarray(unit, np.int64)
        px = np.asarray(px, np.int64)
        py = np.asarray(py, np.int64)
        out = np.zeros(unit.size)
        c, r = px - self.x0[unit], py - self.y0[unit]
        ok = np.flatnonzero((c >= 0) & (c < self.w[unit]) & (r >= 0) & (r < self.h[unit]))
        out[ok] = self._on_window(unit[ok], px[ok], py[ok])
        return out

    def _on_window(self, unit: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """:meth:`at` of int64 pixels all on their units' grown windows (no window test)."""
        # every pixel read on ``raster`` (no subset taken), those of the (rare) fallback units
        # then read again on ``grown``
        out = _filled(self.raster, self.shape, unit, px, py)
        fb = self.fallback[unit]
        g = np.flatnonzero(fb >= 0)
        if g.size:
            out[g] = _filled(self.grown, self.grown_shape, fb[g], px[g], py[g])
        return out

    @cached_property
    def grown_shape(self) -> SupportShape:
        g = self.grown
        return support_shape(g.values, g.off, g.w, g.h)

    def sample(self, unit, qx, qy) -> np.ndarray:
        """Bilinear samples at (unwrapped) positions, as ``Raster.sample(..., value_at=fill_nearest)``
        of the grown raster (:func:`~calib.canvas.raster.bilinear` reads only pixels on the windows)."""
        return bilinear(self.x0, self.y0, self.w, self.h, self._on_window, unit, qx, qy)


def _filled(r: Raster, shape: SupportShape, u: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Values of the maps ``u`` of ``r`` at pixels (px, py) (on their windows or beyond), a pixel off
    the support of a map that has one taking the nearest support pixel's value (``shape``: ``r``'s)."""
    c, rr = px - r.x0[u], py - r.y0[u]
    w = r.w[u]
    inside = np.flatnonzero((c >= 0) & (c < w) & (rr >= 0) & (rr < r.h[u]))
    v = np.zeros(u.size)
    v[inside] = r.values[r.off[u[inside]] + rr[inside] * w[inside] + c[inside]]
    need = np.flatnonzero((v <= 0) & (r.peak[u] > 0))
    if need.size:
        un = u[need]
        lines = shape.convex[un]
        best = np.empty(need.size, np.int64)
        for sel, keys in ((np.flatnonzero(lines), nearest_keys), (np.flatnonzero(~lines), nearest_keys_by_runs)):
            if sel.size:
                best[sel] = keys(shape, un[sel], rr[need[sel]], c[need[sel]])
        v[need] = r.values[r.off[un] + (best & 1023) * w[need] + ((best >> 10) & 1023)]
    return v


def filled_maps(pts: FlatPoints, grow: float) -> FilledMaps:
    """:class:`FilledMaps` of the detections of ``pts`` with windows grown by ``grow`` degrees."""
    xu = pts.seam_x
    x0, y0, w, h, _ = _windows(pts, xu, grow)
    bad = ~(np.isfinite(xu) & np.isfinite(pts.y))
    odd = np.bincount(pts.row, weights=bad, minlength=pts.n) > 0 if pts.n_points else np.zeros(pts.n, bool)
    # windows trimmed to the circle once grown (rare) are drawn grown instead; rows are clipped to
    # [0, 180] alike at any size
    trimmed = np.ceil(pts.reduce(np.maximum, xu) + grow) - np.floor(pts.reduce(np.minimum, xu) - grow) + 1 > WIDTH
    redraw = np.flatnonzero(trimmed | odd)
    fallback = np.full(pts.n, -1)
    grown = None
    drawn = pts
    if redraw.size:
        fallback[redraw] = np.arange(redraw.size)
        grown = rasterize(pts.take(redraw), pad=grow)
        # their maps on their points' box would never be read: not drawn (they are the wide
        # detections, often triangulated by Qhull)
        drawn = _emptied(pts, redraw)
    r = rasterize(drawn)
    shape = support_shape(r.values, r.off, r.w, r.h)
    return FilledMaps(x0, y0, w, h, r, shape, fallback, grown, pts.with_values(x=xu))


def _emptied(pts: FlatPoints, rows: np.ndarray) -> FlatPoints:
    """``pts`` with the detections ``rows`` left without polygons (the others as they are)."""
    keep = np.ones(pts.n, bool)
    keep[rows] = False
    keep_poly = keep[pts.det_of_poly]
    per_det = np.where(keep, np.diff(pts.det_off), 0)
    pick = keep[pts.row]
    return FlatPoints(pts.x[pick], pts.y[pick], pts.e[pick], offsets_of(per_det), offsets_of(pts.poly_count[keep_poly]))


__all__ = ["FilledMaps", "MapLookup", "filled_maps", "map_lookup"]
