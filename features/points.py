"""Flattened points of a detections table and per-annotation reductions over them.

Every annotation's polygons are flattened into one run of points (x, y, e as float64 numpy arrays),
runs laid out in row order, so a per-annotation statistic is a segment reduction
(``np.bincount`` / ``ufunc.reduceat``) instead of a Python loop over rows. An annotation without
points has an empty run; reductions give it the ``empty`` value their caller chooses.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import pyarrow as pa

#: the canvas is 360 degrees around; a gap wider than half of it means the points cross the seam
CANVAS_WIDTH = 360.0
SEAM_GAP = 180.0


@dataclass(frozen=True)
class Points:
    """All points of ``n`` annotations; annotation i owns ``start[i]:start[i] + count[i]``."""

    x: np.ndarray
    y: np.ndarray
    e: np.ndarray
    start: np.ndarray  # int64, (n,)
    count: np.ndarray  # int64, (n,)

    @property
    def n(self) -> int:
        return int(self.count.size)

    @cached_property
    def row(self) -> np.ndarray:
        """Annotation index of every point."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.count)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-annotation sum (0 for an empty annotation); sequential, so deterministic."""
        return np.bincount(self.row, weights=values, minlength=self.n).astype(np.float64, copy=False)

    def order_within(self, key: np.ndarray, descending: bool = False) -> np.ndarray:
        """Permutation sorting every annotation's run by ``key`` (stable: equal keys keep their
        order) while runs keep their place; what ``np.lexsort((key, row))`` gives, but sorted by
        polars on all cores."""
        df = pl.DataFrame({"r": self.row, "k": key})
        return df.select(pl.arg_sort_by(["r", "k"], descending=[False, descending], maintain_order=True)
                         ).to_series().to_numpy()

    def reduce(self, ufunc: np.ufunc, values: np.ndarray, empty: float = 0.0) -> np.ndarray:
        """Per-annotation ``ufunc.reduce`` (e.g. np.maximum) over ``values`` laid out like the points."""
        out = np.full(self.n, empty, dtype=np.float64)
        nonempty = self.count > 0
        if nonempty.any():
            out[nonempty] = ufunc.reduceat(values, self.start[nonempty])
        return out

    def select(self, rows: np.ndarray) -> tuple["Points", np.ndarray]:
        """The points of the annotations where ``rows`` is True (in order), and the positions of
        those points in this set."""
        pos = np.flatnonzero(rows[self.row])
        count = self.count[rows]
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        return Points(self.x[pos], self.y[pos], self.e[pos], start, count), pos

    def first_argmax(self, values: np.ndarray) -> np.ndarray:
        """Point index of each annotation's first largest value (-1 for an annotation without points)."""
        out = np.full(self.n, -1, dtype=np.int64)
        nonempty = self.count > 0
        if not nonempty.any():
            return out
        top = self.reduce(np.maximum, values, empty=-np.inf)
        idx = np.arange(values.size)
        cand = np.where(values == top[self.row], idx, values.size)
        first = np.minimum.reduceat(cand, self.start[nonempty])
        # all-NaN runs have no candidate: take their first point
        out[nonempty] = np.where(first < values.size, first, self.start[nonempty])
        return out

    @cached_property
    def seam_x(self) -> np.ndarray:
        """x moved by +360 for the points left of a seam-crossing gap, so each annotation's points
        lie contiguously on a 720-wide strip.

        The rule is the scorer's: sort an annotation's x; when the widest gap between neighbours
        exceeds 180 degrees, every x at or left of that gap gets +360 (applied to all points of the
        annotation together rather than polygon by polygon). Only annotations spanning more than
        180 degrees can have such a gap, so only their points are sorted."""
        out = self.x.copy()
        span = self.reduce(np.maximum, self.x) - self.reduce(np.minimum, self.x)
        maybe = span > SEAM_GAP
        if maybe.any():
            sub, pos = self.select(maybe)
            out[pos] = sub._seam_shift()
        return out

    def _seam_shift(self) -> np.ndarray:
        row = self.row
        order = self.order_within(self.x)
        xs = self.x[order]
        gaps = np.full(xs.size, -np.inf)
        same = row[1:] == row[:-1]  # rows are already in order, so row[order] == row
        gaps[:-1] = np.where(same, np.diff(xs), -np.inf)
        widest = self.reduce(np.maximum, gaps, empty=-np.inf)
        crossing = widest > SEAM_GAP
        # The left end of the (unique, being > 180) widest gap of a crossing annotation.
        at_gap = crossing[row] & (gaps == widest[row])
        threshold = np.full(self.n, -np.inf)
        threshold[row[at_gap]] = xs[at_gap]
        return np.where(self.x <= threshold[row], self.x + CANVAS_WIDTH, self.x)


def flatten_points(points: pl.Series) -> Points:
    """Flatten a ``points`` column (list of polygons, each a list of struct{x, y, e})."""
    arr = points.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        z = np.zeros(0)
        return Points(z, z, z, np.zeros(0, np.int64), np.zeros(0, np.int64))
    # Offsets are absolute into ``.values`` (which ignores slicing), so they also handle a slice.
    outer = np.asarray(arr.offsets, dtype=np.int64)
    polys = arr.values
    inner = np.asarray(polys.offsets, dtype=np.int64)
    bounds = inner[outer]  # point offsets of each annotation, (n + 1,)
    lo, hi = int(bounds[0]), int(bounds[-1])
    leaf = polys.values.slice(lo, hi - lo)
    x, y, e = (np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64) for c in leaf.flatten())
    count = np.diff(bounds)
    start = bounds[:-1] - lo
    return Points(x, y, e, start, count)


@dataclass(frozen=True)
class Box:
    """Seam-aware bounding box of each annotation's points, in canvas degrees.

    ``x0`` is the left edge on the 720-wide strip (so ``x0 + w`` may exceed 360), ``w``/``h`` the
    extents (0 for a single point); an annotation without points gets an all-zero box."""

    x0: np.ndarray
    y0: np.ndarray
    w: np.ndarray
    h: np.ndarray

    @property
    def cx(self) -> np.ndarray:
        """Centre column on the strip (not wrapped)."""
        return self.x0 + self.w / 2

    @property
    def cy(self) -> np.ndarray:
        return self.y0 + self.h / 2


def bounding_box(pts: Points) -> Box:
    sx = pts.seam_x
    x0 = pts.reduce(np.minimum, sx, empty=0.0)
    x1 = pts.reduce(np.maximum, sx, empty=0.0)
    y0 = pts.reduce(np.minimum, pts.y, empty=0.0)
    y1 = pts.reduce(np.maximum, pts.y, empty=0.0)
    return Box(x0, y0, x1 - x0, y1 - y0)
