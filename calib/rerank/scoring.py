"""What the reranker needs from the scorer (calib.score, dcase2026 protocol): per-detection best
IoUs (the labels) and macro mAP under alternative score columns.

The matching does not depend on scores (Hungarian on IoU within each frame and class), so one match
table serves every re-scoring: mAP for new scores is the official aggregation over the same
records with the score column swapped in.
"""
from __future__ import annotations

import numpy as np
import polars as pl

MATCH_KEYS = ["system", "clip", "det_id"]


def label_detections(detections: pl.DataFrame, match: pl.DataFrame, iou_threshold: float) -> pl.DataFrame:
    """The detections that can be labelled, in their order, with ``best_iou`` and ``label``
    (1 when the best soft IoU with a same-class GT of the frame is >= ``iou_threshold``).

    ``match`` has one row per detection record: system, clip, det_id, best_iou. Detections of
    clips the match table does not cover (no ground truth) are left out; a missing record in a
    covered clip is an error."""
    need = [c for c in MATCH_KEYS + ["best_iou"] if c not in match.columns]
    if need:
        raise ValueError(f"match table lacks column(s) {need}")
    m = match.select(pl.col("system").cast(pl.String), pl.col("clip").cast(pl.String),
                     pl.col("det_id").cast(pl.Int64), pl.col("best_iou").cast(pl.Float64))
    dup = m.group_by(MATCH_KEYS).len().filter(pl.col("len") > 1)
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(f"match table has {r['len']} records for detection {r['det_id']} of clip {r['clip']!r} "
                         f"(system {r['system']!r}); det_id must be unique within a clip")
    covered = m.select("system", "clip").unique()
    dets = detections.with_row_index("_row").join(covered, on=["system", "clip"], how="semi")
    out = dets.join(m, on=MATCH_KEYS, how="left").sort("_row")
    missing = out.filter(pl.col("best_iou").is_null())
    if missing.height:
        r = missing.row(0, named=True)
        raise ValueError(f"detection {r['det_id']} of clip {r['clip']!r} (system {r['system']!r}) has no record in "
                         "the match table; score the same detections table")
    return out.drop("_row").with_columns(
        # compared in float32, like the scorer's true-positive test on its float32 IoUs
        (pl.col("best_iou").cast(pl.Float32) >= pl.lit(iou_threshold, dtype=pl.Float32)).cast(pl.Int8).alias("label"))
