"""Gradient-boosted matchability models: LightGBM (default) or scikit-learn HistGradientBoosting.

:class:`Reranker` is a small scikit-learn-like estimator over a numeric feature matrix: parameters
stored in ``__init__``, ``fit(X, y, groups, ...)`` returns self with the learned state in ``*_``
attributes, ``predict_proba(X)`` gives the probability that a detection is matchable.

- Defaults follow the report: 120 iterations, depth 6, learning rate 0.1, L2 1.0, at least 100
  samples per leaf, early stopping (20 rounds of patience) on a validation split grouped by clip,
  so no clip feeds both the trees and the stopping rule.
- Deterministic: LightGBM runs with ``deterministic=True``, ``force_row_wise=True``, a fixed
  ``num_threads`` and ``seed``; HGB with a fixed ``random_state`` and a fixed OpenMP thread count;
  the validation split is a seeded permutation of the sorted group names.
- Columns named in ``zero_at_inference`` (train-only features) are used for training and set to 0
  everywhere the model predicts, including the validation split, so early stopping and calibration
  see the model as it will be used.
- Saved in each library's own text form: LightGBM's ``model_to_string``; for HGB, a JSON of the trees
  (plain numbers, no pickle) evaluated here by a vectorized walk that reproduces scikit-learn's
  ``predict_proba`` bit for bit (a test checks it). Nothing is unpickled when loading a model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from calib.params import Declared, Param, declare
from calib.rerank.calibration import METHODS as CALIBRATIONS
from calib.rerank.calibration import Calibrator

BACKENDS = ("lightgbm", "hgb")
MODEL_FILES = {"lightgbm": "model.lgb.txt", "hgb": "model.hgb.json"}


def validation_groups(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose group is held out for validation: groups taken in a seeded
    permutation of their sorted names until ``fraction`` of the rows is reached; never all groups."""
    names, inverse, counts = np.unique(np.asarray(groups).astype(str), return_inverse=True, return_counts=True)
    held = np.zeros(names.size, bool)
    if names.size >= 2 and fraction > 0:
        order = np.random.default_rng(seed).permutation(names.size)
        target = fraction * counts.sum()
        taken = 0
        for g in order[:-1]:  # at least one group stays for training
            if taken >= target:
                break
            held[g] = True
            taken += counts[g]
    return held[inverse]


class TreeEnsemble:
    """Additive binary-classification trees as plain arrays; ``margin(X)`` = baseline + sum of leaves.

    Built from a fitted HistGradientBoostingClassifier (numerical features, no categorical splits)
    and stored as JSON."""

    FIELDS = ("feature", "threshold", "missing_left", "left", "right", "is_leaf", "value", "gain")

    def __init__(self, baseline: float, trees: list[dict]):
        self.baseline = float(baseline)
        self.trees = [self._arrays(t) for t in trees]

    @staticmethod
    def _arrays(t: dict) -> dict:
        return {
            "feature": np.asarray(t["feature"], np.intp), "threshold": np.asarray(t["threshold"], np.float64),
            "missing_left": np.asarray(t["missing_left"], bool), "left": np.asarray(t["left"], np.intp),
            "right": np.asarray(t["right"], np.intp), "is_leaf": np.asarray(t["is_leaf"], bool),
            "value": np.asarray(t["value"], np.float64), "gain": np.asarray(t["gain"], np.float64),
        }

    @classmethod
    def from_hgb(cls, est) -> "TreeEnsemble":
        baseline = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()
        if baseline.size != 1:
            raise ValueError("only binary HistGradientBoostingClassifier models can be exported")
        trees = []
        for iteration in est._predictors:
            nodes = iteration[0].nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported by the JSON tree format")
            trees.append({
                "feature": nodes["feature_idx"], "threshold": nodes["num_threshold"],
                "missing_left": nodes["missing_go_to_left"].astype(bool), "left": nodes["left"],
                "right": nodes["right"], "is_leaf": nodes["is_leaf"].astype(bool), "value": nodes["value"],
                "gain": np.where(nodes["is_leaf"].astype(bool), 0.0, nodes["gain"]),
            })
        return cls(float(baseline[0]), trees)

    def margin(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        # Same order of float64 additions as scikit-learn: 0 + baseline, then tree by tree.
        out = np.zeros(X.shape[0]) + self.baseline
        rows = np.arange(X.shape[0])
        for t in self.trees:
            node = np.zeros(X.shape[0], np.intp)
            active = rows[~t["is_leaf"][node]]
            while active.size:
                nd = node[active]
                x = X[active, t["feature"][nd]]
                left = np.where(np.isnan(x), t["missing_left"][nd], x <= t["threshold"][nd])
                node[active] = np.where(left, t["left"][nd], t["right"][nd])
                active = active[~t["is_leaf"][node[active]]]
            out += t["value"][node]
        return out

    def gain_importance(self, n_features: int) -> np.ndarray:
        imp = np.zeros(n_features)
        for t in self.trees:
            split = ~t["is_leaf"]
            np.add.at(imp, t["feature"][split], t["gain"][split])
        return imp

    def to_json(self) -> str:
        trees = [{k: t[k].tolist() for k in self.FIELDS} for t in self.trees]
        return json.dumps({"format": "calib-tree-ensemble", "version": 1, "baseline": self.baseline,
                           "trees": trees}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "TreeEnsemble":
        d = json.loads(text)
        if d.get("format") != "calib-tree-ensemble" or d.get("version") != 1:
            raise ValueError("not a calib tree-ensemble JSON (version 1)")
        return cls(d["baseline"], d["trees"])


#: the model's parameters, declared once: :class:`Reranker` takes them, and so does the ``rerank``
#: recipe stage (:class:`calib.stages.rerank.Rerank`), which passes them on
MODEL_PARAMS = declare(
    model=Param(str, "lightgbm", "the gradient-boosting library: LightGBM or scikit-learn's HistGradientBoosting "
                "('hgb')", choices=BACKENDS),
    n_estimators=Param(int, 120, "boosting iterations (at most: early stopping may stop sooner)", unit="trees", ge=1),
    max_depth=Param(int, 6, "depth limit of each tree", unit="levels", ge=1),
    num_leaves=Param(int, 31, "leaves per tree at most (LightGBM)", unit="leaves", ge=2),
    learning_rate=Param(float, 0.1, "shrinkage of each tree's contribution", gt=0),
    l2=Param(float, 1.0, "L2 regularisation of the leaf values", ge=0),
    min_samples_leaf=Param(int, 100, "fewest training detections in a leaf", unit="detections", ge=1),
    early_stopping=Param(bool, True, "stop when the validation loss has not improved for patience rounds"),
    validation_fraction=Param(float, 0.15, "share of the training rows (whole clips) held out for early stopping and "
                              "calibration", unit="fraction", ge=0, lt=1),
    patience=Param(int, 20, "early-stopping rounds without improvement", unit="rounds", ge=1),
    calibration=Param(str, "none", "post-calibration on the validation split (isotonic creates ties, which change "
                      "AP)", choices=CALIBRATIONS),
    seed=Param(int, 0, "seed of the validation split and the trees", ge=0),
    num_threads=Param(int, 2, "threads the model uses (fixed, for determinism)", unit="threads", ge=1),
)


class Reranker(Declared):
    """A gradient-boosted classifier of matchability with optional post-calibration."""

    PARAMS = MODEL_PARAMS

    # ------------------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, feature_names: Sequence[str],
            zero_at_inference: Sequence[str] = ()) -> "Reranker":
        if self.model not in BACKENDS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {BACKENDS}")
        self.check_params()
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != y.size or X.shape[1] != len(feature_names):
            raise ValueError(f"X is {X.shape}, y has {y.size} rows, {len(feature_names)} feature names")
        if y.size == 0:
            raise ValueError("no labelled detections to fit on")
        self.feature_names_ = list(feature_names)
        unknown = [c for c in zero_at_inference if c not in self.feature_names_]
        if unknown:
            raise ValueError(f"zero_at_inference names unknown features {unknown}")
        self.zero_at_inference_ = [c for c in self.feature_names_ if c in set(zero_at_inference)]
        needs_val = self.early_stopping or self.calibration != "none"
        val = validation_groups(groups, self.validation_fraction, self.seed) if needs_val else np.zeros(y.size, bool)
        if self.calibration != "none" and not val.any():
            raise ValueError("calibration needs a held-out validation split: give at least two clips")
        tr = ~val
        Xv = self._inference_view(X[val])
        if self.model == "lightgbm":
            self._fit_lightgbm(X[tr], y[tr], Xv, y[val])
        else:
            self._fit_hgb(X[tr], y[tr], Xv, y[val])
        self.n_train_, self.n_val_ = int(tr.sum()), int(val.sum())
        self.calibrator_ = Calibrator(self.calibration).fit(self.margin(X[val]), y[val])
        return self

    def _fit_lightgbm(self, X, y, Xv, yv) -> None:
        import lightgbm as lgb

        params = {
            "objective": "binary", "learning_rate": self.learning_rate, "max_depth": self.max_depth,
            "num_leaves": self.num_leaves, "lambda_l2": self.l2, "min_data_in_leaf": self.min_samples_leaf,
            "deterministic": True, "force_row_wise": True, "num_threads": self.num_threads, "seed": self.seed,
            "verbosity": -1, "metric": "binary_logloss",
        }
        dtrain = lgb.Dataset(X, label=y, feature_name=self.feature_names_, free_raw_data=True)
        valid, callbacks = [], []
        if self.early_stopping and yv.size:
            valid = [lgb.Dataset(Xv, label=yv, reference=dtrain)]
            callbacks = [lgb.early_stopping(self.patience, first_metric_only=True, verbose=False)]
        booster = lgb.train(params, dtrain, num_boost_round=self.n_estimators, valid_sets=valid,
                            callbacks=callbacks)
        best = booster.best_iteration if valid and booster.best_iteration > 0 else booster.current_iteration()
        self.model_text_ = booster.model_to_string(num_iteration=best)
        self._load_booster()
        self.n_iter_ = int(best)
        self.importances_ = self.booster_.feature_importance("gain").astype(np.float64)

    def _load_booster(self) -> None:
        import lightgbm as lgb

        # Predict with the model read back from its text, so what is saved is what was measured.
        self.booster_ = lgb.Booster(model_str=self.model_text_)

    def _fit_hgb(self, X, y, Xv, yv) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        stop = bool(self.early_stopping and yv.size)
        est = HistGradientBoostingClassifier(
            max_iter=self.n_estimators, max_depth=self.max_depth, max_leaf_nodes=self.num_leaves,
            learning_rate=self.learning_rate, l2_regularization=self.l2, min_samples_leaf=self.min_samples_leaf,
            early_stopping=stop, n_iter_no_change=self.patience, scoring="loss", validation_fraction=None,
            random_state=self.seed,
        )
        with threadpool_limits(limits=self.num_threads, user_api="openmp"):
            if stop:
                est.fit(X, y.astype(np.int64), X_val=Xv, y_val=yv.astype(np.int64))
            else:
                est.fit(X, y.astype(np.int64))
        if list(est.classes_) != [0, 1]:
            raise ValueError(f"HGB needs both labels in the training part; it saw classes {list(est.classes_)}")
        # scikit-learn keeps every iteration it ran, the patience tail included (LightGBM is cut
        # back to its best iteration); both are what the library itself would predict with.
        self.trees_ = TreeEnsemble.from_hgb(est)
        self.n_iter_ = int(est.n_iter_)
        self.importances_ = self.trees_.gain_importance(X.shape[1])

    # ------------------------------------------------------------------------------------------
    def _inference_view(self, X: np.ndarray) -> np.ndarray:
        if not self.zero_at_inference_:
            return X
        X = np.array(X, dtype=np.float64, copy=True)
        for c in self.zero_at_inference_:
            X[:, self.feature_names_.index(c)] = 0.0
        return X

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of matchability, with train-only features set to 0."""
        X = self._inference_view(np.ascontiguousarray(X, dtype=np.float64))
        if X.shape[1] != len(self.feature_names_):
            raise ValueError(f"X has {X.shape[1]} columns, the model {len(self.feature_names_)} features")
        if X.shape[0] == 0:
            return np.zeros(0)
        if self.model == "lightgbm":
            return np.asarray(self.booster_.predict(X, raw_score=True, num_threads=self.num_threads), np.float64)
        return self.trees_.margin(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability that each detection is matchable (after post-calibration, if any)."""
        return self.calibrator_.transform(self.margin(X))

    # ------------------------------------------------------------------------------------------
    def model_text(self) -> str:
        return self.model_text_ if self.model == "lightgbm" else self.trees_.to_json()

    def state(self) -> dict:
        """Everything but the trees, as JSON-able values."""
        return {
            "params": self.get_params(), "feature_names": self.feature_names_,
            "zero_at_inference": self.zero_at_inference_, "n_iter": self.n_iter_,
            "n_train": self.n_train_, "n_val": self.n_val_,
            "importances_gain": [float(v) for v in self.importances_],
            "calibrator": self.calibrator_.to_dict(),
        }

    def save(self, folder: Path) -> dict:
        """Write the model file into ``folder`` (atomically); return :meth:`state`."""
        from calib.rerank.files import write_text

        write_text(Path(folder) / MODEL_FILES[self.model], self.model_text())
        return self.state()

    @classmethod
    def load(cls, folder: Path, state: dict) -> "Reranker":
        r = cls(**state["params"])
        path = Path(folder) / MODEL_FILES[r.model]
        if not path.exists():
            raise FileNotFoundError(f"{path}: model file missing")
        text = path.read_text(encoding="utf-8")
        r.feature_names_ = list(state["feature_names"])
        r.zero_at_inference_ = list(state["zero_at_inference"])
        r.n_iter_, r.n_train_, r.n_val_ = state["n_iter"], state["n_train"], state["n_val"]
        r.importances_ = np.asarray(state["importances_gain"], np.float64)
        r.calibrator_ = Calibrator.from_dict(state["calibrator"])
        if r.model == "lightgbm":
            r.model_text_ = text
            r._load_booster()
        else:
            r.trees_ = TreeEnsemble.from_json(text)
        return r
