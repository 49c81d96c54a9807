"""Box-relative energy maps (e.g. a Mask R-CNN 28x28 mask head) -> [x, y, e] points on the canvas.

Map cell (i, j) of an H x W map inside box (x1, y1, x2, y2) has its centre at
``x = x1 + (j + 0.5) * (x2 - x1) / W``, ``y = y1 + (i + 0.5) * (y2 - y1) / H`` -- where torchvision's
mask pasting puts it -- in the model's box coordinates, scaled to the 360 x 180 canvas. A box may
run over the 0/360 seam (x1 < 0 or x2 > 360): x wraps modulo 360, so its points land on both edges
as one polygon (the scorers join it across the seam); y is clamped to [0, 180].

Two ways to place points:
- ``dense``: one point per map cell whose energy is at least ``min_rel_energy`` times the map's
  peak (and above 0);
- ``grid``: a k x k grid over the box, each point carrying the mean energy of its block of map
  cells (adaptive average pooling), every point kept.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from calib.canvas.points import FlatPoints, offsets_of, points_arrow

CANVAS_W, CANVAS_H = 360.0, 180.0


def adaptive_mean(maps: np.ndarray, k: int) -> np.ndarray:
    """[N, H, W] -> [N, k, k]: block means over bins [floor(i*H/k), ceil((i+1)*H/k)) (adaptive average pooling)."""
    n, h, w = maps.shape
    integral = np.zeros((n, h + 1, w + 1), dtype=np.float64)
    integral[:, 1:, 1:] = maps.astype(np.float64).cumsum(1).cumsum(2)
    i = np.arange(k)
    r0, r1 = (i * h) // k, -((-(i + 1) * h) // k)
    c0, c1 = (i * w) // k, -((-(i + 1) * w) // k)
    total = (integral[:, r1[:, None], c1[None, :]] - integral[:, r0[:, None], c1[None, :]]
             - integral[:, r1[:, None], c0[None, :]] + integral[:, r0[:, None], c0[None, :]])
    return total / ((r1 - r0)[:, None] * (c1 - c0)[None, :])


def cell_centres(boxes: np.ndarray, rows: int, cols: int, box_scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Canvas (x, y) of the centres of a rows x cols grid over each box: two [N, rows, cols] arrays."""
    sx, sy = box_scale
    x1, y1, x2, y2 = (boxes[:, k, None, None] for k in range(4))
    width, height = np.maximum(x2 - x1, 0.0), np.maximum(y2 - y1, 0.0)  # degenerate boxes collapse to a point
    fx = (np.arange(cols) + 0.5)[None, None, :] / cols
    fy = (np.arange(rows) + 0.5)[None, :, None] / rows
    x = (x1 + fx * width) * sx
    y = (y1 + fy * height) * sy
    x = np.mod(x, CANVAS_W)  # seam: 360 -> 0, -1 -> 359
    y = np.clip(y, 0.0, CANVAS_H)
    return np.broadcast_to(x, (len(boxes), rows, cols)), np.broadcast_to(y, (len(boxes), rows, cols))


def map_points(boxes: np.ndarray, maps: np.ndarray, *, mode: str = "dense", grid: int = 3,
               min_rel_energy: float = 0.1, box_scale: tuple[float, float] = (1.0, 1.0)) -> pa.ListArray:
    """Points of N detections: an Arrow list (one polygon each) of lists of {x, y, e} structs.

    ``boxes`` [N, 4] (x1, y1, x2, y2) in model coordinates, ``maps`` [N, H, W] energies,
    ``box_scale`` multiplies model x and y into canvas degrees."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    maps = np.asarray(maps, dtype=np.float64)
    n = len(boxes)
    if maps.ndim != 3 or len(maps) != n:
        raise ValueError(f"maps must be [N, H, W] with N = {n} boxes; got shape {maps.shape}")
    if mode == "dense":
        x, y = cell_centres(boxes, maps.shape[1], maps.shape[2], box_scale)
        e = maps
        peak = maps.reshape(n, -1).max(axis=1) if maps.size else np.zeros(n)
        keep = (e > 0) & (e >= (min_rel_energy * peak)[:, None, None])
    elif mode == "grid":
        e = adaptive_mean(maps, grid)
        x, y = cell_centres(boxes, grid, grid, box_scale)
        keep = np.ones(e.shape, dtype=bool)
    else:
        raise ValueError(f"points mode {mode!r}: use 'dense' or 'grid'")
    per_det = int(np.prod(keep.shape[1:]))
    keep = keep.reshape(n, per_det)
    flat = keep.ravel()
    xs, ys, es = (np.asarray(a, np.float64).reshape(n, per_det).ravel()[flat] for a in (x, y, e))
    fp = FlatPoints(xs, ys, es, np.arange(n + 1, dtype=np.int64), offsets_of(keep.sum(axis=1)))
    return points_arrow(fp, large=False)
