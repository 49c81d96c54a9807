"""Soft IoU, Pearson, AP and the matching rules on cases computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from calib.score import Annotation, score
from calib.score.fast import pair_ious
from calib.score.matching import average_precision, pearson, pr_curve
from calib.score.reference import soft_iou


def test_soft_iou_by_hand():
    a = np.zeros((50, 100), np.float32)
    b = np.zeros((50, 100), np.float32)
    a[0, :3] = [1.0, 0.5, 0.0]
    b[0, :3] = [0.5, 0.5, 1.0]
    # min: 0.5 + 0.5 + 0 = 1; max: 1 + 0.5 + 1 = 2.5
    assert soft_iou(a, b) == np.float32(0.4)
    assert pair_ious(a.reshape(1, -1).astype(np.float64), np.array([True]),
                     b.reshape(1, -1).astype(np.float64), np.array([True]))[0] == np.float32(0.4)
    assert soft_iou(np.zeros((50, 100), np.float32), np.zeros((50, 100), np.float32)) == 0  # empty union


def test_pearson_by_hand():
    g = np.zeros((50, 100))
    p = np.zeros((50, 100))
    g[0, :3] = [0.2, 0.4, 0.6]
    p[0, :3] = [0.1, 0.2, 0.3]
    p[0, 3] = 5.0  # outside the GT support: ignored
    assert pearson(g, p) == pytest.approx(1.0, abs=1e-12)
    p[0, :3] = [0.3, 0.2, 0.1]
    assert pearson(g, p) == pytest.approx(-1.0, abs=1e-12)
    p[0, :3] = [0.0, 1.0, 0.0]  # z-scores (-1.2247, 0, 1.2247) x (-0.7071, 1.4142, -0.7071): mean 0
    assert pearson(g, p) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(pearson(g, np.full((50, 100), 0.3)))  # constant prediction
    g1 = np.zeros((50, 100))
    g1[3, 3] = 1.0
    assert math.isnan(pearson(g1, p))  # a single GT pixel


def test_ap_of_a_tiny_record_list():
    # scores 0.9 (tp), 0.8 (fp), 0.7 (tp), 2 GT: recall .5 .5 1, precision 1 .5 .667.
    # Recall points 0..0.50 (51) take max precision 1; 0.51..1 (50) take 2/3.
    ap = average_precision(np.array([0.8, 0.9, 0.7]), np.array([[False], [True], [True]]), 2)
    assert ap.dtype == np.float32
    assert ap[0] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101, abs=1e-6)
    r, p = pr_curve(np.array([0.8, 0.9, 0.7]), np.array([False, True, True]), 2)
    np.testing.assert_allclose(r, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(p, [1.0, 0.5, 2 / 3], rtol=1e-6)


def test_ap_without_detections_is_zero_with_gt_and_nan_without():
    assert average_precision(np.zeros(0), np.zeros((0, 2), bool), 3).tolist() == [0.0, 0.0]
    assert np.isnan(average_precision(np.zeros(0), np.zeros((0, 1), bool), 0)).all()


def _rect(x0, y0, e=1.0):
    """A constant 4-corner rectangle (12 x 12 degrees): its map is 1 on its grid points."""
    return np.array([[x0, y0, e], [x0 + 12, y0, e], [x0 + 12, y0 + 12, e], [x0, y0 + 12, e]])


def test_assigned_pair_with_zero_iou_is_a_matched_record():
    gt = {"c": [Annotation(frame=0, class_id=1, score=math.nan, polygons=(_rect(36, 36),), index=0),
                Annotation(frame=0, class_id=1, score=math.nan, polygons=(_rect(180, 90),), index=1)]}
    pred = {"c": [Annotation(frame=0, class_id=1, score=0.9, polygons=(_rect(36, 36),), index=0),
                  Annotation(frame=0, class_id=1, score=0.8, polygons=(_rect(300, 150),), index=1)]}
    for engine in ("fast", "reference"):
        res = score(pred, gt, iou_thresholds=[0.5], engine=engine)
        m = res.matches.sort("det_id")
        assert m.get_column("gt_ann_id").to_list() == [0, 1]  # both assigned, the second with IoU 0
        assert m.get_column("iou").to_list() == [1.0, 0.0]
        assert m.get_column("tp_0.5").to_list() == [True, False]
        # recall .5 then .5, precision 1 then .5: 51 recall points at precision 1
        assert res["per_class"]["Male speech"]["mAP"] == pytest.approx(51 / 101, abs=1e-6)
        assert res["per_class"]["Male speech"]["n_gt"] == 2
        assert res.gt_matches.get_column("matched").to_list() == [True, True]


def test_other_classes_and_frames_never_match():
    gt = {"c": [Annotation(frame=0, class_id=1, score=math.nan, polygons=(_rect(36, 36),), index=0)]}
    pred = {"c": [Annotation(frame=0, class_id=2, score=0.9, polygons=(_rect(36, 36),), index=0),
                  Annotation(frame=1, class_id=1, score=0.8, polygons=(_rect(36, 36),), index=1)]}
    res = score(pred, gt, iou_thresholds=[0.5])
    assert res.matches.get_column("gt_ann_id").null_count() == 2
    assert res["per_class"]["Male speech"]["mAP"] == 0.0  # GT, detections, no true positive
    assert math.isnan(res["per_class"]["Clapping"]["mAP"])  # no GT: inactive
    assert res.recall_ceiling["overall"]["0.1"] == 0.0


def test_recall_ceiling_counts_best_prediction_whatever_its_score():
    gt = {"c": [Annotation(frame=0, class_id=0, score=math.nan, polygons=(_rect(36, 36),), index=0),
                Annotation(frame=0, class_id=0, score=math.nan, polygons=(_rect(180, 90),), index=1)]}
    pred = {"c": [Annotation(frame=0, class_id=0, score=0.01, polygons=(_rect(36, 36),), index=0)]}
    res = score(pred, gt, iou_thresholds=[0.5])
    assert res.recall_ceiling["overall"] == {"0.1": 0.5, "0.25": 0.5, "0.5": 0.5}
    assert res.recall_ceiling["per_class"][0] == {"0.1": 0.5, "0.25": 0.5, "0.5": 0.5}


def test_fast_pearson_is_bit_identical_to_the_official_steps():
    """pearson_at (numpy's mean/std steps without their Python layers, on the GT's positive pixels)
    against matching.pearson on full maps: sizes around numpy's pairwise-sum block (8, 128),
    float32-valued maps, flat maps (NaN) and single pixels."""
    from calib.score.fast import pearson_at
    from calib.score.matching import pearson

    rng = np.random.default_rng(3)
    for n in [0, 1, 2, 3, 7, 8, 9, 127, 128, 129, 257, 1000, 4999, 5000]:
        for trial in range(6):
            g = np.zeros(5000)
            pix = np.sort(rng.choice(5000, n, replace=False))
            g[pix] = rng.random(n) if trial != 4 else 0.5  # trial 4: a flat GT map -> NaN
            p = rng.random(5000) * (rng.random(5000) < 0.7)
            if trial == 3:
                g, p = g.astype(np.float32).astype(np.float64), p.astype(np.float32).astype(np.float64)
            want, got = pearson(g, p), pearson_at(g[pix], p[pix])
            assert (np.isnan(want) and np.isnan(got)) or want == got, (n, trial, want, got)
