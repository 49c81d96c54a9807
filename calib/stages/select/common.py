"""Shared pieces of the selection stages and the tracker: groups of rows, pairs, overlaps, energies.

Overlaps are computed for whole lists of detection pairs at once: box IoU (seam-aware, pixel
inclusive) directly, mask IoU (soft IoU of the peak-normalised 1 px/degree maps) only for the pairs
whose boxes meet (a mask lies inside its box), the maps of the detections involved rendered
together (:mod:`calib.canvas.raster`) a bounded number of points at a time.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.canvas.points import FlatPoints, offsets_of, ragged_arange
from calib.canvas.raster import rasterize
from calib.canvas.sphere import pair_box_iou
from calib.constants import N_CLASSES
from calib.tables import take_rows

FRAME_KEYS = ("system", "clip", "frame")
CLASS_KEYS = ("system", "clip", "frame", "class_id")
IOU_MODES = ("mask", "box")
#: points rendered at a time when comparing masks
MASK_CHUNK_POINTS = 200_000


def group_ids(df: pl.DataFrame, keys) -> np.ndarray:
    """Group index of every row (groups numbered in sorted key order)."""
    if len(df) == 0:
        return np.zeros(0, np.int64)
    return df.select(pl.struct(list(keys)).rank("dense").cast(pl.Int64)).to_series().to_numpy() - 1


def group_rows(df: pl.DataFrame, keys) -> list[np.ndarray]:
    """Row indices of each group of ``keys``, groups in sorted key order, rows in table order."""
    if len(df) == 0:
        return []
    g = group_ids(df, keys)
    order = np.argsort(g, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(g[order])) + 1)


def rank_within(groups: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each row's 0-based position within its group when rows are visited in ``order``."""
    g = groups[order]
    o = np.argsort(g, kind="stable")
    start = offsets_of(np.bincount(g, minlength=int(g.max()) + 1 if g.size else 0))[:-1]
    pos = np.empty(order.size, np.int64)
    pos[order[o]] = np.arange(order.size) - start[g[o]]
    return pos


def pairs_within(groups: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a, b) of rows in the same group with a before b in ``order`` (a permutation of
    the rows): a is the better one when ``order`` ranks best first."""
    g = groups[order]
    o = np.argsort(g, kind="stable")  # by group, keeping ``order`` within each
    rows = order[o]
    size = np.bincount(g, minlength=int(g.max()) + 1 if g.size else 0)
    start = offsets_of(size)[:-1]
    gs = groups[rows]
    pos = np.arange(rows.size) - start[gs]  # position within the group
    n_after = size[gs] - pos - 1
    a = np.repeat(rows, n_after)
    b_pos = np.repeat(np.arange(rows.size), n_after) + 1 + ragged_arange(n_after)
    return a, rows[b_pos]


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
    return fp.sum(fp.e)


def pair_overlaps(fp: FlatPoints, boxes: np.ndarray, a: np.ndarray, b: np.ndarray, mode: str,
                  max_points: int = MASK_CHUNK_POINTS) -> np.ndarray:
    """IoU of the detection pairs (a[k], b[k]): box IoU, or the soft IoU of their peak-normalised
    1 px/degree masks (0 for pairs whose boxes do not meet)."""
    if mode not in IOU_MODES:
        raise ValueError(f"iou must be one of {IOU_MODES}, got {mode!r}")
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    biou = pair_box_iou(boxes[a], boxes[b])
    if mode == "box" or a.size == 0:
        return biou
    out = np.zeros(a.size)
    meet = np.flatnonzero(biou > 0)
    if meet.size == 0:
        return out
    # render the detections of the meeting pairs a bounded number of points at a time: pairs
    # sorted by their first detection, each batch rendering the detections its pairs touch
    meet = meet[np.argsort(np.minimum(a[meet], b[meet]), kind="stable")]
    lo = np.minimum(a[meet], b[meet])
    cum = np.cumsum(fp.count[a[meet]] + fp.count[b[meet]])
    start = 0
    while start < meet.size:
        stop = max(int(np.searchsorted(cum, (cum[start - 1] if start else 0) + max_points, side="right")), start + 1)
        # keep pairs sharing a first detection together
        if stop < meet.size:
            stop = max(int(np.searchsorted(lo, lo[stop - 1], side="right")), start + 1)
        k = meet[start:stop]
        dets, inv = np.unique(np.concatenate([a[k], b[k]]), return_inverse=True)
        r = rasterize(fp.take(dets))
        out[k] = r.mask_iou(inv[: k.size], inv[k.size:])
        start = stop
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
    """Rows of ``df`` where ``keep`` is true, in table order (slices of ``df`` when they come in
    few runs: :func:`calib.tables.take_rows`)."""
    return take_rows(df, keep) if len(df) else df
