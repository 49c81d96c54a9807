"""Fit report pieces: calibration error per class and the reliability diagram."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from calib.constants import CLASS_NAMES
from calib.rerank.files import write_atomic

N_BINS = 10


def reliability(p: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Equal-width bins of predicted probability: count, mean prediction and positive rate per bin,
    and the expected calibration error sum_b (n_b / n) |rate_b - mean_b| (0 for no rows)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    b = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    sp = np.bincount(b, weights=p, minlength=n_bins)
    sy = np.bincount(b, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(n > 0, sp / np.maximum(n, 1), np.nan)
        rate = np.where(n > 0, sy / np.maximum(n, 1), np.nan)
    ece = float(np.sum(np.abs(sy - sp)) / p.size) if p.size else 0.0  # = sum (n_b/n)|rate_b - conf_b|
    return {"ece": ece, "n": int(p.size), "bin_count": n.tolist(),
            "bin_confidence": [None if np.isnan(v) else float(v) for v in conf],
            "bin_positive_rate": [None if np.isnan(v) else float(v) for v in rate]}


def per_class_reliability(p: np.ndarray, y: np.ndarray, class_id: np.ndarray) -> dict[str, dict]:
    """:func:`reliability` for every class present, keyed by class id (as a string), plus ``all``."""
    out = {"all": reliability(p, y)}
    for k in np.unique(class_id):
        m = class_id == k
        out[str(int(k))] = reliability(p[m], y[m])
    return out


def plot_reliability(curves: dict[str, dict], path: str | os.PathLike, title: str) -> Path:
    """PNG: the overall reliability curve (left) and per-class ECE (right); written atomically
    with no timestamp, so the same numbers give the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    edges = np.linspace(0, 1, N_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
    allc = curves["all"]
    conf = np.array([np.nan if v is None else v for v in allc["bin_confidence"]])
    rate = np.array([np.nan if v is None else v for v in allc["bin_positive_rate"]])
    ax.bar(centres, rate, width=1 / N_BINS, alpha=0.3, edgecolor="k", label="positive rate per bin")
    ax.plot(conf, rate, "o-", color="C3", label=f"all classes (ECE {allc['ece']:.3f})")
    ax.set_xlabel("predicted probability of matchable")
    ax.set_ylabel("observed matchable rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10)
    keys = [k for k in curves if k != "all"]
    names = [f"{CLASS_NAMES[int(k)] if 0 <= int(k) < len(CLASS_NAMES) else k} (n={curves[k]['n']})" for k in keys]
    bx.barh(range(len(keys)), [curves[k]["ece"] for k in keys], color="C0")
    bx.set_yticks(range(len(keys)), names, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("expected calibration error (10 bins)")
    bx.set_title("per-class ECE", fontsize=10)
    fig.tight_layout()
    try:
        return write_atomic(path, lambda p: fig.savefig(p, format="png", metadata={"Software": None}))
    finally:
        plt.close(fig)
