"""The grown hulls of the ``hull`` emitter: the Minkowski sum with the ring (``ring_sums``) is what
the hull of every grown point gives, bit for bit, wherever it answers; ``hull_regions`` is that
hull everywhere."""
from __future__ import annotations

import numpy as np
import pytest

from calib.canvas.hull import convex_hulls, ring_sums
from calib.canvas.points import offsets_of, segment_ids
from calib.stages.emit.hull import _RING, hull_regions

ANG = np.linspace(0.0, 2 * np.pi, _RING, endpoint=False)
COS, SIN = np.cos(ANG), np.sin(ANG)


def _all_grown(seg, x, y, n, r):
    """The oracle: the hull of every hull vertex plus every ring offset (y clipped to [0, 180])."""
    off, verts, flat = convex_hulls(seg, x, y, n)
    vs = segment_ids(np.diff(off))
    gx = (x[verts][:, None] + r[vs][:, None] * COS[None, :]).ravel()
    gy = np.clip((y[verts][:, None] + r[vs][:, None] * SIN[None, :]).ravel(), 0.0, 180.0)
    g_off, g_verts, _ = convex_hulls(np.repeat(vs, _RING), gx, gy, n)
    return g_off, gx[g_verts], gy[g_verts]


def _sets(groups):
    seg = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]).astype(np.int64)
    xy = np.concatenate([np.asarray(g, float).reshape(-1, 2) for g in groups])
    return seg, xy[:, 0].copy(), xy[:, 1].copy(), len(groups)


def _check(groups, r):
    """ring_sums answers exactly the oracle's vertices where it answers; returns which it answered."""
    seg, x, y, n = _sets(groups)
    r = np.broadcast_to(np.asarray(r, float), (n,)).copy()
    off, verts, _ = convex_hulls(seg, x, y, n)
    ok, f_off, fx, fy = ring_sums(off, x[verts], y[verts], r, COS, SIN, 0.0, 180.0)
    g_off, gx, gy = _all_grown(seg, x, y, n, r)
    for i in np.flatnonzero(ok):
        a, b = f_off[i], f_off[i + 1]
        c, d = g_off[i], g_off[i + 1]
        assert np.array_equal(fx[a:b], gx[c:d]) and np.array_equal(fy[a:b], gy[c:d]), i
    assert np.diff(f_off)[~ok].sum() == 0
    return ok


def test_triangle_sum_has_one_vertex_per_hull_vertex_and_ring_edge():
    # a triangle's normals turn once around: 3 hull vertices + 16 ring edges crossed = 19 vertices
    ok = _check([[(100, 50), (110, 50), (100, 60)]], 8.0)
    assert ok.all()
    seg, x, y, n = _sets([[(100, 50), (110, 50), (100, 60)]])
    off, verts, _ = convex_hulls(seg, x, y, n)
    _, f_off, fx, fy = ring_sums(off, x[verts], y[verts], np.array([8.0]), COS, SIN, 0.0, 180.0)
    assert f_off[-1] == 3 + _RING
    # starts at the lowest of the leftmost: (100 - 8, 50), then counter-clockwise (down first)
    assert (fx[0], fy[0]) == (100 + 8.0 * COS[8], 50 + 8.0 * SIN[8])
    assert fy[1] < fy[0]


def test_vertical_and_horizontal_edges_start_at_the_lowest_leftmost():
    # a square: its left edge grown by direction pi is a vertical edge of the sum (x exactly 92)
    ok = _check([[(100, 50), (110, 50), (110, 60), (100, 60)]], 8.0)
    assert ok.all()


@pytest.mark.parametrize("seed", range(6))
def test_random_sets_match_the_hull_of_all_grown_points(seed):
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(300):
        k = int(rng.integers(3, 40))
        cx, cy = rng.uniform(-20, 380), rng.uniform(10, 170)
        pts = np.column_stack([cx + rng.normal(0, rng.uniform(0.5, 15), k), cy + rng.normal(0, rng.uniform(0.5, 10), k)])
        if seed % 2:  # whole degrees, as lattice detections
            pts = np.round(pts)
        groups.append(pts)
    r = rng.choice([8.0, 3.0, 0.5, 14.0], size=len(groups))
    ok = _check(groups, r)
    assert ok.mean() > 0.6  # the poles and the ties are the only ones left out


def test_poles_collinear_tiny_and_ties_are_left_to_the_sweep():
    groups = [
        [(100, 2), (110, 2), (105, 6)],  # grows past the pole y = 0
        [(100, 176), (110, 178), (105, 179)],  # past y = 180
        [(100, 50), (110, 50), (120, 50)],  # collinear: flat, no hull
        [(100, 50), (110, 50)],  # two points
        # an edge whose normal is on a ring cone's border: slope tan(11.25 deg) exactly as a float
        [(100, 50), (100 + 10 * np.cos(np.pi / 16), 50 + 10 * np.sin(np.pi / 16)), (100, 60)],
        [(100, 50), (100.0001, 50), (100, 60)],  # an edge shorter than the least answered
        [(0, 90), (1, 90), (0.5, 92)],  # radius too small to answer
        [(355, 40), (365, 42), (360, 50)],  # across the seam (x unwrapped): answered
    ]
    r = np.array([8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 1e-3, 8.0])
    ok = _check(groups, r)
    assert ok.tolist() == [False] * 7 + [True]


def test_hull_regions_equal_the_hull_of_all_grown_points_everywhere():
    rng = np.random.default_rng(7)
    groups = [rng.uniform([0, 0], [30, 20], (int(k), 2)) + rng.uniform([-10, -5], [370, 175])
              for k in rng.integers(1, 12, 400)]
    groups += [[(100, 2), (110, 2), (105, 6)], [(100, 50), (110, 50), (120, 50)], [(5, 5)], [(3, 179), (4, 179.5)]]
    seg, x, y, n = _sets(groups)
    for pad in (8.0, 3.0, 0.0):
        off, verts, flat = convex_hulls(seg, x, y, n)
        # the oracle: grow every set's hull (a flat set's distinct points by min_radius at least)
        r = np.where(flat, max(pad, 1.5), pad)
        o_off, ox, oy = _all_grown_with_flat(seg, x, y, n, r, off, verts, flat)
        h_off, hx, hy = hull_regions(seg, x, y, n, pad=pad)
        assert np.array_equal(h_off, o_off) and np.array_equal(hx, ox) and np.array_equal(hy, oy)


def _all_grown_with_flat(seg, x, y, n, r, off, verts, flat):
    vs = segment_ids(np.diff(off))
    o = np.lexsort((y, x, seg))
    keep = np.r_[True, (np.diff(seg[o]) != 0) | (np.diff(x[o]) != 0) | (np.diff(y[o]) != 0)]
    us, ux, uy = seg[o][keep], x[o][keep], y[o][keep]
    grow = r > 0
    bs = np.concatenate([vs[grow[vs]], us[flat[us] & grow[us]]])
    bx = np.concatenate([x[verts][grow[vs]], ux[flat[us] & grow[us]]])
    by = np.concatenate([y[verts][grow[vs]], uy[flat[us] & grow[us]]])
    gx = (bx[:, None] + r[bs][:, None] * COS[None, :]).ravel()
    gy = np.clip((by[:, None] + r[bs][:, None] * SIN[None, :]).ravel(), 0.0, 180.0)
    g_off, g_verts, _ = convex_hulls(np.repeat(bs, _RING), gx, gy, n)
    counts = np.where(grow, np.diff(g_off), np.diff(off))
    sx = np.concatenate([x[verts][~grow[vs]], gx[g_verts]])
    sy = np.concatenate([y[verts][~grow[vs]], gy[g_verts]])
    ss = np.concatenate([vs[~grow[vs]], np.repeat(bs, _RING)[g_verts]])
    o = np.argsort(ss, kind="stable")
    return offsets_of(counts), sx[o], sy[o]
