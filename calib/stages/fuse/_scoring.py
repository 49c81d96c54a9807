"""The two facts the learning fusion stages take from the official scorer (calib.score): per-class
metrics of a detections table, and each detection's best soft IoU (from the scorer's cache of
per-detection IoUs, shared with every other scoring of the same detections)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from calib.tables import CLASS_NAMES, N_CLASSES


def class_metrics(det: pl.DataFrame, truth: pl.DataFrame, protocol: str = "dcase2026",
                  clips: Sequence[str] | None = None) -> pl.DataFrame:
    """``class_id, mAP, pearson`` of ``det`` (one system) scored against ``truth`` on the truth's
    clips, or on ``clips`` (clips with a GT file, some maybe without annotation: their detections
    are false positives); a clip without detections scores as an empty file; mAP NaN for a class
    without ground truth. The dcase2026-coco protocol reports no per-class Pearson (NaN)."""
    from calib.score import score_tables

    if truth.height == 0:
        return pl.DataFrame({"class_id": list(range(N_CLASSES)), "mAP": [math.nan] * N_CLASSES,
                             "pearson": [math.nan] * N_CLASSES})
    clips = sorted(truth.get_column("clip").unique().to_list() if clips is None else clips)
    det = det.filter(pl.col("clip").is_in(clips))
    with threadpool_limits(1, user_api="blas"):  # the renderer's tiny BLAS calls only contend
        res = score_tables(det.with_columns(pl.lit("", pl.String).alias("system")), truth, protocol=protocol,
                           with_matches=False, gt_clips=clips)
    if protocol == "dcase2026-coco":
        per = {int(k): v for k, v in res["per_class_mAP"].items()}
        maps = [math.nan if per.get(c) is None else float(per[c]) for c in range(N_CLASSES)]
        pearson = [math.nan] * N_CLASSES
    else:
        maps = [float(res["per_class"][n]["mAP"]) for n in CLASS_NAMES]
        pearson = [math.nan if res["per_class"][n]["pearson_r"] is None else float(res["per_class"][n]["pearson_r"])
                   for n in CLASS_NAMES]
    return pl.DataFrame({"class_id": list(range(N_CLASSES)), "mAP": maps, "pearson": pearson},
                        schema={"class_id": pl.Int64, "mAP": pl.Float64, "pearson": pl.Float64})


def best_iou(det: pl.DataFrame, truth: pl.DataFrame, clips: Sequence[str] | None = None) -> np.ndarray:
    """Best soft IoU (dcase2026 protocol) of each detection, in row order, with a same-class ground
    truth of its clip and frame: 0 where its frame holds none, NaN where its clip has no ground
    truth or its class is outside 0..12 (nothing is known about it). From the scorer's cache of
    per-detection IoUs (:func:`calib.score.best_ious`): detections scored or labelled before are
    not rendered again. ``clips``: clips with a GT file beyond the truth rows' (a file with no
    annotation): 0 there for classes 0..12."""
    from calib.score import best_ious

    with threadpool_limits(1, user_api="blas"):  # the renderer's tiny BLAS calls only contend
        best = best_ious(det, truth)
    if clips is not None:
        empty = sorted(set(clips) - set(truth.get_column("clip").unique().to_list()))
        hit = det.select(pl.col("clip").is_in(empty) & pl.col("class_id").is_between(0, N_CLASSES - 1)).to_series()
        best = np.where(hit.to_numpy(), 0.0, best)
    return best
