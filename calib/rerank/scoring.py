"""What the reranker needs from the scorer (calib.score, dcase2026 protocol): per-detection best
IoUs (the labels, :func:`best_iou_table`, read from the scorer's cache of per-detection IoUs, so
labelling detections scored before renders nothing) and macro mAP under alternative score columns.

The matching does not depend on scores (Hungarian on IoU within each frame and class), so one match
table serves every re-scoring: mAP for new scores is the official aggregation over the same
records with the score column swapped in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from calib.constants import DEFAULT_THRESHOLDS

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
    # joined on the keys alone, then the detections' rows taken once (or not at all when every row
    # is covered): the points, most of the table, are not copied by each join and the sort
    keys = detections.select(MATCH_KEYS).with_row_index("_row").join(covered, on=["system", "clip"], how="semi")
    keys = keys.join(m, on=MATCH_KEYS, how="left").sort("_row")
    missing = keys.filter(pl.col("best_iou").is_null())
    if missing.height:
        r = missing.row(0, named=True)
        raise ValueError(f"detection {r['det_id']} of clip {r['clip']!r} (system {r['system']!r}) has no record in "
                         "the match table; score the same detections table")
    rows = keys.get_column("_row")
    out = detections if rows.len() == detections.height else detections[rows.to_numpy()]
    return out.with_columns(keys.get_column("best_iou")).with_columns(
        # compared in float32, like the scorer's true-positive test on its float32 IoUs
        (pl.col("best_iou").cast(pl.Float32) >= pl.lit(iou_threshold, dtype=pl.Float32)).cast(pl.Int8).alias("label"))


def best_iou_table(detections: pl.DataFrame, truth: pl.DataFrame, *, jobs: int | None = None, cache_dir=None,
                   gt_clips: Iterable[str] | None = None) -> pl.DataFrame:
    """A match table with what labels need (system, clip, det_id, best_iou) for the detections of
    clips with ground truth and a class in 0..12 (the rows :func:`score_detections`' match tables
    hold, with the same ``best_iou``), from :func:`calib.score.best_ious`: no matching, no AP,
    every system at once. ``gt_clips``: clips with a GT file beyond the truth rows' (a GT file
    with no annotation), whose detections have best IoU 0."""
    from calib.score.facade import best_ious

    best = best_ious(detections, truth, gt_clips=gt_clips, jobs=jobs, cache_dir=cache_dir)
    return detections.select(pl.col("system").cast(pl.String), pl.col("clip").cast(pl.String),
                             pl.col("det_id").cast(pl.Int64), pl.Series("best_iou", best, dtype=pl.Float64)
                             ).filter(pl.col("best_iou").is_not_nan())  # no GT clip or class: no record


@dataclass
class Scored:
    """The scorer's results per system for a detections table: the match tables and the official
    metrics of the scores they were computed with."""

    results: dict  # system -> calib.score.ScoreResult (with .matches and .gt_matches)
    thresholds: list[float]

    @property
    def matches(self) -> pl.DataFrame:
        """Prediction-side match table of every system (system, clip, frame, det_id, best_iou, ...)."""
        tables = [r.matches.with_columns(pl.lit(s).alias("system")) for s, r in sorted(self.results.items())]
        return pl.concat(tables, how="vertical") if tables else pl.DataFrame(
            schema={"system": pl.String, "clip": pl.String, "det_id": pl.Int64, "best_iou": pl.Float64})


def score_detections(detections: pl.DataFrame, truth: pl.DataFrame, *, jobs: int | None = None, cache_dir=None,
                     iou_thresholds: Sequence[float] | None = None, gt_clips: Iterable[str] | None = None) -> Scored:
    """Score each system of ``detections`` against ``truth`` (dcase2026), over the clips of the
    detections that have ground truth (other GT clips are not part of this set). ``gt_clips``:
    clips with a GT file beyond the truth rows' (a GT file with no annotation)."""
    from calib.score.facade import score_against
    from calib.tables import restrict_clips

    thresholds = list(iou_thresholds) if iou_thresholds is not None else list(DEFAULT_THRESHOLDS)
    listed = set(gt_clips or ())
    gt_clips = set(truth.get_column("clip").unique().to_list()) | listed
    results = {}
    for system in sorted(detections.get_column("system").unique().to_list()):
        dets = detections.filter(pl.col("system") == system)
        clips = sorted(set(dets.get_column("clip").unique().to_list()) & gt_clips, key=lambda c: c + ".json")
        part = restrict_clips(truth, clips)  # slices: the GT's points are not copied
        results[system] = score_against(dets, part, iou_thresholds=thresholds, clips=clips, gt_clips=clips,
                                        jobs=jobs, cache_dir=cache_dir, with_matches=True, system=system)
    return Scored(results, thresholds)


def _records(result, scores: np.ndarray) -> dict[str, np.ndarray]:
    """The official records of a scored system with the detection scores replaced (same order,
    so ties break as they did), false negatives appended (their place does not matter to AP)."""
    from calib.score.matching import KIND_FN, KIND_FP, KIND_MATCHED

    m, g = result.matches, result.gt_matches.filter(~pl.col("matched"))
    gt_id = m.get_column("gt_ann_id")
    kind = np.where(gt_id.is_null().to_numpy(), KIND_FP, KIND_MATCHED).astype(np.int8)
    det = {
        "kind": kind, "frame": m.get_column("frame").to_numpy(), "cls": m.get_column("class_id").to_numpy(),
        "det": m.get_column("det_id").to_numpy(), "gt": gt_id.fill_null(-1).to_numpy(),
        "score": np.asarray(scores, dtype=np.float64), "iou": m.get_column("iou").to_numpy().astype(np.float32),
        "best": m.get_column("best_iou").to_numpy().astype(np.float32),
        "gt_best": np.full(m.height, np.nan, np.float32),
        "pearson": m.get_column("pearson").fill_null(np.nan).to_numpy().astype(np.float64),
    }
    fn = {
        "kind": np.full(g.height, KIND_FN, np.int8), "frame": g.get_column("frame").to_numpy(),
        "cls": g.get_column("class_id").to_numpy(), "det": np.full(g.height, -1, np.int64),
        "gt": g.get_column("ann_id").to_numpy(), "score": np.full(g.height, np.nan),
        "iou": np.zeros(g.height, np.float32), "best": g.get_column("best_iou").to_numpy().astype(np.float32),
        "gt_best": g.get_column("best_iou").to_numpy().astype(np.float32), "pearson": np.full(g.height, np.nan),
    }
    return {k: np.concatenate([det[k].astype(fn[k].dtype, copy=False), fn[k]]) for k in det}


def rescore(scored: Scored, table: pl.DataFrame, column: str) -> dict[str, dict]:
    """Official dcase2026 metrics of every system with ``table[column]`` as the detection scores
    (``table`` keyed by system, clip, det_id; it must cover every scored detection)."""
    from calib.score.aggregate import metrics_from_records

    out = {}
    for system, result in sorted(scored.results.items()):
        m = result.matches.select("clip", "det_id").with_row_index("_r")
        new = table.filter(pl.col("system") == system).select("clip", "det_id", pl.col(column).alias("_s"))
        joined = m.join(new, on=["clip", "det_id"], how="left").sort("_r")
        if joined.get_column("_s").null_count():
            r = joined.filter(pl.col("_s").is_null()).row(0, named=True)
            raise ValueError(f"no {column!r} for detection {r['det_id']} of clip {r['clip']!r} (system {system!r})")
        out[system] = metrics_from_records(_records(result, joined.get_column("_s").to_numpy()), scored.thresholds)
    return out


def compare_maps(scored: Scored, table: pl.DataFrame, columns: dict[str, str]) -> dict[str, dict[str, float]]:
    """{system: {name: macro mAP}} for each named score column of ``table``."""
    out: dict[str, dict[str, float]] = {}
    for name, column in columns.items():
        for system, metrics in rescore(scored, table, column).items():
            out.setdefault(system, {})[name] = float(metrics["macro_mAP"])
    return out

