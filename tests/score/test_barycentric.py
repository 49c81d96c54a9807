"""calib.score.barycentric: scipy's Delaunay transforms, bit for bit, without LAPACK per triangle."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy.spatial import Delaunay

from calib.score import barycentric
from calib.score.barycentric import _transforms, fma_neg, install_transforms, variant


def exact(y: float, a: float, b: float) -> float:
    return float(Fraction(y) - Fraction(a) * Fraction(b))  # rounds the exact value once


def test_fma_neg_rounds_once_like_a_fused_multiply_add():
    rng = np.random.default_rng(0)
    a = np.concatenate([
        rng.uniform(-5, 5, 3000),
        rng.uniform(0.5, 2, 3000),  # with b below: 1 - a*b cancels
        rng.integers(1, 2**27, 3000) * 2.0 ** rng.integers(-60, -20, 3000),  # short mantissas: exact ties
        [0.0, -0.0, 0.75, 1.5, 3.0, 1e302, 3e-160, 1e-300],  # and the exponent range's ends
    ])
    b = np.concatenate([
        rng.uniform(-5, 5, 3000),
        1 / a[3000:6000] * (1 + rng.normal(0, 1e-12, 3000)),
        rng.integers(1, 2**27, 3000) * 2.0 ** rng.integers(-40, 5, 3000),
        [0.3, 0.3, 0.0, 2.0 / 3.0, 1.0 / 3.0, 1.000001e-302, 1.7e-160, 1e-10],
    ])
    y = rng.choice([0.0, 1.0], a.size)
    got = fma_neg(a.copy(), b.copy(), y)
    want = np.array([exact(*t) for t in zip(y.tolist(), a.tolist(), b.tolist())])
    np.testing.assert_array_equal(got, want)
    # 1/3 is rounded down, so 1 - 3 * (1/3) is a tiny positive number that only one rounding keeps
    one_third = 1.0 / 3.0
    assert fma_neg(np.array([3.0]), np.array([one_third]), np.array([1.0]))[0] == exact(1.0, 3.0, one_third) != 0.0
    assert 1.0 - 3.0 * one_third == 0.0  # the unfused form loses it


def triangulations():
    rng = np.random.default_rng(7)
    sx, sy = np.float32(100 / 360), np.float32(50 / 180)
    yy, xx = np.mgrid[-15:16, -15:16]
    disc = xx**2 + yy**2 < 150
    blob = np.column_stack([((xx[disc] + 200).astype(np.float32) * sx), ((yy[disc] + 60).astype(np.float32) * sy)])
    grid = np.column_stack([np.tile([0.0, 2.1, 4.2], 3) + 12.5, np.repeat([0.0, 1.7, 3.4], 3) + 30.25])
    sets = [rng.uniform(0, 200, (300, 2)) * [1.0, 0.25], blob.astype(np.float64), grid,
            np.round(rng.uniform(0, 50, (200, 2)), 1), rng.normal(0, 1, (100, 2)) * [1.0, 1e-4]]
    return [Delaunay(p) for p in sets]


def test_transforms_equal_scipys_on_certified_triangles():
    form = variant()
    if form is None:
        pytest.skip("this machine's BLAS solves 2 x 2 systems in neither known form: scipy's transforms are used")
    certified = 0
    for tri in triangulations():
        mine, ok = _transforms(tri.points, tri.simplices, form == "fused")
        ref = tri.transform
        np.testing.assert_array_equal(mine[ok], ref[ok])
        assert not np.isnan(ref[ok]).any()  # a triangle scipy finds degenerate is never certified
        certified += int(ok.sum())
    assert certified > 1000


def test_ill_conditioned_triangles_are_not_certified():
    # a sliver: its vertices almost on one line (condition number about 1e12)
    pts = np.array([[0.0, 0.0], [1.0, 1e-12], [2.0, 0.0], [1.0, 5.0]])
    tri = Delaunay(pts)
    _, ok = _transforms(tri.points, tri.simplices, True)
    r = tri.points[tri.simplices]
    u, v = r[:, 0] - r[:, 2], r[:, 1] - r[:, 2]
    area = np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])
    assert not ok[area < 1e-9].any()
    assert ok[area > 1].all()


@pytest.mark.parametrize("run", [None, 7])  # 7: runs of triangles that cut across triangulations
def test_installed_transforms_are_the_ones_scipy_reads(run, monkeypatch):
    if run is not None:
        monkeypatch.setattr(barycentric, "_TRANSFORM_RUN", run)
    if variant() is None:
        pytest.skip("no vectorized transforms on this machine")
    tris = triangulations()
    refs = [Delaunay(t.points).transform for t in tris]
    install_transforms(tris)
    q = np.random.default_rng(1).uniform(0, 60, (500, 2))
    for tri, ref in zip(tris, refs):
        np.testing.assert_array_equal(tri.transform, ref)  # (uncertified ones: scipy computes its own)
        fresh = Delaunay(tri.points)
        np.testing.assert_array_equal(tri.find_simplex(q), fresh.find_simplex(q))


def test_without_a_matching_form_scipy_computes_the_transforms(monkeypatch):
    monkeypatch.setattr(barycentric, "_variant", None)
    tri = triangulations()[2]
    install_transforms([tri])
    assert tri._transform is None  # left for scipy to compute on first use
    np.testing.assert_array_equal(tri.transform, Delaunay(tri.points).transform)
