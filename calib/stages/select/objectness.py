"""``objectness``: a class-agnostic score column, so detections can be ordered by how strongly the
system believes *something* is there, whatever the class."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.canvas.points import flatten
from calib.canvas.sphere import boxes
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.select.common import FRAME_KEYS, IOU_MODES, group_ids, pair_overlaps, pairs_within

REDUCERS = ("max", "noisy_or", "sum")


def combine_neighbours(scores: np.ndarray, i: np.ndarray, j: np.ndarray, reduce: str) -> np.ndarray:
    """Per detection i, the ``reduce`` of its own score and those of its neighbours j (pairs
    (i[k], j[k]), each direction listed)."""
    if reduce == "max":
        out = scores.copy()
        np.maximum.at(out, i, scores[j])
        return out
    if reduce == "noisy_or":
        s = np.clip(scores, 0.0, 1.0)
        miss = 1.0 - s
        np.multiply.at(miss, i, 1.0 - s[j])
        return 1.0 - miss
    if reduce == "sum":
        out = scores.copy()
        np.add.at(out, i, scores[j])
        return out
    raise ValueError(f"objectness: reduce must be one of {REDUCERS}, got {reduce!r}")


@register("objectness")
class Objectness(Stage):
    """Add a class-agnostic score column ``score_objectness`` (an objectness-style ordering).

    Per frame, it is the ``reduce`` (max, noisy_or, sum) of the ``column`` scores
    of every detection, of any class, overlapping this one by IoU >= ``iou_threshold`` (``iou`` box or
    mask). Use it as a class-agnostic ordering (``cap`` with ``column="score_objectness"``) or, with
    ``as_score``, as the score itself (the old score kept in ``score_raw``)."""

    needs_columns = ("points", "score")
    adds_columns = ("score_objectness",)

    PARAMS = declare(
        iou_threshold=Param(float, 0.3, "detections of any class overlapping by at least this IoU count as one "
                            "object", unit="IoU", ge=0, le=1),
        iou=Param(str, "box", "overlap measure: seam-aware box IoU ('box') or soft IoU of the energy maps ('mask')",
                  choices=IOU_MODES),
        reduce=Param(str, "max", "how the overlapping detections' scores combine", choices=REDUCERS),
        column=Param(str, "score", "the score column combined"),
        as_score=Param(bool, False, "also make score_objectness the score (the old score kept in score_raw)"),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        df = tables["detections"]
        if self.column not in df.columns:
            raise ValueError(f"objectness: no column {self.column!r} in the detections (have {df.columns})")
        scores = df.get_column(self.column).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        out = scores.copy()
        if len(df):
            fp = flatten(df.get_column("points"))
            a, b = pairs_within(group_ids(df, FRAME_KEYS), np.arange(len(df)))
            iou = pair_overlaps(fp, boxes(fp).rows(), a, b, self.iou)
            near = iou >= self.iou_threshold
            i = np.concatenate([a[near], b[near]])
            j = np.concatenate([b[near], a[near]])
            out = combine_neighbours(scores, i, j, self.reduce)
        df = df.with_columns(pl.Series("score_objectness", out, pl.Float64))
        if self.as_score:
            if "score_raw" not in df.columns:
                df = df.with_columns(pl.col("score").alias("score_raw"))
            df = df.with_columns(pl.col("score_objectness").alias("score"))
        return tables.replace(detections=df)
