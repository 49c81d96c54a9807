"""Audio channel swapping: each view's channel mix is the scene seen through its rotation."""
import numpy as np
import pytest

from calib.adapters import acs


def random_directions(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


@pytest.mark.parametrize("fmt", ["foa", "mic"])
def test_views_are_eight_distinct_orthogonal_maps_identity_first(fmt):
    views = acs.views(fmt)
    assert len(views) == 8
    np.testing.assert_array_equal(views[0][0], np.eye(3))
    np.testing.assert_array_equal(views[0][1], np.eye(4))
    for r, _ in views:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-15)
    assert len({r.tobytes() for r, _ in views}) == 8


def test_rotation_maps_azimuth_and_elevation():
    az, el = random_directions()
    for s, k in acs.AZIMUTH_MAPS:
        for sign in (1, -1):
            got = acs.unit_vectors(az, el) @ acs.rotation(s, k, sign).T
            np.testing.assert_allclose(got, acs.unit_vectors(s * az + 90 * k, sign * el), atol=1e-12)


def test_foa_channel_mix_equals_rotated_source():
    az, el = random_directions()
    d = acs.unit_vectors(az, el)
    gains = np.c_[np.ones(len(d)), d[:, 1], d[:, 2], d[:, 0]]  # W, Y, Z, X of a plane wave
    for r, m in acs.foa_views():
        rd = d @ r.T
        np.testing.assert_allclose(gains @ m.T, np.c_[np.ones(len(d)), rd[:, 1], rd[:, 2], rd[:, 0]], atol=1e-12)
    # the textbook case: azimuth + 90 degrees is (W, X, Z, -Y)
    r, m = acs.foa_views()[acs.AZIMUTH_MAPS.index((1, 1))]
    np.testing.assert_array_equal(m, [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, -1, 0, 0]])


def test_mic_permutation_gives_the_rotated_source_delays():
    mics = acs.unit_vectors(acs.MIC_DIRECTIONS_DEG[:, 0], acs.MIC_DIRECTIONS_DEG[:, 1])
    az, el = random_directions()
    d = acs.unit_vectors(az, el)
    projections = d @ mics.T  # a far-field wave reaches mic m with a delay set by d . r_m
    for r, m in acs.mic_views():
        assert sorted(m.sum(0)) == [1, 1, 1, 1] and sorted(m.sum(1)) == [1, 1, 1, 1]
        np.testing.assert_allclose(projections @ m.T, (d @ r.T) @ mics.T, atol=1e-12)


def test_unknown_format():
    with pytest.raises(ValueError, match="foa"):
        acs.views("ambix")
