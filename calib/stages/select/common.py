"""Shared pieces of the selection stages and the tracker: groups of rows, overlaps, energies."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.render import FlatPoints, box_iou, energy_map, soft_iou_cross, soft_iou_matrix
from calib.tables import N_CLASSES

FRAME_KEYS = ("system", "clip", "frame")
CLASS_KEYS = ("system", "clip", "frame", "class_id")
IOU_MODES = ("mask", "box")


def group_rows(df: pl.DataFrame, keys) -> list[np.ndarray]:
    """Row indices of each group of ``keys``, groups in sorted key order, rows in table order."""
    if len(df) == 0:
        return []
    g = (df.select(list(keys)).with_row_index("_row")
         .group_by(list(keys), maintain_order=True).agg(pl.col("_row"))
         .sort(list(keys)))
    return [np.asarray(r, np.int64) for r in g.get_column("_row").to_list()]


def ranking_order(df: pl.DataFrame, column: str, tie_break: str = "det_id", energy: np.ndarray | None = None) -> np.ndarray:
    """Row indices from best to worst: ``column`` descending (nulls last), then for
    ``tie_break="energy"`` the detection's total energy descending, then det_id, clip, system."""
    if column not in df.columns:
        raise ValueError(f"no score column {column!r} in the detections (have {df.columns})")
    if tie_break not in ("det_id", "energy"):
        raise ValueError(f"tie_break must be 'det_id' or 'energy', got {tie_break!r}")
    score = df.get_column(column).cast(pl.Float64).fill_nan(None).fill_null(-np.inf).to_numpy()
    keys = [df.get_column("system").to_numpy(), df.get_column("clip").to_numpy(), df.get_column("det_id").to_numpy()]
    if tie_break == "energy":
        e = energy if energy is not None else np.zeros(len(df))
        return np.lexsort(keys[::-1] + [-e, -score])
    return np.lexsort(keys[::-1] + [-score])


def detection_energy(fp: FlatPoints) -> np.ndarray:
    """Total intensity of each detection's points."""
    if fp.xye.size == 0:
        return np.zeros(len(fp))
    return np.bincount(fp.detection_of_point(), weights=fp.xye[:, 2], minlength=len(fp))


def mask_canvases(fp: FlatPoints, rows: np.ndarray) -> np.ndarray:
    """Peak-normalised 1 px/degree maps (n, 181, 360) of the given detections."""
    return np.stack([energy_map(fp.polygons(int(i))).canvas() for i in rows]) if len(rows) else np.zeros((0, 181, 360), np.float32)


def overlap_matrix(fp: FlatPoints, boxes: np.ndarray, rows: np.ndarray, mode: str) -> np.ndarray:
    """IoU between every pair of the given detections: box IoU, or soft IoU of their 1 px/degree
    maps (rendered only for detections whose boxes meet another one's: disjoint boxes give 0)."""
    if mode not in IOU_MODES:
        raise ValueError(f"iou must be one of {IOU_MODES}, got {mode!r}")
    b = boxes[rows]
    biou = box_iou(b, b)
    if mode == "box":
        return biou
    out = np.zeros_like(biou)
    touching = (biou > 0).sum(axis=1) > 1
    idx = np.flatnonzero(touching)
    if idx.size:
        out[np.ix_(idx, idx)] = soft_iou_matrix(mask_canvases(fp, rows[idx]))
    np.fill_diagonal(out, 1.0)
    return out


def cross_overlap(fp_a: FlatPoints, rows_a, boxes_a, fp_b: FlatPoints, rows_b, boxes_b, mode: str,
                  cache_a: dict | None = None, cache_b: dict | None = None) -> np.ndarray:
    """IoU between detections ``rows_a`` of one table and ``rows_b`` of another (box or mask)."""
    if mode not in IOU_MODES:
        raise ValueError(f"iou must be one of {IOU_MODES}, got {mode!r}")
    biou = box_iou(boxes_a[rows_a], boxes_b[rows_b])
    if mode == "box" or not (biou > 0).any():
        return biou if mode == "box" else np.zeros_like(biou)

    def maps(fp, rows, cache):
        out = []
        for r in rows:
            r = int(r)
            if cache is None or r not in cache:
                m = energy_map(fp.polygons(r)).canvas()
                if cache is None:
                    out.append(m)
                    continue
                cache[r] = m
            out.append(cache[r])
        return np.stack(out)

    out = np.zeros_like(biou)
    ia = np.flatnonzero((biou > 0).any(axis=1))
    ib = np.flatnonzero((biou > 0).any(axis=0))
    out[np.ix_(ia, ib)] = soft_iou_cross(maps(fp_a, np.asarray(rows_a)[ia], cache_a), maps(fp_b, np.asarray(rows_b)[ib], cache_b))
    return out


def class_map(values, what: str) -> dict[int, float]:
    """A per-class parameter from a recipe (TOML keys are strings) as {class_id: value}."""
    out = {}
    for k, v in dict(values or {}).items():
        try:
            c = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: class key {k!r} is not a class id") from None
        if not 0 <= c < N_CLASSES or str(c) != str(k).strip():
            raise ValueError(f"{what}: class id {k!r} outside 0..{N_CLASSES - 1}")
        out[c] = v
    return out


def keep_rows(df: pl.DataFrame, keep: np.ndarray) -> pl.DataFrame:
    """Rows of ``df`` where ``keep`` is true, in table order."""
    return df.filter(pl.Series(keep, dtype=pl.Boolean)) if len(df) else df
