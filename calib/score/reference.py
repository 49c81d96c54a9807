"""The reference engine for the ``dcase2026`` protocol: the official algorithm step by step.

Full-canvas rendering (``griddata`` over the whole 200 x 50 grid), one IoU at a time, no cache,
one process. It is the oracle the fast engine is tested against and the baseline of the
benchmarks; keep it literal rather than quick.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import griddata
from scipy.optimize import linear_sum_assignment
from scipy.spatial import QhullError

from calib.score.matching import KIND_MATCHED, ClipRecords, bucket_keys, group_by_key, pearson

_GX, _GY = np.meshgrid(np.arange(200), np.arange(50))


def render_reference(polygons) -> np.ndarray:
    """(50, 100) map of one annotation, following the official steps literally.

    The canvas starts as float32; maxing griddata's float64 output into it makes it float64, so a
    map with an interpolated polygon is float64 and one made of stamped points only is float32."""
    amap = np.zeros((50, 100), dtype=np.float32)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float32)
        xs = pts[:, 0] * (100 / 360)
        ys = pts[:, 1] * (50 / 180)
        vals = pts[:, 2]
        if len(xs) >= 2:
            s = np.sort(xs)
            gaps = np.diff(s)
            k = int(np.argmax(gaps))
            if gaps[k] > 50:
                xs = xs.copy()
                xs[xs <= s[k]] += 100
        canvas = np.zeros((50, 200), dtype=np.float32)
        done = False
        if len(xs) >= 3:
            try:
                v = griddata((xs, ys), vals, (_GX, _GY), method="linear", fill_value=0)
                v = np.nan_to_num(v, nan=0.0)
                v[v < 0] = 0
                canvas = np.maximum(canvas, v)
                done = True
            except QhullError:
                done = False
        if not done:
            for x, y, val in zip(xs, ys, vals):
                r = min(max(round(float(y)), 0), 49)
                c = min(max(round(float(x)), 0), 199)
                canvas[r, c] = max(canvas[r, c], val)
        folded = np.maximum(canvas[:, :100], canvas[:, 100:])
        amap = np.maximum(amap, folded)
    m = amap.max()
    if m > 1e-8:
        amap = amap / m
    return amap


def soft_iou(a: np.ndarray, b: np.ndarray) -> np.float32:
    inter = np.minimum(a, b).sum()
    union = np.maximum(a, b).sum()
    if union < 1e-8:
        return np.float32(0.0)
    return np.float32(inter / union)


def score_clip_reference(clip, preds, gts) -> ClipRecords:
    """Records of one clip in the official order (bucket keys in Python set order)."""
    pred_groups = group_by_key(preds)
    gt_groups = group_by_key(gts)
    rec = ClipRecords(clip)
    for key in bucket_keys(pred_groups, gt_groups):
        frame, cls = key
        P = pred_groups.get(key, [])
        G = gt_groups.get(key, [])
        if not P:
            for g in G:
                rec.fn(frame, cls, g.index)
            continue
        if not G:
            for p in P:
                rec.fp(frame, cls, p.index, p.score)
            continue
        pmaps = [render_reference(p.polygons) for p in P]
        gmaps = [render_reference(g.polygons) for g in G]
        iou = np.zeros((len(P), len(G)), dtype=np.float32)
        for i, pm in enumerate(pmaps):
            for j, gm in enumerate(gmaps):
                iou[i, j] = soft_iou(pm, gm)
        rows, cols = linear_sum_assignment(-iou)
        for i, j in zip(rows, cols):
            rec.add(KIND_MATCHED, frame, cls, P[i].index, G[j].index, P[i].score, iou[i, j],
                    iou[i].max(), iou[:, j].max(), pearson(gmaps[j], pmaps[i]))
        for i, p in enumerate(P):
            if i not in rows:
                rec.fp(frame, cls, p.index, p.score, best=iou[i].max())
        for j, g in enumerate(G):
            if j not in cols:
                rec.fn(frame, cls, g.index, best=iou[:, j].max())
    return rec
