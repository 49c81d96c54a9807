"""The vectorized point features against a plain per-annotation reference on random detections
(seam crossings, ties, single points, empty annotations, many points)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl

from calib.tables import DETECTIONS
from features import compute_features


def reference(pts: np.ndarray) -> dict[str, float]:
    """One annotation, written the obvious way."""
    if len(pts) == 0:  # an all-zero box (aspect (0 + 1) / (0 + 1)), zero energy
        return dict.fromkeys(["box_area", "box_elevation", "energy_max", "energy_mean", "energy_std",
                              "energy_top10_share", "energy_entropy", "peak_offset"], 0.0) | {"box_aspect": 1.0}
    x, y, e = pts[:, 0].copy(), pts[:, 1], pts[:, 2]
    s = np.sort(x)
    if len(s) >= 2:
        gaps = np.diff(s)
        k = int(np.argmax(gaps))
        if gaps[k] > 180:
            x = np.where(x <= s[k], x + 360, x)
    w, h = x.max() - x.min(), y.max() - y.min()
    cx, cy = x.min() + w / 2, y.min() + h / 2
    ep = np.clip(e, 0, None)
    k = math.ceil(0.1 * len(e))
    total = ep.sum()
    top = np.sort(ep)[::-1][:k].sum() / total if total > 0 else 0.0
    if len(e) > 1 and total > 0:
        p = ep / total
        p = p[p > 0]
        ent = float(-(p * np.log(p)).sum() / math.log(len(e)))
    else:
        ent = 0.0
    i = int(np.argmax(e))  # first maximum
    hd = 0.5 * math.hypot(w, h)
    off = math.hypot(x[i] - cx, y[i] - cy) / hd if hd > 0 else 0.0
    return {"box_area": w * h, "box_elevation": cy, "box_aspect": (w + 1) / (h + 1), "energy_max": e.max(),
            "energy_mean": e.mean(), "energy_std": e.std(), "energy_top10_share": top, "energy_entropy": ent,
            "peak_offset": off}


def random_annotations(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    anns = []
    for i in range(n):
        kind = i % 5
        m = [0, 1, 2, int(rng.integers(3, 12)), int(rng.integers(12, 80))][kind]
        cx = rng.choice([2.0, 358.0, rng.uniform(0, 360)])  # many near the seam
        x = np.mod(cx + rng.normal(0, 8, m), 360)
        if i % 7 == 0 and m:
            x[0] = np.mod(cx + 180, 360)  # wide annotations: the widest gap may or may not cross
        y = np.clip(rng.uniform(0, 180) + rng.normal(0, 8, m), 0, 180)
        e = rng.choice([0.5, 1.0, 2.0], m) if i % 3 == 0 else rng.uniform(-0.1, 2, m)  # ties, negatives
        anns.append(np.column_stack([np.round(x, 1), np.round(y, 1), e]))
    return anns


def test_vectorized_equals_reference():
    anns = random_annotations(300, seed=7)
    rows = [dict(system="s", clip="c", frame=i, det_id=i, class_id=0, score=0.5, distance=None, instance_id=None,
                 points=[[dict(x=float(a), y=float(b), e=float(c)) for a, b, c in pts]] if len(pts) else [],
                 extra=None) for i, pts in enumerate(anns)]
    df = pl.DataFrame(rows, schema=DETECTIONS)
    names = list(reference(anns[3]))
    got = compute_features(df, names)
    for name in names:
        expected = np.array([reference(p)[name] for p in anns])
        np.testing.assert_allclose(got.get_column("feat_" + name).to_numpy(), expected, rtol=1e-12, atol=1e-12,
                                   err_msg=name)
