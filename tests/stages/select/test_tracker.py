"""tracker: Hungarian association, coasting with decay, min_hits, per class and clip."""
import numpy as np
import pytest

from calib.canvas.points import flatten
from calib.stages.base import Tables, make_stage


def square(x0, y0, w, h, e=1.0):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    return np.column_stack([np.mod(xs.ravel(), 360), ys.ravel(), np.full(xs.size, e)]).astype(float)


def track(df, **params):
    return make_stage({"type": "tracker", **params}).apply(Tables(detections=df))["detections"]


def sequence(dets):
    return dets([
        {"frame": 0, "score": 0.9, "polys": [square(10, 10, 10, 10)]},  # det 0
        {"frame": 1, "score": 0.8, "polys": [square(11, 10, 10, 10)]},  # det 1: IoU 90/110 with det 0
        {"frame": 1, "score": 0.4, "polys": [square(200, 100, 5, 5)]},  # det 2: a one-off
        {"frame": 3, "score": 0.7, "polys": [square(12, 10, 10, 10)]},  # det 3: after a one-frame gap
        {"frame": 5, "score": 0.6, "class_id": 1, "polys": [square(12, 10, 10, 10)]},  # det 4: other class
    ])


@pytest.mark.parametrize("iou", ["box", "mask"])
def test_tracks_coast_with_decay_and_short_tracks_go(dets, iou):
    df = sequence(dets)
    out = track(df, iou=iou, iou_threshold=0.3, max_age=2, decay=0.5, min_hits=2)
    got = out.select("frame", "det_id", "score", "track_id", "track_age").rows()
    assert got == [
        (0, 0, 0.9, 0, 0), (1, 1, 0.8, 0, 0), (3, 3, 0.7, 0, 0),
        (2, 5, 0.8 * 0.5, 0, 1),  # coasts over the gap from det 1
        (4, 6, 0.7 * 0.5, 0, 1), (5, 7, 0.7 * 0.25, 0, 2),  # after det 3, until the clip's last frame
    ]
    fp_in, fp_out = flatten(df.get_column("points")), flatten(out.get_column("points"))
    assert np.array_equal(fp_out.polygons(3)[0], fp_in.polygons(1)[0])  # a coasted copy of det 1
    assert out.columns == df.columns + ["track_id", "track_age"]


def test_min_hits_one_keeps_everything_and_max_age_zero_never_coasts(dets):
    df = sequence(dets)
    out = track(df, max_age=0, min_hits=1)
    assert out.select("det_id", "track_id").rows() == [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3)]
    # without coasting, the gap at frame 2 ends track 0: det 3 starts track 2


def test_association_is_optimal_not_greedy(dets):
    # IoU: A-D1 9/11, A-D2 6/14, B-D1 8/12, B-D2 3/17. Greedy takes A-D1 and leaves B unmatched
    # (3/17 < 0.3); the assignment maximising total IoU links A-D2 and B-D1.
    df = dets([
        {"frame": 0, "polys": [square(0, 0, 10, 10)]},  # A
        {"frame": 0, "polys": [square(3, 0, 10, 10)]},  # B
        {"frame": 1, "polys": [square(1, 0, 10, 10)]},  # D1
        {"frame": 1, "polys": [square(356, 0, 10, 10)]},  # D2, across the seam
    ])
    out = track(df, iou_threshold=0.3, min_hits=1, max_age=0)
    tid = dict(out.select("det_id", "track_id").rows())
    assert tid[3] == tid[0] and tid[2] == tid[1] and tid[0] != tid[1]


def test_classes_and_clips_are_tracked_separately(dets):
    df = dets([
        {"frame": 0, "class_id": 0, "polys": [square(0, 0, 10, 10)]},
        {"frame": 1, "class_id": 1, "polys": [square(0, 0, 10, 10)]},
        {"frame": 0, "clip": "c2", "det_id": 0, "polys": [square(0, 0, 10, 10)]},
        {"frame": 1, "clip": "c2", "det_id": 1, "polys": [square(0, 0, 10, 10)]},
    ])
    out = track(df, min_hits=1, max_age=0)
    assert out.select("clip", "det_id", "track_id").rows() == [("c1", 0, 0), ("c1", 1, 1), ("c2", 0, 0), ("c2", 1, 0)]
    out = track(df, min_hits=2, max_age=0)
    assert out.select("clip", "det_id").rows() == [("c2", 0), ("c2", 1)]


def test_tracker_contract(dets):
    df = sequence(dets)
    before = df.clone()
    a = track(df)
    assert df.equals(before) and a.equals(track(df))
    empty = track(df.clear())
    assert len(empty) == 0 and empty.columns == df.columns + ["track_id", "track_age"]
    with pytest.raises(ValueError, match="decay"):
        track(df, decay=1.5)
