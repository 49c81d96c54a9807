"""Selection stages (threshold, nms, cap, objectness, class_filter): hand-computed keeps."""
import numpy as np
import polars as pl
import pytest

from calib.stages.base import Tables, make_stage


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def square(x0, y0, w, h, e=1.0):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    return np.column_stack([np.mod(xs.ravel(), 360), ys.ravel(), np.full(xs.size, e)]).astype(float)


def run(spec, df, **tables):
    return make_stage(spec).apply(Tables(detections=df, **tables))["detections"]


def kept(df):
    return sorted(df.get_column("det_id").to_list())


# ---------------------------------------------------------------- threshold
def test_threshold_global_and_per_class(dets):
    df = dets([{"class_id": 0, "score": 0.2, "polys": []}, {"class_id": 0, "score": 0.5, "polys": []},
               {"class_id": 3, "score": 0.4, "polys": []}, {"class_id": 3, "score": 0.8, "polys": []}])
    assert kept(run({"type": "threshold", "threshold": 0.3}, df)) == [1, 2, 3]
    assert kept(run({"type": "threshold", "threshold": 0.3, "per_class": {"3": 0.6}}, df)) == [1, 3]
    alt = df.with_columns(pl.Series("score_alt", [0.9, None, float("nan"), 0.1]))
    assert kept(run({"type": "threshold", "threshold": 0.05, "column": "score_alt"}, alt)) == [0, 3]
    with pytest.raises(ValueError, match="outside 0..12"):
        run({"type": "threshold", "per_class": {"13": 0.5}}, df)
    with pytest.raises(ValueError, match="no column"):
        run({"type": "threshold", "column": "score_nope"}, df)


# ---------------------------------------------------------------- nms
def nms_table(dets):
    return dets([
        {"class_id": 0, "score": 0.9, "polys": [square(0, 0, 10, 10)]},  # A
        {"class_id": 0, "score": 0.8, "polys": [square(5, 0, 10, 10)]},  # B: IoU(A) = 50/150
        {"class_id": 0, "score": 0.7, "polys": [square(1, 0, 10, 10)]},  # C: IoU(A) = 90/110
        {"class_id": 1, "score": 0.5, "polys": [square(0, 0, 10, 10)]},  # D: other class
        {"class_id": 0, "score": 0.95, "frame": 1, "polys": [square(0, 0, 10, 10)]},  # other frame
    ])


@pytest.mark.parametrize("iou", ["box", "mask"])
def test_nms_suppresses_within_frame_and_class(dets, iou):
    df = nms_table(dets)
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.5}, df)) == [0, 1, 3, 4]
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.3}, df)) == [0, 3, 4]  # 1/3 > 0.3
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.5, "class_agnostic": True}, df)) == [0, 1, 4]


@pytest.mark.parametrize("iou", ["box", "mask"])
def test_nms_sees_overlap_across_the_seam(dets, iou):
    df = dets([{"score": 0.9, "polys": [square(355, 0, 10, 10)]},  # columns 355..4
               {"score": 0.8, "polys": [square(0, 0, 10, 10)]}])  # IoU 50/150
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.3}, df)) == [0]
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.34}, df)) == [0, 1]


@pytest.mark.parametrize("iou", ["box", "mask"])
def test_nms_masks_touching_a_pole(dets, iou):
    # rows 0..9 (the north pole is row 0) and 0..4: IoU 50/100; rows 171..180 and 176..180 likewise
    df = dets([{"score": 0.9, "polys": [square(40, 0, 10, 10)]}, {"score": 0.8, "polys": [square(40, 0, 10, 5)]},
               {"score": 0.7, "frame": 1, "polys": [square(40, 171, 10, 10)]},
               {"score": 0.6, "frame": 1, "polys": [square(40, 176, 10, 5)]}])
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.49}, df)) == [0, 2]
    assert kept(run({"type": "nms", "iou": iou, "iou_threshold": 0.5}, df)) == [0, 1, 2, 3]


def test_nms_mask_iou_differs_from_box_iou(dets):
    # Same box; the triangle (0,0), (9,0), (0,9) covers the 55 pixels with x + y <= 9 at energy 1:
    # soft IoU 55/100 against the full square, box IoU 1.
    df = dets([{"score": 0.9, "polys": [square(0, 0, 10, 10)]},
               {"score": 0.8, "polys": [P([0, 0, 1], [9, 0, 1], [0, 9, 1])]}])
    assert kept(run({"type": "nms", "iou": "box", "iou_threshold": 0.6}, df)) == [0]
    assert kept(run({"type": "nms", "iou": "mask", "iou_threshold": 0.6}, df)) == [0, 1]
    assert kept(run({"type": "nms", "iou": "mask", "iou_threshold": 0.54}, df)) == [0]


def test_nms_orders_by_the_given_column(dets):
    df = nms_table(dets).with_columns(pl.Series("score_rr", [0.1, 0.2, 0.3, 0.4, 0.5]))
    # by score_rr, C (0.3) goes first: it suppresses A (IoU 0.82) but not B (IoU 60/140)
    assert kept(run({"type": "nms", "iou": "box", "iou_threshold": 0.5, "column": "score_rr"}, df)) == [1, 2, 3, 4]


# ---------------------------------------------------------------- cap
def cap_table(dets):
    return dets([
        {"class_id": 0, "score": 0.9, "polys": []}, {"class_id": 0, "score": 0.8, "polys": []},
        {"class_id": 0, "score": 0.7, "polys": []}, {"class_id": 1, "score": 0.85, "polys": []},
        {"class_id": 1, "score": 0.6, "polys": []}, {"class_id": 0, "score": 0.5, "frame": 1, "polys": []},
    ])


def test_cap_per_class_then_per_frame(dets):
    df = cap_table(dets)
    assert kept(run({"type": "cap", "per_class": 2}, df)) == [0, 1, 3, 4, 5]
    assert kept(run({"type": "cap", "per_frame": 3}, df)) == [0, 1, 3, 5]
    assert kept(run({"type": "cap", "per_class": 1, "per_frame": 1}, df)) == [0, 5]
    assert run({"type": "cap"}, df).equals(df)  # 0: no cap
    out = run({"type": "cap", "per_class": 2}, df)
    assert out.get_column("det_id").to_list() == [0, 1, 3, 4, 5]  # table order kept


def test_cap_tie_break_by_energy_and_other_columns(dets):
    df = dets([{"score": 0.5, "polys": [P([10, 10, 1.0])]},
               {"score": 0.5, "polys": [square(20, 20, 2, 2)]}])  # energy 4
    assert kept(run({"type": "cap", "per_class": 1}, df)) == [0]
    assert kept(run({"type": "cap", "per_class": 1, "tie_break": "energy"}, df)) == [1]
    df = cap_table(dets).with_columns(pl.Series("score_fused", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert kept(run({"type": "cap", "per_class": 1, "column": "score_fused"}, df)) == [2, 4, 5]
    with pytest.raises(ValueError, match="per_class"):
        run({"type": "cap", "per_class": -1}, df)


def test_cap_on_score_raw_uses_score_until_a_stage_rewrites_it(dets):
    # No stage rewrote ``score`` (no score_raw column): score is the raw upstream score.
    df = cap_table(dets)
    assert kept(run({"type": "cap", "per_frame": 2, "column": "score_raw"}, df)) == [0, 3, 5]
    # Once a stage moved the upstream score to score_raw, the cap follows score_raw, not score.
    rescored = df.with_columns(pl.col("score").alias("score_raw"),
                               pl.Series("score", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert kept(run({"type": "cap", "per_frame": 2, "column": "score_raw"}, rescored)) == [0, 3, 5]
    assert kept(run({"type": "cap", "per_frame": 2}, rescored)) == [3, 4, 5]
    with pytest.raises(ValueError, match="score_other"):  # only score_raw has a stand-in
        run({"type": "cap", "per_frame": 2, "column": "score_other"}, df)


# ---------------------------------------------------------------- objectness
def test_objectness_is_class_agnostic(dets):
    df = dets([{"class_id": 0, "score": 0.9, "polys": [square(0, 0, 10, 10)]},
               {"class_id": 1, "score": 0.6, "polys": [square(0, 0, 10, 10)]},
               {"class_id": 2, "score": 0.3, "polys": [square(100, 100, 5, 5)]},
               {"class_id": 2, "score": 0.2, "frame": 1, "polys": [square(0, 0, 10, 10)]}])
    out = run({"type": "objectness"}, df)
    assert out.get_column("score_objectness").to_list() == [0.9, 0.9, 0.3, 0.2]
    out = run({"type": "objectness", "reduce": "noisy_or"}, df)
    assert np.allclose(out.get_column("score_objectness").to_numpy(), [1 - 0.1 * 0.4, 1 - 0.1 * 0.4, 0.3, 0.2])
    out = run({"type": "objectness", "reduce": "sum", "iou": "mask", "as_score": True}, df)
    assert np.allclose(out.get_column("score").to_numpy(), [1.5, 1.5, 0.3, 0.2])
    assert out.get_column("score_raw").to_list() == [0.9, 0.6, 0.3, 0.2]
    # the class-agnostic ordering: one detection per frame by objectness, ties to the lower det_id
    capped = run({"type": "cap", "per_frame": 1, "column": "score_objectness"}, run({"type": "objectness"}, df))
    assert kept(capped) == [0, 3]


# ---------------------------------------------------------------- class_filter
def test_class_filter_with_given_classes(dets):
    df = dets([{"class_id": c, "polys": []} for c in (0, 1, 2, 2, 5)])
    stage = make_stage({"type": "class_filter", "classes": [2, 0]})
    out = stage.fit(Tables(detections=df)).apply(Tables(detections=df))["detections"]
    assert out.get_column("class_id").to_list() == [0, 2, 2]
    assert stage.classes_ == [0, 2]


@pytest.mark.parametrize("name", ["threshold", "nms", "cap", "objectness", "class_filter"])
def test_selection_stage_contract(dets, name):
    spec = {"type": name}
    if name == "class_filter":
        spec["classes"] = [0]
    df = nms_table(dets)
    before = df.clone()
    st = make_stage(spec)
    out = st.fit(Tables(detections=df)).apply(Tables(detections=df))["detections"]
    st2 = make_stage(st.to_dict())
    again = st2.fit(Tables(detections=df)).apply(Tables(detections=df))["detections"]
    assert df.equals(before) and out.equals(again)
    empty = df.clear()
    res = make_stage(spec).fit(Tables(detections=empty)).apply(Tables(detections=empty))["detections"]
    assert len(res) == 0 and set(df.columns) <= set(res.columns)


def truth_like(df):
    """A truth table holding the same annotations as a detections table."""
    from calib.tables import conform

    t = df.select("clip", pl.lit("").alias("split"), "frame", pl.col("det_id").alias("ann_id"), "class_id",
                  pl.lit(1, pl.Int64).alias("instance_id"), "distance", "points",
                  pl.lit(False).alias("category_str"), "extra")
    return conform(t, "truth")


def test_class_filter_learns_the_most_reliable_classes(dets):
    # class 0: its one GT found (AP 1); class 1: one of two GT found (AP 51/101); class 2: missed (AP 0);
    # class 3: detections but no truth (no AP, never kept)
    gt = truth_like(dets([
        {"class_id": 0, "polys": [square(10, 10, 6, 6)]},
        {"class_id": 1, "polys": [square(50, 10, 6, 6)]}, {"class_id": 1, "frame": 1, "polys": [square(50, 10, 6, 6)]},
        {"class_id": 2, "polys": [square(90, 10, 6, 6)]}]))
    det = dets([{"class_id": 0, "score": 0.9, "polys": [square(10, 10, 6, 6)]},
                {"class_id": 1, "score": 0.8, "polys": [square(50, 10, 6, 6)]},
                {"class_id": 3, "score": 0.7, "polys": [square(130, 10, 6, 6)]}])
    tables = Tables(detections=det, truth=gt)
    stage = make_stage({"type": "class_filter", "k": 2}).fit(tables)
    assert stage.ap_[0] == pytest.approx(1.0) and stage.ap_[1] == pytest.approx(51 / 101, abs=1e-6)
    assert stage.ap_[2] == 0 and np.isnan(stage.ap_[3])
    assert stage.classes_ == [0, 1]
    assert stage.apply(tables)["detections"].get_column("class_id").to_list() == [0, 1]
    assert make_stage({"type": "class_filter", "k": 10}).fit(tables).classes_ == [0, 1, 2]
    with pytest.raises(RuntimeError, match="fit"):
        make_stage({"type": "class_filter"}).apply(tables)


# ---------------------------------------------------------------- nms: the default does something
def test_default_nms_removes_a_duplicate_blob_that_iou_half_keeps(dets):
    # two uniform 10 x 10 squares 6 degrees apart: soft IoU 40 / 160 = 0.25 (by hand)
    df = dets([{"polys": [square(100, 50, 10, 10)], "score": 0.9},
               {"polys": [square(106, 50, 10, 10)], "score": 0.5}])
    assert kept(run({"type": "nms", "iou_threshold": 0.5}, df)) == [0, 1]
    assert kept(run({"type": "nms"}, df)) == [0]
    assert kept(run({"type": "nms", "iou_threshold": 0.26}, df)) == [0, 1]


def test_default_nms_removes_the_synthetic_duplicates(synth_small):
    """On the generator's ``lowthr`` system (whose duplicates are weaker copies 8-25 degrees from a
    hit), NMS at 0.5 removes almost nothing; the default removes many rows, most of them the
    generator's duplicates and false positives, few of its hits."""
    from calib.io.dcase import ingest_predictions

    d, _ = ingest_predictions([synth_small / "systems" / "lowthr"], "lowthr", progress=False)
    labels = pl.read_csv(synth_small / "labels" / "lowthr.csv").select("clip", "det_id", "kind")

    def removed(spec):
        out = run(spec, d)
        gone = d.join(out.select("clip", "det_id"), on=["clip", "det_id"], how="anti").join(labels, on=["clip", "det_id"])
        return dict(gone.group_by("kind").len().rows())

    at_half = removed({"type": "nms", "iou_threshold": 0.5})
    default = removed({"type": "nms"})
    assert sum(at_half.values()) <= 3
    assert default.get("dup", 0) >= 10 * max(at_half.get("dup", 0), 1)
    assert default.get("tp", 0) <= 0.1 * sum(default.values())
