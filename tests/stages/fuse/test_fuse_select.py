"""max_envelope and calibrated_union: the choice and calibration logic on hand-made metrics.
The scorer is replaced by simple stand-ins here (tests with the real scorer live in
test_fuse_scored.py); what is checked is what the stages do with the numbers."""
import math

import numpy as np
import polars as pl
import pytest
from fusedata import det, hit_rate_metrics as fake_metrics

from calib.score import facade
from calib.stages.base import Tables, make_stage
from calib.stages.fuse.calibrated_union import CalibratedUnion, calibrate, fit_isotonic, fit_quantile
from calib.stages.fuse.max_envelope import MaxEnvelope, choose_per_class, clip_folds, cross_fitted, site_held_out
from calib.tables import TRUTH

NAN = math.nan
METRICS = pl.DataFrame(
    [("a", 0, 0.5, 0.1), ("b", 0, 0.3, 0.9),
     ("a", 1, 0.40000, 0.9), ("b", 1, 0.40005, 0.5),   # within eps: Pearson decides
     ("a", 2, 0.4, 0.9), ("b", 2, 0.4002, 0.1),        # beyond eps: mAP decides
     ("a", 3, NAN, NAN), ("b", 3, NAN, 0.3),            # no truth: best macro system
     ("a", 5, 0.2, NAN), ("b", 5, 0.2, 0.1),            # a missing Pearson counts lowest
     ("a", 6, 0.7, 0.4), ("b", 6, 0.7, 0.4)],           # full tie: name order
    schema={"system": pl.String, "class_id": pl.Int64, "mAP": pl.Float64, "pearson": pl.Float64}, orient="row")


def test_choose_per_class_by_hand():
    t = choose_per_class(METRICS, eps=1e-4)
    assert t.height == 13
    got = {r["class_id"]: (r["system"], r["reason"]) for r in t.iter_rows(named=True)}
    assert got[0] == ("a", "mAP") and got[1] == ("a", "pearson") and got[2] == ("b", "mAP")
    assert got[5] == ("b", "pearson") and got[6] == ("a", "name")
    # macro a = (0.5 + 0.4 + 0.4 + 0.2 + 0.7) / 5 = 0.44 > macro b = 0.40015
    assert got[3] == ("a", "no truth") and got[12] == ("a", "no truth")
    row0 = t.row(0, named=True)
    assert row0["class_name"] == "Female speech" and row0["runner_up"] == "b" and row0["margin"] == pytest.approx(0.2)
    assert choose_per_class(METRICS, eps=0.0).row(1, named=True)["system"] == "b"


def truth_rows(clips, split="dev-test-sony"):
    rows = [{"clip": c, "split": split, "frame": f, "ann_id": 2 * f + k, "class_id": k, "instance_id": None,
             "distance": None, "points": [], "category_str": False, "extra": None}
            for c in clips for f in range(3) for k in (0, 1)]
    return pl.DataFrame(rows, schema=TRUTH)


def system_rows(clips, good_class, name):
    """A system that finds every event of ``good_class`` and misses the other class's, adding a
    false alarm of the other class in frame 9."""
    other = 1 - good_class
    return det([{"clip": c, "frame": f, "class_id": good_class, "score": 0.9, "az": 0, "el": 0, "system": name}
                for c in clips for f in range(3)]
               + [{"clip": c, "frame": 9, "class_id": other, "score": 0.9, "az": 0, "el": 0, "system": name}
                  for c in clips])


def test_max_envelope_takes_each_class_from_its_best_system(stand_in_scorer):
    clips = ["c1", "c2"]
    systems = {"audio": system_rows(clips, 0, "audio"), "av": system_rows(clips, 1, "av")}
    stage = MaxEnvelope().fit(Tables(systems=systems, truth=truth_rows(clips)))
    assert stage.choice_[0] == "audio" and stage.choice_[1] == "av"
    assert "Female speech" in stage.report() and "audio" in stage.report()
    out = stage.apply(Tables(systems=systems))["detections"]
    assert out.select("class_id", "fuse_source").unique().sort("class_id").rows() == [(0, "audio"), (1, "av")]
    assert out.height == 12 and set(out.get_column("system")) == {"max_envelope"}
    assert out.group_by("clip").agg(pl.col("det_id").sort()).sort("clip").get_column("det_id").to_list() == [
        list(range(6))] * 2
    assert fake_metrics(out, truth_rows(clips)).get_column("mAP").to_list()[:2] == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="fit"):
        MaxEnvelope().apply(Tables(systems=systems))
    with pytest.raises(ValueError, match="absent"):
        stage.apply(Tables(systems={"audio": systems["audio"]}))


def test_cross_fitted_and_site_held_out_estimates(stand_in_scorer):
    sony = [f"s{i}" for i in range(6)]
    tau = [f"t{i}" for i in range(4)]
    truth = pl.concat([truth_rows(sony, "dev-test-sony"), truth_rows(tau, "dev-test-tau")])
    clips = sony + tau
    systems = {"audio": system_rows(clips, 0, "audio"), "av": system_rows(clips, 1, "av")}
    summary, choices = cross_fitted(systems, truth, n_folds=5, seed=1)
    got = dict(summary.rows())
    assert got["system:audio"] == 0.5 and got["system:av"] == 0.5
    assert got["envelope:in-sample"] == 1.0 and got["envelope:cross-fitted(5 folds)"] == 1.0
    assert choices.height == 5 * 13
    site = dict(site_held_out(systems, truth).rows())
    assert site == {"system:audio@tau": 0.5, "system:av@tau": 0.5, "envelope:chosen@sony->tau": 1.0}
    with pytest.raises(ValueError, match="'mars'"):
        site_held_out(systems, truth, test_site="mars")


def test_clip_folds_are_seeded_and_balanced():
    clips = [f"c{i}" for i in range(10)]
    a, b = clip_folds(clips, 3, seed=0), clip_folds(list(reversed(clips)), 3, seed=0)
    assert a == b and sorted(np.bincount(list(a.values())).tolist()) == [3, 3, 4]
    assert clip_folds(clips, 3, seed=1) != a
    with pytest.raises(ValueError, match="n_folds"):
        clip_folds(clips, 11, seed=0)


def test_isotonic_knots_by_hand():
    x, y = fit_isotonic(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1]))
    # pool adjacent violators: (1, 0) at 0.2, 0.3 pool to 0.5
    assert calibrate(np.array([0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.9]), x, y).tolist() == pytest.approx(
        [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0])


def test_quantile_binning_by_hand():
    s = np.arange(10, dtype=float)
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1])
    x, y = fit_quantile(s, labels, bins=2)
    assert x.tolist() == [2.0, 7.0] and y.tolist() == pytest.approx([0.2, 0.8])
    assert calibrate(np.array([0.0, 4.5, 9.0]), x, y).tolist() == pytest.approx([0.2, 0.5, 0.8])
    # a falling pair of bins is pooled to its weighted mean
    x, y = fit_quantile(s, np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0]), bins=2)
    assert y.tolist() == pytest.approx([0.3, 0.3])


def union_systems():
    a = det([{"clip": "c1", "frame": f, "class_id": 0, "score": s, "az": 0, "el": 0, "system": "a"}
             for f, s in enumerate([10.0, 20.0, 30.0, 40.0])]).with_columns(pl.Series("feat_iou", [0.0, 0.1, 0.3, 0.9]))
    b = det([{"clip": "c1", "frame": f, "class_id": 0, "score": s, "az": 90, "el": 0, "system": "b"}
             for f, s in enumerate([0.1, 0.2, 0.3, 0.4])]).with_columns(pl.Series("feat_iou", [0.0, 0.5, 0.6, 0.7]))
    return {"a": a, "b": b}


@pytest.fixture
def stand_in_matches(monkeypatch):
    monkeypatch.setattr(facade, "best_ious", lambda d, truth, gt_clips=None: d.get_column("feat_iou").to_numpy())


def test_calibrated_union_maps_each_system_to_matchability(stand_in_matches):
    systems = union_systems()
    stage = make_stage({"type": "calibrated_union", "tie_break": 0.0}).fit(Tables(systems=systems, truth=truth_rows([])))
    out = stage.apply(Tables(systems=systems))["detections"]
    # a: labels 0 0 1 1 -> 0 0 1 1; b: labels 0 1 1 1 -> 0 1 1 1
    assert out.select("fuse_source", "frame", "score", "score_raw").rows() == [
        ("a", 0, 0.0, 10.0), ("b", 0, 0.0, 0.1), ("a", 1, 0.0, 20.0), ("b", 1, 1.0, 0.2),
        ("a", 2, 1.0, 30.0), ("b", 2, 1.0, 0.3), ("a", 3, 1.0, 40.0), ("b", 3, 1.0, 0.4)]
    assert out.get_column("det_id").to_list() == list(range(8))
    assert stage.calibration_table_.columns == ["system", "class_id", "score_raw", "calibrated"]
    broken = CalibratedUnion().fit(Tables(systems=systems, truth=truth_rows([])))
    ranked = broken.apply(Tables(systems=systems))["detections"].sort("score", descending=True)
    # the tie-break keeps each system's own order inside a step
    assert ranked.filter(pl.col("fuse_source") == "a").get_column("score_raw").to_list() == [40.0, 30.0, 20.0, 10.0]
    naive = CalibratedUnion(method="none").fit(Tables(systems=systems, truth=truth_rows([])))
    assert naive.apply(Tables(systems=systems))["detections"].sort("score").get_column("score").to_list()[-4:] == [
        10.0, 20.0, 30.0, 40.0]
    with pytest.raises(ValueError, match="no calibration learned for system 'c'"):
        stage.apply(Tables(systems={**systems, "c": systems["a"]}))
    with pytest.raises(ValueError, match="method"):
        CalibratedUnion(method="platt").fit(Tables(systems=systems, truth=truth_rows([])))


def test_per_class_maps_sink_a_system_where_it_is_weak(stand_in_matches):
    # system a: class 0 detections never match, class 1 always do, with the same raw scores
    a = det([{"frame": f, "class_id": k, "score": s, "az": 0, "el": 0, "system": "a"}
             for k in (0, 1) for f, s in enumerate([0.6, 0.7, 0.8])]).with_columns(
        pl.Series("feat_iou", [0.0, 0.1, 0.2, 0.5, 0.6, 0.7]))
    systems = {"a": a}
    t = Tables(systems=systems, truth=truth_rows([]))
    pooled = CalibratedUnion(by_class=False, tie_break=0.0).fit(t)
    per_class = CalibratedUnion(by_class=True, min_class_count=3, tie_break=0.0).fit(t)
    # pooled: labels 0 0 0 1 1 1 over scores .6 .7 .8 .6 .7 .8 -> isotonic 0.5 everywhere
    assert pooled.apply(t)["detections"].get_column("score").to_list() == pytest.approx([0.5] * 6)
    got = per_class.apply(t)["detections"].sort("class_id", "frame")
    assert got.get_column("score").to_list() == pytest.approx([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert sorted(per_class.calibrators_["a"]) == ["0", "1", "all"]
    assert per_class.calibration_table_.get_column("class_id").null_count() == len(per_class.calibrators_["a"]["all"]["x"])
    # too few detections of a class: its system-wide map is used
    few = CalibratedUnion(by_class=True, min_class_count=4, tie_break=0.0).fit(t)
    assert sorted(few.calibrators_["a"]) == ["all"]
