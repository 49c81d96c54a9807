"""The dcase2026 protocol's bookkeeping, shared by both engines: buckets, records, Pearson, AP.

Everything here is cheap; the engines differ only in how they render maps and compute IoUs.
Exactness notes (the official numbers depend on them):

* bucket keys ``(frame, class)`` are visited in Python's own iteration order of
  ``set(pred_groups) | set(gt_groups)`` built from plain dicts filled in file order; that order
  fixes the record order and so how tied scores are broken;
* AP works in float32 (cumulative sums, recall, precision, the 101-point accumulation);
* ``numpy.argsort(-scores)`` with the default sort kind orders the records, as the official
  (AVX2) machine ran it, or as another CPU would (``tie_order``, see
  :func:`calib.score.argsort.tie_argsort`); this matters only where tied scores have different
  outcomes (:func:`ties_can_matter`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib.score.argsort import OFFICIAL_TIE_ORDER, tie_argsort

RECALL_POINTS = np.linspace(0, 1, 101)

KIND_MATCHED, KIND_FP, KIND_FN = 0, 1, 2


def group_positions(keys) -> dict[tuple[int, int], list[int]]:
    """{(frame, class): [positions in input order]} as a plain dict in first-seen order: the
    official grouping, which every engine shares (bucket order follows from it)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    return groups


def group_by_key(anns) -> dict[tuple[int, int], list]:
    """{(frame, class): [annotations in file order]} in first-seen order (:func:`group_positions`)."""
    anns = list(anns)
    return {key: [anns[k] for k in pos]
            for key, pos in group_positions((int(a.frame), int(a.class_id)) for a in anns).items()}


def bucket_keys(pred_groups: dict, gt_groups: dict):
    """The buckets of one clip in the official (Python set) order."""
    return set(pred_groups) | set(gt_groups)


def pearson(gt_map: np.ndarray, pred_map: np.ndarray) -> float:
    """Pearson r over the pixels where the GT map is positive (float64, population std)."""
    mask = gt_map > 0
    if np.count_nonzero(mask) < 2:
        return float("nan")
    g = gt_map[mask].astype(np.float64)
    p = pred_map[mask].astype(np.float64)
    gs, ps = g.std(), p.std()
    if gs < 1e-12 or ps < 1e-12:
        return float("nan")
    return float(np.mean(((g - g.mean()) / gs) * ((p - p.mean()) / ps)))


@dataclass
class ClipRecords:
    """Columnar records of one clip, in the official order.

    kind: matched / false positive / false negative; det (annotation index of the prediction,
    -1 for FN), gt (of the GT, -1 for FP); iou: the pair's soft IoU (float32, 0 for FP/FN);
    best: the prediction's best IoU in its bucket (FN: the GT's best); gt_best: for matched
    records the GT's best IoU; pearson: NaN unless matched and defined."""

    clip: str = ""
    kind: list = field(default_factory=list)
    frame: list = field(default_factory=list)
    cls: list = field(default_factory=list)
    det: list = field(default_factory=list)
    gt: list = field(default_factory=list)
    score: list = field(default_factory=list)
    iou: list = field(default_factory=list)
    best: list = field(default_factory=list)
    gt_best: list = field(default_factory=list)
    pearson: list = field(default_factory=list)

    def add(self, kind, frame, cls, det, gt, score, iou, best, gt_best, r) -> None:
        self.kind.append(kind)
        self.frame.append(frame)
        self.cls.append(cls)
        self.det.append(det)
        self.gt.append(gt)
        self.score.append(score)
        self.iou.append(iou)
        self.best.append(best)
        self.gt_best.append(gt_best)
        self.pearson.append(r)

    def fp(self, frame, cls, det, score, best=0.0) -> None:
        self.add(KIND_FP, frame, cls, det, -1, score, 0.0, best, np.nan, np.nan)

    def fn(self, frame, cls, gt, best=0.0) -> None:
        self.add(KIND_FN, frame, cls, -1, gt, np.nan, 0.0, best, best, np.nan)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "kind": np.asarray(self.kind, dtype=np.int8),
            "frame": np.asarray(self.frame, dtype=np.int64),
            "cls": np.asarray(self.cls, dtype=np.int64),
            "det": np.asarray(self.det, dtype=np.int64),
            "gt": np.asarray(self.gt, dtype=np.int64),
            "score": np.asarray(self.score, dtype=np.float64),
            "iou": np.asarray(self.iou, dtype=np.float32),
            "best": np.asarray(self.best, dtype=np.float32),
            "gt_best": np.asarray(self.gt_best, dtype=np.float32),
            "pearson": np.asarray(self.pearson, dtype=np.float64),
        }


def tp_flags(kind: np.ndarray, iou: np.ndarray, thresholds) -> np.ndarray:
    """(n_records, n_thresholds) bool: matched and IoU >= t (float32 IoU against the threshold
    taken as float32, as ``iou[r, c] >= t`` does for a Python float t)."""
    thr = np.asarray(thresholds, dtype=np.float32)
    return (kind[:, None] == KIND_MATCHED) & (iou[:, None] >= thr[None, :])


def ties_can_matter(scores: np.ndarray, tp: np.ndarray) -> bool:
    """True when some records with equal scores differ in tp (at some threshold): only then does
    the order argsort leaves ties in change the AP. tp: (n,) or (n, n_thr) bool."""
    if scores.size < 2:
        return False
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    t = tp[order].reshape(scores.size, -1)
    return bool(((s[1:] == s[:-1]) & (t[1:] != t[:-1]).any(axis=1)).any())


def pr_curve(scores: np.ndarray, tp: np.ndarray, n_gt: int,
             tie_order: str = OFFICIAL_TIE_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision), float32, of detection records in the official order (one threshold:
    tp is (n,) bool)."""
    order = tie_argsort(-scores, tie_order)
    tps = tp[order].astype(np.float32)
    tp_cum = np.cumsum(tps)
    fp_cum = np.cumsum(1 - tps)
    return tp_cum / n_gt, tp_cum / (tp_cum + fp_cum + 1e-9)


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int, tie_order: str = OFFICIAL_TIE_ORDER) -> np.ndarray:
    """Per-threshold AP (float32) of detection records (no FN records): 101-point interpolated.

    scores: (n,) float64; tp: (n, n_thr) bool; tie_order: how ``numpy.argsort(-scores)`` orders
    tied records ("avx2", the official machine's; "avx512"; "stable")."""
    n_thr = tp.shape[1]
    if scores.size == 0:
        return np.full(n_thr, 0.0 if n_gt > 0 else np.nan, dtype=np.float32)
    if n_gt <= 0:
        return np.full(n_thr, np.nan, dtype=np.float32)
    order = tie_argsort(-scores, tie_order)
    out = np.empty(n_thr, dtype=np.float32)
    for t in range(n_thr):
        tps = tp[order, t].astype(np.float32)
        tp_cum = np.cumsum(tps)
        fp_cum = np.cumsum(1 - tps)
        recall = tp_cum / n_gt
        precision = tp_cum / (tp_cum + fp_cum + 1e-9)
        # max precision among recall >= r: recall is non-decreasing, so a suffix maximum
        suffix = np.maximum.accumulate(precision[::-1])[::-1]
        first = np.searchsorted(recall.astype(np.float64), RECALL_POINTS, side="left")
        ap = np.float32(0.0)
        for i in first:
            if i < recall.size:
                ap = ap + suffix[i]
        out[t] = ap / 101
    return out
