"""Rasterizing many triangles at once (:func:`calib.canvas.raster.rasterize`'s general path).

A triangle is drawn row by row: on each pixel row it meets, the pixels of its span over its three
edges (widened by a hair, cut to the unit's window) are tested with their barycentric weights.
Most triangles of scattered peaks are small -- a row or two, a pixel or two per row -- so listing
their rows and pixels as ragged arrays costs more in gathers than in arithmetic. Here the triangles
meeting exactly ``j`` rows (``j`` up to :data:`GRID_ROWS`) are laid out as a ``(j, triangles)`` table
of rows and a ``(GRID_COLS, j, triangles)`` table of pixels, every per-triangle and per-row
quantity broadcast rather than gathered; the larger triangles' rows, and the rows holding more than
:data:`GRID_COLS` pixels, go the ragged way. Each number is computed by the same operations in the
same order on either way (the tables only change which array an operand is read from), so the
pixels drawn and their values are the same; max-combining does not depend on the order.
"""
from __future__ import annotations

import numpy as np

from calib.canvas.points import ragged_arange

#: triangles meeting at most this many pixel rows are drawn on tables
GRID_ROWS = 4
#: pixels per row of the tables (rows holding more go the ragged way)
GRID_COLS = 2
_EDGES = ((0, 1), (1, 2), (2, 0))


class _Geometry:
    """What the drawing reads of the canvas and the triangles."""

    def __init__(self, values, x0, y0, w, off, unit, tx, ty, terms, ec, tol):
        self.values, self.x0, self.y0, self.w, self.off = values, x0, y0, w, off
        self.unit, self.tol = unit, tol
        # corners' coordinates and values as (3, triangles): a corner's row contiguous
        self.tx, self.ty, self.ec = (np.ascontiguousarray(a.T) for a in (tx, ty, ec))
        (self.v0x, self.v0y, self.v1x, self.v1y, self.d00, self.d01, self.d11, self.den) = terms
        self.ax, self.ay = self.tx[0], self.ty[0]


def draw_triangles(values, drew, poly, x0, y0, w, h, off, unit, tx, ty, terms, ec, tol, batch) -> None:
    """Max the triangles' interpolated values into ``values`` (the flat buffer of windows
    ``x0, y0, w, h, off``); ``drew[poly[k]]`` set where triangle k drew a positive value.

    Triangle k (unit ``unit[k]``) has corners (``tx[k]``, ``ty[k]``) and corner values ``ec[k]``;
    ``terms`` are :func:`calib.canvas.raster.triangle_terms` of its corners (a, b, c), and ``tol``
    the barycentric slack."""
    if len(tx) == 0:
        return
    g = _Geometry(values, x0, y0, w, off, unit, tx, ty, terms, ec, tol)
    cy0 = np.ceil(np.minimum(np.minimum(ty[:, 0], ty[:, 1]), ty[:, 2]) - tol).astype(np.int64)
    cy1 = np.floor(np.maximum(np.maximum(ty[:, 0], ty[:, 1]), ty[:, 2]) + tol).astype(np.int64)
    # rows within the unit's window only (a clipped window holds fewer)
    wy0 = y0[unit]
    cy0 = np.maximum(cy0, wy0)
    cy1 = np.minimum(cy1, wy0 + h[unit] - 1)
    nrow = np.clip(cy1 - cy0 + 1, 0, None)
    spans = []
    for j in range(1, GRID_ROWS + 1):
        tri = np.flatnonzero(nrow == j)
        per = max(1, 8 * batch // (j * GRID_COLS))
        for s in range(0, tri.size, per):
            spans.append(_grid(g, drew, poly, tri[s: s + per], cy0, j))
    big = np.flatnonzero(nrow > GRID_ROWS)
    if big.size:
        k = np.repeat(big, nrow[big])
        spans.append(_spans(g, k, cy0[k] + ragged_arange(nrow[big])))
    if not spans:
        return
    k, c0, ncol, row_at, p20, p21 = (np.concatenate(a) for a in zip(*spans))
    _draw_spans(g, drew, poly, k, c0, ncol, row_at, p20, p21, batch)


def _span_ends(g: _Geometry, tx, ty, ry, lo, hi):
    """The span of each row over its triangle's three edges: ``lo``, ``hi`` (filled, in place)
    from the corners ``tx[a]``, ``ty[a]`` (per row, or per triangle to broadcast against ``ry``)."""
    for a, b in _EDGES:
        xa, ya, xb, yb = tx[a], ty[a], tx[b], ty[b]
        ymin, ymax = np.minimum(ya, yb), np.maximum(ya, yb)
        level = yb == ya
        meets = (ymin - g.tol <= ry) & (ry <= ymax + g.tol)
        with np.errstate(invalid="ignore", divide="ignore"):
            xr = xa + (np.minimum(np.maximum(ry, ymin), ymax) - ya) * (xb - xa) / (yb - ya)
        lo_e = np.where(level, np.minimum(xa, xb), xr)
        hi_e = np.where(level, np.maximum(xa, xb), xr)
        np.minimum(lo, np.where(meets, lo_e, np.inf), out=lo)
        np.maximum(hi, np.where(meets, hi_e, -np.inf), out=hi)


def _columns(g: _Geometry, lo, hi, wx0, wu):
    """First column and number of columns of each row's span (within the window)."""
    c0 = np.ceil(lo - 1e-6)
    c1 = np.floor(hi + 1e-6)
    finite = np.isfinite(c0) & np.isfinite(c1)
    c0 = np.where(finite, c0, 0).astype(np.int64)
    c1 = np.where(finite, c1, -1).astype(np.int64)
    c0 = np.maximum(c0, wx0)
    c1 = np.minimum(c1, wx0 + wu - 1)
    return c0, np.clip(c1 - c0 + 1, 0, None)


def _row_terms(g: _Geometry, k, ry_int):
    """What the pixels of rows ``ry_int`` of triangles ``k`` (the same shape, or ``k`` per
    triangle broadcast against a (rows, triangles) ``ry_int``) share: the span's first column and
    number of columns (within the window), the buffer index of the row's column 0, and the row's
    terms of the dot products (p20, p21)."""
    ry = ry_int.astype(np.float64)
    lo = np.full(ry.shape, np.inf)
    hi = np.full(ry.shape, -np.inf)
    _span_ends(g, g.tx[:, k], g.ty[:, k], ry, lo, hi)
    ru = g.unit[k]
    wx0 = g.x0[ru]
    wu = g.w[ru]
    c0, ncol = _columns(g, lo, hi, wx0, wu)
    v2y = ry - g.ay[k]
    row_at = g.off[ru] + (ry_int - g.y0[ru]) * wu - wx0
    return c0, ncol, row_at, v2y * g.v0y[k], v2y * g.v1y[k]


def _spans(g: _Geometry, k, ry_int):
    """The (triangle ``k``, row ``ry_int``) pairs' spans, ragged: (k, c0, ncol, row_at, p20, p21)
    of the rows holding a pixel."""
    c0, ncol, row_at, p20, p21 = _row_terms(g, k, ry_int)
    keep = ncol > 0
    return k[keep], c0[keep], ncol[keep], row_at[keep], p20[keep], p21[keep]


def _grid(g: _Geometry, drew, poly, tri, cy0, j):
    """Draw the triangles ``tri``, each meeting exactly ``j`` rows, on tables (rows x triangles,
    columns x rows x triangles: the long axis last); returns their rows holding more than
    :data:`GRID_COLS` pixels as :func:`_spans` does."""
    c0, ncol, row_at, p20, p21 = _row_terms(g, tri, cy0[tri] + np.arange(j)[:, None])
    # the pixels: (column, row, triangle) tables
    col = np.arange(GRID_COLS)[:, None, None]
    qx = c0 + col
    valid = (col < ncol) & (ncol <= GRID_COLS)
    v2x = qx.astype(np.float64) - g.ax[tri]
    d20 = v2x * g.v0x[tri] + p20
    d21 = v2x * g.v1x[tri] + p21
    dd01 = g.d01[tri]
    dn = g.den[tri]
    w1 = (g.d11[tri] * d20 - dd01 * d21) / dn
    w2 = (g.d00[tri] * d21 - dd01 * d20) / dn
    w0 = 1.0 - w1 - w2
    inside = (w0 >= -g.tol) & (w1 >= -g.tol) & (w2 >= -g.tol) & valid
    ec = g.ec[:, tri]
    v = np.where(inside, w0 * ec[0] + w1 * ec[1] + w2 * ec[2], 0.0)
    ok = v > 0
    if ok.any():
        np.maximum.at(g.values, (row_at + qx)[ok], v[ok])
        drew[poly[tri[ok.any(axis=(0, 1))]]] = True
    ri, ti = np.nonzero(ncol > GRID_COLS)
    return tri[ti], c0[ri, ti], ncol[ri, ti], row_at[ri, ti], p20[ri, ti], p21[ri, ti]


def _draw_spans(g: _Geometry, drew, poly, k, c0, ncol, row_at, p20, p21, batch) -> None:
    """Draw the pixels of ragged rows (:func:`_spans`), ``batch`` pixels at a time."""
    ax_r, v0x_r, v1x_r = g.ax[k], g.v0x[k], g.v1x[k]
    d00_r, d01_r, d11_r, den_r = g.d00[k], g.d01[k], g.d11[k], g.den[k]
    e0_r, e1_r, e2_r = g.ec[:, k]
    cum = np.cumsum(ncol)
    start = 0
    while start < len(ncol):
        stop = max(int(np.searchsorted(cum, (cum[start - 1] if start else 0) + batch, side="right")), start + 1)
        cnt = ncol[start:stop]
        rowp = np.repeat(np.arange(start, stop), cnt)
        qx = c0[rowp] + ragged_arange(cnt)
        v2x = qx.astype(np.float64) - ax_r[rowp]
        d20 = v2x * v0x_r[rowp] + p20[rowp]
        d21 = v2x * v1x_r[rowp] + p21[rowp]
        dd01 = d01_r[rowp]
        dn = den_r[rowp]
        w1 = (d11_r[rowp] * d20 - dd01 * d21) / dn
        w2 = (d00_r[rowp] * d21 - dd01 * d20) / dn
        w0 = 1.0 - w1 - w2
        inside = (w0 >= -g.tol) & (w1 >= -g.tol) & (w2 >= -g.tol)
        v = np.where(inside, w0 * e0_r[rowp] + w1 * e1_r[rowp] + w2 * e2_r[rowp], 0.0)
        ok = v > 0
        if ok.any():
            np.maximum.at(g.values, row_at[rowp[ok]] + qx[ok], v[ok])
            drew[poly[k[rowp[ok]]]] = True
        start = stop
