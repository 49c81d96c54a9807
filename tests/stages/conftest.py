"""Fixtures of the stage tests (emit, select, fuse, gate): ``dets`` builds a detections table
from hand-written rows."""
import numpy as np
import polars as pl
import pytest

from calib.canvas.points import polygons_series
from calib.tables import conform


def make_dets(rows, system="sys"):
    """A detections table from dicts with clip, frame, class_id, score, polys (list of (k, 3) arrays)."""
    n = len(rows)
    df = pl.DataFrame({
        "system": [r.get("system", system) for r in rows],
        "clip": [r.get("clip", "c1") for r in rows],
        "frame": [r.get("frame", 0) for r in rows],
        "det_id": [r.get("det_id", i) for i, r in enumerate(rows)],
        "class_id": [r.get("class_id", 0) for r in rows],
        "score": [float(r.get("score", 0.5)) for r in rows],
        "distance": pl.Series([None] * n, dtype=pl.Float64),
        "instance_id": pl.Series([None] * n, dtype=pl.Int64),
        "extra": pl.Series([None] * n, dtype=pl.String),
    })
    df = df.with_columns(polygons_series([[np.asarray(p, float).reshape(-1, 3) for p in r["polys"]] for r in rows]))
    return conform(df, "detections")


@pytest.fixture
def dets():
    return make_dets


@pytest.fixture(autouse=True)
def fresh_emit_cache():
    """Every test starts with an empty emitted-detections cache (what a test emits is computed)."""
    from calib.stages.emit.cache import emit_cache

    emit_cache().clear()
    yield
    emit_cache().clear()
