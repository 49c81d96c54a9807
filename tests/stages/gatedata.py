"""Tiny hand-made tables for the gate tests: blobs on the canvas, detections and truth from
tuples, and a set where the real ``cap`` stage hurts class 3 and helps class 5 by construction."""
from __future__ import annotations

import polars as pl

from calib.stages.base import Tables
from calib.tables import DETECTIONS, TRUTH, conform

CLIPS = [f"c{i}" for i in range(6)]
FRAMES = range(3)


def blob(cx: float, cy: float = 90.0) -> list:
    """One polygon: a 5 x 5 lattice (2 px apart) around (cx, cy), peak intensity in the middle."""
    return [[{"x": cx + 2.0 * i, "y": cy + 2.0 * j, "e": 1.0 - 0.1 * (abs(i) + abs(j))}
             for i in range(-2, 3) for j in range(-2, 3)]]


def dets(rows: list[tuple], system: str = "s") -> pl.DataFrame:
    """Detections from (clip, frame, class_id, score, x) tuples; det_id counts rows per clip."""
    seen: dict[str, int] = {}
    out = []
    for clip, frame, cls, score, x in rows:
        out.append({"system": system, "clip": clip, "frame": frame, "det_id": seen.get(clip, 0), "class_id": cls,
                    "score": score, "distance": None, "instance_id": None, "points": blob(x), "extra": None})
        seen[clip] = seen.get(clip, 0) + 1
    return conform(pl.DataFrame(out, schema=DETECTIONS) if out else pl.DataFrame(schema=DETECTIONS), "detections")


def truth(rows: list[tuple], splits: dict[str, str] | None = None) -> pl.DataFrame:
    """Truth from (clip, frame, class_id, x) tuples; ``splits``: clip -> split (default dev-train-sony)."""
    splits = splits or {}
    out = [{"clip": c, "split": splits.get(c, "dev-train-sony"), "frame": f, "ann_id": i, "class_id": k,
            "instance_id": None, "distance": None, "points": blob(x), "category_str": False, "extra": None}
           for i, (c, f, k, x) in enumerate(rows)]
    return conform(pl.DataFrame(out, schema=TRUTH), "truth")


def cap_tables(clips=CLIPS, splits: dict[str, str] | None = None) -> Tables:
    """Where ``cap`` with ``per_class = 1`` hurts class 3 and helps class 5, in every clip.

    Class 3: two objects per frame (x = 40 and 100), both found (scores 0.7 and 0.6): keeping one
    per frame halves the recall (AP 1 -> 0.5). Class 5: one object per frame (x = 200), found
    with a score falling by frame (0.9, 0.6, 0.3) plus a duplicate 40 px away scored 0.05 lower:
    the duplicates rank between the hits (AP below 1) and the cap removes them (AP 1)."""
    t_rows, d_rows = [], []
    for c in clips:
        for f, s in zip(FRAMES, (0.9, 0.6, 0.3)):
            t_rows += [(c, f, 3, 40), (c, f, 3, 100), (c, f, 5, 200)]
            d_rows += [(c, f, 3, 0.7, 40), (c, f, 3, 0.6, 100), (c, f, 5, s, 200), (c, f, 5, s - 0.05, 240)]
    return Tables(detections=dets(d_rows), truth=truth(t_rows, splits))
