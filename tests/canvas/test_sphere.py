"""calib.canvas.sphere: directions, ACS transforms (the seam and boxes are in test_seam_boxes.py)."""
import math

import numpy as np
import polars as pl
import pytest

from calib.canvas.points import peak_points
from calib.canvas.sphere import (ACS_TRANSFORMS, acs_canvas_coefficients, acs_forward, acs_inverse, great_circle,
                                 mean_direction, pairwise_great_circle, transform_points, unit_vectors,
                                 vector_directions, wrap_azimuth)
from calib.io.seld import from_canvas, to_canvas
from calib.tables import POLYGONS


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0), (90, 0), 90.0),
    ((0, 0), (0, 90), 90.0),
    ((0, 0), (180, 0), 180.0),
    ((0, 0), (15, 0), 15.0),
    ((179, 0), (-179, 0), 2.0),        # across the seam
    ((0, 89.9), (180, 89.9), 0.2),     # over the pole
    ((45, 30), (45, 30), 0.0),
    ((0, 0), (0, -25), 25.0),
])
def test_great_circle_hand_values(a, b, expected):
    assert great_circle(*a, *b) == pytest.approx(expected, abs=1e-9)


def test_great_circle_broadcasts_and_pairwise_is_symmetric():
    az = np.array([0.0, 90.0, -45.0])
    el = np.array([0.0, 10.0, -30.0])
    d = pairwise_great_circle(az, el)
    assert d.shape == (3, 3)
    np.testing.assert_allclose(d, d.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-6)
    assert d[0, 1] == pytest.approx(90.0, abs=1e-9)  # cos d = cos 0 cos 10 cos 90 + sin 0 sin 10 = 0


def test_wrap_azimuth():
    np.testing.assert_array_equal(wrap_azimuth([180.0, -180.0, 190.0, -190.0, 540.0, 0.0]),
                                  [180.0, 180.0, -170.0, 170.0, 180.0, 0.0])


def test_unit_vectors_round_trip():
    az, el = np.array([0.0, 90.0, -135.0, 180.0]), np.array([0.0, 45.0, -60.0, 10.0])
    u = unit_vectors(az, el)
    np.testing.assert_allclose(u[0], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(u[1], [0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-15)
    back_az, back_el = vector_directions(u * 3.0)  # any length
    np.testing.assert_allclose(back_az, az, atol=1e-12)
    np.testing.assert_allclose(back_el, el, atol=1e-12)


def test_mean_direction():
    assert mean_direction([10.0, -10.0], [0.0, 0.0]) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert mean_direction([0.0, 180.0], [80.0, 80.0])[1] == pytest.approx(90.0)
    assert mean_direction([0.0, 20.0], [0.0, 0.0]) == pytest.approx((10.0, 0.0))
    # weights 3:1 -> atan2(sin 20, 3 + cos 20) on the equator
    az, el = mean_direction([0.0, 20.0], [0.0, 0.0], weights=[3.0, 1.0])
    expected = math.degrees(math.atan2(math.sin(math.radians(20)), 3 + math.cos(math.radians(20))))
    assert (az, el) == pytest.approx((expected, 0.0))
    assert mean_direction([179.0, -179.0], [0.0, 0.0])[0] == pytest.approx(180.0)  # across the seam
    with pytest.raises(ValueError, match="cancel"):
        mean_direction([0.0, 180.0], [0.0, 0.0])


# The list, written out by hand for phi = 30, theta = 20.
HAND = [(-60.0, -20.0), (-120.0, 20.0), (30.0, 20.0), (-30.0, -20.0),
        (120.0, -20.0), (60.0, 20.0), (-150.0, 20.0), (150.0, -20.0)]


@pytest.mark.parametrize("view", range(8))
def test_acs_forward_matches_the_listed_transforms(view):
    az, el = acs_forward(30.0, 20.0, view)
    assert (float(az), float(el)) == pytest.approx(HAND[view])


@pytest.mark.parametrize("view", range(8))
def test_acs_inverse_undoes_forward_and_back(view):
    rng = np.random.default_rng(view)
    az = rng.uniform(-180, 180, 200)
    el = rng.uniform(-90, 90, 200)
    a2, e2 = acs_inverse(*acs_forward(az, el, view), view)
    assert np.all(great_circle(az, el, a2, e2) < 1e-9)
    a3, e3 = acs_forward(*acs_inverse(az, el, view), view)
    assert np.all(great_circle(az, el, a3, e3) < 1e-9)


def test_acs_transforms_are_eight_distinct_maps():
    probe = (30.0, 20.0)
    images = {tuple(np.round(np.ravel(acs_forward(*probe, k)), 9)) for k in range(8)}
    assert len(ACS_TRANSFORMS) == 8 and len(images) == 8
    with pytest.raises(ValueError, match="outside 0..7"):
        acs_forward(0.0, 0.0, 8)


@pytest.mark.parametrize("view", range(8))
def test_canvas_coefficients_agree_with_the_direction_transform(view):
    rng = np.random.default_rng(100 + view)
    x = rng.uniform(0, 360, 50)
    y = rng.uniform(0, 180, 50)
    pts = pl.Series("points", [[[{"x": a, "y": b, "e": 0.5}]] for a, b in zip(x, y)], dtype=POLYGONS)
    for inverse, fn in ((True, acs_inverse), (False, acs_forward)):
        moved = pl.DataFrame({"points": pts}).select(
            transform_points(pl.col("points"), *acs_canvas_coefficients(view, inverse=inverse))).to_series()
        got = np.array([[p[0][0]["x"], p[0][0]["y"]] for p in moved.to_list()])
        ex, ey = to_canvas(*fn(*from_canvas(x, y), view))
        az_g, el_g = from_canvas(got[:, 0], got[:, 1])
        assert np.all(great_circle(az_g, el_g, *from_canvas(ex, ey)) < 1e-9)
        assert np.all((got[:, 0] >= 0) & (got[:, 0] < 360) & (got[:, 1] >= 0) & (got[:, 1] <= 180))


def test_transform_points_keeps_polygons_and_intensities():
    pts = pl.Series("points", [[[{"x": 10.0, "y": 30.0, "e": 0.25}, {"x": 20.0, "y": 40.0, "e": 1.0}],
                                [{"x": 350.0, "y": 170.0, "e": 0.5}]], []], dtype=POLYGONS)
    out = pl.DataFrame({"points": pts}).select(transform_points(pl.col("points"), -1.0, 0.0, -1.0, 180.0))
    assert out.to_series().to_list() == [
        [[{"x": 350.0, "y": 150.0, "e": 0.25}, {"x": 340.0, "y": 140.0, "e": 1.0}],
         [{"x": 10.0, "y": 10.0, "e": 0.5}]], []]


def test_peak_points_first_maximum_over_polygons_and_empty():
    pts = pl.Series("points", [
        [[{"x": 1.0, "y": 2.0, "e": 0.5}], [{"x": 3.0, "y": 4.0, "e": 0.9}, {"x": 5.0, "y": 6.0, "e": 0.9}]],
        [],
        [[], [{"x": 7.0, "y": 8.0, "e": 0.1}]],
        [[{"x": 9.0, "y": 9.5, "e": 2.0}, {"x": 0.0, "y": 0.0, "e": 1.0}]],
    ], dtype=POLYGONS)
    peaks = peak_points(pts)
    assert peaks.rows() == [(3.0, 4.0, 0.9), (None, None, None), (7.0, 8.0, 0.1), (9.0, 9.5, 2.0)]
    assert peak_points(pts.head(0)).height == 0
