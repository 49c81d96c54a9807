"""The dcase2026-coco energy renderer: the official window rule on hand-computed cases (row 0,
the 0/360 seam, x in 179..180 at a pole where both window ends overflow), and the batch (fast)
renderer against the one-triplet-at-a-time reference, bit for bit."""
from __future__ import annotations

import math

import numpy as np
import pytest

from calib.score.coco_render import (
    COLS,
    column_pieces,
    column_span,
    kernel_constants,
    render_energies,
    render_energy,
    render_energy_reference,
    row_window,
    triplet_direction,
    triplet_windows,
)

RENDERERS = [render_energy_reference, render_energy]
CUTOFF, _ = kernel_constants(6.0)


def _window(x: float, y: float):
    az0, el0 = triplet_direction(x, y)
    return row_window(el0, CUTOFF), column_pieces(*column_span(az0, el0, CUTOFF))


def _support(m: np.ndarray) -> tuple[list[int], list[int]]:
    return np.flatnonzero(m.any(axis=1)).tolist(), np.flatnonzero(m.any(axis=0)).tolist()


def test_row_window_of_a_pole_blob():
    # y = 0 is elevation 90: rows from floor(0) = 0 to ceil(4 * 6 / 180 * 179) + 1 = ceil(23.87) + 1 = 25
    assert _window(10.0, 0.0)[0] == (0, 25)
    # the equator (y = 89.5): floor(89.5 - 23.87) = 65 .. ceil(89.5 + 23.87) + 1 = 115
    assert _window(100.25, 89.5)[0] == (65, 115)
    # y = 180 lies half a row step below the south pole: el_lo clips to -90, rows up to 180
    assert _window(180.0, 180.0)[0] == (156, 180)


def test_pole_blob_at_an_integer_column_is_a_full_ring_with_the_antipode_twice():
    # at a pole cos(el0) < 0.087, so the half-width is pi: c_lo = floor(-170 - 180 + 180) = -170,
    # c_hi = ceil(-170 + 180 + 180) + 1 = 191; c_lo < 0: [0, 191) then [-170 mod 360, 360) = [190, 360)
    assert _window(10.0, 0.0)[1] == [(0, 191), (190, 360)]
    # x = 10.5: floor(-169.5) = -170, ceil(190.5) + 1 = 192: columns 190 and 191 twice
    assert _window(10.5, 0.0)[1] == [(0, 192), (190, 360)]


def test_pole_blob_at_x_179_5_overflows_both_ends_and_keeps_two_columns():
    # az = -0.5: c_lo = floor(-0.5) = -1 < 0 and c_hi = ceil(359.5) + 1 = 361 > 360; lo = 359,
    # hi = 1; c_lo < 0 is checked first: [0, 1) then [359, 360) -- not a full ring (the quirk)
    assert _window(179.5, 0.0)[1] == [(0, 1), (359, 360)]
    assert _window(179.9, 1.0)[1] == [(0, 1), (359, 360)]
    # x = 179: c_hi = ceil(-1 + 360) + 1 = 360 fits, c_lo = -1 does not: [0, 360) then [359, 360)
    assert _window(179.0, 0.0)[1] == [(0, 360), (359, 360)]


def test_seam_blob_windows():
    # the equator, half-width 4 sigma = 24 degrees; x = 0 is azimuth -180: c_lo = floor(-24) = -24,
    # c_hi = ceil(24) + 1 = 25 -> [0, 25) then [336, 360); x = 360 (azimuth +180): c_lo = 336,
    # c_hi = 385 -> [336, 360) then [0, 25): the same columns in the other order
    assert _window(0.0, 89.5)[1] == [(0, 25), (336, 360)]
    assert _window(360.0, 89.5)[1] == [(336, 360), (0, 25)]
    # inside the canvas: one piece floor(-79.75 - 24 + 180) = 76 .. ceil(124.25) + 1 = 126
    assert _window(100.25, 89.5)[1] == [(76, 126)]


@pytest.mark.parametrize("render", RENDERERS)
def test_pole_blob_fills_row_zero_and_doubles_the_antipodal_column(render):
    # every pixel of row 0 is at the pole, at distance ~0 from the triplet: each listed column
    # gets exp(~0) = 1 (float32), and column 190 (listed twice) gets 2
    m = render([[[10.0, 0.0, 1.0]]])
    expected = np.ones(COLS, dtype=np.float32)
    expected[190] = 2.0
    np.testing.assert_allclose(m[0], expected, rtol=1e-6)
    assert _support(m)[0] == list(range(25))
    d = np.radians(180 / 179)  # row 1 is one row step from the pole, at any azimuth
    one = np.exp(-2 * np.sin(d / 2) ** 2 / np.radians(6.0) ** 2)
    np.testing.assert_allclose(np.delete(m[1], 190), one, rtol=1e-6)
    assert m[1, 190] == 2 * m[1, 0]


@pytest.mark.parametrize("render", RENDERERS)
def test_pole_blob_at_x_179_5_draws_two_columns_only(render):
    m = render([[[179.5, 0.0, 0.5]]])
    assert _support(m) == (list(range(25)), [0, 359])
    np.testing.assert_allclose(m[0, [0, 359]], 0.5, rtol=1e-6)


@pytest.mark.parametrize("render", RENDERERS)
def test_seam_blob_wraps(render):
    m0 = render([[[0.0, 89.5, 1.0]]])
    m360 = render([[[360.0, 89.5, 1.0]]])
    cols = list(range(25)) + list(range(336, 360))
    assert _support(m0) == (list(range(65, 115)), cols)
    assert _support(m360) == (list(range(65, 115)), cols)
    assert m0[89, 0] == pytest.approx(math.exp(-2 * math.sin(np.radians(90 - 89 * 180 / 179) / 2) ** 2
                                               / math.radians(6) ** 2), rel=1e-6)
    # the same blob up to float32 rounding of az0 = -pi or +pi against the column azimuths
    np.testing.assert_allclose(m0, m360, rtol=0, atol=1e-5)


@pytest.mark.parametrize("render", RENDERERS)
def test_equator_blob_has_the_analytic_profile_and_window(render):
    # y = 89.5 is elevation 0 (89.5 * 180 / 179 = 90): columns 76..125 (see test_seam_blob_windows);
    # along the row hav = sin^2(del / 2) + cos(el) * sin^2(daz / 2)
    m = render([[[100.25, 89.5, 2.0]]]).astype(np.float64)
    nz = np.flatnonzero(m[89])
    assert (nz[0], nz[-1]) == (76, 125)
    s2 = np.radians(6.0) ** 2
    el, el0 = np.radians(90 - 89 * 180 / 179), 0.0
    daz = np.radians(np.arange(76, 126) - 180 - (100.25 - 180))
    hav = np.sin((el - el0) / 2) ** 2 + np.cos(el0) * np.cos(el) * np.sin(daz / 2) ** 2
    np.testing.assert_allclose(m[89, 76:126], 2.0 * np.exp(-2 * hav / s2), rtol=2e-5)  # a float32 kernel


def test_blobs_add_up_in_file_order_in_float32():
    # at (89, 90) the big blob is ~0.999, whose float32 half-ulp (3e-8) exceeds 1e-8: tiny blobs
    # added after it change nothing, while 100 of them summed first (1e-6) do show
    big = [[90.0, 89.5, 1.0]]
    tiny = [[90.0, 89.5, 1e-8]] * 100
    alone = render_energy_reference([big])[89, 90]
    big_first = render_energy_reference([big + tiny])
    tiny_first = render_energy_reference([tiny + big])
    assert big_first[89, 90] == alone
    assert tiny_first[89, 90] > alone
    for polygons, ref in (([big + tiny], big_first), ([tiny + big], tiny_first), ([big, tiny], big_first)):
        np.testing.assert_array_equal(render_energy(polygons), ref)


def _edge_triplets(rng) -> np.ndarray:
    xs = np.r_[0.0, 0.5, 1.0, 179.0, 179.2, 179.5, 179.9, 180.0, 180.5, 359.0, 359.5, 360.0, rng.uniform(0, 360, 40)]
    ys = np.r_[0.0, 0.3, 1.0, 2.0, 5.0, 89.5, 170.0, 178.0, 179.0, 179.5, 180.0, rng.uniform(0, 180, 20)]
    grid = np.array([(x, y) for x in xs for y in ys])
    return np.column_stack([grid, rng.uniform(0.01, 2.0, len(grid))])


def test_vectorized_windows_equal_the_scalar_rule():
    rng = np.random.default_rng(5)
    pts = np.concatenate([_edge_triplets(rng), rng.uniform([0, 0, 0], [360, 180, 1], (3000, 3))])
    w = triplet_windows(pts, 6.0)
    for i, (x, y, _) in enumerate(pts.tolist()):
        (r0, r1), pieces = _window(x, y)
        assert (w["row0"][i], w["nrows"][i]) == (r0, max(r1 - r0, 0)), (x, y)
        cols = np.concatenate([np.arange(a, b) for a, b in pieces])
        mine = (w["col0"][i] + np.arange(w["ncols"][i])) % COLS
        assert sorted(mine.tolist()) == sorted(cols.tolist()), (x, y)  # the same columns, repeats included


def _raster(xs, ys, step=1):
    """A GT-like polygon: integer pixels row by row (x modulo 361, so a run may cross the seam)."""
    return [[[x % 361, y, 0.3 + 0.01 * ((7 * x + y) % 13)] for y in ys for x in list(xs)[::step]]]


def test_batch_renderer_is_bit_identical_to_the_reference():
    from calib.score.coco_render import _ELEMENT_BUDGET, _plan

    rng = np.random.default_rng(3)
    edge = _edge_triplets(rng)
    annotations = [
        [edge[:300].tolist(), edge[300:].tolist()],  # poles, seam, x in 179..180, every row band
        [np.column_stack([rng.integers(0, 361, 400), rng.integers(0, 181, 400), rng.uniform(0.2, 1, 400)])],
        [rng.uniform([170, 0, 0.1], [190, 6, 1], (50, 3)), rng.uniform([0, 170, 0.1], [360, 180, 1], (50, 3))],
        [],  # no polygon: an empty map
        [[[12.0, 34.0, 0.0]]],  # zero intensity
        # raster rows (blobs side by side): across the seam, at both poles, every other pixel,
        # right to left, a whole row at a pole, x in 175..185 on the polar rows
        _raster(range(340, 380), range(80, 90)),
        _raster(range(170, 190), range(0, 6)),
        _raster(range(100, 160), range(170, 181), step=2),
        _raster(range(50, 10, -1), range(40, 50)),
        _raster(range(0, 361), [3]),
        _raster(range(175, 186), [0, 1, 179, 180]),
    ] + [[rng.uniform([0, 0, 0.01], [360, 180, 2], (int(n), 3))] for n in rng.integers(1, 30, 80)]
    pts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for a in annotations for p in a])
    kinds = {how for how, _, _ in _plan(np.zeros(len(pts), dtype=np.int64), triplet_windows(pts, 6.0), _ELEMENT_BUDGET)}
    assert kinds == {"slide", "scatter"}  # both ways of adding blobs are exercised
    for polygons, fast in zip(annotations, render_energies(annotations), strict=True):
        ref = render_energy_reference(polygons)
        assert fast.dtype == np.float32 and fast.shape == (180, 360)
        np.testing.assert_array_equal(fast.view(np.uint32), ref.view(np.uint32))
