"""The one way calib's own code scores a detections table: every caller (recipe runs and
portfolios, the rerank labels and match tables, the fusion stages, the gate, class_filter, the
emitter ablation) goes through these functions and reads the same :class:`ScoreResult`.

- :func:`score_against`: one system's detections against a truth table with a recipe's
  ``[scoring]`` (protocol, IoU thresholds, protocol options), engine keywords passed on;
- :func:`class_scores`: the same on the GT clips only, the per-class view the learning stages fit
  on (an empty truth gives an unscored result: every class NaN);
- :func:`best_ious`: each detection's best soft IoU without the matching (reranker labels,
  fusion matchability).

``gt_clips`` everywhere: the clips with a GT file, beyond the truth rows' clips (a GT file that
holds no annotation is still scored by the official script: every detection there is a false
positive, best IoU 0). Every call goes through the scorer's caches (GT maps and each detection's
IoUs by content), so detections scored once are not rendered again.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from calib.constants import N_CLASSES
from calib.score import api
from calib.score.result import ScoreResult

__all__ = ["ScoreResult", "best_ious", "class_scores", "score_against"]


def score_against(detections: pl.DataFrame, truth: pl.DataFrame, *, protocol: str = "dcase2026",
                  iou_thresholds: str | Sequence[float] | None = None, options: Mapping[str, Any] | None = None,
                  **engine) -> ScoreResult:
    """Official metrics of ``detections`` (one system) against ``truth`` under ``protocol``.
    ``iou_thresholds``: as :func:`calib.score.thresholds.parse_thresholds` takes them (None: the
    protocol's default); ``options``: the protocol's options (sigma, energy_thr, tie_order, jobs,
    ...); ``engine``: further keywords of :func:`calib.score.api.score_tables` (gt_clips, clips,
    with_matches, system, cache_dir, ...)."""
    kwargs: dict[str, Any] = {**dict(options or {}), **engine}
    if iou_thresholds is not None:
        kwargs["iou_thresholds"] = iou_thresholds
    return api.score_tables(detections, truth, protocol=protocol, **kwargs)


def class_scores(detections: pl.DataFrame, truth: pl.DataFrame, *, protocol: str = "dcase2026",
                 iou_thresholds: str | Sequence[float] | None = None, options: Mapping[str, Any] | None = None,
                 gt_clips: Iterable[str] | None = None) -> ScoreResult:
    """:func:`score_against` on the GT clips (``gt_clips``, default the truth rows' clips): a GT
    clip without detections scores as an empty file, detections of other clips are left out,
    whatever system the rows name, without match tables: what a stage learning from per-class
    metrics reads (:attr:`ScoreResult.class_ap`, :meth:`ScoreResult.class_table`). An empty
    ``truth`` gives an unscored result (every class NaN)."""
    clips = sorted(truth.get_column("clip").unique().to_list() if gt_clips is None else gt_clips)
    if truth.height == 0:  # no class has ground truth on these clips
        return ScoreResult.of({}, protocol)
    det = detections.filter(pl.col("clip").is_in(clips)).with_columns(pl.lit("", pl.String).alias("system"))
    return score_against(det, truth, protocol=protocol, iou_thresholds=iou_thresholds, options=options,
                         with_matches=False, gt_clips=clips)


def best_ious(detections: pl.DataFrame, truth: pl.DataFrame, *, gt_clips: Iterable[str] | None = None,
              **engine) -> np.ndarray:
    """Best soft IoU (dcase2026) of each detection, in row order, with a same-class GT annotation
    of its clip and frame (:func:`calib.score.api.best_ious`; ``engine``: its jobs, cache_dir,
    backend, scheduler): 0 where the frame holds none, and for every detection of classes 0..12
    in a ``gt_clips`` clip without annotations; NaN where the clip has no GT file or the class is
    outside 0..12."""
    best = api.best_ious(detections, truth, **engine)
    if gt_clips is not None:
        empty = sorted(set(gt_clips) - set(truth.get_column("clip").unique().to_list()))
        hit = detections.select(pl.col("clip").is_in(empty) & pl.col("class_id").is_between(0, N_CLASSES - 1))
        best = np.where(hit.to_series().to_numpy(), 0.0, best)
    return best
