"""Exact official scoring (both DCASE 2026 Task 3 protocols), fast.

``score`` / ``score_tables`` return the official metrics dict with the match table attached; see
:mod:`calib.score.api`. Engines: ``reference`` (the official algorithm step by step, the oracle) and
``fast`` (cached GT maps, bounding-box interpolation, vectorized IoU, clips in parallel).
"""
from calib.score.annotations import Annotation, ScoreInputError, load_dir, load_file, pair_files
from calib.score.api import ScoreResult, annotations_from_table, parse_thresholds, score, score_tables

__all__ = ["Annotation", "ScoreInputError", "ScoreResult", "annotations_from_table", "load_dir", "load_file",
           "pair_files", "parse_thresholds", "score", "score_tables"]
