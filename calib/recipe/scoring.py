"""Scoring a run's detections against the truth with the recipe's ``[scoring]``.

A recipe's scorer is any ``(detections, truth, scoring) -> metrics`` callable (:data:`Scorer`);
the official one is calib.score's facade (:func:`calib.score.facade.score_against`). Whatever a
scorer returns, the reports read it through :meth:`calib.score.ScoreResult.of` (headline mAP,
Pearson and per-class AP whichever protocol produced them).

Every scoring of a run or a portfolio (each chain, fold, site and variant, the rerank stage's
labels, the fusion stages' facts) goes through calib.score's caches: GT maps and each detection's
IoUs by content, so detections scored once are not rendered again. :func:`scoring_cache` keeps
them beside the stage cache, for the next run too."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from calib.recipe.schema import Scoring

#: (detections, truth, scoring, *, gt_clips) -> metrics dict in the official script's keys;
#: ``gt_clips``: every clip scored (those whose GT file holds no annotation too)
Scorer = Callable[..., dict]


def official_scorer(detections: pl.DataFrame, truth: pl.DataFrame, scoring: Scoring, *,
                    gt_clips: Iterable[str] | None = None) -> dict:
    """calib's exact implementation of the official scripts (calib.score), as a :data:`Scorer`."""
    from calib.score.facade import score_against

    return score_against(detections, truth, protocol=scoring.protocol, iou_thresholds=scoring.iou_thresholds,
                         options=scoring.options, gt_clips=gt_clips)


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
    """The rows of ``clips`` (:func:`calib.tables.restrict_clips`: slices, no copy of the points)."""
    from calib.tables import restrict_clips

    return restrict_clips(df, clips)
