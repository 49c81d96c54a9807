"""Shared pieces of the selection stages and the tracker: groups of rows, overlaps, energies."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.render import FlatPoints, Mask, box_iou, mask_iou
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


def _pairwise(biou: np.ndarray, masks_a: list, masks_b: list) -> np.ndarray:
    """Mask IoU for the pairs whose boxes meet (the others are 0: a mask lies inside its box)."""
    out = np.zeros_like(biou)
    for i, j in zip(*np.nonzero(biou > 0)):
        out[i, j] = mask_iou(masks_a[i], masks_b[j])
    return out


def overlap_matrix(fp: FlatPoints, boxes: np.ndarray, rows: np.ndarray, mode: str) -> np.ndarray:
    """IoU between every pair of the given detections: box IoU, or soft IoU of their 1 px/degree
    maps (:class:`calib.render.Mask`; only pairs whose boxes meet are rendered and compared)."""
    if mode not in IOU_MODES:
        raise ValueError(f"iou must be one of {IOU_MODES}, got {mode!r}")
    b = boxes[rows]
    biou = box_iou(b, b)
    if mode == "box":
        return biou
    masks = [Mask.of(fp.polygons(int(r))) if (biou[k] > 0).sum() > 1 else None for k, r in enumerate(rows)]
    np.fill_diagonal(biou, 0.0)
    out = _pairwise(biou, masks, masks)
    np.fill_diagonal(out, 1.0)
    return out


def cross_overlap(fp_a: FlatPoints, rows_a, boxes_a, fp_b: FlatPoints, rows_b, boxes_b, mode: str,
                  cache_a: dict | None = None, cache_b: dict | None = None) -> np.ndarray:
    """IoU between detections ``rows_a`` of one table and ``rows_b`` of another (box or mask); masks
    are kept in the caches (row -> Mask) when given."""
    if mode not in IOU_MODES:
        raise ValueError(f"iou must be one of {IOU_MODES}, got {mode!r}")
    biou = box_iou(boxes_a[rows_a], boxes_b[rows_b])
    if mode == "box":
        return biou

    def masks(fp, rows, cache, needed):
        out = []
        for r, need in zip(rows, needed):
            r = int(r)
            if not need:
                out.append(None)
            elif cache is not None:
                if r not in cache:
                    cache[r] = Mask.of(fp.polygons(r))
                out.append(cache[r])
            else:
                out.append(Mask.of(fp.polygons(r)))
        return out

    return _pairwise(biou, masks(fp_a, rows_a, cache_a, (biou > 0).any(axis=1)),
                     masks(fp_b, rows_b, cache_b, (biou > 0).any(axis=0)))


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
