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
    seg, lx, ly, lift, dup, _ = _lifted(off, x, y)
    local = ragged_arange(cnt)

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


def _lifted(off: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Per point of the sets: its set, local coordinates (the set's lowest x and y at 0), the
    perturbed lift x^2 + y^2 + tiny, whether it repeats an earlier point of its set; and each set's
    squared extent. Both the triangulation and the point location use these very numbers."""
    cnt = np.diff(off)
    n_sets = cnt.size
    seg = segment_ids(cnt)
    first = off[:-1]
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
    return seg, lx, ly, lift, dup, scale2


#: relative distance from a set's hull within which a query counts as on its boundary
_BAND = 1e-7


def delaunay_locate(off: np.ndarray, x: np.ndarray, y: np.ndarray, qset: np.ndarray, qx: np.ndarray,
                    qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Locator.locate` of queries in the sets ``x[off[i]:off[i+1]], y[...]``."""
    return Locator(off, x, y).locate(qset, qx, qy)


#: the widths sets are padded to when located together (a set goes to the narrowest that holds it)
_WIDTHS = (8, 16, 32, MAX_POINTS)


class Locator:
    """Point location in :func:`delaunay_sets`'s triangulations of many small sets, without
    triangulating them.

    The Delaunay triangles are the lower faces of the lifted points (the same perturbed lift as
    :func:`delaunay_sets`), so the one above a query is the solution of a small linear program --
    the triangle holding the query whose lifted plane is lowest there -- found by the simplex
    method: starting from a triangle of the set's hull fan that holds the query, a point below the
    current triangle's plane replaces the corner the ratio test names, until no point is below
    (a few steps for a dozen points). Sets hold at most :data:`MAX_POINTS` points; they are laid
    out as rows of a few padded tables (:data:`_WIDTHS`) so that a step is a handful of whole-table
    operations."""

    def __init__(self, off: np.ndarray, x: np.ndarray, y: np.ndarray):
        from calib.canvas.hull import convex_hulls

        self.off = off = np.asarray(off, np.int64)
        self.x, self.y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n_sets = off.size - 1
        self.seg, self.lx, self.ly, self.lift, self.dup, self.scale2 = _lifted(off, self.x, self.y)
        valid = np.flatnonzero(~self.dup)
        h_off, h_v, self.flat = convex_hulls(self.seg[valid], self.lx[valid], self.ly[valid], self.n_sets)
        #: hull vertices (point indices), counter-clockwise per set: ``hull[hull_off[i]:hull_off[i+1]]``
        self.hull_off, self.hull = h_off, valid[h_v]
        cnt = np.diff(off)
        self.width = np.searchsorted(np.array(_WIDTHS), cnt)  # table of each set
        self.row = np.zeros(self.n_sets, np.int64)  # its row there
        self.tables = []
        local = ragged_arange(cnt)
        hcount = np.diff(h_off)
        hlocal = ragged_arange(hcount)
        hseg = segment_ids(hcount)
        for t, wd in enumerate(_WIDTHS):
            sets = np.flatnonzero(self.width == t)
            self.row[sets] = np.arange(sets.size)
            X = np.zeros((sets.size, wd))
            Y = np.zeros((sets.size, wd))
            L = np.full((sets.size, wd), np.inf)  # padding and repeated points: never below a plane
            H = np.zeros((sets.size, wd), np.int64)  # hull vertices (point indices), then copies of the first
            if sets.size:
                pts = np.flatnonzero(self.width[self.seg] == t)
                r, c = self.row[self.seg[pts]], local[pts]
                X[r, c], Y[r, c] = self.lx[pts], self.ly[pts]
                L[r, c] = np.where(self.dup[pts], np.inf, self.lift[pts])
                hv = np.flatnonzero(self.width[hseg] == t)
                first = np.zeros(self.n_sets, np.int64)
                first[hseg[hv[hlocal[hv] == 0]]] = self.hull[hv[hlocal[hv] == 0]]
                H[:, :] = first[sets][:, None]
                H[self.row[hseg[hv]], hlocal[hv]] = self.hull[hv]
            # each hull edge's outward unit normal and offset: distance = NX x + NY y + C (padding
            # edges are points: -inf)
            a, b = H, np.roll(H, -1, axis=1)
            ex, ey = self.lx[b] - self.lx[a], self.ly[b] - self.ly[a]
            norm = np.hypot(ex, ey)
            with np.errstate(invalid="ignore", divide="ignore"):
                NX, NY = ey / norm, -ex / norm
            C = -(NX * self.lx[a] + NY * self.ly[a])
            pad = norm == 0
            NX[pad], NY[pad], C[pad] = 0.0, 0.0, -np.inf
            self.tables.append((X, Y, L, H, NX, NY, C))

    def origin(self, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lowest x, lowest y) of the given (non-empty) sets: their local coordinates' origin."""
        first = self.off[:-1][sets]
        return self.x[first] - self.lx[first], self.y[first] - self.ly[first]

    def hull_distance(self, qset: np.ndarray, qlx: np.ndarray, qly: np.ndarray) -> np.ndarray:
        """Signed distance (local coordinates; > 0 outside) of each query to its set's hull (the
        largest over its edges); inf for a flat set."""
        qset = np.asarray(qset, np.int64)
        d = np.full(qset.size, np.inf)
        for t in range(len(_WIDTHS)):
            q = np.flatnonzero((self.width[qset] == t) & ~self.flat[qset])
            if q.size == 0:
                continue
            NX, NY, C = (tab[self.row[qset[q]]] for tab in self.tables[t][4:])
            dist = NX * qlx[q, None] + NY * qly[q, None] + C
            d[q] = dist.max(axis=1)
        return d

    def locate(self, qset, qx, qy) -> tuple[np.ndarray, np.ndarray]:
        """The triangle of set ``qset[k]`` that holds the query (``qx[k]``, ``qy[k]``): (corners
        (q, 3) point indices, -1 where none; converged (q,) bool, False for the rare query the
        search gave up on). A query on a triangle's edge may get either neighbour (their values
        there agree). A query outside the set's hull gets none; one on or within a relative 1e-7
        of its boundary is located a hair inside (its weights in that triangle tell the caller
        whether it is in)."""
        qset = np.asarray(qset, np.int64)
        nq = qset.size
        corners = np.full((nq, 3), -1, np.int64)
        done = np.ones(nq, bool)
        if nq == 0:
            return corners, done
        ox, oy = self.origin(qset)
        qlx, qly = np.asarray(qx, np.float64) - ox, np.asarray(qy, np.float64) - oy
        for t in range(len(_WIDTHS)):
            q = np.flatnonzero((self.width[qset] == t) & ~self.flat[qset])
            if q.size:
                corners[q], done[q] = self._simplex(t, qset[q], qlx[q], qly[q])
        return corners, done

    def _fan(self, Hq, m, qlx, qly):
        """The triangle of each set's hull fan (from its first vertex) that holds the query, or
        would if it were inside: (k, signed distance to the hull over the fan triangle's hull
        edges, > 0 outside)."""
        lx, ly = self.lx, self.ly
        v0 = Hq[:, 0]
        ax, ay = lx[v0], ly[v0]
        cross = (lx[Hq] - ax[:, None]) * (qly - ay)[:, None] - (ly[Hq] - ay[:, None]) * (qlx - ax)[:, None]
        j = np.arange(Hq.shape[1])
        kk = ((cross >= 0) & (j >= 1) & (j < m[:, None])).sum(axis=1)
        kk = np.clip(kk, 1, m - 2)
        ar = np.arange(Hq.shape[0])
        # the hull edges of the fan triangle: (v_k, v_k+1), and (v0, v1) / (v_m-1, v0) at the ends
        d = self._edge_distance(Hq[ar, kk], Hq[ar, kk + 1], qlx, qly)
        d = np.maximum(d, np.where(kk == 1, self._edge_distance(v0, Hq[:, 1], qlx, qly), -np.inf))
        d = np.maximum(d, np.where(kk == m - 2, self._edge_distance(Hq[ar, m - 1], v0, qlx, qly), -np.inf))
        return kk, d

    def _edge_distance(self, a, b, qlx, qly):
        """Signed distance of queries to the lines a -> b (hull edges, counter-clockwise: > 0 outside)."""
        ex, ey = self.lx[b] - self.lx[a], self.ly[b] - self.ly[a]
        return (ey * (qlx - self.lx[a]) - ex * (qly - self.ly[a])) / np.hypot(ex, ey)

    def _simplex(self, t: int, qset, qlx, qly) -> tuple[np.ndarray, np.ndarray]:
        """Locate queries of sets of table ``t`` (non-flat): the hull fan's triangle, then the
        simplex method for the queries inside."""
        X, Y, L, H = self.tables[t][:4]
        lx, ly, lift = self.lx, self.ly, self.lift
        nq = qset.size
        corners = np.full((nq, 3), -1, np.int64)
        done = np.ones(nq, bool)
        rows = self.row[qset]
        m = np.diff(self.hull_off)[qset]
        Hq = H[rows]
        kk, d = self._fan(Hq, m, qlx, qly)
        band = _BAND * np.maximum(np.sqrt(self.scale2[qset]), 1.0)
        edge_q = np.flatnonzero((d <= band) & (d > -band))
        if edge_q.size:
            # on the boundary: a hair towards the hull's centre, then its fan triangle again
            hv = Hq[edge_q]
            inner = np.arange(hv.shape[1]) < m[edge_q, None]
            cx = np.where(inner, lx[hv], 0.0).sum(axis=1) / m[edge_q]
            cy = np.where(inner, ly[hv], 0.0).sum(axis=1) / m[edge_q]
            tx, ty = cx - qlx[edge_q], cy - qly[edge_q]
            step = 4 * band[edge_q] / np.maximum(np.hypot(tx, ty), 1e-300)
            qlx, qly = qlx.copy(), qly.copy()
            qlx[edge_q] += tx * step
            qly[edge_q] += ty * step
            kk[edge_q], _ = self._fan(hv, m[edge_q], qlx[edge_q], qly[edge_q])
        live = np.flatnonzero(d <= band)
        if live.size == 0:
            return corners, done
        qset, qlx, qly, rows, Hq, kk = qset[live], qlx[live], qly[live], rows[live], Hq[live], kk[live]
        ar = np.arange(live.size)
        basis = np.column_stack([Hq[:, 0], Hq[ar, kk], Hq[ar, kk + 1]])
        base = self.off[:-1][qset]
        tol = 1e-12 * self.scale2[qset]
        iters = 2 * np.diff(self.off)[qset] + 8
        Xq, Yq, Lq = X[rows], Y[rows], L[rows]
        active = np.arange(live.size)
        it = 0
        while active.size:
            b = basis[active]
            x0, y0, z0 = lx[b[:, 0]], ly[b[:, 0]], lift[b[:, 0]]
            d1x, d1y, d1z = lx[b[:, 1]] - x0, ly[b[:, 1]] - y0, lift[b[:, 1]] - z0
            d2x, d2y, d2z = lx[b[:, 2]] - x0, ly[b[:, 2]] - y0, lift[b[:, 2]] - z0
            den = d1x * d2y - d1y * d2x
            with np.errstate(invalid="ignore", divide="ignore"):
                alpha = (d1z * d2y - d1y * d2z) / den
                beta = (d1x * d2z - d1z * d2x) / den
            gamma = z0 - alpha * x0 - beta * y0
            # the height of every point of the set over the current plane
            with np.errstate(invalid="ignore"):
                r = Lq - alpha[:, None] * Xq
                r -= beta[:, None] * Yq
                r -= gamma[:, None]
            r[np.isnan(r)] = np.inf
            pick = np.argmin(r, axis=1)
            optimal = ~(r[np.arange(active.size), pick] < -tol[active])
            if optimal.any():
                corners[live[active[optimal]]] = b[optimal]
            go = np.flatnonzero(~optimal)
            it += 1
            stuck = it >= iters[active[go]]
            if stuck.any():
                done[live[active[go[stuck]]]] = False
                go = go[~stuck]
            if go.size == 0:
                break
            # ratio test: the entering point's and the query's barycentric weights in the basis
            ag = active[go]
            enter = base[ag] + pick[go]
            bg = b[go]
            mu = _weights(lx[bg], ly[bg], lx[enter], ly[enter])
            lam = _weights(lx[bg], ly[bg], qlx[ag], qly[ag])
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(mu > 1e-12, np.maximum(lam, 0.0) / mu, np.inf)
            leave = np.argmin(ratio, axis=1)
            bg[np.arange(go.size), leave] = enter
            basis[ag] = bg
            active = ag
            Xq, Yq, Lq = Xq[go], Yq[go], Lq[go]
        return corners, done


def _weights(tx: np.ndarray, ty: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Barycentric weights (k, 3) of points p in triangles with corners (tx[k], ty[k])."""
    ax, ay = tx[:, 0], ty[:, 0]
    v0x, v0y = tx[:, 1] - ax, ty[:, 1] - ay
    v1x, v1y = tx[:, 2] - ax, ty[:, 2] - ay
    v2x, v2y = px - ax, py - ay
    den = v0x * v1y - v1x * v0y
    with np.errstate(invalid="ignore", divide="ignore"):
        w1 = (v2x * v1y - v1x * v2y) / den
        w2 = (v0x * v2y - v2x * v0y) / den
    return np.column_stack([1.0 - w1 - w2, w1, w2])


def _first_min(values: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Index of the first smallest value of each segment ``values[off[i]:off[i+1]]`` (segments
    non-empty)."""
    starts = off[:-1]
    m = np.minimum.reduceat(values, starts)
    seg = segment_ids(np.diff(off))
    idx = np.arange(values.size)
    cand = np.where(values == m[seg], idx, values.size)
    return np.minimum.reduceat(cand, starts)
