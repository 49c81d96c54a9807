"""Exact official scoring (both DCASE 2026 Task 3 protocols), fast.

``score`` / ``score_tables`` return the official metrics dict with the match table attached;
``best_ious`` gives each detection's best soft IoU (reranker labels, fusion matchability) without
the matching; see :mod:`calib.score.api`. Engines: ``reference`` (the official algorithm step by
step, the oracle) and ``fast`` (cached GT maps, each detection's IoUs cached by content
(:mod:`calib.score.pred_cache`), bounding-box interpolation, vectorized IoU, clips in parallel).
:func:`calib.score.cache.cache_folder` sets where a block of scoring calls keeps them on disk.
"""
from calib.score.annotations import Annotation, ScoreInputError, load_dir, load_file, pair_files
from calib.score.api import ScoreResult, annotations_from_table, best_ious, parse_thresholds, score, score_tables

__all__ = ["Annotation", "ScoreInputError", "ScoreResult", "annotations_from_table", "best_ious", "load_dir",
           "load_file", "pair_files", "parse_thresholds", "score", "score_tables"]
