"""dcase2026 metrics from the records of all clips (the official aggregation, same keys), and
how far tied scores could move them (:func:`tie_order_range`)."""
from __future__ import annotations

import numpy as np

from calib.constants import CLASS_NAMES, N_CLASSES
from calib.score.argsort import OFFICIAL_TIE_ORDER, TIE_ORDERS, check_tie_order
from calib.score.matching import KIND_FN, KIND_MATCHED, average_precision, ties_can_matter, tp_flags


def _nanmean32(values: np.ndarray) -> np.float32:
    """numpy.nanmean of a float32 vector (NaN when all NaN), without the empty-slice warning."""
    ok = ~np.isnan(values)
    if not ok.any():
        return np.float32(np.nan)
    return np.nanmean(values)


def _threshold_index(thresholds, value: float) -> int | None:
    for i, t in enumerate(thresholds):
        if abs(t - value) < 1e-9:
            return i
    return None


def concat_records(clips: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Records of all clips, clips in scoring order, each clip's records in official order."""
    if not clips:
        from calib.score.matching import ClipRecords

        return ClipRecords().arrays()
    return {k: np.concatenate([c[k] for c in clips]) for k in clips[0]}


def _macro(class_ap: np.ndarray) -> float:
    """macro mAP of per-class APs (NaN rows: inactive classes), as the official script: each class's
    nanmean in float32, their mean in float64."""
    class_map = np.array([_nanmean32(row) for row in class_ap], dtype=np.float32)
    active = ~np.isnan(class_map)
    return float(np.mean(class_map[active].astype(np.float64))) if active.any() else float("nan")


def tie_order_range(scores: np.ndarray, tp: np.ndarray, cls: np.ndarray, n_gt: np.ndarray, n_gt_all: int,
                    class_ap: np.ndarray, micro_ap: np.ndarray, tie_order: str) -> dict:
    """macro_mAP and micro_mAP under each tie order (:data:`calib.score.argsort.TIE_ORDERS`) and
    their [min, max]. Only classes (and the micro list) whose tied scores differ in tp are sorted
    again; the others keep ``class_ap`` / ``micro_ap`` (computed with ``tie_order``).

    scores, tp, cls: the detection records (no FN); n_gt: GT count per class."""
    mixed = [c for c in range(N_CLASSES) if n_gt[c] > 0 and ties_can_matter(scores[cls == c], tp[cls == c])]
    micro_mixed = ties_can_matter(scores, tp)
    by_order = {}
    for order in TIE_ORDERS:
        aps, micro = class_ap, micro_ap
        if order != tie_order:
            if mixed:
                aps = class_ap.copy()
                for c in mixed:
                    aps[c] = average_precision(scores[cls == c], tp[cls == c], int(n_gt[c]), order)
            if micro_mixed:
                micro = average_precision(scores, tp, n_gt_all, order)
        by_order[order] = {"macro_mAP": _macro(aps), "micro_mAP": float(_nanmean32(micro))}
    rng = {k: [min(v[k] for v in by_order.values()), max(v[k] for v in by_order.values())]
           for k in ("macro_mAP", "micro_mAP")}
    return {"tie_order": tie_order, **rng, "by_order": by_order,
            "classes_with_mixed_ties": [CLASS_NAMES[c] for c in mixed], "micro_has_mixed_ties": micro_mixed}


def metrics_from_records(rec: dict[str, np.ndarray], thresholds: list[float], tie_order: str = OFFICIAL_TIE_ORDER,
                         with_tie_range: bool = False) -> dict:
    """The official metrics dict (NaN where undefined; JSON writing turns NaN into null).

    tie_order: how tied scores are ordered ("avx2", the official machine's; "avx512"; "stable").
    with_tie_range: add ``tie_order_range`` (:func:`tie_order_range`), calib's own key."""
    check_tie_order(tie_order)
    thresholds = [float(t) for t in thresholds]
    n_thr = len(thresholds)
    kind, cls = rec["kind"], rec["cls"]
    tp = tp_flags(kind, rec["iou"], thresholds)
    is_det = kind != KIND_FN
    is_gt = (kind == KIND_MATCHED) | (kind == KIND_FN)  # every GT shows up once
    r_ok = (kind == KIND_MATCHED) & ~np.isnan(rec["pearson"])

    i50, i75 = _threshold_index(thresholds, 0.5), _threshold_index(thresholds, 0.75)
    class_ap = np.full((N_CLASSES, n_thr), np.nan, dtype=np.float32)
    class_map = np.full(N_CLASSES, np.nan, dtype=np.float32)
    per_class = {}
    class_r = []
    for c in range(N_CLASSES):
        in_c = cls == c
        n_gt = int(np.count_nonzero(in_c & is_gt))
        sel = in_c & is_det
        n_det = int(np.count_nonzero(sel))
        rs = rec["pearson"][in_c & r_ok]
        r = float(np.mean(rs)) if rs.size else float("nan")
        if n_gt > 0:
            class_ap[c] = average_precision(rec["score"][sel], tp[sel], n_gt, tie_order)
            class_map[c] = _nanmean32(class_ap[c])
            if rs.size:
                class_r.append(r)
        per_class[CLASS_NAMES[c]] = {
            "n_gt": n_gt,
            "n_det": n_det,
            "AP50": float(class_ap[c, i50]) if i50 is not None else None,
            "AP75": float(class_ap[c, i75]) if i75 is not None else None,
            "mAP": float(class_map[c]),
            "AP_per_thr": [float(v) for v in class_ap[c]],
            "pearson_r": r,
            "pearson_n": int(rs.size),
        }
    active = ~np.isnan(class_map)
    if active.any():
        macro_per_thr = np.array([np.mean(class_ap[active, t]) for t in range(n_thr)], dtype=np.float32)
        macro_map = float(np.mean(class_map[active].astype(np.float64)))
    else:
        macro_per_thr = np.full(n_thr, np.nan, dtype=np.float32)
        macro_map = float("nan")
    n_gt_all = int(np.count_nonzero(is_gt))
    micro_ap = average_precision(rec["score"][is_det], tp[is_det], n_gt_all, tie_order)
    micro_map = float(_nanmean32(micro_ap))
    all_r = rec["pearson"][r_ok]
    out = {
        "macro_mAP": macro_map,
        "macro_AP50": float(macro_per_thr[i50]) if i50 is not None else None,
        "macro_AP75": float(macro_per_thr[i75]) if i75 is not None else None,
        "macro_pearson_r": float(np.mean(class_r)) if class_r else float("nan"),
        "micro_mAP": micro_map,
        "micro_AP50": float(micro_ap[i50]) if i50 is not None else None,
        "micro_AP75": float(micro_ap[i75]) if i75 is not None else None,
        "micro_pearson_r": float(np.mean(all_r)) if all_r.size else float("nan"),
        "micro_pearson_n": int(all_r.size),
        "macro_AP_per_thr": [float(v) for v in macro_per_thr],
        "micro_AP_per_thr": [float(v) for v in micro_ap],
        "iou_thresholds": thresholds,
        "breakdown_thresholds": [0.5, 0.75],
        "per_class": per_class,
    }
    if with_tie_range:
        n_gt = np.array([per_class[name]["n_gt"] for name in CLASS_NAMES])
        out["tie_order_range"] = tie_order_range(rec["score"][is_det], tp[is_det], cls[is_det], n_gt, n_gt_all,
                                                 class_ap, micro_ap, tie_order)
    return out
