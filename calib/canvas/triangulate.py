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
    seg, lx, ly, lift, _, _ = _lifted(off, x, y, repeats=False)
    dup = _repeated(off, seg, lx, ly)
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

    # key of u -> v: s_off[s] + (u - off[s]) cnt[s] + (v - off[s]) for u, v of set s, as a
    # per-point term of u plus v
    first = off[:-1][seg]
    row_key = s_off[:-1][seg] + (np.arange(seg.size) - first) * cnt[seg] - first

    def key(u, v):
        return row_key[u] + v

    closed = np.zeros(int(s_off[-1]), bool)
    # each set's points as a row of the table of its width (x and y NaN for the padding and the
    # copies: no point is usable there), so that an edge reads its set's row whole
    cls_of_set = np.searchsorted(_WIDTHS_ARRAY, cnt)
    row_of_set = np.zeros(n_sets, np.int64)
    tables = {}
    for t in np.unique(cls_of_set[cnt > 0]).tolist():
        sets = np.flatnonzero((cls_of_set == t) & (cnt > 0))
        row_of_set[sets] = np.arange(sets.size)
        col = np.arange(_WIDTHS[t])[None, :]
        c = off[sets][:, None] + np.minimum(col, cnt[sets][:, None] - 1)
        usable = ~dup[c] & (col < cnt[sets][:, None])
        # (x, y NaN where not usable: no NaN is on the left of an edge)
        tables[t] = (np.where(usable, lx[c], np.nan), np.where(usable, ly[c], np.nan), lift[c])
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
        # every edge against every point of its set: edges grouped by the width their set's points
        # are padded to, one (edges x width) table per group (the padding never picked)
        s = seg[fa]
        cls = cls_of_set[s]
        corner = np.zeros(fa.size, np.int64)
        found = np.zeros(fa.size, bool)
        classes = np.flatnonzero(np.bincount(cls, minlength=len(_WIDTHS)))
        for t in classes.tolist():
            g = np.flatnonzero(cls == t) if classes.size > 1 else np.arange(fa.size)
            ga, gb, sg = fa[g], fb[g], s[g]
            tx, ty, tl = tables[t]
            r = row_of_set[sg]
            ax, ay = lx[ga][:, None], ly[ga][:, None]
            ex, ey = lx[gb][:, None] - ax, ly[gb][:, None] - ay
            ee = ex * ex + ey * ey
            dxc, dyc = np.take(tx, r, axis=0) - ax, np.take(ty, r, axis=0) - ay  # (np.take: faster row gathers)
            h = ex * dyc - ey * dxc  # > 0 on the left of a -> b
            # the lifted plane through a and b, tilted to pass through c: its tilt is this score, and
            # the smallest tilt gives the circle no other point is inside (the Delaunay corner)
            t_along = (dxc * ex + dyc * ey) / ee
            power = np.take(tl, r, axis=0) - ((1.0 - t_along) * lift[ga][:, None] + t_along * lift[gb][:, None])
            left = h > 1e-12 * ee
            with np.errstate(invalid="ignore", divide="ignore"):
                score = np.where(left, power / h, np.inf)
            pick = np.argmin(score, axis=1)  # the first smallest
            rows = np.arange(g.size)
            found[g] = np.isfinite(score[rows, pick])
            corner[g] = off[sg] + pick
        ta, tb, tc = fa[found], fb[found], corner[found]
        if ta.size:
            k_bc, k_ca = key(tb, tc), key(tc, ta)
            tris.append(_first_copies(ta, tb, tc, kk[found], k_bc, k_ca, closed))
            closed[k_bc] = True
            closed[k_ca] = True
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
    return t, seg[t[:, 0]]


def _first_copies(ta, tb, tc, k_ab, k_bc, k_ca, closed) -> np.ndarray:
    """The triangles (ta, tb, tc) found in one round from the edges ta -> tb (keys ``k_ab``,
    increasing; ``k_bc``, ``k_ca`` the keys of tb -> tc and tc -> ta), each once: a triangle found
    from two or three of its edges in the round (the same corners, turned) is kept where it was
    found first. (Once found, all its edges are closed: no later round finds it again.) ``closed``:
    the edges closed before the round's triangles close theirs (the round's edges among them)."""
    n = ta.size
    first = np.ones(n, bool)
    for k_other, corner in ((k_bc, ta), (k_ca, tb)):
        q = np.flatnonzero(closed[k_other])  # only a closed edge can be one of the round's
        j = np.minimum(np.searchsorted(k_ab, k_other[q]), n - 1)
        first[q[(k_ab[j] == k_other[q]) & (tc[j] == corner[q]) & (j < q)]] = False
    return np.column_stack([ta[first], tb[first], tc[first]])


def _lifted(off: np.ndarray, x: np.ndarray, y: np.ndarray, repeats: bool = True):
    """Per point of the sets: its set, local coordinates (the set's lowest x and y at 0), the
    perturbed lift x^2 + y^2 + tiny, whether it repeats an earlier point of its set (None without
    ``repeats``); and each set's squared extent. Both the triangulation and the point location use
    these very numbers."""
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
    dup = None
    if repeats:
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


def _repeated(off: np.ndarray, seg: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """:func:`_lifted`'s repeated points (a copy of an earlier point of its set), found by comparing
    every pair of points of each set in its own table row rather than sorting all sets together."""
    cnt = np.diff(off)
    dup = np.zeros(lx.size, bool)
    width = np.searchsorted(np.array(_WIDTHS), cnt)
    row = np.zeros(cnt.size, np.int64)
    local = ragged_arange(cnt)
    pt_width = width[seg]
    for t in np.unique(width[cnt > 0]).tolist():
        sets = np.flatnonzero(width == t)
        row[sets] = np.arange(sets.size)
        pts = np.flatnonzero(pt_width == t)
        w = _WIDTHS[t]
        r, c = row[seg[pts]], local[pts]
        X = np.full((sets.size, w), np.nan)
        Y = np.full((sets.size, w), np.nan)
        X[r, c], Y[r, c] = lx[pts], ly[pts]
        # every pair of a row: a point equal to one before it (NaN, the padding, equals none)
        eq = X[:, :, None] == X[:, None, :]
        eq &= Y[:, :, None] == Y[:, None, :]
        eq &= np.tri(w, k=-1, dtype=bool)
        dup[pts] = eq.any(axis=2)[r, c]
    return dup


#: relative distance from a set's hull within which a query counts as on its boundary
_BAND = 1e-7


def delaunay_locate(off: np.ndarray, x: np.ndarray, y: np.ndarray, qset: np.ndarray, qx: np.ndarray,
                    qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Locator.locate` of queries in the sets ``x[off[i]:off[i+1]], y[...]``."""
    return Locator(off, x, y).locate(qset, qx, qy)


#: the widths sets are padded to when located together (a set's points go to the narrowest that
#: holds them, its hull's vertices too)
_WIDTHS = (4, 8, 12, 16, 20, 24, 32, 48, MAX_POINTS)
_WIDTHS_ARRAY = np.array(_WIDTHS)
#: the widths a hull's vertices were summed over for its centre (by the set's number of points):
#: a sum's rounding depends on its length, so these stay
_SUM_WIDTHS = (8, 16, 32, MAX_POINTS)
#: a plane whose coefficients times a set's extent stay below this cannot make a height NaN
_SAFE = 1e300


class Locator:
    """Point location in :func:`delaunay_sets`'s triangulations of many small sets, without
    triangulating them.

    The Delaunay triangles are the lower faces of the lifted points (the same perturbed lift as
    :func:`delaunay_sets`), so the one above a query is the solution of a small linear program --
    the triangle holding the query whose lifted plane is lowest there -- found by the simplex
    method: starting from a triangle of the set's hull fan that holds the query, a point below the
    current triangle's plane replaces the corner the ratio test names, until no point is below
    (a few steps for a dozen points). Sets hold at most :data:`MAX_POINTS` points; their points and
    their hulls' vertices are laid out as rows of a few padded tables (:data:`_WIDTHS`) so that a
    step is a handful of whole-table operations."""

    def __init__(self, off: np.ndarray, x: np.ndarray, y: np.ndarray):
        from calib.canvas.hull import convex_hulls

        self.off = off = np.asarray(off, np.int64)
        self.x, self.y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n_sets = off.size - 1
        self.seg, self.lx, self.ly, self.lift, _, self.scale2 = _lifted(off, self.x, self.y, repeats=False)
        self.count = cnt = np.diff(off)
        self.extent = np.sqrt(self.scale2)
        widths = np.array(_WIDTHS)
        # the points of each set: a row of x, y and lift (inf for padding and repeated points, never
        # below a plane) in the table of its width; each row sorted by x, then y, tells the
        # repeated points (a copy of the one before; the first copy takes part) and the order the
        # hull's chains take
        self.width = np.searchsorted(widths, cnt)
        self.row = np.zeros(self.n_sets, np.int64)
        self.tables = [np.zeros((0, 3, w)) for w in _WIDTHS]
        self.dup = np.zeros(self.x.size, bool)
        local = ragged_arange(cnt)
        pt_width = self.width[self.seg]
        in_order = []
        for t in np.unique(self.width[cnt > 0]).tolist():
            sets = np.flatnonzero(self.width == t)
            self.row[sets] = np.arange(sets.size)
            pts = np.flatnonzero(pt_width == t)
            r, c = self.row[self.seg[pts]], local[pts]
            o, same = _sort_rows(r, c, self.lx[pts], self.ly[pts], sets.size, _WIDTHS[t])
            real = np.arange(_WIDTHS[t]) < cnt[sets][:, None]  # sorted, the padding comes last
            rr, cc = np.nonzero(real)
            p = off[sets[rr]] + o[rr, cc]
            self.dup[p] = same[rr, cc]
            in_order.append((sets[rr], p, same[rr, cc]))
            tab = np.zeros((sets.size, 3, _WIDTHS[t]))
            tab[:, 2] = np.inf
            tab[r, 0, c], tab[r, 1, c] = self.lx[pts], self.ly[pts]
            tab[r, 2, c] = np.where(self.dup[pts], np.inf, self.lift[pts])
            self.tables[t] = tab
        # the points that take part, in their sets' order, each set's sorted by x then y: the
        # order of convex_hulls' sweep (its lexsort, without sorting the sets together)
        valid = np.flatnonzero(~self.dup)
        v_index = np.cumsum(~self.dup) - 1
        v_off = offsets_of(np.bincount(self.seg[valid], minlength=self.n_sets))
        sweep = np.zeros(valid.size, np.int64)
        for sset, p, same in in_order:
            sset, p = sset[~same], p[~same]
            first = np.r_[True, sset[1:] != sset[:-1]] if sset.size else np.zeros(0, bool)
            start = np.flatnonzero(first)
            rank = np.arange(sset.size) - np.repeat(start, np.diff(np.r_[start, sset.size]))
            sweep[v_off[sset] + rank] = v_index[p]
        h_off, h_v, self.flat = convex_hulls(self.seg[valid], self.lx[valid], self.ly[valid], self.n_sets,
                                             order=sweep)
        #: hull vertices (point indices), counter-clockwise per set: ``hull[hull_off[i]:hull_off[i+1]]``
        self.hull_off, self.hull = h_off, valid[h_v]
        # the hull of each set: its vertices (then copies of the first), their coordinates and each
        # edge's outward unit normal and offset (distance = NX x + NY y + C; padding edges are
        # points: -inf), in the table of its width
        hcount = np.diff(h_off)
        self.hcount = hcount
        self.hwidth = np.searchsorted(widths, hcount)
        self.hrow = np.zeros(self.n_sets, np.int64)
        self.hulls = [None] * len(_WIDTHS)
        hlocal = ragged_arange(hcount)
        hseg = segment_ids(hcount)
        h_width = self.hwidth[hseg]
        for t in np.unique(self.hwidth[hcount > 0]).tolist():
            sets = np.flatnonzero((self.hwidth == t) & (hcount > 0))
            self.hrow[sets] = np.arange(sets.size)
            hv = np.flatnonzero(h_width == t)
            H = np.repeat(self.hull[h_off[sets]][:, None], _WIDTHS[t], axis=1)
            H[self.hrow[hseg[hv]], hlocal[hv]] = self.hull[hv]
            # (the padding's coordinates NaN: the fan never counts them)
            vertex = np.arange(_WIDTHS[t]) < hcount[sets][:, None]
            HX, HY = np.where(vertex, self.lx[H], np.nan), np.where(vertex, self.ly[H], np.nan)
            a, b = H, np.roll(H, -1, axis=1)
            ex, ey = self.lx[b] - self.lx[a], self.ly[b] - self.ly[a]
            norm = np.hypot(ex, ey)
            with np.errstate(invalid="ignore", divide="ignore"):
                NX, NY = ey / norm, -ex / norm
            C = -(NX * self.lx[a] + NY * self.ly[a])
            pad = norm == 0
            NX[pad], NY[pad], C[pad] = 0.0, 0.0, -np.inf
            self.hulls[t] = (H, HX, HY, NX, NY, C)

    def origin(self, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lowest x, lowest y) of the given (non-empty) sets: their local coordinates' origin."""
        first = self.off[:-1][sets]
        return self.x[first] - self.lx[first], self.y[first] - self.ly[first]

    def _by_hull(self, qset: np.ndarray):
        """(hull table, positions of the queries whose (non-flat) set's hull is in it)."""
        ok = ~self.flat[qset]
        hw = self.hwidth[qset]
        for t in np.unique(hw[ok]).tolist():
            yield t, np.flatnonzero(ok & (hw == t))

    def hull_distance(self, qset: np.ndarray, qlx: np.ndarray, qly: np.ndarray) -> np.ndarray:
        """Signed distance (local coordinates; > 0 outside) of each query to its set's hull (the
        largest over its edges); inf for a flat set."""
        qset = np.asarray(qset, np.int64)
        d = np.full(qset.size, np.inf)
        for t, q in self._by_hull(qset):
            NX, NY, C = (tab[self.hrow[qset[q]]] for tab in self.hulls[t][3:])
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
        # the triangle of the hull's fan that holds the query (or would, were it inside)
        kk = np.zeros(nq, np.int64)
        d = np.full(nq, np.inf)
        for t, q in self._by_hull(qset):
            kk[q], d[q] = self._fan(t, qset[q], qlx[q], qly[q])
        band = _BAND * np.maximum(self.extent[qset], 1.0)
        edge_q = np.flatnonzero((d <= band) & (d > -band))
        if edge_q.size:
            # on the boundary: a hair towards the hull's centre, then its fan triangle again
            cx, cy = self._centres(qset[edge_q])
            tx, ty = cx - qlx[edge_q], cy - qly[edge_q]
            step = 4 * band[edge_q] / np.maximum(np.hypot(tx, ty), 1e-300)
            qlx, qly = qlx.copy(), qly.copy()
            qlx[edge_q] += tx * step
            qly[edge_q] += ty * step
            for t, q in self._by_hull(qset[edge_q]):
                e = edge_q[q]
                kk[e], _ = self._fan(t, qset[e], qlx[e], qly[e])
        live = np.flatnonzero(d <= band)
        if live.size == 0:
            return corners, done
        # then the simplex method from there, the queries of each width of sets together
        first = self.hull_off[:-1][qset[live]]
        basis = np.column_stack([self.hull[first], self.hull[first + kk[live]], self.hull[first + kk[live] + 1]])
        width = self.width[qset[live]]
        for t in np.unique(width).tolist():
            q = np.flatnonzero(width == t)
            k = live[q]
            corners[k], done[k] = self._simplex(t, qset[k], qlx[k], qly[k], basis[q])
        return corners, done

    def _centres(self, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean of each set's hull vertices (summed over a row as wide as the set's
        :data:`_SUM_WIDTHS`, padded with zeros)."""
        m = self.hcount[sets]
        cx, cy = np.zeros(sets.size), np.zeros(sets.size)
        sw = np.searchsorted(np.array(_SUM_WIDTHS), self.count[sets])
        for t in np.unique(sw).tolist():
            q = np.flatnonzero(sw == t)
            j = np.arange(_SUM_WIDTHS[t])
            inner = j < m[q, None]
            hv = self.hull[np.where(inner, self.hull_off[sets[q], None] + j, 0)]
            cx[q] = np.where(inner, self.lx[hv], 0.0).sum(axis=1) / m[q]
            cy[q] = np.where(inner, self.ly[hv], 0.0).sum(axis=1) / m[q]
        return cx, cy

    def _fan(self, t, qset, qlx, qly):
        """The triangle of each set's hull fan (from its first vertex) that holds the query, or
        would if it were inside: (k, signed distance to the hull over the fan triangle's hull
        edges, > 0 outside); the sets' hulls in table ``t``."""
        _, HX, HY = self.hulls[t][:3]
        rows = self.hrow[qset]
        m = self.hcount[qset]
        hx, hy = HX[rows], HY[rows]
        ax, ay = hx[:, 0], hy[:, 0]
        # the vertices after the first on or to the right of the ray from it to the query
        cross = hx[:, 1:] - ax[:, None]
        cross *= (qly - ay)[:, None]
        other = hy[:, 1:] - ay[:, None]
        other *= (qlx - ax)[:, None]
        cross -= other
        kk = np.count_nonzero(cross >= 0, axis=1)  # (the padding is NaN: never)
        kk = np.clip(kk, 1, m - 2)
        ar = np.arange(qset.size)
        # the hull edges of the fan triangle: (v_k, v_k+1), and (v0, v1) / (v_m-1, v0) at the ends
        d = _edge_distance(hx[ar, kk], hy[ar, kk], hx[ar, kk + 1], hy[ar, kk + 1], qlx, qly)
        e = np.flatnonzero(kk == 1)
        d[e] = np.maximum(d[e], _edge_distance(ax[e], ay[e], hx[e, 1], hy[e, 1], qlx[e], qly[e]))
        e = np.flatnonzero(kk == m - 2)
        last = m[e] - 1
        d[e] = np.maximum(d[e], _edge_distance(hx[e, last], hy[e, last], ax[e], ay[e], qlx[e], qly[e]))
        return kk, d

    def _simplex(self, t: int, qset, qlx, qly, basis) -> tuple[np.ndarray, np.ndarray]:
        """The simplex method for queries inside their (non-flat) sets of table ``t``, from the
        bases ``basis`` (point indices)."""
        tab = self.tables[t]
        lx, ly, lift = self.lx, self.ly, self.lift
        nq = qset.size
        corners = np.full((nq, 3), -1, np.int64)
        done = np.ones(nq, bool)
        # the state of the queries still searching (``at``: their positions)
        at = np.arange(nq)
        b = basis.copy()
        rows = self.row[qset]
        base = self.off[:-1][qset]
        ext = self.extent[qset]
        tol = 1e-12 * self.scale2[qset]
        iters = 2 * self.count[qset] + 8
        it = 0
        while at.size:
            x0, y0, z0 = lx[b[:, 0]], ly[b[:, 0]], lift[b[:, 0]]
            d1x, d1y, d1z = lx[b[:, 1]] - x0, ly[b[:, 1]] - y0, lift[b[:, 1]] - z0
            d2x, d2y, d2z = lx[b[:, 2]] - x0, ly[b[:, 2]] - y0, lift[b[:, 2]] - z0
            den = d1x * d2y - d1y * d2x
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                alpha = (d1z * d2y - d1y * d2z) / den
                beta = (d1x * d2z - d1z * d2x) / den
                gamma = z0 - alpha * x0 - beta * y0
                safe = (np.abs(alpha) + np.abs(beta)) * ext + np.abs(gamma) <= _SAFE
            # the height of every point of the set over the current plane (no NaN where ``safe``)
            pts = tab[rows]
            with np.errstate(invalid="ignore", over="ignore"):
                r = np.multiply(alpha[:, None], pts[:, 0], out=np.empty(pts.shape[::2]))
                np.subtract(pts[:, 2], r, out=r)
                y_term = np.multiply(beta[:, None], pts[:, 1])
                r -= y_term
                r -= gamma[:, None]
            if not safe.all():
                u = np.flatnonzero(~safe)
                ru = r[u]
                ru[np.isnan(ru)] = np.inf
                r[u] = ru
            pick = np.argmin(r, axis=1)
            ar = np.arange(at.size)
            optimal = ~(r[ar, pick] < -tol)
            if optimal.any():
                corners[at[optimal]] = b[optimal]
            go = np.flatnonzero(~optimal)
            it += 1
            stuck = it >= iters[go]
            if stuck.any():
                done[at[go[stuck]]] = False
                go = go[~stuck]
            if go.size == 0:
                break
            # ratio test: the entering point's and the query's barycentric weights in the basis
            enter = base[go] + pick[go]
            v0x, v0y, v1x, v1y, dg, ax, ay = d1x[go], d1y[go], d2x[go], d2y[go], den[go], x0[go], y0[go]
            mu = _weights_in(v0x, v0y, v1x, v1y, dg, lx[enter] - ax, ly[enter] - ay)
            lam = _weights_in(v0x, v0y, v1x, v1y, dg, qlx[go] - ax, qly[go] - ay)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(mu > 1e-12, np.maximum(lam, 0.0) / mu, np.inf)
            leave = np.argmin(ratio, axis=1)
            b = b[go]
            b[np.arange(go.size), leave] = enter
            at, rows, base, ext, tol, iters = at[go], rows[go], base[go], ext[go], tol[go], iters[go]
            qlx, qly = qlx[go], qly[go]
        return corners, done


def _sort_rows(r: np.ndarray, c: np.ndarray, x: np.ndarray, y: np.ndarray, rows: int, width: int):
    """Points placed at (row ``r``, column ``c``) of a table ``rows`` x ``width`` (padding NaN),
    each row sorted by x, then y, then column (NaN last, the padding after the points): (the
    columns in sorted order, whether each sorted entry equals the one before it)."""
    X = np.full((rows, width), np.nan)
    Y = np.full((rows, width), np.nan)
    X[r, c], Y[r, c] = x, y
    o = np.argsort(Y, axis=1, kind="stable")
    o = np.take_along_axis(o, np.argsort(np.take_along_axis(X, o, axis=1), axis=1, kind="stable"), axis=1)
    xs, ys = np.take_along_axis(X, o, axis=1), np.take_along_axis(Y, o, axis=1)
    same = np.zeros((rows, width), bool)
    same[:, 1:] = (xs[:, 1:] == xs[:, :-1]) & (ys[:, 1:] == ys[:, :-1])
    return o, same


def _edge_distance(ax, ay, bx, by, qlx, qly):
    """Signed distance of queries to the lines a -> b (hull edges, counter-clockwise: > 0 outside)."""
    ex, ey = bx - ax, by - ay
    return (ey * (qlx - ax) - ex * (qly - ay)) / np.hypot(ex, ey)


def _weights_in(v0x, v0y, v1x, v1y, den, v2x, v2y) -> np.ndarray:
    """:func:`_weights` of points at (v2x, v2y) from corner a of triangles with sides v0 = b - a,
    v1 = c - a and ``den`` = v0 x v1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        w1 = (v2x * v1y - v1x * v2y) / den
        w2 = (v0x * v2y - v2x * v0y) / den
    return np.column_stack([1.0 - w1 - w2, w1, w2])


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
    cand = np.where(values == np.repeat(m, np.diff(off)), np.arange(values.size), values.size)
    return np.minimum.reduceat(cand, starts)
