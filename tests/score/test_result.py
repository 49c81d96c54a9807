"""ScoreResult: one view of the official metrics whatever the protocol, and the facade that gives it."""
from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from calib.constants import CLASS_NAMES
from calib.score import ScoreResult, best_ious, class_scores, score_against, score_tables


def dcase(per: dict[int, tuple[float | None, float | None]]) -> dict:
    """A dcase2026 metrics dict (the official keys) with the given (mAP, pearson_r) per class id."""
    return {"macro_mAP": 0.4, "macro_pearson_r": 0.7, "micro_mAP": 0.3,
            "per_class": {n: {"mAP": per.get(k, (math.nan, None))[0], "pearson_r": per.get(k, (math.nan, None))[1]}
                          for k, n in enumerate(CLASS_NAMES)}}


def coco(per: dict[int, float]) -> dict:
    return {"mask_mAP": 0.25, "mask_AP50": 0.5, "pearson_r": 0.6, "distance_mape": math.nan,
            "per_class_mAP": {str(k): per.get(k, math.nan) for k in range(13)}}


def nan_eq(a, b) -> bool:
    return np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True)


def test_dcase2026_view():
    r = ScoreResult.of(dcase({0: (0.5, 0.9), 3: (0.25, None)}))
    assert (r.kind, r.headline, r.pearson) == ("dcase2026", 0.4, 0.7)
    assert nan_eq(r.class_ap, [0.5, math.nan, math.nan, 0.25] + [math.nan] * 9)
    assert nan_eq(r.class_pearson, [0.9] + [math.nan] * 12)
    assert list(r.per_class_ap) == list(range(13)) and r.per_class_ap[3] == 0.25
    assert r["micro_mAP"] == 0.3 and r.metrics == dcase({0: (0.5, 0.9), 3: (0.25, None)})


def test_coco_view():
    r = ScoreResult.of(coco({1: 0.75, 2: -1.0}))
    assert (r.kind, r.headline, r.pearson) == ("dcase2026-coco", 0.25, 0.6)
    assert nan_eq(r.class_ap, [math.nan, 0.75] + [math.nan] * 11)  # pycocotools' -1: no truth
    assert nan_eq(r.class_pearson, [math.nan] * 13)  # the coco script reports no per-class Pearson
    assert r.class_table().equals(pl.DataFrame({"class_id": list(range(13)), "mAP": r.class_ap.tolist(),
                                                "pearson": [math.nan] * 13}))


def test_unscored_and_read_back_from_json():
    for empty in (None, {}):
        r = ScoreResult.of(empty, "dcase2026")
        assert math.isnan(r.headline) and math.isnan(r.pearson) and r.per_class_ap == {}
        assert nan_eq(r.class_ap, [math.nan] * 13)
    s = r.summary()
    assert math.isnan(s["mAP"]) and math.isnan(s["pearson"]) and s["per_class_ap"] == {}
    back = ScoreResult.of(json.loads(json.dumps({"mask_mAP": None, "pearson_r": None, "per_class_mAP": {"4": None}})))
    assert back.kind == "dcase2026-coco" and math.isnan(back.headline) and math.isnan(back.per_class_ap[4])
    assert ScoreResult.of(back) is back
    with pytest.raises(ValueError, match="unknown protocol"):
        ScoreResult.of({}, "coco")


def test_summary_is_what_a_portfolio_records():
    s = ScoreResult.of(dcase({2: (1.0, 0.5)})).summary()
    assert list(s) == ["mAP", "pearson", "per_class_ap"] and (s["mAP"], s["pearson"]) == (0.4, 0.7)
    assert s["per_class_ap"][2] == 1.0 and math.isnan(s["per_class_ap"][0])


def _tables():
    """Two clips, one class-0 annotation per frame; detections: exact copies in clip a, one far
    miss in clip b, and a clip c without ground truth."""
    def blob(x):
        return [[{"x": x + dx, "y": 90.0 + dy, "e": 1.0 - 0.1 * (abs(dx) + abs(dy))}
                 for dx in (-2.0, 0.0, 2.0) for dy in (-2.0, 0.0, 2.0)]]
    from calib.tables import DETECTIONS, TRUTH, conform

    def none(dtype, n):
        return pl.Series([None] * n, dtype=dtype)

    truth = conform(pl.DataFrame({"clip": ["a", "b"], "split": ["", ""], "frame": [0, 0], "ann_id": [0, 0],
                                  "class_id": [0, 0], "instance_id": none(pl.Int64, 2), "distance": none(pl.Float64, 2),
                                  "points": [blob(100.0), blob(200.0)], "category_str": [False, False],
                                  "extra": none(pl.String, 2)}, schema_overrides={"points": TRUTH["points"]}), "truth")
    det = conform(pl.DataFrame({"system": ["s"] * 3, "clip": ["a", "b", "c"], "frame": [0, 0, 0], "det_id": [0, 0, 0],
                                "class_id": [0, 0, 0], "score": [0.9, 0.8, 0.7], "distance": none(pl.Float64, 3),
                                "instance_id": none(pl.Int64, 3), "points": [blob(100.0), blob(20.0), blob(50.0)],
                                "extra": none(pl.String, 3)}, schema_overrides={"points": DETECTIONS["points"]}),
                  "detections")
    return det, truth


def test_facade_gives_the_engine_numbers_and_their_view():
    det, truth = _tables()
    raw = score_tables(det, truth)
    r = score_against(det, truth)
    assert json.dumps(r.metrics) == json.dumps(raw.metrics) and r.protocol == "dcase2026"
    # class 0: the hit ranked first, the miss second, two GT: precision 1 up to recall 1/2 -> 51 of
    # the 101 recall points
    assert r.headline == raw["macro_mAP"] == r.class_ap[0] == raw["per_class"][CLASS_NAMES[0]]["mAP"]
    assert r.class_ap[0] == pytest.approx(51 / 101) and np.isnan(r.class_ap[1:]).all()
    assert r.skipped == ["c"]
    # class_scores: on the truth's clips only, any system name, no match tables
    c = class_scores(det.with_columns(pl.lit("other").alias("system")), truth)
    assert c.matches is None and c.class_ap[0] == r.class_ap[0] and c.skipped == []
    only_a = class_scores(det, truth.filter(pl.col("clip") == "a"))
    assert only_a.class_ap[0] == 1.0 and np.isnan(only_a.class_ap[1:]).all()
    assert np.isnan(class_scores(det, truth.clear()).class_ap).all()
    # the recipe's thresholds and options reach the engine
    t = score_against(det, truth, iou_thresholds="0.5", options={"tie_order": "stable"})
    assert t["per_class"][CLASS_NAMES[0]]["AP_per_thr"] == [pytest.approx(51 / 101)]


def test_facade_coco_view_matches_its_keys():
    det, truth = _tables()
    r = score_against(det, truth, protocol="dcase2026-coco")
    assert r.protocol == r.kind == "dcase2026-coco"
    assert r.headline == r["mask_mAP"] == r.class_ap[0] == r["per_class_mAP"]["0"]
    assert r.headline == pytest.approx(51 / 101)  # as dcase2026: the copy matches at every threshold
    assert r.pearson == r["pearson_r"] == pytest.approx(1.0)  # the one matched pair is an exact copy
    assert np.isnan(r.class_pearson).all()
    with pytest.raises(ValueError, match="fixed IoU thresholds"):
        score_against(det, truth, protocol="dcase2026-coco", iou_thresholds=[0.5])


def test_facade_scores_gt_clips_without_annotations():
    """A GT file that holds no annotation (clip c) is still scored: its detections are false
    positives, their best IoU 0."""
    det, truth = _tables()
    best = best_ious(det, truth)
    assert best[0] == pytest.approx(1.0) and best[1] == 0.0 and np.isnan(best[2])
    assert best_ious(det, truth, gt_clips=["a", "b", "c"])[2] == 0.0
    name = CLASS_NAMES[0]
    assert class_scores(det, truth)["per_class"][name]["n_det"] == 2
    with_c = class_scores(det, truth, gt_clips=["a", "b", "c"])
    assert with_c["per_class"][name]["n_det"] == 3 and with_c.class_ap[0] == pytest.approx(51 / 101)
    assert score_against(det, truth, gt_clips=["a", "b", "c"]).skipped == []
