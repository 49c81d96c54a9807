"""Tiny hand-made tables for the fusion stage tests."""
from __future__ import annotations

import math

import polars as pl

from calib.io.seld import to_canvas
from calib.tables import DETECTIONS, PRIORS, TEACHER, conform


def det(rows: list[dict], **extra_cols) -> pl.DataFrame:
    """Detections from dicts with clip, frame, class_id, score and either points (list of polygons
    of (x, y, e) triplets) or az/el (one point there); det_id numbers rows within each clip."""
    out = []
    counters: dict[str, int] = {}
    for r in rows:
        r = dict(r)
        clip = r.setdefault("clip", "c1")
        if "az" in r:
            x, y = to_canvas(r.pop("az"), r.pop("el"))
            r["points"] = [[(float(x), float(y), 1.0)]]
        r["points"] = [[{"x": float(a), "y": float(b), "e": float(e)} for a, b, e in poly] for poly in r["points"]]
        r.setdefault("det_id", counters.get(clip, 0))
        counters[clip] = r["det_id"] + 1
        r.setdefault("system", "s")
        r.setdefault("frame", 0)
        for k in ("distance", "instance_id", "extra"):
            r.setdefault(k, None)
        out.append(r)
    schema = dict(DETECTIONS) | {k: v for k, v in extra_cols.items()}
    df = pl.DataFrame(out, schema=pl.Schema(schema)) if out else pl.DataFrame(schema=pl.Schema(schema))
    return conform(df, "detections")


def teacher(rows: list[dict]) -> pl.DataFrame:
    """Teacher rows from dicts with clip, frame, class_id, azimuth, elevation."""
    out = []
    for r in rows:
        x, y = to_canvas(r["azimuth"], r["elevation"])
        out.append({"clip": r.get("clip", "c1"), "frame": r.get("frame", 0), "class_id": r["class_id"],
                    "track": None, "azimuth": float(r["azimuth"]), "elevation": float(r["elevation"]),
                    "distance": None, "x": float(x), "y": float(y)})
    return conform(pl.DataFrame(out, schema=TEACHER) if out else pl.DataFrame(schema=TEACHER), "teacher")


def priors(rows: list[dict]) -> pl.DataFrame:
    """Priors windows from dicts with clip, start_frame, end_frame and a {class: p} dict ``p``
    (other classes 0)."""
    out = []
    for r in rows:
        row = {"clip": r.get("clip", "c1"), "start_frame": r["start_frame"], "end_frame": r["end_frame"]}
        row |= {f"p_{k}": float(r["p"].get(k, 0.0)) for k in range(13)}
        out.append(row)
    return pl.DataFrame(out, schema=PRIORS)


def blob(cx: float, cy: float, half: float = 10.0, step: float = 3.6) -> list[list[tuple]]:
    """One polygon: a square grid of points around (cx, cy) with a tent-shaped intensity."""
    pts = []
    n = int(round(half / step))
    for i in range(-n, n + 1):
        for j in range(-n, n + 1):
            e = 1.0 - 0.5 * max(abs(i), abs(j)) / max(n, 1)
            pts.append((cx + i * step, cy + j * step, e))
    return [pts]


def hit_rate_metrics(d: pl.DataFrame, truth: pl.DataFrame, protocol: str = "dcase2026", clips=None) -> pl.DataFrame:
    """Stand-in scorer for tests of the selection logic: a class's 'mAP' is the share of its truth
    (clip, frame) keys that the detections hit with the same class (NaN without truth)."""
    keys = ["clip", "frame", "class_id"]
    t = truth.select(keys).unique()
    hit = t.join(d.select(keys).unique(), on=keys, how="semi")
    n = t.group_by("class_id").len()
    h = hit.group_by("class_id").len().rename({"len": "hits"})
    m = n.join(h, on="class_id", how="left").with_columns((pl.col("hits").fill_null(0) / pl.col("len")).alias("mAP"))
    return (pl.DataFrame({"class_id": list(range(13))}).join(m, on="class_id", how="left")
            .select("class_id", pl.col("mAP").fill_null(math.nan), pl.lit(0.5).alias("pearson")))


def truth_from(detections: pl.DataFrame, split: str = "dev-test-sony") -> pl.DataFrame:
    """A truth table holding the given detections' annotations (ann_id = det_id)."""
    from calib.tables import TRUTH

    n = detections.height
    return conform(pl.DataFrame({
        "clip": detections["clip"], "split": [split] * n, "frame": detections["frame"], "ann_id": detections["det_id"],
        "class_id": detections["class_id"], "instance_id": pl.Series([None] * n, dtype=pl.Int64),
        "distance": pl.Series([None] * n, dtype=pl.Float64), "points": detections["points"],
        "category_str": [False] * n, "extra": pl.Series([None] * n, dtype=pl.String)}, schema=TRUTH), "truth")
