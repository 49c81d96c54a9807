"""Labels from the match table, fold assignment, site groups, reliability figures."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from calib.rerank.crossfit import assign_folds, fold_groups, site_of_split
from calib.rerank.report import reliability
from calib.rerank.scoring import label_detections
from calib.tables import DETECTIONS

from synthdets import make, truth_for


def _dets(keys):
    return pl.DataFrame([dict(system=s, clip=c, frame=0, det_id=d, class_id=0, score=0.5, distance=None,
                              instance_id=None, points=[], extra=None) for s, c, d in keys], schema=DETECTIONS)


def test_labels_join_by_system_clip_det_id():
    dets = _dets([("A", "c1", 0), ("A", "c1", 1), ("B", "c1", 0), ("A", "c2", 0), ("A", "nogt", 0)])
    match = pl.DataFrame({"system": ["B", "A", "A", "A"], "clip": ["c1", "c1", "c1", "c2"], "det_id": [0, 1, 0, 0],
                          "best_iou": [0.25, 0.2499, 0.9, 0.0]})
    out = label_detections(dets, match, 0.25)
    assert out.select("system", "clip", "det_id").rows() == [("A", "c1", 0), ("A", "c1", 1), ("B", "c1", 0),
                                                              ("A", "c2", 0)]  # the clip without GT is left out
    assert out.get_column("label").to_list() == [1, 0, 1, 0]  # >= 0.25 is matchable
    with pytest.raises(ValueError, match="detection 1 of clip 'c1'.*no record"):
        label_detections(dets, match.filter(pl.col("best_iou") != 0.2499), 0.25)
    with pytest.raises(ValueError, match="2 records for detection 0"):
        label_detections(dets, pl.concat([match, match.head(1)]), 0.25)


def test_assign_folds_whole_groups_balanced_deterministic():
    sizes = {"a": 50, "b": 40, "c": 30, "d": 30, "e": 20, "f": 10, "g": 10, "h": 10}
    groups = np.repeat(list(sizes), list(sizes.values()))
    fold = assign_folds(groups, 3, seed=0)
    for g in sizes:
        assert np.unique(fold[groups == g]).size == 1
    counts = np.bincount(fold)
    assert counts.size == 3 and counts.max() - counts.min() <= 10  # greedy largest-first balance: 70/70/60
    np.testing.assert_array_equal(fold, assign_folds(groups, 3, seed=0))
    assert np.unique(assign_folds(np.array(["x", "y", "x"]), 5, seed=0)).size == 2  # capped at the group count
    with pytest.raises(ValueError, match="at least 2 groups"):
        assign_folds(np.array(["x", "x"]), 5, seed=0)


def test_site_groups_from_truth_split():
    assert site_of_split("dev-train-sony") == "sony" and site_of_split("dev-test-tau") == "tau"
    dets, _, splits = make(n_clips=4, frames=1, per_frame=2)
    groups = fold_groups(dets, truth_for(splits), "site")
    expected = [splits[c].rsplit("-", 1)[1] for c in dets.get_column("clip")]
    assert groups.tolist() == expected
    flat = truth_for({c: "" for c in splits})
    with pytest.raises(ValueError, match="split column is empty"):
        fold_groups(dets, flat, "site")
    np.testing.assert_array_equal(fold_groups(dets, None, "clip"), dets.get_column("clip").to_numpy())


def test_reliability_hand_computed():
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55])
    y = np.array([0, 1, 1, 1, 0])
    r = reliability(p, y)
    # bins: [0,.1): conf .05 rate .5 (n 2); [.5,.6): conf .55 rate 0 (n 1); [.9,1]: conf .95 rate 1 (n 2)
    expected = (2 * abs(0.5 - 0.05) + 1 * 0.55 + 2 * 0.05) / 5
    assert r["ece"] == pytest.approx(expected, abs=1e-12)
    assert r["bin_count"] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert reliability(np.zeros(0), np.zeros(0))["ece"] == 0.0
