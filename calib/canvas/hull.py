"""Convex hulls of many point sets at once, without a Qhull call per set.

Each set's points are sorted by x; per column the lowest point is a candidate for the lower chain
and the highest for the upper chain. A candidate that does not make a strict left turn (lower
chain) or right turn (upper chain) with its current neighbours lies on or inside the segment
between them, so it is not a vertex; all such candidates of all sets are dropped at once, and the
pass repeats until every chain is strictly convex. What remains are the hull's vertices (points on
an edge are not vertices, as with Qhull), returned counter-clockwise.
"""
from __future__ import annotations

import numpy as np

from calib.canvas.points import offsets_of, order_by_set_x_y, ragged_arange


def _chain(seg: np.ndarray, x: np.ndarray, y: np.ndarray, idx: np.ndarray, sign: float) -> np.ndarray:
    """Survivors (indices into ``idx``) of a chain given left to right per segment: points whose
    turn with their neighbours has the sign ``sign`` (+1: left turns, the lower chain; -1: right
    turns, the upper chain) until none is dropped."""
    alive = np.arange(idx.size)
    while True:
        s = seg[alive]
        xa, ya = x[idx[alive]], y[idx[alive]]
        interior = np.zeros(alive.size, bool)
        if alive.size > 2:
            interior[1:-1] = (s[1:-1] == s[:-2]) & (s[1:-1] == s[2:])
        if not interior.any():
            return alive
        i = np.flatnonzero(interior)
        cross = (xa[i] - xa[i - 1]) * (ya[i + 1] - ya[i]) - (ya[i] - ya[i - 1]) * (xa[i + 1] - xa[i])
        drop = sign * cross <= 0
        if not drop.any():
            return alive
        keep = np.ones(alive.size, bool)
        keep[i[drop]] = False
        alive = alive[keep]


def convex_hulls(seg: np.ndarray, x: np.ndarray, y: np.ndarray, n: int, order: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convex hull vertices of ``n`` point sets (point k belongs to set ``seg[k]``). ``order``:
    ``np.lexsort((y, x, seg))`` when the caller knows it.

    Returns (offsets (n + 1,), vertex point indices counter-clockwise from the lowest of the
    leftmost points, flat (n,) bool): set i's vertices are ``vertices[offsets[i]:offsets[i+1]]``; a
    set with fewer than 3 vertices (fewer than 3 distinct points, or all on a line) is flat and
    has no vertices."""
    seg = np.asarray(seg, np.int64)
    if seg.size == 0:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.ones(n, bool)
    if order is None:
        order = order_by_set_x_y(seg, x, y)
    s, xs = seg[order], x[order]
    new_col = np.r_[True, (s[1:] != s[:-1]) | (xs[1:] != xs[:-1])]
    first = np.flatnonzero(new_col)
    last = np.r_[first[1:] - 1, order.size - 1]
    lo_idx, hi_idx = order[first], order[last]
    lower = lo_idx[_chain(seg[lo_idx], x, y, lo_idx, 1.0)]
    upper = hi_idx[_chain(seg[hi_idx], x, y, hi_idx, -1.0)]
    # counter-clockwise: the lower chain left to right, then the upper one right to left, each
    # set's shared end points once
    up_seg = seg[upper]
    if upper.size and (up_seg[1:] >= up_seg[:-1]).all():  # sets in order (as sorted): reverse each run
        start = np.r_[0, np.flatnonzero(up_seg[1:] != up_seg[:-1]) + 1]
        cnt = np.diff(np.r_[start, upper.size])
        up_rev = np.repeat(start + cnt - 1, cnt) - ragged_arange(cnt)
    else:
        up_rev = np.lexsort((-np.arange(upper.size), up_seg))
    upper = upper[up_rev]
    up_seg = up_seg[up_rev]
    pts = np.concatenate([lower, upper])
    pseg = np.concatenate([seg[lower], up_seg])
    o = np.argsort(pseg, kind="stable")  # per set: its lower chain, then its upper chain reversed
    pts, pseg = pts[o], pseg[o]
    # drop a point equal (same coordinates) to the one before it in the same set, and the closing
    # point equal to the set's first
    same_prev = np.r_[False, (pseg[1:] == pseg[:-1]) & (x[pts[1:]] == x[pts[:-1]]) & (y[pts[1:]] == y[pts[:-1]])]
    keep = ~same_prev
    pts, pseg = pts[keep], pseg[keep]
    counts = np.bincount(pseg, minlength=n)
    off = offsets_of(counts)
    has = counts > 0
    firsts = off[:-1][has]
    lasts = off[1:][has] - 1
    closing = (lasts > firsts) & (x[pts[lasts]] == x[pts[firsts]]) & (y[pts[lasts]] == y[pts[firsts]])
    drop = np.zeros(pts.size, bool)
    drop[lasts[closing]] = True
    pts, pseg = pts[~drop], pseg[~drop]
    counts = np.bincount(pseg, minlength=n)
    flat = counts < 3
    keep = ~flat[pseg]
    pts, pseg = pts[keep], pseg[keep]
    return offsets_of(np.bincount(pseg, minlength=n)), pts, flat


def inside_hulls(off: np.ndarray, vx: np.ndarray, vy: np.ndarray, qset: np.ndarray, qx: np.ndarray,
                 qy: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Whether each query (qx, qy) lies inside (or within ``tol`` of) the hull of its set
    ``qset``, given counter-clockwise vertices per set (``vx[off[i]:off[i+1]]``): every edge's
    outward unit normal n and offset c have n . q + c <= tol (Qhull's facet equations)."""
    counts = np.diff(off)
    out = np.ones(qset.size, bool)
    if qset.size == 0:
        return out
    nxt = np.arange(vx.size) + 1
    ends = off[1:] - 1
    nxt[ends[counts > 0]] = off[:-1][counts > 0]
    ex, ey = vx[nxt] - vx, vy[nxt] - vy
    norm = np.hypot(ex, ey)
    nx, ny = ey / norm, -ex / norm  # outward for a counter-clockwise polygon
    c = -(nx * vx + ny * vy)
    # queries against every edge of their set
    k = counts[qset]
    q = np.repeat(np.arange(qset.size), k)
    edge = np.repeat(off[qset], k) + ragged_arange(k)
    bad = nx[edge] * qx[q] + ny[edge] * qy[q] + c[edge] > tol
    out[np.unique(q[bad])] = False
    return out


def next_vertex(off: np.ndarray) -> np.ndarray:
    """Index of each vertex's successor around its polygon (polygons at offsets ``off``): the next
    one, a polygon's last vertex closing on its first."""
    counts = np.diff(off)
    nxt = np.arange(int(off[-1])) + 1
    has = counts > 0
    nxt[off[1:][has] - 1] = off[:-1][has]
    return nxt


def row_spans(off: np.ndarray, vx: np.ndarray, vy: np.ndarray, rset: np.ndarray, ry: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The x extent (lo, hi) of the hull of set ``rset[k]`` on the horizontal line y = ``ry[k]``
    (hulls as from :func:`convex_hulls`; lo > hi where the line misses it): the extremes of where
    the line meets the hull's edges."""
    counts = np.diff(off)
    nxt = next_vertex(off)  # each edge's ends, once
    y_lo, y_hi = np.minimum(vy, vy[nxt]), np.maximum(vy, vy[nxt])
    # every (line, edge of its set) pair: only the few edges a line meets are interpolated
    k = counts[rset]
    q = np.repeat(np.arange(rset.size), k)
    a = np.repeat(off[rset], k) + ragged_arange(k)
    y = ry[q]
    meets = (y_lo[a] <= y) & (y <= y_hi[a])
    q, a, y = q[meets], a[meets], y[meets]
    b = nxt[a]
    xa, ya, xb, yb = vx[a], vy[a], vx[b], vy[b]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(yb != ya, (y - ya) / (yb - ya), 0.0)
    xm = xa + t * (xb - xa)
    flat = ya == yb  # a horizontal edge on the line: both its ends
    lo = np.full(rset.size, np.inf)
    hi = np.full(rset.size, -np.inf)
    if q.size:  # the pairs come line by line: each line's run reduced at once
        first = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        lo[q[first]] = np.minimum.reduceat(np.where(flat, np.minimum(xa, xb), xm), first)
        hi[q[first]] = np.maximum.reduceat(np.where(flat, np.maximum(xa, xb), xm), first)
    return lo, hi


#: :func:`ring_sums` answers only where every angle it decides by is this far (radians) from a tie,
#: every hull edge at least :data:`_MIN_EDGE` long and every radius at least :data:`_MIN_RADIUS`:
#: then each sum vertex turns by >= ~_MIN_ANGLE and every other grown point lies >= ~1e-8 inside,
#: some 100x more than the float error of the hull sweep's cross products can move (1e-10)
_MIN_ANGLE = 1e-4
_MIN_EDGE = 1e-3
_MIN_RADIUS = 1e-2


def ring_sums(off: np.ndarray, vx: np.ndarray, vy: np.ndarray, r: np.ndarray, cos_r: np.ndarray,
              sin_r: np.ndarray, y_lo: float, y_hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The hull of each set's vertices grown along a ring of directions -- every vertex p plus
    ``(r * cos_r[j], r * sin_r[j])`` for the ring's m evenly spaced directions (``cos_r``, ``sin_r``
    the cosines and sines of 2 pi j / m), y clipped to [y_lo, y_hi] -- as :func:`convex_hulls` of
    all those grown points gives it, without the m points per vertex: for convex counter-clockwise
    hulls (``off``, ``vx``, ``vy``, as :func:`convex_hulls` returns them) this is their Minkowski
    sum with the ring, whose vertices are the pairs (p, j) whose normal cones overlap (each hull
    edge once, each ring edge once), counter-clockwise from the lowest of the leftmost.

    Only sets where that is provably what the sweep gives are answered (``ok``): at least 3
    vertices, no grown point clipped, and no decision near a tie (see :data:`_MIN_ANGLE`).
    Returns (ok (n,) bool, offsets (n + 1,) with 0 vertices for the sets not ok, x, y)."""
    n, m = r.size, cos_r.size
    counts = np.diff(off)
    half = np.pi / m  # half the angle of a ring vertex's normal cone
    seg = np.repeat(np.arange(n), counts)
    nxt = next_vertex(off)
    prv = np.empty_like(nxt)
    prv[nxt] = np.arange(vx.size)
    ex, ey = vx[nxt] - vx, vy[nxt] - vy
    # each edge's outward normal angle in [0, 2 pi), the ring vertex whose cone holds it, and how
    # near the cone's border it is
    alpha = np.mod(np.arctan2(ey, ex) - np.pi / 2, 2 * np.pi)
    t = (alpha + half) / (2 * half)
    k = np.floor(t).astype(np.int64) % m
    ext = np.mod(alpha - alpha[prv], 2 * np.pi)  # each vertex's exterior angle
    span = (k - k[prv]) % m  # the ring edges between the normals of a vertex's two edges
    bad = (np.abs(t - np.round(t)) * 2 * half < _MIN_ANGLE) | (np.hypot(ex, ey) < _MIN_EDGE) | \
        (ext < _MIN_ANGLE) | (ext > np.pi - _MIN_ANGLE)
    ok = (counts >= 3) & (r >= _MIN_RADIUS) & (np.bincount(seg, weights=bad, minlength=n) == 0)
    ok &= np.bincount(seg, weights=span, minlength=n) == m  # the normals turn once around
    # no grown point clipped (y +- r keeps within the bounds, so does y + r sin)
    y_min = np.full(n, np.inf)
    y_max = np.full(n, -np.inf)
    np.minimum.at(y_min, seg, vy)
    np.maximum.at(y_max, seg, vy)
    ok &= (y_min - r >= y_lo) & (y_max + r <= y_hi)
    # vertex i: ring directions k[prv] .. k, in order
    v = np.flatnonzero(ok[seg])
    c = span[v] + 1
    src = np.repeat(v, c)
    j = (np.repeat(k[prv[v]], c) + ragged_arange(c)) % m
    s = seg[src]
    sx = vx[src] + r[s] * cos_r[j]
    sy = np.clip(vy[src] + r[s] * sin_r[j], y_lo, y_hi)
    # start each set at its lowest leftmost vertex
    out_counts = np.bincount(s, minlength=n)
    out_off = offsets_of(out_counts)
    first = np.lexsort((sy, sx, s))[out_off[:-1][ok]]  # each set's least (x, y)
    shift = np.zeros(n, np.int64)
    shift[ok] = first - out_off[:-1][ok]
    pos = ragged_arange(out_counts)
    rot = out_off[s] + (pos + shift[s]) % out_counts[s]
    return ok, out_off, sx[rot], sy[rot]
