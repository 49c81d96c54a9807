"""Scoring a run's detections against the truth with the recipe's protocol, and the few numbers
the reports compare (headline mAP, Pearson, per-class AP) whichever protocol produced them.

Every scoring of a run or a portfolio (each chain, fold, site and variant, the rerank stage's
labels, the fusion stages' facts) goes through calib.score's caches: GT maps and each detection's
IoUs by content, so detections scored once are not rendered again. :func:`scoring_cache` keeps
them beside the stage cache, for the next run too."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import polars as pl

from calib.recipe.schema import Scoring
from calib.tables import CLASS_NAMES

#: (detections, truth, scoring, *, gt_clips) -> metrics dict in the official script's keys;
#: ``gt_clips``: every clip scored (those whose GT file holds no annotation too)
Scorer = Callable[..., dict]


def official_scorer(detections: pl.DataFrame, truth: pl.DataFrame, scoring: Scoring, *,
                    gt_clips: Iterable[str] | None = None) -> dict:
    """calib's exact implementation of the official scripts (calib.score)."""
    from calib.score import score_tables

    kwargs: dict[str, Any] = dict(scoring.options)
    if scoring.iou_thresholds is not None:
        kwargs["iou_thresholds"] = scoring.iou_thresholds
    return score_tables(detections, truth, protocol=scoring.protocol, gt_clips=gt_clips, **kwargs)


def score_clips(scorer: Scorer, det: pl.DataFrame, truth: pl.DataFrame, clips: Iterable[str], scoring: Scoring) -> dict:
    """``det`` scored on ``clips`` (clips with a GT file; one with no annotation scores its
    detections as false positives, as the official script does)."""
    clips = sorted(clips)
    return scorer(restrict(det, clips), restrict(truth, clips), scoring, gt_clips=clips)


#: the stage cache's sub-folder where the scorer keeps GT maps and prediction rows
SCORE_CACHE_SUBDIR = "score"


def scoring_cache(stage_cache_root: str | os.PathLike):
    """A context in which calib.score keeps what it renders under ``stage_cache_root/score``
    (:func:`calib.score.cache.cache_folder`)."""
    from calib.score.cache import cache_folder

    return cache_folder(Path(stage_cache_root) / SCORE_CACHE_SUBDIR)


def restrict(df: pl.DataFrame, clips: Iterable[str]) -> pl.DataFrame:
    return df.filter(pl.col("clip").is_in(sorted(clips)))


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def headline(metrics: dict | None) -> dict[str, Any]:
    """{"mAP", "pearson", "per_class_ap": {class_id: AP}} of a dcase2026 or dcase2026-coco result."""
    if not metrics:
        return {"mAP": math.nan, "pearson": math.nan, "per_class_ap": {}}
    if "macro_mAP" in metrics:
        per = metrics.get("per_class") or {}
        per_class = {}
        for k, v in per.items():
            cid = CLASS_NAMES.index(k) if k in CLASS_NAMES else int(k)
            per_class[cid] = _num((v or {}).get("mAP"))
        return {"mAP": _num(metrics["macro_mAP"]), "pearson": _num(metrics.get("macro_pearson_r")),
                "per_class_ap": per_class}
    per = metrics.get("per_class_mAP") or {}
    return {"mAP": _num(metrics.get("mask_mAP")), "pearson": _num(metrics.get("pearson_r")),
            "per_class_ap": {int(k): _num(v) for k, v in per.items()}}
