"""dcase2026 metrics from the records of all clips (the official aggregation, same keys)."""
from __future__ import annotations

import numpy as np

from calib.score.matching import KIND_FN, KIND_MATCHED, N_CLASSES, average_precision, tp_flags
from calib.tables import CLASS_NAMES


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


def metrics_from_records(rec: dict[str, np.ndarray], thresholds: list[float]) -> dict:
    """The official metrics dict (NaN where undefined; JSON writing turns NaN into null)."""
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
            class_ap[c] = average_precision(rec["score"][sel], tp[sel], n_gt)
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
    micro_ap = average_precision(rec["score"][is_det], tp[is_det], n_gt_all)
    micro_map = float(_nanmean32(micro_ap))
    all_r = rec["pearson"][r_ok]
    return {
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
