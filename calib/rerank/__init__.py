"""Gradient-boosted rerankers of detections with honest, cross-fitted estimates.

- :mod:`calib.rerank.model`: the :class:`Reranker` estimator (LightGBM or HGB, deterministic,
  saved as text / JSON) and post-calibration;
- :mod:`calib.rerank.crossfit`: folds by clip or recording site, out-of-fold scores;
- :mod:`calib.rerank.pipeline`: label -> features -> cross-fit -> fit -> report; model folders;
- features themselves live in the top-level :mod:`features` package.
"""
from calib.rerank.model import Reranker
from calib.rerank.pipeline import FitResult, ModelMismatchError, RerankModel, fit_reranker

__all__ = ["FitResult", "ModelMismatchError", "RerankModel", "Reranker", "fit_reranker"]
