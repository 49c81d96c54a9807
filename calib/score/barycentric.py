"""Barycentric transforms of a 2-D Delaunay triangulation, bit-identical to scipy's, vectorized.

``scipy.spatial.Delaunay.transform`` solves one 2 x 2 system per triangle with LAPACK (``dgesv``,
then ``dgecon``): a few microseconds of call overhead each, half the time of rendering a dense GT
polygon. LAPACK's steps for a 2 x 2 system are few and fixed, so they are repeated here on all
triangles at once, in the same order and rounding:

* ``dgetf2``: pivot = the first entry of largest magnitude in column 0 (``idamax``); the
  multiplier l = a10 * (1 / pivot); u11 = a11 - l * u01;
* ``dgetrs`` on the identity: unit-lower then upper solve, the upper one multiplying by the
  inverted diagonal as OpenBLAS' trsm kernels do: x1 = y1 * (1 / u11), x0 = (y0 - x1 * u01) *
  (1 / pivot). Optimized kernels fuse that last update into one FMA; which of the two forms this
  machine's BLAS uses is measured once per process (:func:`variant`), and when neither matches
  scipy on a test battery, scipy's own transforms are used.

A triangle scipy would mark degenerate (``dgecon``'s reciprocal condition below 1000 eps, all
NaN) is never certified here: any triangle with a condition number above 1e8 is left to scipy.
The FMA is emulated exactly (Dekker's product split; the rare results within 2^-30 of a rounding
tie are decided in exact rational arithmetic).
"""
from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np

_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitting constant
_MAX_COND = 1e8  # certify only triangles far from scipy's degeneracy test (rcond < 2.2e-13)
_TIE_SLACK = 2.0**-30
_variant: str | None | bool = False  # False: not measured yet
_MEASURING = threading.Lock()  # threads sharing this process measure it once


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p = fl(a * b) and the exact error e = a * b - p (Dekker; exact barring over/underflow)."""
    p = a * b
    c = _SPLIT * a
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = _SPLIT * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


def fma_neg(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correctly rounded y - a * b (one rounding, as an FMA computes it), element-wise."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing splits are redone exactly below
        p, e = _two_product(a, b)
    s = y - p
    bb = s - y
    t = (y - (s - bb)) + (-p - bb)  # y - p = s + t exactly (Knuth's two-sum)
    u = t - e
    r = s + u
    # r is the correctly rounded y - a*b unless y - a*b sits within a hair of a rounding tie of r
    rho = (s - r) + u  # ~ the exact residual y - a*b - r
    up = np.nextafter(r, np.inf) - r
    down = r - np.nextafter(r, -np.inf)
    half = np.where(rho > 0, up, down) * 0.5
    exact = (t == 0) & (e == 0)  # y - a*b = y - p = s, representable: r = s
    unsure = ~((np.abs(rho) < half * (1.0 - _TIE_SLACK)) | exact) & np.isfinite(r)
    # Dekker's split needs |a|, |b| well inside the exponent range and a product that does not underflow
    big = (np.abs(a) > 1e150) | (np.abs(b) > 1e150)
    unsure |= (big | ((p != 0) & (np.abs(p) < 1e-280))) & np.isfinite(a) & np.isfinite(b)
    for i in np.flatnonzero(unsure):  # exact rational arithmetic: float() rounds correctly
        r[i] = float(Fraction(float(y[i])) - Fraction(float(a[i])) * Fraction(float(b[i])))
    return r


def _transforms(points: np.ndarray, simplices: np.ndarray, fused: bool) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 2) transforms of the triangles and (n,) bool: certified (finite, well conditioned)."""
    r = points[simplices[:, 2]]
    a = points[simplices[:, 0]] - r  # LAPACK's matrix, row j: vertex j's offset from vertex 2
    b = points[simplices[:, 1]] - r
    a0, a1, b0, b1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    swap = np.abs(b0) > np.abs(a0)  # idamax keeps the first of equal magnitudes
    p0, p1 = np.where(swap, b0, a0), np.where(swap, b1, a1)  # the pivot row
    o0, o1 = np.where(swap, a0, b0), np.where(swap, a1, b1)
    out = np.empty((simplices.shape[0], 3, 2), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rp = 1.0 / p0
        lo = o0 * rp
        u11 = o1 - lo * p1
        ru = 1.0 / u11
        one, zero = swap.astype(np.float64), (~swap).astype(np.float64)
        for k, (y0, e1) in enumerate(((zero, one), (one, zero))):  # identity column k, pivot-permuted
            x1 = (e1 - lo * y0) * ru
            x0 = (fma_neg(x1, p1, y0) if fused else y0 - x1 * p1) * rp
            out[:, k, 0] = x0
            out[:, k, 1] = x1
        out[:, 2, :] = r
        # a bound on the condition number in either orientation (1- and inf-norms)
        A0, A1, B0, B1 = np.abs(a0), np.abs(a1), np.abs(b0), np.abs(b1)
        m_norm = np.maximum(np.maximum(A0 + B0, A1 + B1), np.maximum(A0 + A1, B0 + B1))
        X = np.abs(out[:, :2, :])
        X00, X01, X10, X11 = X[:, 0, 0], X[:, 0, 1], X[:, 1, 0], X[:, 1, 1]
        i_norm = np.maximum(np.maximum(X00 + X10, X01 + X11), np.maximum(X00 + X01, X10 + X11))
        ok = (m_norm * i_norm < _MAX_COND) & np.isfinite(out[:, :2, :].sum(axis=(1, 2)))
    return out, ok


def _battery():
    """Triangulations like the scorer's: random points, float32-scaled pixel lattices (dense GT
    blobs, degenerate Delaunay) and 3 x 3 grids, near-flat triangles included."""
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(20261126)
    sx, sy = np.float32(100 / 360), np.float32(50 / 180)
    yy, xx = np.mgrid[0:24, 0:30]
    disc = (xx - 15) ** 2 + (yy - 12) ** 2 < 120
    lattice = np.column_stack([(xx[disc] + 101).astype(np.float32) * sx, (yy[disc] + 37).astype(np.float32) * sy])
    grid = np.column_stack([np.tile([0.0, 1.3, 2.6], 3) + 40.7, np.repeat([0.0, 1.1, 2.2], 3) + 20.3])
    sets = [rng.uniform(0, 200, (200, 2)) * [1.0, 0.25], lattice.astype(np.float64), grid,
            np.column_stack([rng.uniform(0, 5, 60), rng.uniform(0, 5, 60) * 1e-3]),
            np.round(rng.uniform(0, 30, (150, 2)), 1)]
    return [Delaunay(p) for p in sets]


def variant() -> str | None:
    """"fused" or "plain": the form of the last update that reproduces scipy's transforms on
    this machine (measured once per process), or None when neither does."""
    global _variant
    with _MEASURING:
        if _variant is False:
            _variant = _measure()
    return _variant


def _measure() -> str | None:
    tris = _battery()
    for name in ("fused", "plain"):
        good = True
        for tri in tris:
            T, ok = _transforms(tri.points, tri.simplices, name == "fused")
            ref = tri.transform
            if (not np.array_equal(T[ok], ref[ok])) or ok.mean() < 0.5:
                good = False
                break
        if good:
            probe = tris[2]
            mine, _ = _transforms(probe.points, probe.simplices, name == "fused")
            probe._transform = mine  # scipy's cache of its transforms: ours must be read back
            return name if probe.transform is mine else None
    return None


#: triangles whose transforms are computed together (elementwise: the same numbers in any run)
_TRANSFORM_RUN = 8192


def install_transforms(tris: list) -> None:
    """Give each Delaunay triangulation in ``tris`` its barycentric transforms (scipy's
    ``transform``), computed for all of them together (vectorized, a run of triangles at a time)
    where certified; a triangulation with any uncertified triangle computes its own with scipy when
    asked."""
    form = variant()
    if form is None or not tris:
        return
    n_pts = np.array([t.points.shape[0] for t in tris])
    n_s = np.array([t.simplices.shape[0] for t in tris])
    points = np.concatenate([t.points for t in tris])
    simplices = np.concatenate([t.simplices for t in tris]) + np.repeat(np.cumsum(n_pts) - n_pts, n_s)[:, None]
    # a run of triangles at a time: the ~40 temporaries of a whole batch (hundreds of thousands of
    # triangles) are fresh pages from the kernel on every call, 2.5 x the time of small reused ones
    total = simplices.shape[0]
    T = np.empty((total, 3, 2), dtype=np.float64)
    ok = np.empty(total, dtype=bool)
    for a in range(0, total, _TRANSFORM_RUN):
        T[a : a + _TRANSFORM_RUN], ok[a : a + _TRANSFORM_RUN] = _transforms(points, simplices[a : a + _TRANSFORM_RUN],
                                                                           form == "fused")
    start = 0
    for tri, n in zip(tris, n_s.tolist()):
        if ok[start : start + n].all():
            tri._transform = T[start : start + n]
        start += n
