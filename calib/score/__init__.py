"""Exact official scoring (both DCASE 2026 Task 3 protocols), fast.

``score`` / ``score_tables`` return a :class:`ScoreResult`: the official metrics dict with the match
table attached and a protocol-independent view (``headline``, ``pearson``, per-class AP by class id;
:mod:`calib.score.result`). calib's own callers score tables through :mod:`calib.score.facade`
(``score_against``, ``class_scores``). ``best_ious`` gives each detection's best soft IoU (reranker
labels, fusion matchability) without the matching; see :mod:`calib.score.api`. Engines: ``reference`` (the official algorithm step by
step, the oracle) and ``fast`` (cached GT maps, each detection's IoUs cached by content
(:mod:`calib.score.pred_cache`), bounding-box interpolation, vectorized IoU, clips in parallel).
:func:`calib.score.cache.cache_folder` sets where a block of scoring calls keeps them on disk.
"""
from calib.score.annotations import Annotation, ScoreInputError, load_dir, load_file, pair_files
from calib.score.api import annotations_from_table, score, score_tables
from calib.score.facade import best_ious, class_scores, score_against
from calib.score.result import ScoreResult
from calib.score.thresholds import parse_thresholds

__all__ = ["Annotation", "ScoreInputError", "ScoreResult", "annotations_from_table", "best_ious", "class_scores",
           "load_dir", "load_file", "pair_files", "parse_thresholds", "score", "score_against", "score_tables"]
