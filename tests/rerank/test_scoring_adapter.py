"""The reranker's use of the scorer on synthetic data: re-scoring the match table with other
scores gives exactly the official metrics of a table carrying those scores."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from calib.rerank.scoring import compare_maps, label_detections, rescore, score_detections


@pytest.fixture(scope="module")
def small(synth_small):
    from calib.io.dcase import ingest_predictions, ingest_truth

    dets, _ = ingest_predictions([synth_small / "systems" / "lowthr"], system="lowthr", progress=False)
    truth, _ = ingest_truth(synth_small / "gt", progress=False)
    # a slice keeps the test quick (GT maps are the scorer's slow part): 2 clips, 15 frames
    clips = sorted(truth.get_column("clip").unique().to_list())[:2]
    keep = pl.col("clip").is_in(clips) & (pl.col("frame") < 15)
    return dets.filter(keep), truth.filter(keep)


def same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b


def test_rescore_reproduces_official_metrics(small):
    from calib.score import score_tables

    dets, truth = small
    scored = score_detections(dets, truth)
    official = dict(scored.results["lowthr"])
    same(rescore(scored, dets, "score")["lowthr"], official)
    # new scores: the same numbers as scoring a table that carries them
    rng = np.random.default_rng(0)
    new = dets.with_columns(pl.Series("score", np.round(rng.random(dets.height), 2)))  # ties on purpose
    direct = dict(score_tables(new, truth))
    same(rescore(scored, new, "score")["lowthr"], direct)
    maps = compare_maps(scored, new.with_columns(pl.col("score").alias("s2")), {"a": "score", "b": "s2"})
    assert maps["lowthr"]["a"] == maps["lowthr"]["b"] == direct["macro_mAP"]


def test_labels_from_the_scorer(small):
    dets, truth = small
    scored = score_detections(dets, truth)
    lab = label_detections(dets, scored.matches, 0.25)
    assert lab.height == dets.filter(pl.col("class_id").is_between(0, 12)).height
    m = scored.matches
    # a matched record at IoU >= 0.25 is a true positive at 0.25 and its detection is matchable
    tp = m.filter(pl.col("tp_0.25")).select("clip", "det_id")
    assert lab.join(tp, on=["clip", "det_id"]).get_column("label").min() == 1
    with pytest.raises(ValueError, match="no 'nope'"):
        rescore(scored, dets.with_columns(pl.lit(None, pl.Float64).alias("nope")), "nope")


def test_labels_without_the_matching_are_the_match_tables(small):
    """best_iou_table (the scorer's per-detection IoU cache, no matching) gives every match-table
    row's best_iou, for two systems at once (one a shifted copy, with a class outside 0..12)."""
    from calib.rerank.scoring import best_iou_table

    dets, truth = small
    other = dets.with_columns(pl.lit("copy").alias("system"), pl.col("det_id") + 7,
                              pl.when(pl.col("det_id") == 3).then(13).otherwise(pl.col("class_id")).alias("class_id"))
    both = pl.concat([dets, other])
    got = best_iou_table(both, truth).sort("system", "clip", "det_id")
    want = score_detections(both, truth).matches.select("system", "clip", "det_id", "best_iou").sort(
        "system", "clip", "det_id")
    assert got.equals(want)
