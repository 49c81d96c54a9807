"""calib.canvas.lookup and the point location behind it: every pixel read where it falls equals
the raster's (to the last bits on shared triangle edges), stamps included, for every kind of
polygon; the Delaunay point location agrees with the triangulation."""
import numpy as np
import pytest

from calib.canvas.lookup import map_lookup
from calib.canvas.points import from_polygons
from calib.canvas.raster import barycentric, lattice_sites, pixel_set_units, rasterize
from calib.canvas.triangulate import Locator, delaunay_sets
from canvas_cases import scattered_detections


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def lattice(x0, y0, gw, gh, step, e=None, drop=()):
    ii, jj = np.meshgrid(np.arange(gw), np.arange(gh))
    pts = np.column_stack([x0 + ii.ravel() * step, y0 + jj.ravel() * step, np.zeros(ii.size)])
    pts[:, 2] = 0.2 + 0.01 * np.arange(ii.size) if e is None else e
    return np.delete(pts, list(drop), axis=0)


def every_pixel(fp):
    """(unit, x, y) of every pixel of every raster window, with the raster's values."""
    r = rasterize(fp)
    u = r.unit_of_value
    py, px = np.divmod(np.arange(r.values.size) - r.off[u], r.w[u])
    return r, u, px + r.x0[u], py + r.y0[u]


rng = np.random.default_rng(7)
CASES = {
    "whole-degree lattice": [[lattice(100, 40, 6, 5, 3)]],
    "lattice with holes": [[lattice(10, 10, 7, 6, 2, drop=(0, 8, 9, 20, 33))]],
    "lattice off whole degrees": [[lattice(200.5, 30.25, 6, 5, 1.5)]],
    "scattered peaks": [[np.column_stack([rng.random(n) * 20 + 50, rng.random(n) * 12 + 90, rng.random(n) + 0.1])]
                        for n in (3, 5, 9, 14, 20)],
    "integer peaks (ties)": [[np.column_stack([rng.integers(0, 6, 7) + 300.0, rng.integers(0, 6, 7) + 60.0,
                                               rng.random(7) + 0.1])] for _ in range(12)],
    "pixel set": [[np.column_stack([*np.divmod(np.arange(12), 4)[::-1], np.linspace(0.1, 1, 12)]) + [20, 20, 0]]],
    "one and two points": [[P([10.4, 20.6, 3.0])], [P([10, 5, 1], [14.5, 5.5, 2])]],
    "collinear": [[P([10, 5, 1], [12, 5, 2], [14, 5, 3])]],
    "thin triangle holding no pixel": [[P([10.2, 5.2, 1], [10.4, 5.3, 2], [10.3, 5.45, 3])]],
    "two lobes": [[lattice(100, 40, 5, 5, 3), P([130.5, 41.2, 0.5], [136.1, 44.4, 0.7], [131.2, 48.9, 0.2])]],
    "over the seam": [[P([355, 50, 1], [5, 50, 2], [0, 60, 1], [358.5, 57.5, 3])]],
    "large polygon (Qhull)": [[lattice(0, 165, 40, 4, 3, drop=tuple(range(0, 160, 3)))]],
    "zero and negative intensities": [[P([40, 40, 0], [46, 40, 1], [40, 46, -1], [46, 46, 2])]],
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_pixel_equals_the_raster(name):
    fp = from_polygons(CASES[name])
    m = map_lookup(fp)
    r, u, px, py = every_pixel(fp)
    assert (m.x0 == r.x0).all() and (m.y0 == r.y0).all() and (m.w == r.w).all() and (m.h == r.h).all()
    assert m.stamped.tolist() == r.stamped.tolist()
    v = m.at(u, px, py)
    assert v == pytest.approx(r.values, rel=1e-12, abs=1e-300)
    # off the windows: 0; bilinear samples as the raster's
    assert m.at([0], [int(m.x0[0]) - 1], [int(m.y0[0])])[0] == 0
    qx = m.x0[u[:50]] + rng.random(min(50, u.size)) * m.w[u[:50]]
    qy = m.y0[u[:50]] + rng.random(min(50, u.size)) * m.h[u[:50]]
    assert m.sample(u[:50], qx, qy) == pytest.approx(r.sample(u[:50], qx, qy), rel=1e-12, abs=1e-300)


def test_only_what_the_rules_do_not_settle_is_rasterized():
    fp = from_polygons([CASES["whole-degree lattice"][0], CASES["scattered peaks"][2], CASES["pixel set"][0],
                        CASES["zero and negative intensities"][0], CASES["large polygon (Qhull)"][0]])
    assert map_lookup(fp).fallback.tolist() == [False, False, False, True, False]


def test_a_ramp_is_read_by_hand():
    # e = x - 100 over the triangle (100, 10), (104, 10), (100, 14): pixel (102, 11) holds 2
    m = map_lookup(from_polygons([[P([100, 10, 0.001], [104, 10, 4], [100, 14, 0.001])]]))
    assert m.at([0, 0, 0], [102, 103, 104], [11, 12, 13]) == pytest.approx([2.0005, 0, 0], abs=1e-3)


# ---------------------------------------------------------------- point location
@pytest.mark.parametrize("integer", [False, True])
def test_located_triangles_are_the_triangulations(integer):
    n = 300
    cnt = rng.integers(3, 25, n)
    off = np.r_[0, np.cumsum(cnt)]
    if integer:
        x, y = rng.integers(0, 7, off[-1]) + 50.0, rng.integers(0, 7, off[-1]) + 20.0
    else:
        x, y = rng.random(off[-1]) * 20, rng.random(off[-1]) * 10 + 5
    tri, tset = delaunay_sets(off, x, y)
    by_set = {}
    for k, s in enumerate(tset):
        by_set.setdefault(int(s), []).append(tri[k])
    qset = np.repeat(np.arange(n), 15)
    qx = np.floor(rng.random(qset.size) * 24) - 2 + (50 if integer else 0)
    qy = np.floor(rng.random(qset.size) * 14) + (18 if integer else 3)
    corners, done = Locator(off, x, y).locate(qset, qx, qy)
    assert done.all()
    for k in range(qset.size):
        holding = {tuple(sorted(t)) for t in by_set.get(int(qset[k]), [])
                   if min(barycentric(x[t[0]], y[t[0]], x[t[1]], y[t[1]], x[t[2]], y[t[2]], qx[k], qy[k])) >= -1e-9}
        if corners[k, 0] < 0:
            assert not holding
        elif holding:
            assert tuple(sorted(corners[k])) in holding
        else:  # on the hull's boundary within 1e-7, a hair inside: its weights there say it is out
            c = corners[k]
            assert min(barycentric(x[c[0]], y[c[0]], x[c[1]], y[c[1]], x[c[2]], y[c[2]], qx[k], qy[k])) < -1e-9


# ---------------------------------------------------------------- lattices, pixel sets
def test_lattice_sites_need_a_cell_with_three_corners():
    checker = lattice(0, 0, 4, 4, 2, drop=(1, 3, 4, 6, 9, 11, 12, 14))  # half the sites, no cell of 3
    corner = lattice(50, 0, 4, 4, 2, drop=(0,))
    fp = from_polygons([[checker], [corner]])
    polys = np.arange(2)
    with_cells = lattice_sites(fp, fp.x, polys)
    without = lattice_sites(fp, fp.x, polys, cells=False)
    assert with_cells.is_lat.tolist() == without.is_lat.tolist() == [False, True]
    assert without.gw.tolist()[1] == 4 and without.step.tolist()[1] == 2 and without.whole.tolist() == [False, True]
    cseg, ci, cj, _, code = with_cells.cells
    assert (ci[0], cj[0], code[0]) == (0, 0, 0b1110)  # the cell missing its (0, 0) corner


def test_pixel_sets_and_lattices_of_integer_points():
    block = np.column_stack([*np.divmod(np.arange(9), 3)[::-1], np.ones(9)]) + [10, 10, 0]
    spaced = lattice(10, 10, 3, 3, 2)
    fp = from_polygons([[block], [spaced], [block[:2]]])
    assert pixel_set_units(fp, fp.x).tolist() == [True, False, False]


# -- filled maps: the grown raster's nearest fill, drawn on the points' box only -------------------
def _filled_cases():
    rng = np.random.default_rng(11)
    dets = scattered_detections(rng, 24, [1, 2, 3, 6, 12, 20])
    dets.append([lattice(10, 10, 7, 6, 2, drop=(0, 8, 9, 20, 33))])  # holes: not convex-like
    dets.append([lattice(100, 40, 6, 5, 3)])
    dets.append([P([20, 20, 1]), P([30, 25, 2])])  # two polygons of one point
    ring = np.arange(0.0, 360.0, 10.0)  # about the whole circle: clipped once grown by 10.5
    dets.append([np.column_stack([ring, 90 + (ring % 20 == 0), 1 + ring / 360])])
    dets.append([P([5, 5, 0.0], [9, 5, 0.0], [7, 8, 0.0])])  # no support
    return from_polygons(dets)


@pytest.mark.parametrize("grow", [0.0, 3.0, 10.5])
def test_filled_maps_equal_the_grown_rasters_nearest_fill(grow):
    from calib.canvas.lookup import filled_maps

    fp = _filled_cases()
    fm = filled_maps(fp, grow)
    g = rasterize(fp, pad=grow)
    assert np.array_equal(fm.x0, g.x0) and np.array_equal(fm.w, g.w)
    assert np.array_equal(fm.y0, g.y0) and np.array_equal(fm.h, g.h)
    assert (~fm.shape.convex & (fm.raster.peak > 0)).sum() >= 2  # read by their runs
    assert (fm.fallback[-2] >= 0) == (grow > 10)  # the whole circle: clipped once grown
    assert (np.diff(fm.raster.off)[fm.fallback >= 0] == 0).all()  # drawn once: grown, not on its points' box too
    assert np.array_equal(fm.points.x, fp.seam_x) and np.array_equal(fm.points.det_off, fp.det_off)
    # every pixel of the grown windows and a ring beyond them
    u = np.repeat(np.arange(g.n), (g.w + 4) * (g.h + 4))
    loc = np.concatenate([np.arange(k) for k in ((g.w + 4) * (g.h + 4)).tolist()])
    py, px = np.divmod(loc, g.w[u] + 4)
    px, py = px + g.x0[u] - 2, py + g.y0[u] - 2
    assert np.array_equal(fm.at(u, px, py), g.fill_nearest(u, px, py))
    # bilinear samples: whole, half and arbitrary positions
    qx = px + np.tile([0.0, 0.5, 0.25, 0.0], u.size // 4 + 1)[: u.size]
    qy = py + np.tile([0.0, 0.0, 0.75, 0.5], u.size // 4 + 1)[: u.size]
    assert np.array_equal(fm.sample(u, qx, qy), g.sample(u, qx, qy, value_at=g.fill_nearest))


def test_filled_maps_window_reads_equal_at():
    """``_on_window`` (pixels known on the grown windows) gives ``at``'s bytes, fallback units
    (the whole circle, clipped once grown) among the others; ``sample`` built on it gives the
    bytes of :func:`bilinear` over ``at``."""
    from calib.canvas.lookup import filled_maps
    from calib.canvas.raster import bilinear

    fp = _filled_cases()
    fm = filled_maps(fp, 10.5)
    assert (fm.fallback >= 0).any() and (fm.fallback < 0).any()
    u = np.repeat(np.arange(fp.n), fm.w * fm.h)
    loc = np.concatenate([np.arange(k) for k in (fm.w * fm.h).tolist()])
    py, px = np.divmod(loc, fm.w[u])
    px, py = px + fm.x0[u], py + fm.y0[u]
    assert fm._on_window(u, px, py).tobytes() == fm.at(u, px, py).tobytes()
    keep = fm.fallback[u] < 0  # no fallback unit read: the one-raster path
    assert fm._on_window(u[keep], px[keep], py[keep]).tobytes() == fm.at(u[keep], px[keep], py[keep]).tobytes()
    qx = px + np.tile([0.0, 0.5, 0.25, 0.0, -0.5], u.size // 5 + 1)[: u.size]
    qy = py + np.tile([0.0, 0.0, 0.75, 0.5, 0.0], u.size // 5 + 1)[: u.size]
    want = bilinear(fm.x0, fm.y0, fm.w, fm.h, fm.at, u, qx, qy)
    assert fm.sample(u, qx, qy).tobytes() == want.tobytes()
