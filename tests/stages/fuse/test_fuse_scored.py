"""The learning fusion stages with the real scorer (calib.score) on hand-made masks."""
import math

import numpy as np
import polars as pl
import pytest
from fusedata import blob, det, truth_from

from calib.stages.base import Tables
from calib.score import best_ious, class_scores
from calib.stages.fuse.calibrated_union import CalibratedUnion
from calib.stages.fuse.max_envelope import MaxEnvelope

GT = det([{"clip": "c1", "frame": f, "class_id": k, "score": 1.0, "points": blob(60.0 + 90 * k, 90.0 - 5 * f, 12.0)}
          for f in range(3) for k in (0, 1)])
TRUTH = truth_from(GT)


def copy_of(classes, name, far=()):
    """The truth's annotations of ``classes`` as detections, those of ``far`` moved 150 degrees."""
    rows = []
    for r in GT.iter_rows(named=True):
        if r["class_id"] in classes or r["class_id"] in far:
            shift = 150.0 if r["class_id"] in far else 0.0
            pts = [[((p["x"] + shift) % 360, p["y"], p["e"]) for p in poly] for poly in r["points"]]
            rows.append({"clip": r["clip"], "frame": r["frame"], "class_id": r["class_id"], "score": 0.9,
                         "points": pts, "system": name})
    return det(rows)


def test_class_table_of_a_perfect_copy():
    m = class_scores(GT, TRUTH).class_table()
    assert m.get_column("mAP").to_list()[:2] == [1.0, 1.0]
    assert all(math.isnan(v) for v in m.get_column("mAP").to_list()[2:])
    assert m.get_column("pearson").to_list()[:2] == pytest.approx([1.0, 1.0])


def test_best_iou_in_row_order_with_unknown_clips():
    d = pl.concat([copy_of((0,), "s", far=(1,)),
                   det([{"clip": "c9", "frame": 0, "class_id": 0, "score": 0.5, "az": 0, "el": 0}]),
                   det([{"clip": "c1", "frame": 7, "class_id": 0, "score": 0.5, "az": 0, "el": 0}])])
    d = d.with_columns(pl.lit(0, pl.Int64).alias("det_id"))  # ids need not be unique
    best = best_ious(d.reverse(), TRUTH)[::-1]
    classes = d.get_column("class_id").to_list()
    assert best[:6][np.array(classes[:6]) == 0] == pytest.approx([1.0] * 3)
    assert best[:6][np.array(classes[:6]) == 1] == pytest.approx([0.0] * 3)
    assert math.isnan(best[6]) and best[7] == 0.0


def test_max_envelope_with_the_scorer_picks_each_class_owner():
    systems = {"a": copy_of((0,), "a", far=(1,)), "b": copy_of((1,), "b", far=(0,))}
    stage = MaxEnvelope().fit(Tables(systems=systems, truth=TRUTH))
    assert stage.choice_[0] == "a" and stage.choice_[1] == "b"
    assert stage.metrics_.filter(pl.col("class_id") < 2).sort("system", "class_id").get_column("mAP").to_list() == [
        1.0, 0.0, 0.0, 1.0]
    out = stage.apply(Tables(systems=systems))["detections"]
    assert class_scores(out, TRUTH).class_table().get_column("mAP").to_list()[:2] == [1.0, 1.0]


def test_calibrated_union_learns_from_the_match_table():
    good = copy_of((0, 1), "a").with_columns(pl.lit(0.2).alias("score"))     # all matchable, low raw scores
    bad = copy_of((), "b", far=(0, 1)).with_columns(pl.lit(0.9).alias("score"))  # none matchable, high scores
    systems = {"a": good, "b": bad}
    stage = CalibratedUnion(by_class=False, tie_break=0.0).fit(Tables(systems=systems, truth=TRUTH))
    out = stage.apply(Tables(systems=systems))["detections"]
    got = dict(out.group_by("fuse_source").agg(pl.col("score").max()).rows())
    assert got == {"a": 1.0, "b": 0.0}
    naive = CalibratedUnion(method="none").fit(Tables(systems=systems, truth=TRUTH)).apply(Tables(systems=systems))
    assert class_scores(out, TRUTH).class_table().get_column("mAP")[0] > \
        class_scores(naive["detections"], TRUTH).class_table().get_column("mAP")[0]
