"""Post-calibration of a reranker's probabilities: isotonic, sigmoid (Platt) or temperature.

Each calibrator maps the model's margin (log-odds) to a probability and serialises to plain JSON.
Sigmoid and temperature are strictly increasing, so they never change a ranking (nor AP);
isotonic is only non-decreasing: it merges scores into flat steps, and the ties it creates
change AP (tied detections are ordered by the scorer's record order, not by merit).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit

METHODS = ("none", "isotonic", "sigmoid", "temperature")


def _logloss(z: np.ndarray, y: np.ndarray) -> float:
    # log(1 + e^z) - y z, stable for large |z|
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


class Calibrator:
    """``fit(margin, y)`` then ``transform(margin) -> probability``; ``to_dict``/``from_dict``."""

    def __init__(self, method: str = "none"):
        self.method = method

    def fit(self, margin: np.ndarray, y: np.ndarray) -> "Calibrator":
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration {self.method!r}; choose one of {METHODS}")
        z = np.asarray(margin, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.method == "none":
            self.params_ = {}
        elif z.size == 0 or y.min() == y.max():
            raise ValueError(f"{self.method} calibration needs held-out detections of both labels "
                             f"(got {z.size} detections, {int(y.sum())} positive)")
        elif self.method == "temperature":
            res = minimize_scalar(lambda lt: _logloss(z / np.exp(lt), y), bounds=(-5.0, 5.0), method="bounded",
                                  options={"xatol": 1e-10})
            self.params_ = {"temperature": float(np.exp(res.x))}
        elif self.method == "sigmoid":
            res = minimize(lambda ab: _logloss(ab[0] * z + ab[1], y), x0=np.array([1.0, 0.0]), method="L-BFGS-B",
                           bounds=[(1e-6, None), (None, None)])  # a > 0 keeps it increasing
            self.params_ = {"a": float(res.x[0]), "b": float(res.x[1])}
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(expit(z), y)
            self.params_ = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        return self

    def transform(self, margin: np.ndarray) -> np.ndarray:
        z = np.asarray(margin, dtype=np.float64)
        p = self.params_
        if self.method == "none":
            return expit(z)
        if self.method == "temperature":
            return expit(z / p["temperature"])
        if self.method == "sigmoid":
            return expit(p["a"] * z + p["b"])
        # isotonic: piecewise linear through the thresholds, clipped at both ends (what sklearn does)
        return np.interp(expit(z), np.asarray(p["x"]), np.asarray(p["y"]))

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params_}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        c = cls(d["method"])
        c.params_ = dict(d["params"])
        return c
