import numpy as np
import pytest
from fusedata import hit_rate_metrics

from calib.stages.fuse import _scoring


@pytest.fixture
def stand_in_scorer(monkeypatch):
    """Replace the scorer by simple stand-ins (for tests of the stages' own logic, not of scores):
    hit-rate class metrics, and best IoUs rising along the rows."""
    monkeypatch.setattr(_scoring, "class_metrics", hit_rate_metrics)
    monkeypatch.setattr(_scoring, "best_iou", lambda d, truth, clips=None: np.linspace(0.0, 1.0, d.height))
