import numpy as np
import pytest
from fusedata import hit_rate_metrics

from calib.constants import CLASS_NAMES
from calib.score import ScoreResult, facade


def hit_rate_scores(d, truth, *, protocol="dcase2026", gt_clips=None, **kwargs) -> ScoreResult:
    """:func:`hit_rate_metrics` as the result :func:`calib.score.facade.class_scores` gives."""
    t = hit_rate_metrics(d, truth, protocol, gt_clips)
    return ScoreResult.of({"macro_mAP": float("nan"), "per_class": {
        CLASS_NAMES[r["class_id"]]: {"mAP": r["mAP"], "pearson_r": r["pearson"]} for r in t.iter_rows(named=True)}},
        "dcase2026")


@pytest.fixture
def stand_in_scorer(monkeypatch):
    """Replace the scorer by simple stand-ins (for tests of the stages' own logic, not of scores):
    hit-rate class metrics, and best IoUs rising along the rows."""
    monkeypatch.setattr(facade, "class_scores", hit_rate_scores)
    monkeypatch.setattr(facade, "best_ious", lambda d, truth, gt_clips=None: np.linspace(0.0, 1.0, d.height))
