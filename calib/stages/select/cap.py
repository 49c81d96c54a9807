"""``cap``: at most k detections per (frame, class) and N per frame, best first."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.canvas.points import flatten
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.select.common import CLASS_KEYS, FRAME_KEYS, detection_energy, keep_rows, ranking_order


def _positions(df: pl.DataFrame, order: np.ndarray, keys) -> np.ndarray:
    """Each row's 0-based position within its group when rows are visited in ``order``."""
    ranked = df.select(list(keys))[order].with_columns(pl.int_range(pl.len()).over(list(keys)).alias("_pos"))
    pos = np.empty(len(df), np.int64)
    pos[order] = ranked.get_column("_pos").to_numpy()
    return pos


@register("cap")
class Cap(Stage):
    """Cap the detections: top-k per (frame, class), then at most N per frame, by any score column.

    Keeps the best ``per_class`` detections of each (frame, class) and then the best ``per_frame`` of
    each frame (0: no cap), ranked by ``column`` (score, score_raw, a reranked or fused score,
    score_objectness for a class-agnostic order). Ties: ``tie_break="energy"`` prefers the detection
    with more total energy; always then the lower det_id.

    ``column="score_raw"`` on a table without that column ranks by ``score``: ``score_raw`` keeps the
    upstream score once a stage (rerank, prior fusion, ...) rewrites ``score``, so where no stage
    did, ``score`` still is the raw upstream score (a recipe variant with its reranker disabled)."""

    needs_columns = ("score",)
    cache_output = False  # a row selection: cheaper to redo than to store
    PARAMS = declare(
        per_class=Param(int, 0, "detections kept per (frame, class), best first (0: no cap)", unit="detections", ge=0),
        per_frame=Param(int, 0, "detections kept per frame after the class cap, best first (0: no cap)",
                        unit="detections", ge=0),
        column=Param(str, "score", "the score column that ranks them (score, score_raw, score_objectness, a fused "
                     "score_*)"),
        tie_break=Param(str, "det_id", "among equal scores: 'energy' prefers more total energy; then the lower det_id",
                        choices=("det_id", "energy")),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        df = tables["detections"]
        energy = detection_energy(flatten(df.get_column("points"))) if self.tie_break == "energy" else None
        column = "score" if self.column == "score_raw" and "score_raw" not in df.columns else self.column
        order = ranking_order(df, column, self.tie_break, energy)
        if len(df) == 0:
            return tables
        keep = np.ones(len(df), bool)
        if self.per_class:
            keep &= _positions(df, order, CLASS_KEYS) < self.per_class
        if self.per_frame:
            order = order[keep[order]]
            pos = np.full(len(df), np.iinfo(np.int64).max)
            sub = df.select(list(FRAME_KEYS))[order]  # the keys alone: no copy of every detection's points
            pos[order] = _positions(sub, np.arange(len(sub)), FRAME_KEYS)
            keep &= pos < self.per_frame
        return tables.replace(detections=keep_rows(df, keep))
