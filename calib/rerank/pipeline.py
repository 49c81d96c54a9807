"""Fit a reranker on labelled dev detections, save it, load it, apply it.

``fit_reranker`` labels every detection from the scorer's match table (matchable = best soft IoU
with a same-class GT in its frame >= ``iou_threshold``), computes the features, cross-fits K
models by clip or site for out-of-fold scores, fits the final model on everything, and measures
the dev macro mAP (dcase2026) of the raw, in-sample and out-of-fold scores side by side.

A model folder holds:
- ``model.lgb.txt`` (LightGBM ``model_to_string``) or ``model.hgb.json`` (the trees as JSON);
- ``reranker.json``: the feature list with each feature's version and module, library versions,
  parameters, calibration and label settings; loading refuses a mismatch;
- ``oof.parquet``: per dev detection its label, fold, raw, out-of-fold and in-sample scores;
- ``report.json`` (mAPs, feature importances, per-class ECE) and ``reliability.png``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

import features as F
from calib.rerank import files, scoring
from calib.rerank.crossfit import assign_folds, cross_fit, fold_groups
from calib.rerank.model import BACKENDS, Reranker
from calib.rerank.report import per_class_reliability, plot_reliability

FORMAT = "calib-reranker"
FORMAT_VERSION = 1
META_FILE = "reranker.json"
KEYS = ["system", "clip", "frame", "det_id", "class_id"]


class ModelMismatchError(ValueError):
    """A saved model does not fit the features, libraries or format at hand."""


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("lightgbm", "scikit-learn", "numpy", "polars"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    return out


def publish_folder(out: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write a model folder all at once (see :func:`calib.rerank.files.publish_folder`)."""
    return files.publish_folder(out, write, marker=META_FILE)


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


def _finite(x):
    """JSON-safe: NaN -> None, recursively."""
    if isinstance(x, float):
        return None if not np.isfinite(x) else x
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


@dataclass
class RerankModel:
    """A fitted reranker with its features: ``predict(detections)`` -> probability of matchable."""

    reranker: Reranker
    features: list[F.Feature]
    feature_modules: list[str] = field(default_factory=list)
    iou_threshold: float = 0.25
    training: dict = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature_matrix(self, detections: pl.DataFrame) -> np.ndarray:
        X = F.compute_features(detections, self.feature_names, train=False)
        return X.to_numpy().astype(np.float64, copy=False) if X.width else np.zeros((detections.height, 0))

    def predict(self, detections: pl.DataFrame) -> np.ndarray:
        if detections.height == 0:
            return np.zeros(0)
        return self.reranker.predict_proba(self.feature_matrix(detections))

    def apply(self, detections: pl.DataFrame) -> pl.DataFrame:
        """``score`` becomes the reranked probability; the upstream raw score stays in ``score_raw``
        (created when absent, never overwritten)."""
        p = self.predict(detections)
        raw = pl.col("score_raw") if "score_raw" in detections.columns else pl.col("score").alias("score_raw")
        return detections.with_columns(raw, pl.Series("score", p, dtype=pl.Float64))

    # ------------------------------------------------------------------------------------------
    def meta(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "backend": self.reranker.model,
            "features": F.versions(self.features),
            "feature_modules": list(self.feature_modules),
            "label": {"matchable": "best soft IoU with a same-class GT in the frame >= iou_threshold",
                      "iou_threshold": self.iou_threshold},
            "libraries": library_versions(),
            "reranker": self.reranker.state(),
            "training": self.training,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the model text and its metadata: names the model in an output's metadata."""
        h = hashlib.sha256(self.reranker.model_text().encode())
        h.update(dumps(_finite(self.meta())).encode())
        return h.hexdigest()

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.reranker.save(folder)
        files.write_text(folder / META_FILE, dumps(_finite(self.meta())))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, feature_modules: Sequence[str] = ()) -> "RerankModel":
        """Read a model folder. ``feature_modules`` (given by the caller: a command-line flag or
        code) are imported; the modules the folder's metadata lists are data and are imported only
        when allowed (an installed ``calib.features`` entry point, ``--allow-import``); a feature
        still missing then is refused with the flag to pass."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.exists():
            raise ModelMismatchError(f"{folder}: not a reranker model folder (no {META_FILE}); "
                                     "make one with 'calib rerank fit'")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ModelMismatchError(f"{meta_path}: not valid JSON ({e})") from e
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ModelMismatchError(f"{meta_path}: model format {meta.get('format')!r} version "
                                     f"{meta.get('format_version')!r}; this calib reads {FORMAT!r} version {FORMAT_VERSION}")
        F.load_feature_modules(feature_modules)
        listed = meta.get("feature_modules") or []
        if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
            raise ModelMismatchError(f"{meta_path}: feature_modules must be a list of module names")
        F.load_feature_modules([m for m in listed if F.is_import_allowed(m)], source=str(meta_path))
        check_features(meta, meta_path)
        check_libraries(meta, meta_path)
        reranker = Reranker.load(folder, meta["reranker"])
        feats = [F.get_feature(f["name"]) for f in meta["features"]]
        return cls(reranker, feats, list(meta.get("feature_modules", [])), meta["label"]["iou_threshold"],
                   meta.get("training", {}))


def check_features(meta: dict, where: Path) -> None:
    """Refuse a model whose features are not registered here with the same versions."""
    reg = F.registry()
    problems = []
    for f in meta["features"]:
        have = reg.get(f["name"])
        if have is None:
            problems.append(f"feature {f['name']!r} (module {f['module']}) is not registered; a model folder "
                            f"cannot import code by itself: pass --allow-import {f['module']} if you trust it "
                            f"(calib rerank also takes --feature-module {f['module']})")
        elif have.version != f["version"]:
            problems.append(f"feature {f['name']!r} is version {have.version} here but the model was trained on "
                            f"version {f['version']}")
        elif have.train_only != f["train_only"]:
            problems.append(f"feature {f['name']!r} changed its train-only flag")
    names = [f["name"] for f in meta["features"]]
    if names != meta["reranker"]["feature_names"]:
        problems.append("the feature list does not match the model's columns")
    if problems:
        raise ModelMismatchError(f"{where}: cannot use this model: " + "; ".join(problems)
                                 + ". Refit it with 'calib rerank fit'.")


def check_libraries(meta: dict, where: Path) -> None:
    """LightGBM reads model text of its own major version; refuse another."""
    if meta["backend"] != "lightgbm":
        return  # the HGB trees are plain JSON evaluated by calib itself
    saved = meta["libraries"].get("lightgbm", "")
    here = library_versions()["lightgbm"]
    if saved.split(".")[0] != here.split(".")[0]:
        raise ModelMismatchError(f"{where}: model written by LightGBM {saved}, this environment has {here}; "
                                 "refit it or install a matching LightGBM")


@dataclass
class FitResult:
    model: RerankModel
    oof: pl.DataFrame
    report: dict

    def save(self, folder: str | os.PathLike) -> Path:
        folder = self.model.save(folder)
        files.write_parquet(self.oof, folder / "oof.parquet")
        files.write_text(folder / "report.json", dumps(_finite(self.report)))
        cal, cf = self.report["calibration"], self.report["cross_fitting"]
        if cal.get("out_of_fold"):
            curves = cal["out_of_fold"]
            title = f"out-of-fold reliability ({self.model.reranker.model}, {cf['folds']} folds by {cf['group']})"
        else:
            curves = cal["in_sample"]
            title = f"in-sample reliability ({self.model.reranker.model}; no cross-fitting: optimistic)"
        plot_reliability(curves, folder / "reliability.png", title)
        return folder


def fit_reranker(detections: pl.DataFrame, truth: pl.DataFrame, *, features: Sequence[str] | str | None = None,
                 feature_modules: Sequence[str] = (), iou_threshold: float = 0.25, folds: int = 5,
                 group: str = "clip", match: "pl.DataFrame | scoring.Scored | None" = None,
                 score_map: bool = True, jobs: int | None = None, gt_clips: pl.DataFrame | None = None,
                 **params) -> FitResult:
    """Label, cross-fit and fit; ``params`` are :class:`Reranker` parameters.

    ``match``: the scorer's results for these detections (:class:`calib.rerank.scoring.Scored`),
    computed when not given (``jobs`` processes, None: those of the enclosing
    :func:`calib.score.parallel.scale_out` block; with ``score_map`` False only the labels, from
    the scorer's cache of per-detection IoUs), or just a prediction-side match table (system,
    clip, det_id, best_iou), enough for labels but not for ``score_map`` (the dev mAPs).
    ``folds`` < 2 skips cross-fitting (no honest estimate then).
    ``gt_clips``: ``clip, split`` of every clip with a GT file, beyond the truth rows' clips (a GT
    file with no annotation): its detections are labelled unmatched (best IoU 0), not dropped."""
    model_name = params.get("model", "lightgbm")
    if model_name not in BACKENDS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {BACKENDS}")
    F.load_feature_modules(feature_modules)
    feats = F.resolve(features)
    scored = None
    if match is None:  # the labels alone come from the scorer's IoU cache, without the matching
        listed = None if gt_clips is None else gt_clips.get_column("clip").to_list()
        match = scored = scoring.score_detections(detections, truth, jobs=jobs, gt_clips=listed) if score_map else \
            scoring.best_iou_table(detections, truth, jobs=jobs, gt_clips=listed)
    if isinstance(match, scoring.Scored):
        scored, match = match, match.matches
    if score_map and scored is None:
        raise ValueError("the dev mAPs need the scorer's results (match=None or a Scored), not a bare match table")
    labelled = scoring.label_detections(detections, match, iou_threshold)
    dropped = detections.height - labelled.height
    if labelled.height == 0:
        raise ValueError("no detection could be labelled: no clip of the detections has ground truth")
    y = labelled.get_column("label").to_numpy().astype(np.float64)
    X_df = F.compute_features(labelled.drop("label", "best_iou"), [f.name for f in feats], train=True,
                              truth=truth, labels=y)
    X = X_df.to_numpy().astype(np.float64, copy=False)
    names = [f.name for f in feats]
    zero = [f.name for f in feats if f.train_only]
    clips = labelled.get_column("clip").to_numpy().astype(str)
    oof = np.full(y.size, np.nan)
    fold = np.full(y.size, -1, np.int64)
    summaries: list[dict] = []
    if folds >= 2:
        groups = fold_groups(labelled, truth if gt_clips is None else gt_clips, group)
        fold = assign_folds(groups, folds, params.get("seed", 0))
        cf = cross_fit(X, y, fold, clips, groups, feature_names=names, zero_at_inference=zero,
                       params=Reranker(**params).get_params())
        oof, summaries = cf.oof, cf.fold_summaries
    final = Reranker(**params).fit(X, y, clips, feature_names=names, zero_at_inference=zero)
    insample = final.predict_proba(X)
    raw = labelled.get_column("score_raw" if "score_raw" in labelled.columns else "score").to_numpy()

    out = labelled.select(KEYS + ["best_iou", "label"]).with_columns(
        pl.Series("fold", fold, dtype=pl.Int64), pl.Series("score_raw", raw, dtype=pl.Float64),
        pl.Series("score_oof", oof, dtype=pl.Float64), pl.Series("score_insample", insample, dtype=pl.Float64))

    cls = labelled.get_column("class_id").to_numpy()
    report = {
        "n_detections": detections.height, "n_labelled": int(y.size), "n_unlabelled_dropped": int(dropped),
        "positive_rate": float(y.mean()), "iou_threshold": iou_threshold,
        "model": final.get_params(), "n_iter": final.n_iter_,
        "features": names, "train_only_features": zero,
        "feature_importance_gain": dict(sorted(zip(names, (float(v) for v in final.importances_)),
                                               key=lambda kv: -kv[1])),
        "cross_fitting": {"folds": int(np.unique(fold[fold >= 0]).size), "group": group, "per_fold": summaries},
        "calibration": {"in_sample": per_class_reliability(insample, y, cls),
                        "out_of_fold": per_class_reliability(oof, y, cls) if folds >= 2 else None},
    }
    if score_map:
        report["dev_mAP"] = scoring.compare_maps(scored, out, {"raw": "score_raw", "in_sample": "score_insample",
                                                              **({"out_of_fold": "score_oof"} if folds >= 2 else {})})
    model = RerankModel(final, feats, list(feature_modules), iou_threshold,
                        training={"n_labelled": int(y.size), "positive_rate": float(y.mean()),
                                  "systems": sorted(labelled.get_column("system").unique().to_list()),
                                  "clips": int(np.unique(clips).size)})
    return FitResult(model, out, report)
