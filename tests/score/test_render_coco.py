"""The dcase2026-coco energy renderer: blob windows with hand-computed oracles, and the grouped
(fast) renderer against the one-triplet-at-a-time reference."""
from __future__ import annotations

import numpy as np
import pytest

from calib.score.coco import render_energy, render_energy_reference, window_columns

RENDERERS = [render_energy_reference, render_energy]


def test_full_ring_window_of_an_integer_column_repeats_the_antipode():
    cols = window_columns(10.0, 180.0)
    assert (cols[0], cols[-1], cols.size) == (-170, 190, 361)
    counts = np.bincount(cols % 360, minlength=360)
    assert counts[190] == 2 and np.all(np.delete(counts, 190) == 1)


def test_full_ring_window_of_a_fractional_column_repeats_two_columns():
    cols = window_columns(10.5, 180.0)
    assert (cols[0], cols[-1], cols.size) == (-170, 191, 362)
    counts = np.bincount(cols % 360, minlength=360)
    assert counts[190] == counts[191] == 2 and counts.sum() == 362


def test_partial_window_spans_floor_to_ceil():
    assert window_columns(100.25, 24.0).tolist() == list(range(76, 126))
    assert window_columns(100.0, 24.5).tolist() == list(range(75, 126))


@pytest.mark.parametrize("render", RENDERERS)
def test_pole_blob_fills_row_zero_and_doubles_the_antipodal_column(render):
    # a triplet on row 0 is at elevation 90: every pixel of row 0 is at distance 0, so each listed
    # column gets exp(0) = 1, and column 190 (listed twice, see window_columns) gets 2
    m = render([[[10.0, 0.0, 1.0]]])
    expected = np.ones(360, dtype=np.float32)
    expected[190] = 2.0
    np.testing.assert_array_equal(m[0], expected)
    d = np.radians(180 / 179)  # row 1 is one row step from the pole, at any azimuth
    one = np.exp(-2 * np.sin(d / 2) ** 2 / np.radians(6.0) ** 2)
    np.testing.assert_allclose(np.delete(m[1], 190), one, rtol=1e-6)
    assert m[1, 190] == 2 * m[1, 0]


@pytest.mark.parametrize("render", RENDERERS)
def test_equator_blob_has_the_analytic_profile_and_window(render):
    # y = 89.5 is elevation 0 (89.5 * 180 / 179 = 90): half-width 24 degrees, so columns
    # floor(100.25 - 24)..ceil(100.25 + 24) = 76..125; along the row hav = sin^2(daz / 2)
    m = render([[[100.25, 89.5, 2.0]]]).astype(np.float64)
    nz = np.flatnonzero(m[89])
    assert (nz[0], nz[-1]) == (76, 125)
    s2 = np.radians(6.0) ** 2
    el, el0 = np.radians(90 - 89 * 180 / 179), 0.0
    daz = np.radians(np.arange(76, 126) - 180 - (100.25 - 180))
    hav = np.sin((el - el0) / 2) ** 2 + np.cos(el0) * np.cos(el) * np.sin(daz / 2) ** 2
    np.testing.assert_allclose(m[89, 76:126], 2.0 * np.exp(-2 * hav / s2), rtol=1e-6)


def test_grouped_renderer_matches_the_reference_near_the_poles_and_the_seam():
    rng = np.random.default_rng(3)
    ints = np.column_stack([rng.integers(0, 361, 300), rng.integers(0, 30, 300), rng.uniform(0.2, 1, 300)])
    fracs = np.column_stack([rng.uniform(0, 360, 200), rng.uniform(150, 180, 200), rng.uniform(0.2, 1, 200)])
    seam = np.array([[0.0, 5.0, 1.0], [360.0, 5.0, 1.0], [359.5, 60.0, 0.5], [0.25, 175.0, 0.7]])
    polygons = [ints.tolist(), fracs.tolist(), seam.tolist()]
    np.testing.assert_allclose(render_energy(polygons), render_energy_reference(polygons), rtol=2e-6, atol=0)
