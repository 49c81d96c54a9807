import numpy as np
import polars as pl
import pytest
from fusedata import blob, det

from calib.canvas.points import peak_points
from calib.canvas.sphere import acs_canvas_coefficients, acs_forward, great_circle, transform_points
from calib.io.seld import from_canvas
from calib.stages.base import Tables
from calib.stages.fuse.acs_views import AcsViews
from calib.stages.fuse.checkpoint_cluster import CheckpointCluster, cluster_labels


def single_point_direction(points):
    (poly,) = points
    (p,) = poly
    return from_canvas(p["x"], p["y"])


def eight_views(az, el, scores, cls=4, frame=2):
    rows = []
    for view, s in enumerate(scores):
        a, e = acs_forward(az, el, view)
        rows.append({"frame": frame, "class_id": cls, "score": s, "az": float(a), "el": float(e), "view": view})
    return det(rows, view=pl.Int64)


def test_eight_forward_views_of_one_direction_come_back_to_it():
    scores = [0.8, 0.6, 0.9, 0.7, 0.5, 0.4, 0.3, 0.8]
    out = AcsViews().apply(Tables(detections=eight_views(40.0, 25.0, scores)))["detections"]
    assert out.height == 1
    az, el = single_point_direction(out.get_column("points")[0].to_list())
    assert great_circle(az, el, 40.0, 25.0) < 1e-6
    assert out.get_column("fuse_support").to_list() == [8]
    assert out.get_column("score").to_list() == pytest.approx([sum(scores) / 8])
    assert out.get_column("score_raw").to_list() == pytest.approx([sum(scores) / 8])
    assert out.select("system", "clip", "frame", "class_id", "det_id").rows() == [("acs_views", "c1", 2, 4, 0)]


def test_masks_of_every_view_map_back_point_by_point():
    base = det([{"frame": 0, "class_id": 1, "score": 0.5, "points": blob(200.0, 60.0)}])
    views = pl.concat([
        base.with_columns(transform_points(pl.col("points"), *acs_canvas_coefficients(k, inverse=False))
                          .alias("points"), pl.lit(k, pl.Int64).alias("view"), pl.lit(k, pl.Int64).alias("det_id"))
        for k in range(8)])
    assert views.get_column("points").n_unique() == 8  # the views really differ
    back = AcsViews(fuse="none").apply(Tables(detections=views))["detections"]
    want = np.array([[p["x"], p["y"], p["e"]] for p in base.get_column("points")[0].to_list()[0]])
    for pts in back.get_column("points").to_list():
        got = np.array([[p["x"], p["y"], p["e"]] for p in pts[0]])
        np.testing.assert_allclose(got, want, atol=1e-9)
    assert back.get_column("view").to_list() == list(range(8))
    fused = AcsViews(emit="mask").apply(Tables(detections=views))["detections"]
    assert fused.height == 1 and fused.get_column("fuse_support").to_list() == [8]


def test_views_that_disagree_form_separate_clusters_and_min_support_filters():
    d = eight_views(40.0, 25.0, [0.8] * 8)
    # views 6 and 7 report a second source at (-100, -10) of the original scene
    extra = [{"frame": 2, "class_id": 4, "score": 0.4, "view": v, "det_id": 10 + v,
              **dict(zip(("az", "el"), map(float, acs_forward(-100.0, -10.0, v))))} for v in (6, 7)]
    d = pl.concat([d, det(extra, view=pl.Int64)])
    out = AcsViews().apply(Tables(detections=d))["detections"].sort("score", descending=True)
    assert out.get_column("fuse_support").to_list() == [8, 2]
    assert out.get_column("score").to_list() == pytest.approx([0.8, 0.1])
    az, el = single_point_direction(out.get_column("points")[1].to_list())
    assert great_circle(az, el, -100.0, -10.0) < 1e-6
    assert AcsViews(min_support=3).apply(Tables(detections=d))["detections"].height == 1


def test_gaussian_emission_centres_a_blob_on_the_fused_direction():
    out = AcsViews(emit="gaussian", sigma_deg=5.0).apply(Tables(detections=eight_views(40.0, 25.0, [0.5] * 8)))
    pts = out["detections"].get_column("points")
    (peak,) = peak_points(pts).rows()
    assert great_circle(*from_canvas(peak[0], peak[1]), 40.0, 25.0) < 1e-3
    assert peak[2] == 1.0 and len(pts[0].to_list()[0]) > 50  # a blob, not a point


def test_bad_views_are_named():
    d = eight_views(0.0, 0.0, [0.5] * 8).with_columns(pl.lit(8, pl.Int64).alias("view"))
    with pytest.raises(ValueError, match="view 8 outside"):
        AcsViews().apply(Tables(detections=d))
    with pytest.raises(ValueError, match="no 'view' column"):
        AcsViews().apply(Tables(detections=d.drop("view")))


def checkpoint_rows():
    rows = []
    for k in range(5):  # two overlapping same-class events, seen by all five checkpoints
        jitter = (-2.0, 2.0, -1.0, 1.0, 0.0)[k]
        rows.append({"frame": 7, "class_id": 0, "score": 0.5 + 0.1 * k, "az": jitter, "el": 0.0, "checkpoint": f"k{k}"})
        rows.append({"frame": 7, "class_id": 0, "score": 0.2, "az": 60.0, "el": jitter, "checkpoint": f"k{k}"})
    rows.append({"frame": 7, "class_id": 0, "score": 0.9, "az": -120.0, "el": 0.0, "checkpoint": "k0"})
    rows.append({"frame": 7, "class_id": 0, "score": 0.9, "az": -121.0, "el": 0.0, "checkpoint": "k1"})
    rows.append({"frame": 7, "class_id": 0, "score": 0.95, "az": 1.0, "el": 0.0, "checkpoint": "k4"})  # duplicate
    return det(rows, checkpoint=pl.String)


def test_checkpoint_clusters_keep_overlapping_events_and_drop_weak_support():
    out = CheckpointCluster().apply(Tables(detections=checkpoint_rows()))["detections"]
    out = out.sort("score", descending=True)
    assert out.get_column("fuse_support").to_list() == [5, 5]
    # cluster at 0: best per checkpoint 0.5, 0.6, 0.7, 0.8, max(0.9, 0.95) over 5 checkpoints
    assert out.get_column("score").to_list() == pytest.approx([(0.5 + 0.6 + 0.7 + 0.8 + 0.95) / 5, 0.2])
    directions = [single_point_direction(p) for p in out.get_column("points").to_list()]
    # mean of the unit vectors at azimuths -2, 2, -1, 1, 0 and 1 on the equator
    r = np.radians
    expected = np.degrees(np.arctan2(np.sin(r(1.0)), 2 * np.cos(r(2.0)) + 3 * np.cos(r(1.0)) + 1))
    assert great_circle(*directions[0], expected, 0.0) < 1e-9
    assert great_circle(*directions[1], 60.0, 0.0) < 1e-6
    relaxed = CheckpointCluster(min_support=2).apply(Tables(detections=checkpoint_rows()))["detections"]
    assert sorted(relaxed.get_column("fuse_support").to_list()) == [2, 5, 5]


def test_checkpoint_source_column_and_threshold():
    d = checkpoint_rows()
    by_system = d.drop("checkpoint").with_columns(pl.Series("system", d.get_column("checkpoint")))
    a = CheckpointCluster().apply(Tables(detections=d))["detections"]
    b = CheckpointCluster().apply(Tables(detections=by_system))["detections"]
    assert a.equals(b)
    # a threshold wider than the events' separation merges them into one cluster
    merged = CheckpointCluster(threshold_deg=90.0).apply(Tables(detections=d))["detections"]
    assert merged.get_column("fuse_support").to_list() == [5]
    with pytest.raises(ValueError, match="no column 'model'"):
        CheckpointCluster(source_column="model").apply(Tables(detections=d))


def test_cluster_labels_per_group():
    az = np.array([0.0, 1.0, 50.0, 0.0, 0.5])
    el = np.zeros(5)
    labels = cluster_labels(az, el, np.array([0, 3]), 20.0, "average")
    assert labels.tolist() == [0, 0, 1, 2, 2]
