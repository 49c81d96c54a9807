"""The one way calib's own code scores a detections table: every caller (recipe runs and
portfolios, the rerank labels and match tables, the fusion stages, the gate, class_filter, the
emitter ablation) goes through these functions and reads the same :class:`ScoreResult`.

- :func:`score_against`: one system's detections against a truth table with a recipe's
  ``[scoring]`` (protocol, IoU thresholds, protocol options), engine keywords passed on;
- :func:`class_scores`: the same on the truth's clips only, the per-class view the learning
  stages fit on (an empty truth gives an unscored result: every class NaN);
- :func:`best_ious`: each detection's best soft IoU without the matching (reranker labels,
  fusion matchability).

Every call goes through the scorer's caches (GT maps and each detection's IoUs by content), so
detections scored once are not rendered again.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import polars as pl

from calib.score.api import best_ious, score_tables
from calib.score.result import ScoreResult

__all__ = ["ScoreResult", "best_ious", "class_scores", "score_against"]


def score_against(detections: pl.DataFrame, truth: pl.DataFrame, *, protocol: str = "dcase2026",
                  iou_thresholds: str | Sequence[float] | None = None, options: Mapping[str, Any] | None = None,
                  **engine) -> ScoreResult:
    """Official metrics of ``detections`` (one system) against ``truth`` under ``protocol``.
    ``iou_thresholds``: as :func:`calib.score.thresholds.parse_thresholds` takes them (None: the
    protocol's default); ``options``: the protocol's options (sigma, energy_thr, tie_order, jobs,
    ...); ``engine``: further keywords of :func:`calib.score.score` (clips, with_matches, system,
    cache_dir, ...)."""
    kwargs: dict[str, Any] = {**dict(options or {}), **engine}
    if iou_thresholds is not None:
        kwargs["iou_thresholds"] = iou_thresholds
    return score_tables(detections, truth, protocol=protocol, **kwargs)


def class_scores(detections: pl.DataFrame, truth: pl.DataFrame, *, protocol: str = "dcase2026",
                 iou_thresholds: str | Sequence[float] | None = None,
                 options: Mapping[str, Any] | None = None) -> ScoreResult:
    """:func:`score_against` on the truth's clips (a truth clip without detections scores as an
    empty file; detections of other clips are left out), whatever system the rows name, without
    match tables: what a stage learning from per-class metrics reads (:attr:`ScoreResult.class_ap`,
    :meth:`ScoreResult.class_table`). An empty ``truth`` gives an unscored result (every class NaN)."""
    if truth.height == 0:
        return ScoreResult.of({}, protocol)
    det = detections.filter(pl.col("clip").is_in(truth.get_column("clip").unique().implode()))
    return score_against(det.with_columns(pl.lit("", pl.String).alias("system")), truth, protocol=protocol,
                         iou_thresholds=iou_thresholds, options=options, with_matches=False)
