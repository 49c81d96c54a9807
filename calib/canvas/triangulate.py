"""Delaunay triangulations of many small point sets at once, without a Qhull call per set.

Gift wrapping, run for every set together: an edge from a set's first point to its nearest
neighbour is always Delaunay; from each Delaunay edge not yet closed on its left, the third corner
of the triangle on that side is the point that the smallest circle through the edge's ends reaches
first -- the left point minimising the signed distance of that circle's centre from the edge. Each
new triangle opens its two other edges, until no edge is left.

Several points on one circle (a lattice cell's four corners, a regular grid) admit several
Delaunay triangulations. Ties are broken by a symbolic perturbation of the lifted points (each
point's x^2 + y^2 raised by a tiny, point-specific amount), which every comparison applies alike,
so the result is one consistent Delaunay triangulation -- not necessarily the one Qhull would pick
(which depends on its processing order). Sets are moved to a local origin first so that a lattice
with a sub-pixel offset stays a lattice up to rounding far below the perturbation.
"""
from __future__ import annotations

import numpy as np

from calib.canvas.points import offsets_of, ragged_arange, segment_ids

#: sets up to this many points are triangulated here; larger ones are left to Qhull
MAX_POINTS = 64
_DELTA = 1e-7  # perturbation scale, relative to the set's squared extent
_PERTURBATION = np.random.default_rng(20260).uniform(0.5, 1.0, MAX_POINTS)


def delaunay_sets(off: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delaunay triangles of the point sets ``x[off[i]:off[i+1]], y[...]`` (each at most
    :data:`MAX_POINTS` points). Returns (corners (k, 3) point indices counter-clockwise, set of
    each triangle). A set whose points are all on one line (or fewer than 3 distinct) gets none;
    of repeated points only the first is used."""
    off = np.asarray(off, np.int64)
    n_sets = off.size - 1
    cnt = np.diff(off)
    if n_sets == 0 or cnt.max(initial=0) < 3:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    seg = segment_ids(cnt)
    first = off[:-1]
    # local coordinates and scale
    has = cnt > 0
    xmin = np.zeros(n_sets)
    ymin = np.zeros(n_sets)
    xmin[has] = np.minimum.reduceat(x, first[has])
    ymin[has] = np.minimum.reduceat(y, first[has])
    lx = x - xmin[seg]
    ly = y - ymin[seg]
    ext = np.zeros(n_sets)
    ext[has] = np.maximum.reduceat(np.maximum(lx, ly), first[has])
    scale2 = np.maximum(ext, 1e-12) ** 2
    local = ragged_arange(cnt)
    # a repeated point takes no part (the first of its copies does)
    order = np.lexsort((local, ly, lx, seg))
    dup = np.zeros(x.size, bool)
    s_o, x_o, y_o = seg[order], lx[order], ly[order]
    dup[order[1:]] = (s_o[1:] == s_o[:-1]) & (x_o[1:] == x_o[:-1]) & (y_o[1:] == y_o[:-1])
    # the perturbation: a fixed, generic amount per point (a seeded random table, so that no
    # combination of the amounts cancels as a regular sequence's can)
    pert = _DELTA * scale2[seg] * _PERTURBATION[local]
    lift = lx * lx + ly * ly + pert

    # first edges: each set's first point to its nearest other (distinct) point
    f_set = seg[~dup & (local == 0)]
    cand = np.repeat(off[f_set], cnt[f_set]) + ragged_arange(cnt[f_set])
    a0 = np.repeat(off[f_set], cnt[f_set])
    d2 = (lx[cand] - lx[a0]) ** 2 + (ly[cand] - ly[a0]) ** 2
    d2 = np.where((cand == a0) | dup[cand], np.inf, d2)
    c_off = offsets_of(cnt[f_set])
    best = _first_min(d2, c_off)
    ok = np.isfinite(d2[best]) if best.size else np.zeros(0, bool)
    ea = off[f_set][ok]
    eb = cand[best[ok]]
    # edge bookkeeping: closed[set, u, v] (local indices) once the triangle left of u->v is known
    sq = cnt * cnt
    s_off = offsets_of(sq)

    def key(u, v):
        s = seg[u]
        return s_off[s] + (u - off[s]) * cnt[s] + (v - off[s])

    closed = np.zeros(int(s_off[-1]), bool)
    fa = np.concatenate([ea, eb])
    fb = np.concatenate([eb, ea])
    tris = []
    while fa.size:
        kk = key(fa, fb)
        fresh = ~closed[kk]
        fa, fb, kk = fa[fresh], fb[fresh], kk[fresh]
        # one edge per key (an edge can be opened twice in one round)
        kk, uniq = np.unique(kk, return_index=True)
        fa, fb = fa[uniq], fb[uniq]
        if fa.size == 0:
            break
        closed[kk] = True
        s = seg[fa]
        n_c = cnt[s]
        e_idx = np.repeat(np.arange(fa.size), n_c)
        c = np.repeat(off[s], n_c) + ragged_arange(n_c)
        a, b = fa[e_idx], fb[e_idx]
        ax, ay, bx, by = lx[a], ly[a], lx[b], ly[b]
        cx, cy = lx[c], ly[c]
        ex, ey = bx - ax, by - ay
        h = ex * (cy - ay) - ey * (cx - ax)  # > 0 on the left of a -> b
        # the lifted plane through a and b, tilted to pass through c: its tilt is this score, and
        # the smallest tilt gives the circle no other point is inside (the Delaunay corner)
        t_along = ((cx - ax) * ex + (cy - ay) * ey) / (ex * ex + ey * ey)
        power = lift[c] - ((1.0 - t_along) * lift[a] + t_along * lift[b])
        left = (h > 1e-12 * (ex * ex + ey * ey)) & ~dup[c]
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(left, power / h, np.inf)
        e_off = offsets_of(n_c)
        pick = _first_min(score, e_off)
        found = np.isfinite(score[pick])
        ta, tb, tc = fa[found], fb[found], c[pick[found]]
        if ta.size:
            tris.append(np.column_stack([ta, tb, tc]))
            closed[key(tb, tc)] = True
            closed[key(tc, ta)] = True
            # the triangles across the two new edges are still to find
            na = np.concatenate([tc, ta])
            nb = np.concatenate([tb, tc])
            open_ = ~closed[key(na, nb)]
            fa, fb = na[open_], nb[open_]
        else:
            break
    if not tris:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    t = np.concatenate(tris)
    # each triangle once (it may be found from two of its edges in one round)
    rot = np.argmin(t, axis=1)
    canon = np.stack([t[np.arange(len(t)), rot], t[np.arange(len(t)), (rot + 1) % 3],
                      t[np.arange(len(t)), (rot + 2) % 3]], axis=1)
    _, keep = np.unique(canon, axis=0, return_index=True)
    t = t[np.sort(keep)]
    return t, seg[t[:, 0]]


def _first_min(values: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Index of the first smallest value of each segment ``values[off[i]:off[i+1]]`` (segments
    non-empty)."""
    starts = off[:-1]
    m = np.minimum.reduceat(values, starts)
    seg = segment_ids(np.diff(off))
    idx = np.arange(values.size)
    cand = np.where(values == m[seg], idx, values.size)
    return np.minimum.reduceat(cand, starts)
