"""The ``rerank`` stage: a gradient-boosted matchability model as a recipe step.

Fit on dev tables that carry ground truth (``detections`` + ``truth``; a ``match`` table from the
scorer is used when present, else computed), apply anywhere (only ``detections`` needed): ``score`` becomes the model's probability that the detection is matchable
and the upstream score stays in ``score_raw``. With ``model_dir`` set the stage loads a model made by
``calib rerank fit`` instead of fitting one.

A recipe is data: the modules named in ``feature_modules`` are imported only when the user allowed
them (``calib run --allow-import MODULE``) or an installed package declares them as a
``calib.features`` entry point. The learned state (``model_``, ``report_``) is stored as a model
folder (LightGBM text / JSON trees, see :mod:`calib.rerank.pipeline`) and JSON, never pickled.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from calib.rerank.model import MODEL_PARAMS
from calib.stages.base import Param, Stage, Tables, declare, register


@register("rerank")
class Rerank(Stage):
    """Rescore detections by a gradient-boosted matchability model (fit on dev with truth)."""

    needs_tables = ("detections", "truth")  # truth only to fit
    needs_columns = ("score", "points")
    adds_columns = ("score_raw",)
    learns = True
    #: what fit learns (checked when the state is read back)
    learned_attributes = {"model_": "RerankModel", "report_": dict}
    #: parameters naming files whose contents the output depends on (part of the stage cache key)
    path_params = ("model_dir",)

    #: the labels and features, then the model's own parameters (shared with calib.rerank.Reranker)
    PARAMS = declare(
        model=MODEL_PARAMS["model"],
        features=Param((str, list), "default", "feature names, comma-separated or a list ('default': the default "
                       "set, 'all': every feature; see 'calib rerank features')", item=str),
        feature_modules=Param((str, list), "", "modules registering extra features (imported only with "
                              "--allow-import or as 'calib.features' entry points)", item=str),
        iou_threshold=Param(float, 0.25, "a dev detection is labelled matchable when its best soft IoU with a "
                            "same-class GT reaches this", unit="IoU", gt=0, le=1),
        folds=Param(int, 0, "cross-fitting folds for the fit report's out-of-fold estimate (0 or 1: none)",
                    unit="folds", ge=0),
        group=Param(str, "clip", "what a cross-fitting fold holds whole: clips or recording sites",
                    choices=("clip", "site")),
        **{k: p for k, p in MODEL_PARAMS.items() if k != "model"},
        model_dir=Param(str, "", "load this model folder (from 'calib rerank fit') instead of fitting one"),
    )

    def _modules(self) -> list[str]:
        m = self.feature_modules
        return [x.strip() for x in m.split(",") if x.strip()] if isinstance(m, str) else list(m)

    def code_modules(self) -> list[str]:
        """Modules outside calib this stage imports because its parameters name them."""
        return self._modules()

    def fit(self, tables: Tables) -> "Rerank":
        import features as F
        from calib.rerank.pipeline import RerankModel, fit_reranker

        self.check_params()
        F.load_feature_modules(self._modules(), source="the rerank stage's feature_modules")
        if self.model_dir:
            from calib.io.errors import InputError
            from calib.rerank.pipeline import ModelMismatchError

            try:
                self.model_ = RerankModel.load(self.model_dir)
            except (ModelMismatchError, F.FeatureError) as e:
                raise InputError(self.model_dir, f"rerank stage model_dir: {e}") from None
            self.report_ = {}
            return self
        result = fit_reranker(
            tables["detections"], tables["truth"], match=tables.get("match"), features=self.features,
            feature_modules=self._modules(), iou_threshold=self.iou_threshold, folds=self.folds,
            group=self.group, score_map=False, gt_clips=tables.truth_clips,
            **{k: getattr(self, k) for k in MODEL_PARAMS})
        self.model_ = result.model
        self.report_ = result.report
        return self

    def apply(self, tables: Tables) -> Tables:
        if not hasattr(self, "model_"):
            if not self.model_dir:
                raise RuntimeError("the rerank stage must be fitted (on tables with truth) or given model_dir")
            self.fit(Tables())
        dets: pl.DataFrame = tables["detections"]
        return tables.replace(detections=self.model_.apply(dets))

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model as a model folder (what ``model_dir`` and ``calib rerank apply`` read)."""
        return self.model_.save(folder)
