"""Subsets of a table by clip and the per-clip views the scorer reads are slices, not copies, and
hold exactly the rows a filter and a sort would give."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from calib.score.columns import clips_from_table
import calib.tables as T
from calib.tables import restrict_clips, take_rows


def _truth(clip_runs: list[tuple[str, int]], seed: int = 0) -> pl.DataFrame:
    """A truth-shaped table: one run of rows per (clip, rows) entry, ann_id counting per clip."""
    rng = np.random.default_rng(seed)
    rows, seen = [], {}
    for clip, n in clip_runs:
        for _ in range(n):
            k = seen.get(clip, 0)
            seen[clip] = k + 1
            pts = [[{"x": float(x), "y": float(y), "e": float(e)} for x, y, e in
                    zip(rng.integers(0, 360, 4), rng.integers(0, 180, 4), rng.random(4))]]
            rows.append({"clip": clip, "frame": int(rng.integers(0, 5)), "ann_id": k, "class_id": int(rng.integers(0, 13)),
                         "distance": None, "points": pts})
    return pl.DataFrame(rows, schema={"clip": pl.String, "frame": pl.Int64, "ann_id": pl.Int64, "class_id": pl.Int64,
                                      "distance": pl.Float64,
                                      "points": pl.List(pl.List(pl.Struct({"x": pl.Float64, "y": pl.Float64, "e": pl.Float64})))})


@pytest.mark.parametrize("clips", [["b"], ["a", "c"], ["c", "a", "zz"], [], ["a", "b", "c"]])
def test_restrict_clips_is_the_filter(clips):
    df = _truth([("b", 3), ("a", 2), ("c", 4), ("a", 1)])  # "a" in two runs: still the filter's rows
    got = restrict_clips(df, clips)
    assert got.equals(df.filter(pl.col("clip").is_in(clips)))


def test_restrict_clips_slices_without_gathering():
    df = _truth([("a", 3), ("b", 2), ("c", 4)])
    got = restrict_clips(df, ["a", "c"])
    assert got.get_column("points").n_chunks() == 2  # two slices of the table, no gathered copy
    assert got.get_column("clip").to_list() == ["a"] * 3 + ["c"] * 4


@pytest.mark.parametrize("pattern", ["all", "none", "head", "tail", "middle", "few", "alternate"])
def test_take_rows_is_the_filter_and_slices_few_runs(pattern, monkeypatch):
    df = _truth([("a", 5), ("b", 4), ("c", 6)], seed=3)
    n = df.height
    i = np.arange(n)
    keep = {"all": i >= 0, "none": i < 0, "head": i < 4, "tail": i >= 9, "middle": (i > 2) & (i < 11),
            "few": (i != 3) & (i != 10), "alternate": i % 2 == 0}[pattern]
    monkeypatch.setattr(T, "MAX_KEPT_RUNS", 4)
    got = take_rows(df, keep)
    assert got.equals(df.filter(pl.Series(keep)))
    runs = {"all": 1, "none": 0, "head": 1, "tail": 1, "middle": 1, "few": 3, "alternate": 8}[pattern]
    # up to MAX_KEPT_RUNS runs: one slice each (no gathered copy); more: one filtered copy
    assert got.get_column("points").n_chunks() == (runs if 1 <= runs <= 4 else 1)
    if pattern == "all":
        assert got is df
    with pytest.raises(ValueError, match="3 flags for 15 rows"):
        take_rows(df, keep[:3])


def _views(d: dict) -> dict:
    out = {}
    for clip, t in d.items():
        c = t.columns()
        out[clip] = (c.frame.tolist(), c.cls.tolist(), c.index.tolist(), c.xyz.tolist(), c.ann_off.tolist(),
                     c.poly_off.tolist(), t.digest())
    return out


def test_clip_views_of_a_sliced_table_are_those_of_the_sorted_table():
    """A table in runs of clips (unsorted clip order, several chunks) is read in place; an
    unsorted one is sorted first; both give the same per-clip views, clips in sorted order."""
    df = _truth([("c", 3), ("a", 2), ("b", 4), ("d", 2)], seed=1)
    sliced = restrict_clips(df, ["c", "b", "d"])
    assert sliced.get_column("points").n_chunks() == 2
    want = _views(clips_from_table(sliced.sort("clip", "ann_id").rechunk(), "gt"))
    got = clips_from_table(sliced, "gt")
    assert list(got) == ["b", "c", "d"]
    assert _views(got) == want
    shuffled = sliced.sample(fraction=1.0, shuffle=True, seed=3)
    assert _views(clips_from_table(shuffled, "gt")) == want
