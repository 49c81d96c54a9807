"""``objectness``: a class-agnostic score column, so detections can be ordered by how strongly the
system believes *something* is there, whatever the class."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.render import detection_boxes, flatten
from calib.stages.base import Stage, Tables, register
from calib.stages.select.common import FRAME_KEYS, group_rows, overlap_matrix

REDUCERS = ("max", "noisy_or", "sum")


def objectness_scores(scores: np.ndarray, iou: np.ndarray, threshold: float, reduce: str) -> np.ndarray:
    """For each detection, combine the scores of the detections overlapping it (IoU >= threshold,
    itself included, any class): ``max``, ``noisy_or`` (1 - prod(1 - s), s clipped to [0, 1]) or ``sum``."""
    near = iou >= threshold
    np.fill_diagonal(near, True)
    if reduce == "max":
        return np.where(near, scores[None, :], -np.inf).max(axis=1)
    if reduce == "noisy_or":
        s = np.clip(scores, 0.0, 1.0)
        return 1.0 - np.prod(np.where(near, 1.0 - s[None, :], 1.0), axis=1)
    if reduce == "sum":
        return np.where(near, scores[None, :], 0.0).sum(axis=1)
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

    def __init__(self, *, iou_threshold: float = 0.3, iou: str = "box", reduce: str = "max", column: str = "score",
                 as_score: bool = False):
        self.iou_threshold = iou_threshold
        self.iou = iou
        self.reduce = reduce
        self.column = column
        self.as_score = as_score

    def apply(self, tables: Tables) -> Tables:
        df = tables["detections"]
        if self.reduce not in REDUCERS:
            raise ValueError(f"objectness: reduce must be one of {REDUCERS}, got {self.reduce!r}")
        if self.column not in df.columns:
            raise ValueError(f"objectness: no column {self.column!r} in the detections (have {df.columns})")
        scores = df.get_column(self.column).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        out = scores.copy()
        if len(df):
            fp = flatten(df.get_column("points"))
            boxes = detection_boxes(fp)
            for rows in group_rows(df, FRAME_KEYS):
                iou = overlap_matrix(fp, boxes, rows, self.iou) if len(rows) > 1 else np.ones((1, 1))
                out[rows] = objectness_scores(scores[rows], iou, self.iou_threshold, self.reduce)
        df = df.with_columns(pl.Series("score_objectness", out, pl.Float64))
        if self.as_score:
            if "score_raw" not in df.columns:
                df = df.with_columns(pl.col("score").alias("score_raw"))
            df = df.with_columns(pl.col("score_objectness").alias("score"))
        return tables.replace(detections=df)
