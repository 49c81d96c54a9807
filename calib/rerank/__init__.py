"""Gradient-boosted rerankers of detections with honest, cross-fitted estimates.

- :mod:`calib.rerank.model`: the :class:`Reranker` estimator (LightGBM or HGB, deterministic,
  saved as text / JSON) and post-calibration;
- :mod:`calib.rerank.crossfit`: folds by clip or recording site, out-of-fold scores;
- :mod:`calib.rerank.pipeline`: label -> features -> cross-fit -> fit -> report; model folders;
- features themselves live in the top-level :mod:`features` package.
"""
import os

# LightGBM and scikit-learn's HGB run OpenMP threads that spin while waiting; on shared cores (CI,
# a laptop busy with other jobs) that makes a fit 10-20x slower, while sleep-waiting costs little
# on idle cores. Only a default (the user's setting wins), read when the OpenMP runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from calib.rerank.model import Reranker  # noqa: E402
from calib.rerank.pipeline import FitResult, ModelMismatchError, RerankModel, fit_reranker  # noqa: E402

__all__ = ["FitResult", "ModelMismatchError", "RerankModel", "Reranker", "fit_reranker"]
