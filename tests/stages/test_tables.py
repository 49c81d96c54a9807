"""Tables: the dict of named tables stages pass on, with typed accessors (systems first of all)."""
from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from calib.stages.base import Tables


def _t(clips):
    return pl.DataFrame({"clip": clips, "v": list(range(len(clips)))})


def test_accessors_subset_and_without_truth():
    t = Tables(detections=_t(["a", "b"]), truth=_t(["a"]), systems={"s1": _t(["a", "b", "b"])}, match=1)
    assert t.systems.keys() == {"s1"} and t.teacher is None and t.priors is None
    assert Tables(detections=_t([])).systems == {}
    sub = t.subset(["b"])
    assert_frame_equal(sub.detections, pl.DataFrame({"clip": ["b"], "v": [1]}))
    assert sub.truth.height == 0 and sub.systems["s1"].get_column("v").to_list() == [1, 2] and sub["match"] == 1
    blind = t.without_truth()
    assert "truth" not in blind and isinstance(blind, Tables) and "truth" in t
    with pytest.raises(KeyError, match="needs a 'teacher' table"):
        t["teacher"]
    with pytest.raises(TypeError, match="must map system names"):
        Tables(systems=_t(["a"])).systems


def test_subset_slices_tables_in_runs_of_clips():
    # a stage fit on some clips gets slices of the tables (no copy of their points): the rows of
    # those clips in the tables' order, exactly what a filter gives
    points = pl.List(pl.List(pl.Struct({"x": pl.Float64, "y": pl.Float64, "e": pl.Float64})))
    det = pl.DataFrame({"clip": ["c", "c", "a", "b", "b", "a"], "v": [0, 1, 2, 3, 4, 5],
                        "points": [[[{"x": float(i), "y": 1.0, "e": 0.5}]] for i in range(6)]},
                       schema={"clip": pl.String, "v": pl.Int64, "points": points})
    t = Tables(detections=det, truth=det.head(3), systems={"s1": det}, match=1)
    for clips in (["a", "c"], ["b"], ["a", "b", "c"], ["zz"], []):
        sub = t.subset(clips)
        want = det.filter(pl.col("clip").is_in(clips))
        assert sub.detections.equals(want) and sub.systems["s1"].equals(want) and sub["match"] == 1
        assert sub.truth.equals(det.head(3).filter(pl.col("clip").is_in(clips)))
    sub = t.subset(["c", "a"])  # runs c, a (kept) | b (dropped) | a (kept): two slices
    assert sub.detections.get_column("v").to_list() == [0, 1, 2, 5]
    assert sub.detections.get_column("points").n_chunks() == 2
    assert t.subset(["c", "a", "b"]).detections.get_column("points").n_chunks() == 1  # every row: one slice
