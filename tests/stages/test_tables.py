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
