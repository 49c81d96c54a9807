"""Exact, fast scoring with the official DCASE 2026 Task 3 protocols.

>>> from calib.score import load_dir, score
>>> result = score("subm/", "gt/", protocol="dcase2026", jobs=2, with_matches=True)
>>> result.metrics["macro_mAP"], result.matches.head()

See :func:`score`, :func:`score_tables`, :func:`load_dir` and :class:`ScoreResult`.
"""
from calib.score.annotations import PROTOCOLS, Annotation, ScoreInputError, load_dir, load_file
from calib.score.api import ScoreResult, score, score_tables
from calib.score.thresholds import parse_thresholds

__all__ = [
    "PROTOCOLS",
    "Annotation",
    "ScoreInputError",
    "ScoreResult",
    "load_dir",
    "load_file",
    "parse_thresholds",
    "score",
    "score_tables",
]
