"""Emitters: hand-computed outputs, the seam, the poles, and the stage contract."""
import math

import numpy as np
import polars as pl
import pytest
from scipy.spatial import ConvexHull

from calib.canvas.points import flatten
from calib.canvas.raster import render, soft_iou_matrix
from calib.stages.base import Tables, make_stage
from calib.stages.emit.cache import emit_cache
from calib.stages.emit.compress import compress_points
from calib.stages.emit.dense import dense_points, rowmajor_points
from calib.stages.emit.gaussian import gaussian_points, great_circle_deg
from calib.stages.emit.grid import grid_points
from calib.stages.emit.hull import hull_points
from calib.tables import TEACHER


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def rows(poly):
    return [tuple(r) for r in np.asarray(poly).tolist()]


def square(x0, y0, w, h, e=1.0):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    return np.column_stack([np.mod(xs.ravel(), 360), ys.ravel(), np.full(xs.size, e)]).astype(float)


# a box 10..20 x 30..50 with energy 1 on its corners and 3 at its centre
BOX = P([10, 30, 1], [20, 30, 1], [10, 50, 1], [20, 50, 1], [15, 40, 3])
# e = x - 100 over the triangle (100, 10), (104, 10), (100, 14)
RAMP = P([100, 10, 0], [104, 10, 4], [100, 14, 0])


# ---------------------------------------------------------------- grid
def test_grid_is_min_max_normalised_energy_on_the_box():
    (g,) = grid_points([BOX])
    assert rows(g) == [(10, 30, 0), (15, 30, 0), (20, 30, 0), (10, 40, 0), (15, 40, 1), (20, 40, 0),
                       (10, 50, 0), (15, 50, 0), (20, 50, 0)]
    (g,) = grid_points([BOX], floor=0.2)
    assert sorted(set(g[:, 2].tolist())) == [0.2, 1.0]


def test_grid_scale_and_min_size_grow_the_box():
    (g,) = grid_points([BOX], scale=2.0)
    assert sorted(set(g[:, 0].tolist())) == [5, 15, 25] and sorted(set(g[:, 1].tolist())) == [20, 40, 60]
    (g,) = grid_points([BOX], min_size=30.0)
    assert sorted(set(g[:, 0].tolist())) == [0, 15, 30] and sorted(set(g[:, 1].tolist())) == [25, 40, 55]
    (g,) = grid_points([BOX], n=1)
    assert rows(g) == [(15, 40, 1)]
    (g,) = grid_points([BOX], n=5)
    assert len(g) == 25


def test_grid_at_the_pole_is_clipped_to_the_canvas():
    pts = P([100, 0, 1], [110, 0, 1], [100, 10, 1], [110, 10, 1])
    (g,) = grid_points([pts], scale=2.0)
    assert sorted(set(g[:, 1].tolist())) == [0, 7.5, 15]
    assert sorted(set(g[:, 0].tolist())) == [95, 105, 115]
    # inside the points' square (energy 1) only (105, 0) and (105, 7.5); 0 elsewhere
    assert g[:, 2].tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 0]


def test_grid_crossing_the_seam_is_two_polygons_meeting_on_it():
    pts = P([350, 80, 1], [10, 80, 1], [350, 100, 1], [10, 100, 1], [0, 90, 2])
    a, b = grid_points([pts])
    assert rows(a) == [(350, 80, 0), (360, 80, 0), (350, 90, 0), (360, 90, 1), (350, 100, 0), (360, 100, 0)]
    assert rows(b) == [(0, 80, 0), (10, 80, 0), (0, 90, 1), (10, 90, 0), (0, 100, 0), (10, 100, 0)]


def test_grid_with_spread_grows_sparse_peaks():
    peaks = P([100, 50, 1.0])
    (g,) = grid_points([peaks])  # a point's box is the point: the 9 grid points coincide
    assert rows(g) == [(100, 50, 1)]
    (g,) = grid_points([peaks], spread=4.0)
    # the energy map reaches 3 spread = 12 degrees around the peak: the box is 24 wide
    assert g[:, 0].min() == 88 and g[:, 0].max() == 112 and rows(g)[4] == (100, 50, 1.0)


# ---------------------------------------------------------------- dense, rowmajor
def test_dense_keeps_pixels_above_a_fraction_of_the_peak():
    (d,) = dense_points([RAMP], frac=0.5)
    assert rows(d) == [(102, 10, 2), (103, 10, 3), (104, 10, 4), (102, 11, 2), (103, 11, 3), (102, 12, 2)]
    (d,) = dense_points([RAMP])  # frac 0.1: every pixel with e >= 0.4, i.e. x >= 101
    assert len(d) == 4 + 3 + 2 + 1


def test_dense_seam_column_goes_to_both_polygons():
    sq = square(358, 10, 4, 2)  # columns 358, 359, 0, 1
    sq[(sq[:, 0] == 0) & (sq[:, 1] == 10), 2] = 2.0
    a, b = dense_points([sq])
    assert sorted(rows(a)) == [(358, 10, 1), (358, 11, 1), (359, 10, 1), (359, 11, 1), (360, 10, 2), (360, 11, 1)]
    assert sorted(rows(b)) == [(0, 10, 2), (0, 11, 1), (1, 10, 1), (1, 11, 1)]


def test_dense_reaches_the_south_pole():
    (d,) = dense_points([square(100, 178, 3, 3)])
    assert d[:, 1].max() == 180 and len(d) == 9


def test_rowmajor_takes_every_nth_by_decreasing_intensity():
    # dense set: e = x - 100 at x >= 101; by (-e, y, x): (104,10) (103,10) (103,11) (102,10) (102,11)
    # (102,12) (101,10) (101,11) (101,12) (101,13); every 3rd from the peak:
    (r,) = rowmajor_points([RAMP], step=3)
    assert rows(r) == [(101, 10, 1), (102, 10, 2), (104, 10, 4), (101, 13, 1)]
    (r,) = rowmajor_points([RAMP], step=1)
    assert len(r) == 10


# ---------------------------------------------------------------- compress
def test_compress_keeps_the_strongest_pixel_per_cell_and_the_outline():
    sq = square(100, 50, 12, 12)
    sq[(sq[:, 0] == 105) & (sq[:, 1] == 55), 2] = 2.0
    (c,) = compress_points([sq], 0.0, cell=4)
    cells = [(100, 50), (104, 50), (108, 50), (100, 54), (105, 55), (108, 54), (100, 58), (104, 58), (108, 58)]
    corners = [(111, 50), (100, 61), (111, 61)]
    assert sorted((x, y) for x, y, _ in rows(c)) == sorted(cells + corners)
    assert dict(((x, y), e) for x, y, e in rows(c))[(105, 55)] == 2.0
    # a high score gets the finer cells: 4 x 4 cells of 3 px plus 3 corners
    (c,) = compress_points([sq], 0.9, cell=4, cell_high=3, high_score=0.5)
    assert len(c) == 16 + 3


def test_compress_keeps_the_masks_extent():
    yy, xx = np.mgrid[0:31, 0:41]
    e = np.exp(-((xx - 20) ** 2 + (yy - 15) ** 2) / 150.0)
    blob = np.column_stack([xx.ravel() + 200, yy.ravel() + 60, e.ravel()])
    (d,) = dense_points([blob])
    (c,) = compress_points([blob], cell=4)
    assert len(c) < len(d) / 5
    assert ConvexHull(c[:, :2]).volume == pytest.approx(ConvexHull(d[:, :2]).volume)
    maps = np.stack([render([d]), render([c])])
    assert soft_iou_matrix(maps)[0, 1] > 0.9


def test_compress_across_the_seam_both_halves_reach_it():
    a, b = compress_points([square(356, 50, 8, 8)], cell=4)
    assert a[:, 0].max() == 360 and b[:, 0].min() == 0
    seam_a = sorted(a[a[:, 0] == 360, 1].tolist())
    seam_b = sorted(b[b[:, 0] == 0, 1].tolist())
    assert seam_a == seam_b and seam_a[0] == 50 and seam_a[-1] == 57


# ---------------------------------------------------------------- hull
def test_hull_is_vertices_plus_lattice_fill_with_energy():
    (h,) = hull_points([P([100, 50, 1], [110, 50, 1], [100, 60, 1])], pad=0.0, spacing=5.0)
    assert sorted((x, y) for x, y, _ in rows(h)) == [(100, 50), (100, 55), (100, 60), (105, 50), (105, 55), (110, 50)]
    assert np.all(h[:, 2] == 1)


def test_hull_grows_flat_detections_and_never_emits_zero():
    (h,) = hull_points([P([100, 50, 1.0], [110, 50, 0.5])], pad=0.0, min_radius=1.5, spacing=3.0)
    assert h[:, 0].min() == pytest.approx(98.5) and h[:, 0].max() == pytest.approx(111.5)
    assert h[:, 1].min() == pytest.approx(48.5) and h[:, 1].max() == pytest.approx(51.5)
    assert h[:, 2].min() >= 0.5 and h[:, 2].max() <= 1.0
    (h,) = hull_points([P([100, 50, 1.0], [110, 50, 0.5])], pad=0.0, flat=True)
    assert np.all(h[:, 2] == 1)


def test_hull_at_the_seam_and_the_pole():
    a, b = hull_points([P([355, 50, 1], [5, 50, 1], [0, 60, 1])], pad=0.0)
    assert a[:, 0].max() == 360 and b[:, 0].min() == 0
    (h,) = hull_points([P([100, 1, 1], [110, 1, 1], [105, 5, 1])], pad=3.0)
    assert h[:, 1].min() == 0 and np.all(h[:, 2] > 0)


# ---------------------------------------------------------------- gaussian
def test_gaussian_equator_row_is_the_hand_computed_profile():
    s = 8.0 * 1.3
    radius = s * math.sqrt(2 * math.log(4))  # 17.3
    (g,) = gaussian_points(0.0, 0.0, 8.0, 0.25, 1.3, step=1.0)
    row = g[g[:, 1] == 90]
    assert row[:, 0].tolist() == list(range(180 - 17, 180 + 18))
    expected = np.round(np.exp(-((row[:, 0] - 180) ** 2) / (2 * s * s)), 6)
    assert np.array_equal(row[:, 2], expected)
    assert g[:, 1].min() == 90 - 17 and g[:, 1].max() == 90 + 17 and radius < 18
    (g,) = gaussian_points(0.0, 0.0)  # default lattice: every 2 degrees
    assert g[g[:, 1] == 90][:, 0].tolist() == list(range(180 - 16, 180 + 17, 2))
    assert great_circle_deg(0, 0, 90, 0) == pytest.approx(90)


def test_gaussian_over_a_pole_covers_every_x():
    (g,) = gaussian_points(0.0, 90.0, step=1.0)  # north pole: x = 180, y = 0
    row = g[g[:, 1] == 10]
    assert row[:, 0].tolist() == list(range(0, 361))
    assert np.allclose(row[:, 2], round(math.exp(-100 / (2 * 10.4 ** 2)), 6))
    assert g[:, 1].max() == 17


def test_gaussian_on_the_seam_is_two_matching_halves():
    a, b = gaussian_points(180.0, 0.0)  # x = 0
    assert a[:, 0].max() == 360 and b[:, 0].min() == 0
    assert sorted(rows(a[a[:, 0] == 360][:, 1:])) == sorted(rows(b[b[:, 0] == 0][:, 1:]))


def test_gaussian_stage_from_detections_and_from_teacher(dets):
    df = dets([{"polys": [P([180, 90, 1.0])]}, {"polys": [P([10, 10, 0.2], [180, 90, 0.9])]}, {"polys": []}])
    out = make_stage({"type": "gaussian"}).apply(Tables(detections=df))["detections"]
    fp = flatten(out.get_column("points"))
    expected = gaussian_points(0.0, 0.0)
    for i in (0, 1):
        assert len(fp.polygons(i)) == 1 and np.array_equal(fp.polygons(i)[0], expected[0])
    assert fp.polygons(2) == []
    teacher = pl.DataFrame({"clip": ["c1", "c1"], "frame": [3, 1], "class_id": [2, 0], "track": [0, 1],
                            "azimuth": [0.0, 90.0], "elevation": [0.0, 10.0], "distance": [None, 120.0],
                            "x": [180.0, 90.0], "y": [90.0, 80.0]}, schema=TEACHER)
    stage = make_stage({"type": "gaussian", "source": "teacher", "score": 0.7})
    out = stage.apply(Tables(teacher=teacher))["detections"]
    assert out.select("system", "clip", "frame", "det_id", "class_id", "score", "instance_id").rows() == [
        ("teacher", "c1", 1, 0, 0, 0.7, 1), ("teacher", "c1", 3, 1, 2, 0.7, 0)]
    fp = flatten(out.get_column("points"))
    assert np.array_equal(fp.polygons(0)[0], gaussian_points(90.0, 10.0)[0])


# ---------------------------------------------------------------- stage contract
EMITTERS = ["grid", "dense", "rowmajor", "compress", "hull", "gaussian"]


@pytest.mark.parametrize("name", EMITTERS)
def test_emitter_stage_contract(dets, name):
    df = dets([
        {"polys": [square(100, 50, 6, 5, 0.5)], "score": 0.9},
        {"polys": [P([350, 80, 1], [10, 80, 1], [350, 100, 1], [10, 100, 1], [0, 90, 2])], "score": 0.2},
        {"polys": [P([7, 0, 1], [9, 3, 2], [5, 2, 1])], "frame": 1},
        {"polys": []},
    ])
    before = df.clone()
    stage = make_stage({"type": name})
    out = stage.apply(Tables(detections=df))["detections"]
    emit_cache().clear()  # computed again, not answered from the cache
    again = make_stage(stage.to_dict()).apply(Tables(detections=df))["detections"]
    assert df.equals(before)  # input untouched
    assert out.equals(again)  # deterministic, round trip of params
    assert out.drop("points").equals(df.drop("points"))  # only points change
    fp = flatten(out.get_column("points"))
    assert fp.polygons(3) == []  # nothing to emit from nothing
    xy = fp.xye
    assert np.all((xy[:, 0] >= 0) & (xy[:, 0] <= 360) & (xy[:, 1] >= 0) & (xy[:, 1] <= 180))
    assert len(fp.polygons(1)) == 2  # the seam-crossing box is cut in two
    empty = df.clear()
    assert make_stage({"type": name}).apply(Tables(detections=empty))["detections"].equals(empty)


@pytest.mark.parametrize("spec", [{"type": "grid", "n": 0}, {"type": "dense", "frac": 1.5},
                                  {"type": "compress", "cell": 0}, {"type": "hull", "spacing": 0},
                                  {"type": "gaussian", "threshold": 0}, {"type": "rowmajor", "step": 0},
                                  {"type": "gaussian", "source": "nowhere"}, {"type": "size_guard", "max_mib": 0},
                                  {"type": "grid", "n": 2.5}, {"type": "compress", "cell_high": 0}])
def test_bad_parameters_are_clear_errors(dets, spec):
    """Each emitter checks its values with its declarations (calib.params): the error names the
    stage and the parameter."""
    df = dets([{"polys": [square(100, 50, 3, 3)]}])
    key = next(k for k in spec if k != "type")
    with pytest.raises(ValueError, match=f"^{spec['type']}: {key}: "):
        make_stage(spec).apply(Tables(detections=df))


def test_gaussian_blobs_checks_its_values_with_the_stage_declarations():
    from calib.stages.emit.gaussian import gaussian_blobs

    with pytest.raises(ValueError, match=r"^gaussian: threshold: must be a number in \(0, 1\], got 0$"):
        gaussian_blobs([0.0], [0.0], threshold=0)
    with pytest.raises(ValueError, match=r"^gaussian: sigma: "):
        gaussian_blobs([0.0], [0.0], sigma_deg=-1.0)


@pytest.mark.parametrize("fn", [dense_points, rowmajor_points, compress_points])
def test_separate_lobes_stay_separate_polygons(fn):
    # Two lobes 60 degrees apart as two polygons: one polygon over both would be interpolated
    # across the gap by the official renderer.
    lobes = [square(100, 50, 12, 12), square(160, 50, 12, 12, 0.5)]
    out = fn(lobes)
    assert len(out) == 2
    assert out[0][:, 0].max() < 112 and out[1][:, 0].min() >= 160
    # the two halves of a blob cut at the seam stay two polygons, each where it was
    a, b = fn([square(350, 50, 10, 5), square(0, 50, 10, 5)])
    assert 350 <= a[:, 0].min() and a[:, 0].max() <= 359 and 0 <= b[:, 0].min() and b[:, 0].max() <= 9


# ---------------------------------------------------------------- hull: the default does something
def test_default_hull_grows_sparse_peaks_towards_their_blob():
    """A sparse detection (the 12 strongest pixels of a Gaussian blob, off the pixel grid) against
    the blob itself, both rendered by the official dcase2026 renderer: without growth the hull is
    what the renderer draws from the points anyway (the same map); the default growth covers much
    more of the blob."""
    from calib.score.render import render_annotation

    yy, xx = np.mgrid[60:121, 150:211]
    g = np.exp(-((xx - 180.0) ** 2 + (yy - 90.0) ** 2) / (2 * 8.0 ** 2))
    blob = np.column_stack([xx.ravel(), yy.ravel(), g.ravel()])[g.ravel() >= 0.24]
    top = blob[np.argsort(-blob[:, 2], kind="stable")[:12]] + [0.3, 0.4, 0.0]

    def soft_iou(polys):
        a, b = render_annotation(polys)[0], render_annotation([blob])[0]
        return float(np.minimum(a, b).sum() / np.maximum(a, b).sum())

    points = soft_iou([top])
    assert soft_iou(hull_points([top], pad=0.0)) == pytest.approx(points, abs=0.02)
    assert soft_iou(hull_points([top])) > points + 0.25


@pytest.mark.parametrize("threshold,sigma,scale,step", [(0.25, 8.0, 1.3, 2.0), (0.01, 5.0, 1.0, 1.0),
                                                        (0.9, 12.0, 1.3, 3.0), (1.0, 8.0, 1.3, 2.0),
                                                        (0.5, 90.0, 1.5, 5.0)])
def test_gaussian_reach_drops_only_points_below_the_threshold(monkeypatch, threshold, sigma, scale, step):
    """The blob tests the angle only where h = sin^2(d / 2) is within reach: the same points and
    bits as testing every candidate (reach patched to take all), at poles, over the seam, anywhere."""
    import calib.stages.emit.gaussian as g

    rng = np.random.default_rng(3)
    az = np.r_[0.0, 180.0, -180.0, 179.3, -179.9, 45.0, rng.uniform(-180, 180, 40)]
    el = np.r_[90.0, 0.0, -90.0, 89.2, -88.7, 0.0, rng.uniform(-90, 90, 40)]
    got = g.gaussian_blobs(az, el, sigma, threshold, scale, step=step)
    monkeypatch.setattr(g, "_h_reach", lambda radius: 2.0)
    want = g.gaussian_blobs(az, el, sigma, threshold, scale, step=step)
    for f in ("x", "y", "e", "det_off", "poly_off"):
        assert np.array_equal(getattr(got, f), getattr(want, f))


def test_gaussian_reach_bounds_the_angle():
    from calib.stages.emit.gaussian import _h_reach

    for radius in (0.0, 1.0, 17.3, 90.0, 179.9, 400.0):
        h = _h_reach(radius)
        d = math.degrees(2 * math.asin(math.sqrt(min(h, 1.0))))
        assert d >= min(radius, 180.0)  # every angle up to the radius is within reach
        if radius < 170:
            assert d <= radius * (1 + 2e-6) + 1e-3
