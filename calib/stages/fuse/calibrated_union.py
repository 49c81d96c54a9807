"""Cross-system score calibration and union.

Two systems' raw scores live on different scales; pooling them as they are lets the system with
the larger scores take the top of every ranking. Mapping each system's scores onto one common
scale (the probability that a detection is matchable: its best soft IoU with a same-class ground
truth of its frame reaches ``iou``, from the scorer's match table) before merging fixes that.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.fuse._common import empty_detections, renumber, stack_systems

METHODS = ("isotonic", "quantile", "none")
OUT_EXTRA = {"score_raw": pl.Float64, "fuse_source": pl.String}


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, y) of the non-decreasing least-squares fit of labels on scores (sklearn's
    IsotonicRegression); between knots the map is linear, outside it is clipped."""
    from sklearn.isotonic import IsotonicRegression  # here: importing scikit-learn takes a second

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
    return np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)


def fit_quantile(scores: np.ndarray, labels: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Histogram binning on equal-count (quantile) bins: knots at each bin's median score, valued
    at the bin's matchability rate, made non-decreasing by an isotonic fit over the bins (weighted
    by their counts); linear between knots, clipped outside."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    parts = [p for p in np.array_split(order, min(int(bins), len(s))) if len(p)]
    x = np.array([np.median(s[p]) for p in parts])
    rate = np.array([y[p].mean() for p in parts])
    weight = np.array([len(p) for p in parts], dtype=np.float64)
    # bins sharing a median score (heavy ties) are one knot
    ux, inv = np.unique(x, return_inverse=True)
    w = np.bincount(inv, weights=weight)
    r = np.bincount(inv, weights=rate * weight) / w
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit(ux, r, sample_weight=w)
    return ux, iso.predict(ux)


def calibrate(scores: np.ndarray, knots_x: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    """Piecewise-linear map through the knots, constant beyond the ends."""
    return np.interp(np.asarray(scores, dtype=np.float64), knots_x, knots_y)


@register("calibrated_union")
class CalibratedUnion(Stage):
    """Merge several systems' detections after mapping each system's scores to one common scale.

    ``fit`` labels every dev detection of each system as matchable (best soft IoU with a same-class
    ground truth of its frame >= ``iou``, the scorer's match table) and learns a monotone map from
    that system's raw score to the matchability probability: ``method = "isotonic"`` (sklearn
    IsotonicRegression) or ``"quantile"`` (histogram binning on ``bins`` equal-count bins, made
    monotone); ``"none"`` keeps raw scores (the naive union, for comparison). With ``by_class``
    a system gets one map per class holding at least ``min_class_count`` dev detections (its
    all-class map elsewhere), so a system weak on a class sinks below a strong one there even when
    their raw scores look alike. ``apply`` maps each system's scores and stacks all systems into
    ``detections`` (system ``system_name``, det_id renumbered per clip, ``fuse_source`` = original
    system, ``score_raw`` = raw score).

    Calibrated maps are flat in places (isotonic steps); ``tie_break`` adds that much times the
    detection's within-system score quantile (0..1) so a system's own order survives inside a
    step (0 turns it off). Learned: ``calibrators_`` (system -> {"all" or a class id as a string ->
    {"x": knots, "y": values}}) and ``calibration_table_`` (a polars DataFrame of the knots, class
    null for the all-class map).
    """

    needs_tables = ("systems", "truth")
    needs_columns = ("clip", "frame", "class_id", "score", "points")
    adds_columns = ("score_raw", "fuse_source")
    learns = True
    learned_attributes = {"calibrators_": dict, "calibration_table_": pl.DataFrame}

    PARAMS = declare(
        method=Param(str, "isotonic", "the monotone map from a system's score to matchability: 'isotonic', "
                     "'quantile' (equal-count bins) or 'none' (raw scores: the naive union)", choices=METHODS),
        by_class=Param(bool, True, "learn one map per class (where the class has min_class_count dev detections)"),
        min_class_count=Param(int, 30, "dev detections a class needs for its own map (else the all-class map)",
                              unit="detections", ge=1),
        iou=Param(float, 0.25, "a dev detection is matchable when its best soft IoU with a same-class GT reaches "
                  "this", unit="IoU", gt=0, le=1),
        bins=Param(int, 20, "equal-count bins of the 'quantile' method", unit="bins", ge=1),
        tie_break=Param(float, 1e-6, "added times the detection's within-system score quantile, so a system's own "
                        "order survives inside a flat step (0: off)", unit="score", ge=0, lt=1e-3),
        system_name=Param(str, "calibrated_union", "the system name of the fused detections"),
    )

    def fit(self, tables: Tables) -> "CalibratedUnion":
        from calib.score import facade  # looked up per call: tests stand a simpler scorer in

        self.check_params()
        truth = tables["truth"]
        self.calibrators_: dict[str, dict[str, dict[str, list[float]]]] = {}
        for name, det in sorted(tables["systems"].items()):
            maps: dict[str, dict[str, list[float]]] = {}
            best = facade.best_ious(det, truth, gt_clips=tables.truth_clips.get_column("clip").to_list()) \
                if self.method != "none" and det.height else np.zeros(0)
            known = ~np.isnan(best)  # detections of clips without ground truth teach nothing
            if known.any():
                labels = best[known] >= float(self.iou)
                scores = det.get_column("score").to_numpy()[known]
                classes = det.get_column("class_id").to_numpy()[known]
                maps["all"] = self._fit_one(scores, labels)
                if self.by_class:
                    for cls in np.unique(classes):
                        sel = classes == cls
                        if sel.sum() >= int(self.min_class_count):
                            maps[str(int(cls))] = self._fit_one(scores[sel], labels[sel])
            self.calibrators_[name] = maps
        self.calibration_table_ = pl.DataFrame(
            [(n, None if k == "all" else int(k), float(a), float(b))
             for n, maps in self.calibrators_.items() for k, c in maps.items() for a, b in zip(c["x"], c["y"])],
            schema={"system": pl.String, "class_id": pl.Int64, "score_raw": pl.Float64, "calibrated": pl.Float64},
            orient="row")
        return self

    def _fit_one(self, scores: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
        x, y = (fit_isotonic(scores, labels) if self.method == "isotonic"
                else fit_quantile(scores, labels, int(self.bins)))
        return {"x": x.tolist(), "y": y.tolist()}

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        if not hasattr(self, "calibrators_"):
            raise RuntimeError("calibrated_union: fit it on dev tables (systems + truth) before apply")
        systems = tables["systems"]
        calibrated = {}
        for name, det in sorted(systems.items()):
            if det.height == 0:
                continue
            if name not in self.calibrators_:
                raise ValueError(f"calibrated_union: no calibration learned for system {name!r} "
                                 f"(fitted on {sorted(self.calibrators_)})")
            calibrated[name] = self._calibrated(name, det)
        if not calibrated:
            return tables.replace(detections=empty_detections(OUT_EXTRA))
        det = stack_systems(calibrated)
        return tables.replace(detections=renumber(det, self.system_name, ["clip", "frame", "fuse_source", "det_id"]))

    def _calibrated(self, name: str, det: pl.DataFrame) -> pl.DataFrame:
        if "score_raw" not in det.columns:
            det = det.with_columns(pl.col("score").alias("score_raw"))
        if self.method == "none":
            return det
        maps = self.calibrators_[name]
        if not maps:
            raise ValueError(f"calibrated_union: system {name!r} had no dev detections to calibrate on")
        raw = det.get_column("score").to_numpy()
        classes = det.get_column("class_id").to_numpy()
        new = np.empty(len(raw))
        for cls in np.unique(classes):
            sel = classes == cls
            knots = maps.get(str(int(cls)), maps["all"])
            new[sel] = calibrate(raw[sel], np.asarray(knots["x"]), np.asarray(knots["y"]))
        quantile = det.select(pl.col("score").rank("average") / pl.len()).to_series().to_numpy()
        return det.with_columns(pl.Series("score", new + float(self.tie_break) * quantile))
